"""distill: the agent's checkpoint when it validates, rules otherwise, and nothing exact is lost."""

from __future__ import annotations

import importlib.util
from typing import Any

import orjson
import pytest

from aether_cli import protocol as P
from aether_cli.distill import MAX_PROGRESS, distill, validate_agent_state
from aether_cli.episode_log import EpisodeLog


def words(s: str) -> int:
    return len(s.split())


def quarter(s: str) -> int:
    return len(s) // 4 + 1


def feed(log: EpisodeLog, *events: dict[str, Any]) -> EpisodeLog:
    for fields in events:
        log.add(P.decode_line(orjson.dumps(fields).decode()))
    return log


GOOD = {
    "objective": "Ship the CSV importer",
    "progress": ["parser written", "tests green"],
    "state": {"branch": "feat/csv"},
    "next_actions": ["Add the --strict flag to cli.py"],
    "errors": ["flake8: E501 line too long"],
    "resume_instructions": "Start with the flag, then docs.",
}

TRACE = "Traceback (most recent call last):\n  File \"src/imp.py\", line 9\nKeyError: 'delimiter'"


def realistic_episode(objective: str = "Ship the CSV importer") -> EpisodeLog:
    return feed(
        EpisodeLog(objective=objective),
        {"type": "message", "role": "user", "text": "Never edit files under vendor/."},
        {"type": "task", "id": "t1", "title": "Parser", "status": "in_progress",
         "progress": 0.5, "next_action": "Handle quoted newlines in src/imp.py:parse_row"},
        {"type": "task", "id": "t2", "title": "Docs", "status": "pending",
         "next_action": "Document --strict in docs/cli.md"},
        {"type": "task", "id": "t3", "title": "Blocked thing", "status": "blocked",
         "next_action": "Ask about the encoding"},
        {"type": "task", "id": "t0", "title": "Scaffold", "status": "done"},
        {"type": "tool_call", "id": "c1", "name": "read_file",
         "input": {"path": "src/imp.py"}},
        {"type": "tool_result", "id": "c1", "output": "def parse_row(): ..."},
        {"type": "tool_call", "id": "c2", "name": "apply_patch",
         "input": {"path": "src/Imp Utils/quoting.py", "patch": "..."}},
        {"type": "tool_result", "id": "c2", "output": "ok"},
        {"type": "tool_call", "id": "c3", "name": "bash", "input": {"command": "pytest -x"}},
        {"type": "tool_result", "id": "c3", "output": TRACE, "is_error": True},
        {"type": "message", "role": "assistant",
         "text": "Decision: rows are parsed with csv.reader, not split().\nRunning tests."},
        {"type": "tool_call", "id": "c4", "name": "write_file",
         "input": {"path": "src/imp.py", "content": "..."}},
    )


# ------------------------------------------------------------ validation


def test_valid_agent_state_passes() -> None:
    assert validate_agent_state(GOOD, max_tokens=1000, count=words) is None
    only_actions = {"objective": "o", "next_actions": ["a"]}
    assert validate_agent_state(only_actions, max_tokens=1000, count=words) is None


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ([], "checkpoint state is not an object"),
        ("text", "checkpoint state is not an object"),
        ({}, "objective missing"),
        ({"progress": ["p"]}, "objective missing"),
        ({"objective": "", "progress": ["p"]}, "objective is empty"),
        ({"objective": "   ", "progress": ["p"]}, "objective is empty"),
        ({"objective": 7, "progress": ["p"]}, "objective is not a string"),
        ({"objective": "o"}, "no progress and no next_actions"),
        ({"objective": "o", "progress": [], "next_actions": []}, "no progress and no next_actions"),
        ({"objective": "o", "progress": [" "], "next_actions": [""]},
         "no progress and no next_actions"),
        ({"objective": "o", "progress": "did stuff"}, "progress is not a list of strings"),
        ({"objective": "o", "progress": ["ok", 3]}, "progress is not a list of strings"),
        ({"objective": "o", "progress": ["p"], "next_actions": {"a": 1}},
         "next_actions is not a list of strings"),
        ({"objective": "o", "progress": ["p"], "state": ["not", "object"]},
         "state is not an object"),
        ({"objective": "o", "progress": ["p"], "errors": "bad"}, "errors is not a list"),
    ],
)
def test_invalid_agent_state_reasons(state: Any, reason: str) -> None:
    assert validate_agent_state(state, max_tokens=1000, count=words) == reason


