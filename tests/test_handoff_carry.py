"""The rules handoff as a work log: what carries from one checkpoint to the next, through distill.

Each test runs episodes the way a run does: an EpisodeLog fed the adapters'
protocol events, distilled with the previous checkpoint as its parent.
"""

from __future__ import annotations

from typing import Any

import orjson

from aether_cli import protocol as P
from aether_cli.adapters import make_adapter
from aether_cli.carry_over import ANNOUNCED, CONTINUE_AFTER, DONE_SO_FAR, INTERRUPTED
from aether_cli.distill import distill
from aether_cli.episode_log import EpisodeLog

OBJECTIVE = "Make the importer pass its tests"


def quarter(s: str) -> int:
    return len(s) // 4 + 1


class Episodes:
    """Tool calls in, checkpoints out: each `checkpoint()` is the next one's parent."""

    def __init__(self) -> None:
        self.parent: dict[str, Any] | None = None
        self.log = EpisodeLog(objective=OBJECTIVE)
        self.n = 0

    def call(self, name: str, inp: dict[str, Any], output: Any = "", *, error: bool = False,
             finish: bool = True) -> None:
        self.n += 1
        cid = f"c{self.n}"
        self.log.add(P.ToolCall({}, id=cid, name=name, input=inp))
        if finish:
            self.log.add(P.ToolResult({}, id=cid, output=output, is_error=error))

    def bash(self, command: str, output: str = "", *, error: bool = False, finish: bool = True) -> None:
        self.call("Bash", {"command": command}, output, error=error, finish=finish)

    def say(self, text: str, role: str = "assistant") -> None:
        self.log.add(P.Message({}, role=role, text=text))

    def checkpoint(self, **kw: Any) -> dict[str, Any]:
        draft = distill(trigger="budget", objective=OBJECTIVE, log=self.log, parent=self.parent,
                        count=quarter, max_tokens=kw.pop("max_tokens", 50_000), **kw)
        # Through JSON, as the store writes and reads it.
        self.parent = orjson.loads(orjson.dumps(draft))
        self.log = EpisodeLog(objective=OBJECTIVE)
        return self.parent


FAIL_A = "Exit code 1\nFAILED tests/test_a.py::test_quotes - AssertionError: got 2\n1 failed"
BUILD = "Exit code 2\nsrc/imp.c:3: error: unknown type name 'row_t'"


def test_errors_carry_across_three_episodes_until_a_success_clears_them() -> None:
    eps = Episodes()
    eps.bash("pytest tests/test_a.py::test_quotes", FAIL_A, error=True)
    eps.bash("make build", BUILD, error=True)
    eps.call("Edit", {"file_path": "src/imp.py", "old_string": "a", "new_string": "b"},
             "<tool_use_error>String to replace not found in file.</tool_use_error>", error=True)
    eps.log.add(P.Log({}, level="error", text="permission denied for WebFetch"))
    first = eps.checkpoint()
    # The episode's own errors, verbatim.
    assert first["errors"] == [
        FAIL_A, BUILD, "<tool_use_error>String to replace not found in file.</tool_use_error>",
        "permission denied for WebFetch",
    ]

    # Episode 2: unrelated work, a narrower test run elsewhere passes: nothing is cleared;
    # the log line belonged to its episode. Carried errors are one line each, naming the call.
    eps.bash("ls src", "imp.py")
    eps.bash("pytest tests/test_b.py", "1 passed")
    eps.call("Read", {"file_path": "src/imp.py"}, "...")
    second = eps.checkpoint()
    assert second["errors"] == [
        "Bash: pytest tests/test_a.py::test_quotes (call 1, exit 1): "
        "FAILED tests/test_a.py::test_quotes - AssertionError: got 2",
        "Bash: make build (call 2, exit 2): src/imp.c:3: error: unknown type name 'row_t'",
        "Edit src/imp.py (call 3): <tool_use_error>String to replace not found in file.</tool_use_error>",
    ]
    assert [e["step"] for e in second["state"]["unresolved_errors"]] == [1, 2, 3]

    # Episode 3: the whole suite passes, the same build command succeeds, the file is
    # written again: every error is cleared. A new failure opens.
    eps.bash("pytest -q", "12 passed")
    eps.bash("make   build", "ok")
    eps.call("Write", {"file_path": "src/imp.py", "content": "..."}, "File written")
    eps.bash("ruff check src", "Exit code 1\nsrc/imp.py:1:1: F401 unused import", error=True)
    third = eps.checkpoint()
    assert third["errors"] == ["Exit code 1\nsrc/imp.py:1:1: F401 unused import"]
    assert third["state"]["unresolved_errors"][0]["call"] == "Bash: ruff check src"
    assert third["state"]["work_log"]["total"] == 10


