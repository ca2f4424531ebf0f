"""The relaunch prompt from a work-log checkpoint: under budget, flat over hundreds of relaunches,
and what is evicted last is what a relaunched agent needs most."""

from __future__ import annotations

import statistics
from typing import Any

import orjson
import pytest

from aether_cli import protocol as P
from aether_cli.distill import distill
from aether_cli.episode_log import EpisodeLog
from aether_cli.rehydrate import prompt_budget, rehydrate_prompt

OBJECTIVE = "Port the CSV importer to the new parser and keep every test green"
PINNED = [{"key": "api", "text": "Public function names must not change", "pinned": True,
           "priority": 9, "added_seq": 1, "updated_seq": 1}]


def quarter(s: str) -> int:
    return len(s) // 4 + 1


def episode(k: int, tasks: dict[str, dict[str, Any]], *, open_call: bool) -> EpisodeLog:
    """A plausible episode k: a few numbered steps, a failing and a fixed test now and then,
    a todo list update, a user instruction, files written by tools and by shell commands."""
    log = EpisodeLog(objective=OBJECTIVE, prior_tasks=tasks)
    n = 0

    def call(
        name: str, inp: dict[str, Any], out: str = "ok", error: bool = False, finish: bool = True
    ) -> None:
        nonlocal n
        n += 1
        log.add(P.ToolCall({}, id=f"e{k}c{n}", name=name, input=inp))
        if finish:
            log.add(P.ToolResult({}, id=f"e{k}c{n}", output=out, is_error=error))

    # The user's instructions are kept verbatim (up to 30): given early here, so that what
    # is measured below is the machinery's growth, not the user's.
    if k % 10 == 1 and k < 50:
        log.add(P.Message({}, role="user", text=f"Instruction {k}: keep the CLI flags as they are."))
    for s in range(5):
        step = 5 * k + s
        log.add(P.Message({}, role="assistant", text=f"Now step {step}: porting module {step}."))
        call("Bash", {"command": f'echo "step {step}" >> steps.txt && cp out.csv out_{step}.csv'})
        call("Edit", {"file_path": f"src/mod_{step % 40}.py", "old_string": "a", "new_string": "b"})
    if k % 3 == 0:
        call("Bash", {"command": f"pytest tests/test_mod_{k}.py"},
             f"Exit code 1\nFAILED tests/test_mod_{k}.py::test_it - AssertionError: {k}", error=True)
    if k % 3 == 2:
        call("Bash", {"command": "pytest -q"}, "120 passed")
    todos = [{"content": f"Port module group {g}", "status": "completed" if g < k // 5 else "pending",
              "activeForm": f"Porting group {g}"} for g in range(k // 5, k // 5 + 4)]
    call("TodoWrite", {"todos": todos}, "Todos updated")
    for t in todos:  # as the Claude adapter turns a TodoWrite into task updates
        status = "done" if t["status"] == "completed" else "pending"
        log.add(P.TaskUpdate({}, id=f"todo-{t['content'].replace(' ', '-').lower()}",
                             fields={"title": t["content"], "status": status}))
    if open_call:
        call("Bash", {"command": f'echo "step {5 * k + 5}" >> steps.txt'}, finish=False)
    return log


def run(relaunches: int, count: Any, budget: int) -> list[tuple[dict[str, Any], Any]]:
    parent: dict[str, Any] | None = None
    tasks: dict[str, dict[str, Any]] = {}
    out = []
    for k in range(1, relaunches + 1):
        log = episode(k, tasks, open_call=k % 7 == 0)
        draft = distill(trigger="budget", objective=OBJECTIVE, log=log, parent=parent, count=count,
                        max_tokens=2 * budget, workspace_changes=[
                            {"path": f"src/mod_{i}.py", "status": "modified", "added": i, "deleted": 1}
                            for i in range(min(40, 5 * k))])
        draft["id"] = f"chk_{k:06d}_00000000"
        parent = orjson.loads(orjson.dumps(draft))
        tasks = {tid: {**t, "id": tid} for tid, t in log.tasks.items()}
        prompt = rehydrate_prompt(checkpoint=parent, tasks=list(tasks.values()), facts=PINNED,
                                  episode=k + 1, count=count, budget=budget, memory_dir=None)
        out.append((parent, prompt))
    return out


def test_prompts_stay_under_budget_and_flat_over_200_relaunches() -> None:
    budget = prompt_budget(200_000)
    results = run(200, quarter, budget)
    tokens = [p.tokens for _, p in results]
    assert max(tokens) <= budget
    late = tokens[50:]
    # Flat: after the first relaunches the prompt neither grows nor shrinks much.
    assert max(late) - min(late) <= 0.15 * budget, (min(late), max(late))
    assert abs(statistics.mean(tokens[50:100]) - statistics.mean(tokens[150:])) <= 0.05 * budget
    # The checkpoint is flat too (its task rows aside: one per task the run ever had, as before).
    sizes = [len(orjson.dumps({**ck, "tasks": []})) for ck, _ in results]
    assert max(sizes[150:]) <= 1.1 * max(sizes[50:100])
    for k, (ck, prompt) in enumerate(results, 1):
        text = prompt.text
        assert OBJECTIVE in text and ck["id"] in text
        assert all(a in text for a in ck["next_actions"])
        assert "- api: Public function names must not change" in text
        assert f"tool calls 1\u2013{ck['state']['work_log']['total']} finished" in text
        # What is evicted is recorded, and the most needed facts are evicted last.
        kinds = {e.split(":")[0] for e in prompt.evicted}
        assert "interrupted_calls" not in kinds and "over budget" not in kinds
        if k % 3 == 0:
            assert f"FAILED tests/test_mod_{k}.py::test_it" in text
        if k % 7 == 0:
            assert ck["next_actions"][0].startswith("Check the interrupted call")
            assert f'echo "step {5 * k + 5}" >> steps.txt' in ck["next_actions"][0]
        assert "Now step" not in " ".join(ck["progress"])


def test_eviction_order_of_a_work_log_prompt() -> None:
    (_, full), = run(1, quarter, 10_000)[-1:]
    results = run(21, quarter, 10_000)
    ck = results[-1][0]
    tasks = [{"id": r["id"], "status": r["status"], "next_action": r["next_action"]} for r in ck["tasks"]]
    whole = rehydrate_prompt(checkpoint=ck, tasks=tasks, facts=PINNED, episode=22, count=quarter,
                             budget=10_000, memory_dir=None)
    assert whole.evicted == [] and full.evicted == []
    for section in ("## Work log (finished tool calls, oldest first)", "## Files",
                    "## Unresolved errors (first lines verbatim)", "## Last intent (may be unfinished",
                    "## Progress so far"):
        assert section in whole.text
    assert "Now step 109: porting module 109." in whole.text  # the last intent, marked as such
    assert "## Last tool calls" not in whole.text  # the work log replaces the raw lines
    tight = rehydrate_prompt(checkpoint=ck, tasks=tasks, facts=PINNED, episode=22, count=quarter,
                             budget=whole.tokens * 2 // 3, memory_dir=None)
    kinds = [e.split(":")[0] for e in tight.evicted]
    assert kinds[0] == "work_log_ranges" and tight.tokens <= tight.budget
    for last in ("files_changed", "errors", "todos", "interrupted_calls"):
        assert last not in kinds
    assert "## Unresolved errors" in tight.text and "Changed since the session began (git)" in tight.text


def test_the_files_section_does_not_repeat_what_git_names() -> None:
    ck = {"id": "chk_000001_00000000", "objective": "o", "next_actions": ["go"], "progress": [],
          "state": {"files_changed": ["src/a.py (+3 -1)", "new.txt (new, untracked)"],
                    "files_modified": ["/home/dev/w/src/a.py", "src/a.py", "other.txt"]}}
    p = rehydrate_prompt(checkpoint=ck, tasks=[], facts=[], episode=2, count=quarter, budget=2000,
                         memory_dir=None)
    assert "Changed since the session began (git): src/a.py (+3 -1), new.txt (new, untracked)" in p.text
    assert "Written by tool calls: other.txt" in p.text


def test_open_todos_are_listed_once() -> None:
    ck = {"id": "chk_000001_00000000", "objective": "o", "next_actions": ["go"], "progress": [],
          "state": {"todos": [{"text": "Fix quoting", "status": "in_progress"},
                              {"text": "Write docs", "status": "pending"},
                              {"text": "Parse rows", "status": "done"}, "junk", {"text": 5}]}}
    tasks = [{"id": "todo-fix-quoting-1", "title": "Fix quoting", "status": "in_progress"}]
    p = rehydrate_prompt(checkpoint=ck, tasks=tasks, facts=[], episode=2, count=quarter, budget=2000,
                         memory_dir=None)
    assert "## Open todos\n- [pending] Write docs" in p.text
    assert p.text.count("Fix quoting") == 1 and "Parse rows" not in p.text


@pytest.mark.parametrize("state", [
    {"work_log": "x", "todos": {"a": 1}, "files_changed": [1, None], "last_message": 5},
    {"work_log": {"ranges": [{"from": 1}], "recent": [None]}, "announced_calls": "Bash"},
])
def test_odd_work_log_state_does_not_raise(state: dict[str, Any]) -> None:
    ck = {"id": "chk_000001_00000000", "objective": "o", "next_actions": ["go"], "state": state}
    p = rehydrate_prompt(checkpoint=ck, tasks=[], facts=[], episode=2, count=quarter, budget=500,
                         memory_dir=None)
    assert "1. go" in p.text


def test_with_the_real_token_counter() -> None:
    from aether_cli.tokens import load_counter

    count = load_counter().count
    budget = prompt_budget(24_000)
    results = run(30, count, budget)
    assert all(p.tokens <= budget for _, p in results)
    assert all("interrupted_calls" not in " ".join(p.evicted) for _, p in results)


def test_todos_the_agent_dropped_are_not_unfinished_and_finished_tasks_stay_few() -> None:
    ck = {"id": "chk_000001_00000000", "objective": "o", "next_actions": ["go"], "progress": [],
          "state": {"todos": [{"text": "Keep me", "status": "pending"}]}}
    tasks = [
        {"id": "todo-keep-me-1", "title": "Keep me", "status": "pending"},
        {"id": "todo-old-plan-2", "title": "Old plan item", "status": "pending"},
        {"id": "t-proto", "title": "A protocol task", "status": "pending"},
    ] + [
        {"id": f"d{i:02d}", "title": f"done {i}", "status": "done",
         "updated_at": f"2026-01-01T00:00:{i:02d}Z"}
        for i in range(25)
    ]
    p = rehydrate_prompt(checkpoint=ck, tasks=tasks, facts=[], episode=2, count=quarter, budget=5000,
                         memory_dir=None)
    assert "Keep me" in p.text and "A protocol task" in p.text
    assert "Old plan item" not in p.text
    assert "- (15 earlier finished tasks not listed)" in p.text
    assert "- d24 done 24" in p.text and "- d14 done 14" not in p.text
    # Without a todo list in the checkpoint, every unfinished task is listed.
    p = rehydrate_prompt(checkpoint={**ck, "state": {}}, tasks=tasks, facts=[], episode=2, count=quarter,
                         budget=5000, memory_dir=None)
    assert "Old plan item" in p.text


def test_a_verbatim_traceback_is_shown_as_its_one_line() -> None:
    trace = 'Traceback (most recent call last):\n  File "imp.py", line 9\nKeyError: \'delimiter\''
    log = EpisodeLog(objective="o")
    log.add(P.ToolCall({}, id="a", name="Bash", input={"command": "python imp.py"}))
    log.add(P.ToolResult({}, id="a", output=trace, is_error=True))
    log.add(P.Log({}, level="error", text="permission denied for WebFetch"))
    ck = distill(trigger="budget", objective="o", log=log, parent=None, count=quarter, max_tokens=5000)
    assert ck["errors"] == [trace, "permission denied for WebFetch"]
    ck["id"] = "chk_000001_00000000"
    p = rehydrate_prompt(checkpoint=ck, tasks=[], facts=[], episode=2, count=quarter, budget=2000,
                         memory_dir=None)
    section = p.text.split("## Unresolved errors (first lines verbatim)\n")[1].split("\n\n")[0]
    assert section.splitlines() == [
        "- permission denied for WebFetch",
        "- Bash: python imp.py (call 1): KeyError: 'delimiter'",
    ]