def test_oversized_agent_state() -> None:
    state = {"objective": "o", "progress": ["word " * 50]}
    tokens = quarter(P.dumps_compact(state))
    assert validate_agent_state(state, max_tokens=tokens, count=quarter) is None
    reason = validate_agent_state(state, max_tokens=tokens - 1, count=quarter)
    assert reason == f"oversized: {tokens} tokens > {tokens - 1}"


# ------------------------------------------------------------ agent path


def test_agent_checkpoint_is_used_and_enriched() -> None:
    log = realistic_episode()
    agent = dict(GOOD, objective="ship csv importer (agent's words)")
    log.add(P.CheckpointEvent({}, state=agent))
    draft = distill(trigger="budget", objective="Ship the CSV importer", log=log, parent=None,
                    count=words, max_tokens=5000, constraints=["Python 3.11 only"])
    assert draft["distiller"] == "agent"
    assert draft["distiller_note"] == ""
    assert draft["objective"] == "Ship the CSV importer"  # the run's objective is authoritative
    assert draft["state"]["agent_objective"] == "ship csv importer (agent's words)"
    assert draft["state"]["branch"] == "feat/csv"
    assert draft["progress"] == GOOD["progress"]
    assert draft["next_actions"] == GOOD["next_actions"]
    assert draft["resume_instructions"] == GOOD["resume_instructions"]
    # The agent's errors and the log's unresolved ones (verbatim) both survive.
    assert draft["errors"] == ["flake8: E501 line too long", TRACE]
    # What summaries lose is merged in from the log.
    st = draft["state"]
    assert st["constraints"] == ["Python 3.11 only", "Never edit files under vendor/."]
    assert st["files_modified"] == ["src/Imp Utils/quoting.py", "src/imp.py"]
    assert st["interrupted_calls"] == ['write_file {"path":"src/imp.py","content":"..."}']
    assert draft["trigger"] == "budget"
    assert log.agent_checkpoint is not None
    assert "agent_objective" not in log.agent_checkpoint["state"]  # the event is not mutated


def test_agent_objective_used_when_run_has_none() -> None:
    log = EpisodeLog(objective="")
    log.add(P.CheckpointEvent({}, state=GOOD))
    draft = distill(trigger="agent", objective="", log=log, parent=None, count=words,
                    max_tokens=5000)
    assert draft["objective"] == GOOD["objective"]
    assert "agent_objective" not in draft["state"]


def test_agent_data_of_wrong_types_is_skipped_not_raised() -> None:
    log = EpisodeLog(objective="o")
    log.add(P.CheckpointEvent({}, state={
        "objective": "o", "progress": ["p"], "errors": ["real error", 5, None, {"x": 1}],
        "resume_instructions": ["not", "text"],
        "state": {"constraints": "not a list", "decisions": ["kept decision", 3]},
    }))
    draft = distill(trigger="agent", objective="o", log=log, parent=None, count=words,
                    max_tokens=5000)
    assert draft["distiller"] == "agent"
    assert draft["errors"] == ["real error"]
    assert draft["resume_instructions"] == ""
    assert draft["state"]["constraints"] == []
    assert draft["state"]["decisions"] == ["kept decision"]


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({}, "objective missing"),
        ({"progress": ["p"], "next_actions": ["n"]}, "objective missing"),
        ({"objective": "", "progress": ["p"]}, "objective is empty"),
        ({"objective": "o", "progress": [], "next_actions": []}, "no progress and no next_actions"),
        ({"objective": "o", "progress": [1, 2]}, "progress is not a list of strings"),
        ({"objective": "o", "progress": ["p"], "state": 3}, "state is not an object"),
        ({"objective": "o", "progress": ["x " * 3000]}, "oversized: 3001 tokens > 500"),
    ],
)
def test_rejected_agent_checkpoint_falls_back_to_rules(state: dict, reason: str) -> None:
    log = realistic_episode()
    log.add(P.CheckpointEvent({}, state=state))
    draft = distill(trigger="budget", objective="Ship the CSV importer", log=log, parent=None,
                    count=words, max_tokens=500, note="checkpoint answer late")
    assert draft["distiller"] == "rules"
    assert draft["distiller_note"] == f"{reason}; checkpoint answer late"
    # The call left open comes first, then the tasks' next actions.
    assert draft["next_actions"][0] == (
        "Check the interrupted call (started, no result seen), then redo it if needed: "
        "write_file src/imp.py"
    )
    assert draft["next_actions"][1] == "Handle quoted newlines in src/imp.py:parse_row"