def test_an_error_that_fails_again_keeps_only_its_newest_line() -> None:
    eps = Episodes()
    eps.bash("make build", BUILD, error=True)
    eps.checkpoint()
    eps.bash("make build", "Exit code 2\nsrc/imp.c:9: error: expected ';'", error=True)
    ck = eps.checkpoint()
    assert ck["errors"] == ["Exit code 2\nsrc/imp.c:9: error: expected ';'"]
    assert len(ck["state"]["unresolved_errors"]) == 1


def test_a_tampered_parent_does_not_break_the_carry() -> None:
    eps = Episodes()
    eps.parent = {
        "progress": "x",
        "state": {
            "work_log": {"total": "x", "recent": [{"n": "1"}], "ranges": 5},
            "unresolved_errors": [5, {"key": "k", "call": "Bash: make", "error": "e", "step": 2},
                                  {"key": 1}],
            "todos": [{"text": 3}, {"text": "real todo", "status": "weird"}],
        },
    }
    eps.bash("echo hi", "hi")
    ck = eps.checkpoint()
    assert ck["errors"] == ["Bash: make (call 2): e"]
    assert ck["state"]["todos"] == [{"text": "real todo", "status": "pending"}]
    assert ck["state"]["work_log"]["total"] == 1


def test_progress_says_what_is_done_and_next_follows_the_last_call() -> None:
    eps = Episodes()
    for k in range(1, 4):
        eps.say(f"Now step {k}.")
        eps.bash(f'echo "step {k}" >> steps.txt')
    eps.say("Now step 4.")  # said, never run: not progress
    ck = eps.checkpoint()
    assert ck["progress"] == [
        f"{DONE_SO_FAR}tool calls 1\u20133 finished; the last was call 3: "
        'Bash: echo "step 3" >> steps.txt \u2192 ok.'
    ]
    assert ck["next_actions"] == [
        f'{CONTINUE_AFTER}3 (Bash: echo "step 3" >> steps.txt), the last one finished; '
        "do not redo calls that succeeded."
    ]
    assert ck["state"]["last_message"] == "Now step 4."
    assert ck["state"]["files_modified"] == ["steps.txt"]
    # Over many episodes progress does not grow by a line each.
    for k in range(4, 40):
        eps.bash(f'echo "step {k}" >> steps.txt')
        ck = eps.checkpoint()
    assert len(ck["progress"]) == 1 and "tool calls 1\u201339 finished" in ck["progress"][0]
    legacy = Episodes()
    legacy.parent = {"progress": ["Last message: Writing s8.txt", "parser done"]}
    legacy.bash("true")
    assert legacy.checkpoint()["progress"][0] == "parser done"