def test_no_agent_checkpoint_and_rules_preferred_notes() -> None:
    log = realistic_episode()
    draft = distill(trigger="emergency", objective="o", log=log, parent=None, count=words,
                    max_tokens=5000)
    assert (draft["distiller"], draft["distiller_note"]) == ("rules", "agent sent no checkpoint")
    log.add(P.CheckpointEvent({}, state=GOOD))
    draft = distill(trigger="emergency", objective="o", log=log, parent=None, count=words,
                    max_tokens=5000, prefer_agent=False)
    assert draft["distiller"] == "rules"
    assert draft["distiller_note"] == "agent checkpoint not used: the agent kept working after it"


# ------------------------------------------------------------ rules path


def test_rules_keep_paths_errors_next_actions_constraints_decisions() -> None:
    log = realistic_episode()
    draft = distill(trigger="budget", objective="Ship the CSV importer", log=log, parent=None,
                    count=words, max_tokens=5000)
    assert draft["objective"] == "Ship the CSV importer"
    assert draft["distiller"] == "rules"
    # The call left open first; then in_progress, pending, blocked; done tasks contribute nothing.
    assert draft["next_actions"] == [
        "Check the interrupted call (started, no result seen), then redo it if needed: "
        "write_file src/imp.py",
        "Handle quoted newlines in src/imp.py:parse_row",
        "Document --strict in docs/cli.md",
        "Ask about the encoding",
    ]
    assert draft["errors"] == [TRACE]
    st = draft["state"]
    assert st["files_read"] == ["src/imp.py"]
    assert st["files_modified"] == ["src/Imp Utils/quoting.py", "src/imp.py"]
    assert st["constraints"] == ["Never edit files under vendor/."]
    assert st["decisions"] == ["Decision: rows are parsed with csv.reader, not split()."]
    assert st["interrupted_calls"] == ['write_file {"path":"src/imp.py","content":"..."}']
    # Only finished calls: the open one is reported once, as interrupted.
    assert st["recent_tool_calls"] == [
        'read_file {"path":"src/imp.py"}',
        'apply_patch {"path":"src/Imp Utils/quoting.py","patch":"..."}',
        'bash {"command":"pytest -x"} -> error',
    ]
    assert st["last_message"].startswith("Decision: rows are parsed")
    # The last assistant text is never progress: it may announce a step that never ran.
    assert draft["progress"] == [
        "Scaffold: done",
        "Done so far: tool calls 1\u20133 finished; the last was call 3: bash: pytest -x → "
        "error: KeyError: 'delimiter'.",
    ]
    assert st["work_log"]["total"] == 3
    assert [e["outcome"] for e in st["work_log"]["recent"]] == ["ok", "ok", "error: KeyError: 'delimiter'"]
    assert st["unresolved_errors"][0]["call"] == "bash: pytest -x"
    assert draft["tasks"] == [
        {"id": "t1", "status": "in_progress",
         "next_action": "Handle quoted newlines in src/imp.py:parse_row"},
        {"id": "t2", "status": "pending", "next_action": "Document --strict in docs/cli.md"},
        {"id": "t3", "status": "blocked", "next_action": "Ask about the encoding"},
        {"id": "t0", "status": "done", "next_action": ""},
    ]
    assert draft["resume_instructions"] == ""
    assert draft["metrics"]["tool_calls"] == 4
    assert draft["metrics"]["events"] == 13
    assert draft["metrics"]["episode_tokens"] is None
    assert draft["metrics"]["checkpoint_tokens"] == words(P.dumps_compact(draft))


def test_rules_next_actions_fall_back_to_parent_then_objective() -> None:
    parent = {"next_actions": ["parent's next step"], "progress": []}
    log = feed(EpisodeLog(objective="o"), {"type": "task", "id": "t1", "status": "done"})
    draft = distill(trigger="budget", objective="Finish it", log=log, parent=parent,
                    count=words, max_tokens=5000)
    assert draft["next_actions"] == ["parent's next step"]
    draft = distill(trigger="budget", objective="Finish it", log=log, parent=None,
                    count=words, max_tokens=5000)
    assert draft["next_actions"] == ["Continue with the objective: Finish it"]


def test_rules_done_event_and_bounded_progress() -> None:
    parent = {"progress": [f"old step {i}" for i in range(30)]}
    log = feed(EpisodeLog(objective="o"), {"type": "done", "summary": "all tests pass"})
    draft = distill(trigger="done", objective="o", log=log, parent=parent, count=words,
                    max_tokens=5000)
    assert len(draft["progress"]) == MAX_PROGRESS
    assert draft["progress"][-1] == "Objective reported done: all tests pass"
    assert draft["progress"][-2] == "old step 29"
    assert draft["state"]["done"] == "all tests pass"


def test_carry_over_from_parent_checkpoint() -> None:
    parent = {
        "objective": "Ship the CSV importer",
        "progress": ["episode 1 work"],
        "next_actions": ["old next"],
        "state": {
            "constraints": ["Keep Python 3.9 compatible", "Never edit files under vendor/."],
            "decisions": ["Decided to use orjson"],
            "files_read": ["README.md", "src/imp.py"],
            "files_modified": ["setup.cfg"],
        },
        "errors": ["stale error from episode 1"],
    }
    log = realistic_episode()
    draft = distill(trigger="budget", objective="Ship the CSV importer", log=log, parent=parent,
                    count=words, max_tokens=5000, constraints=["No network access"])
    st = draft["state"]
    assert st["constraints"] == [
        "No network access", "Keep Python 3.9 compatible", "Never edit files under vendor/.",
    ]
    assert st["decisions"] == [
        "Decided to use orjson", "Decision: rows are parsed with csv.reader, not split().",
    ]
    assert st["files_read"] == ["README.md", "src/imp.py"]
    assert st["files_modified"] == ["setup.cfg", "src/Imp Utils/quoting.py", "src/imp.py"]
    assert draft["progress"][0] == "episode 1 work"
    # A parent's plain error texts cannot be matched with a success, so they are not carried
    # (its unresolved_errors are: see test_handoff_carry.py).
    assert draft["errors"] == [TRACE]


def test_odd_parent_data_never_raises() -> None:
    parent: dict[str, Any] = {"state": 5, "progress": "x", "next_actions": [1, None],
                              "objective": ["x"]}
    log = feed(EpisodeLog(objective=""), {"type": "task", "id": "t", "next_action": "go"})
    draft = distill(trigger="crash", objective="", log=log, parent=parent, count=words,
                    max_tokens=5000)
    assert draft["objective"] == ""
    assert draft["next_actions"] == ["go"]
    assert draft["progress"] == []


def test_constraints_list_is_capped_but_callers_are_kept() -> None:
    log = EpisodeLog(objective="o")
    for i in range(60):
        log.add(P.Message({}, role="user", text=f"rule {i}"))
    parent = {"state": {"constraints": [f"old {i}" for i in range(40)]}}
    draft = distill(trigger="budget", objective="o", log=log, parent=parent, count=words,
                    max_tokens=50_000, constraints=["config rule"])
    cons = draft["state"]["constraints"]
    assert len(cons) == 30
    assert cons[0] == "config rule"
    assert cons[-1] == "rule 59"


def test_oversized_rules_draft_is_trimmed_in_order() -> None:
    log = realistic_episode()
    full = distill(trigger="budget", objective="o", log=log, parent=None, count=quarter,
                   max_tokens=50_000)
    limit = full["metrics"]["checkpoint_tokens"] - 5
    draft = distill(trigger="budget", objective="o", log=log, parent=None, count=quarter,
                    max_tokens=limit)
    assert draft["state"]["trimmed"] == ["recent_tool_calls"]
    assert draft["state"]["recent_tool_calls"] == []
    assert draft["next_actions"] == full["next_actions"]
    tiny = distill(trigger="budget", objective="o", log=log, parent=None, count=quarter,
                   max_tokens=10)
    assert tiny["state"]["trimmed"][:3] == ["recent_tool_calls", "last_message", "files_read"]
    assert tiny["next_actions"] == full["next_actions"]  # never trimmed
    assert tiny["errors"] == [TRACE]  # the last 3 errors stay


def test_distill_is_deterministic() -> None:
    def once() -> bytes:
        log = realistic_episode()
        log.add(P.CheckpointEvent({}, state={"objective": "", "progress": ["p"]}))
        d = distill(trigger="budget", objective="Ship", log=log, parent={"progress": ["a"]},
                    count=quarter, max_tokens=5000, constraints=["c"])
        return orjson.dumps(d)

    assert once() == once()


@pytest.mark.skipif(importlib.util.find_spec("aether_cli.tokens") is None,
                    reason="aether_cli.tokens not written yet")
def test_with_the_real_token_counter() -> None:
    from aether_cli.tokens import load_counter

    count = load_counter().count
    log = realistic_episode()
    log.add(P.CheckpointEvent({}, state=GOOD))
    draft = distill(trigger="budget", objective="Ship the CSV importer", log=log, parent=None,
                    count=count, max_tokens=4000)
    assert draft["distiller"] == "agent"
    assert draft["metrics"]["checkpoint_tokens"] == count(P.dumps_compact(draft))
    assert 100 < draft["metrics"]["checkpoint_tokens"] < 1000