def test_an_open_call_is_next_action_one_and_never_progress() -> None:
    eps = Episodes()
    eps.bash('echo "step 1" >> steps.txt')
    eps.say("Now step 2.")
    eps.bash('echo "step 2" >> steps.txt', finish=False)
    ck = eps.checkpoint()
    assert ck["next_actions"][0] == f'{INTERRUPTED}Bash: echo "step 2" >> steps.txt'
    assert "step 2" not in " ".join(ck["progress"])
    assert ck["state"]["recent_tool_calls"] == ['Bash {"command":"echo \\"step 1\\" >> steps.txt"}']
    assert ck["state"]["interrupted_calls"] == ['Bash {"command":"echo \\"step 2\\" >> steps.txt"}']
    assert ck["state"]["files_modified"] == ["steps.txt"]  # the open call wrote nothing yet

    # A call announced after aether began stopping the agent never ran.
    eps.bash('echo "step 2" >> steps.txt')
    eps.log.mark_stopping()
    eps.bash('echo "step 3" >> steps.txt', finish=False)
    ck = eps.checkpoint()
    assert ck["next_actions"] == [f'{ANNOUNCED}Bash: echo "step 3" >> steps.txt']
    assert ck["state"]["interrupted_calls"] == []
    assert ck["state"]["announced_calls"] == ['Bash {"command":"echo \\"step 3\\" >> steps.txt"}']

    # An episode that finished nothing keeps its parent's next actions.
    ck = eps.checkpoint()
    assert ck["next_actions"] == [f'{ANNOUNCED}Bash: echo "step 3" >> steps.txt']


def test_files_written_from_every_source_and_git() -> None:
    eps = Episodes()
    eps.call("Write", {"file_path": "/w/notes.txt", "content": "x"}, "ok")
    eps.call("MultiEdit", {"file_path": "/w/src/a.py", "edits": []}, "ok")
    eps.call("apply_patch", {"paths": ["/w/src/b.py", "/w/src/c.py"]}, "ok")
    eps.bash("sed -i 's/a/b/' conf.ini && cp conf.ini conf.bak", "")
    eps.bash("pytest 2>&1 | tee test.log > /dev/null", "")
    eps.bash("cat a > never.txt", "Exit code 1\ncat: a: No such file or directory", error=True)
    changes = [
        {"path": "src/a.py", "status": "modified", "added": 3, "deleted": 1},
        {"path": "gone.py", "status": "deleted", "added": 0, "deleted": 9},
        {"path": "new.py", "status": "added", "added": 5, "deleted": 0},
        {"path": "scratch.txt", "status": "untracked", "added": None, "deleted": None},
        {"path": 7}, "junk",
    ]
    ck = eps.checkpoint(workspace_changes=changes)
    assert ck["state"]["files_modified"] == [
        "/w/notes.txt", "/w/src/a.py", "/w/src/b.py", "/w/src/c.py", "conf.ini", "conf.bak",
        "test.log", "never.txt",
    ]
    assert ck["state"]["files_changed"] == [
        "src/a.py (+3 -1)", "gone.py (deleted)", "new.py (added, +5)", "scratch.txt (new, untracked)",
    ]
    # Without git, no list at all (not an empty one).
    eps.bash("true")
    assert "files_changed" not in eps.checkpoint()["state"]


def test_the_todo_list_rides_in_the_checkpoint_from_claude_and_codex() -> None:
    claude = make_adapter("claude")
    todo_write = {
        "type": "assistant",
        "message": {"id": "m1", "content": [{"type": "tool_use", "id": "t1", "name": "TodoWrite", "input": {
            "todos": [{"content": "Parse rows", "status": "completed", "activeForm": "Parsing rows"},
                      {"content": "Fix quoting", "status": "in_progress", "activeForm": "Fixing quoting"},
                      {"content": "Write docs", "status": "pending", "activeForm": "Writing docs"}]}}]},
    }
    eps = Episodes()
    for ev in claude.feed(orjson.dumps(todo_write).decode()):
        eps.log.add(ev)
    first = eps.checkpoint()
    assert first["state"]["todos"] == [
        {"text": "Parse rows", "status": "done"}, {"text": "Fix quoting", "status": "in_progress"},
        {"text": "Write docs", "status": "pending"},
    ]
    eps.bash("true")
    assert eps.checkpoint()["state"]["todos"] == first["state"]["todos"]  # carried while unchanged

    codex = make_adapter("codex")
    for done in (False, True):
        line = {"type": "item.updated" if not done else "item.completed", "item": {
            "id": "item_9", "type": "todo_list",
            "items": [{"text": "Read the spec", "completed": True}, {"text": "Port it", "completed": done}]}}
        for ev in codex.feed(orjson.dumps(line).decode()):
            eps.log.add(ev)
        eps.log.add(P.Message({}, role="assistant", text="working"))
    assert eps.checkpoint()["state"]["todos"] == [
        {"text": "Read the spec", "status": "done"}, {"text": "Port it", "status": "done"},
    ]
    eps.call("update_plan", {"plan": [{"step": "Ship", "status": "in_progress"}]}, "ok")
    assert eps.checkpoint()["state"]["todos"] == [{"text": "Ship", "status": "in_progress"}]