def test_paths_under_the_agents_folder_are_kept_relative_and_once() -> None:
    parent = {"state": {"files_modified": ["/repo/src/a.py", "setup.cfg"], "files_read": ["/etc/hosts"]}}
    log = feed(
        EpisodeLog(objective="o"),
        {"type": "tool_call", "id": "c1", "name": "write_file", "input": {"path": "/repo/src/a.py"}},
        {"type": "tool_result", "id": "c1", "output": "ok"},
        {"type": "tool_call", "id": "c2", "name": "write_file", "input": {"path": "/repository/b.py"}},
        {"type": "tool_result", "id": "c2", "output": "ok"},
    )
    draft = distill(trigger="budget", objective="o", log=log, parent=parent, count=words,
                    max_tokens=5000, workdir="/repo/")
    # One spelling per file; a sibling folder sharing the prefix is not under /repo.
    assert draft["state"]["files_modified"] == ["setup.cfg", "src/a.py", "/repository/b.py"]
    assert draft["state"]["files_read"] == ["/etc/hosts"]


def test_tasks_are_the_unfinished_and_those_done_in_this_episode() -> None:
    log = feed(
        EpisodeLog(objective="o"),
        {"type": "task", "id": "old", "title": "Old", "status": "done"},
        {"type": "task", "id": "open", "title": "Open", "status": "in_progress"},
    )
    log.tasks_touched.clear()  # as if both were carried from an earlier episode
    feed(log, {"type": "task", "id": "now", "title": "Now", "status": "done"})
    draft = distill(trigger="budget", objective="o", log=log, parent=None, count=words, max_tokens=5000)
    assert [t["id"] for t in draft["tasks"]] == ["open", "now"]


def test_a_todo_the_agents_latest_list_dropped_is_left_out() -> None:
    log = feed(
        EpisodeLog(objective="o"),
        {"type": "task", "id": "todo-a", "title": "Write the parser", "status": "in_progress"},
        {"type": "task", "id": "mine", "title": "Not a todo", "status": "pending"},
        {"type": "tool_call", "id": "c1", "name": "TodoWrite",
         "input": {"todos": [{"content": "Write the docs", "status": "pending"}]}},
    )
    draft = distill(trigger="budget", objective="o", log=log, parent=None, count=words, max_tokens=5000)
    assert [t["id"] for t in draft["tasks"]] == ["mine"]


def test_an_agents_handoff_stands_in_for_its_checkpoint_and_rules_fill_in() -> None:
    from aether_cli.distill import HandoffResult

    state = {
        "objective": "Ship the CSV importer", "progress": ["parser done"], "next_actions": ["write docs"],
        "errors": [], "resume_instructions": "docs next", "state": {"files_modified": ["src/imp.py"]},
    }
    log = realistic_episode()
    ok = distill(trigger="budget", objective="Ship the CSV importer", log=log, parent=None, count=words,
                 max_tokens=5000, handoff=HandoffResult(state, "", 4.2, 1300))
    assert (ok["distiller"], ok["sources"]) == ("agent", ["agent", "rules"])
    assert ok["next_actions"] == ["write docs"] and ok["distiller_note"] == ""
    assert (ok["metrics"]["handoff_seconds"], ok["metrics"]["handoff_tokens"]) == (4.2, 1300)
    assert "src/Imp Utils/quoting.py" in ok["state"]["files_modified"], "what aether saw is merged in"

    failed = distill(trigger="budget", objective="Ship the CSV importer", log=realistic_episode(),
                     parent=None, count=words, max_tokens=5000,
                     handoff=HandoffResult(None, "answer is not JSON", 2.0, None))
    assert (failed["distiller"], failed["sources"]) == ("rules", ["rules"])
    assert "agent handoff: answer is not JSON" in failed["distiller_note"]
    assert failed["metrics"]["handoff_seconds"] == 2.0

    plain = distill(trigger="budget", objective="o", log=realistic_episode(), parent=None, count=words,
                    max_tokens=5000)
    assert plain["sources"] == ["rules"] and "handoff_seconds" not in plain["metrics"]


@pytest.mark.parametrize(
    ("checkpoint", "sources"),
    [
        ({"distiller": "agent", "sources": ["agent", "rules"]}, ["agent", "rules"]),
        ({"distiller": "command"}, ["command"]),  # older than the field
        ({"distiller": "agent", "sources": ["agent", "$(rm -rf ~)"]}, ["agent"]),  # tampered
        ({"distiller": ["x"], "sources": "rules"}, ["rules"]),
        ({}, ["rules"]),
    ],
)
def test_the_sources_of_a_checkpoint_are_read_leniently(checkpoint: dict, sources: list[str]) -> None:
    from aether_cli.checkpoint import sources_of

    assert sources_of(checkpoint) == sources