def test_the_users_words_are_kept_verbatim() -> None:
    eps = Episodes()
    rule = "Never touch vendor/ and keep Python 3.9 support; ask before deleting files."
    eps.say(rule, role="user")
    eps.bash("true")
    ck = eps.checkpoint(constraints=["No network access"])
    assert ck["state"]["constraints"] == ["No network access", rule]
    eps.bash("true")
    assert eps.checkpoint(constraints=["No network access"])["state"]["constraints"][1] == rule


def test_the_work_log_is_merged_into_the_agents_own_state() -> None:
    eps = Episodes()
    eps.bash("make build", BUILD, error=True)
    eps.log.add(P.CheckpointEvent({}, state={
        "objective": OBJECTIVE, "progress": ["my own words"], "next_actions": ["fix row_t"],
        "state": {"work_log": "the agent may not write this", "todos": "nor this"},
    }))
    ck = eps.checkpoint()
    assert ck["distiller"] == "agent"
    assert ck["progress"] == ["my own words"] and ck["next_actions"] == ["fix row_t"]
    assert ck["state"]["work_log"]["total"] == 1
    assert ck["errors"] == [BUILD]
    assert "todos" not in ck["state"]


def test_an_oversized_draft_folds_the_work_log_before_losing_errors() -> None:
    eps = Episodes()
    for i in range(30):
        eps.bash(f"step {i} " + "x" * 150, "ok")
    for i in range(10):
        eps.bash(f"make t{i}", f"Exit code 2\nerror: broken {i} " + "y" * 200, error=True)
    full = eps.checkpoint()
    eps.parent = None
    for i in range(30):
        eps.bash(f"step {i} " + "x" * 150, "ok")
    for i in range(10):
        eps.bash(f"make t{i}", f"Exit code 2\nerror: broken {i} " + "y" * 200, error=True)
    small = eps.checkpoint(max_tokens=full["metrics"]["checkpoint_tokens"] // 2)
    trimmed = small["state"]["trimmed"]
    assert trimmed.index("work_log beyond the last 5 calls folded") < len(trimmed)
    assert "unresolved_errors beyond the last 5" not in trimmed
    assert len(small["state"]["unresolved_errors"]) == len(full["state"]["unresolved_errors"])
    assert small["state"]["work_log"]["total"] == 40


def test_a_plain_text_agents_last_lines_are_its_last_intent() -> None:
    eps = Episodes()
    for i in range(12):
        eps.log.add(P.Text({}, text=f"working on item {i}"))
    eps.log.add(P.Text({}, text="   "))
    ck = eps.checkpoint()
    assert ck["state"]["last_message"] == "\n".join(f"working on item {i}" for i in range(7, 12))
    assert ck["progress"] == []  # output lines are not progress
    eps.log.add(P.Text({}, text="stray line"))
    eps.say("The agent's own words win.")
    assert eps.checkpoint()["state"]["last_message"] == "The agent's own words win."
