"""EpisodeLog: what one episode leaves for the distiller, and that it stays bounded."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aether_cli import episode_log as E
from aether_cli import protocol as P
from aether_cli.episode_log import EpisodeLog, is_write_tool


def ev(**fields: Any) -> P.Event:
    """Decode a wire dict the way the supervisor would (through the real decoder)."""
    return P.decode_line(orjson.dumps(fields).decode())


def feed(log: EpisodeLog, *events: dict[str, Any]) -> EpisodeLog:
    for fields in events:
        log.add(ev(**fields))
    return log


def test_counts_every_event_and_tool_calls() -> None:
    log = feed(
        EpisodeLog(objective="x"),
        {"type": "hello", "agent": "a"},
        {"type": "tool_call", "id": "1", "name": "read_file", "input": {"path": "a.py"}},
        {"type": "tool_result", "id": "1", "output": "ok"},
        {"type": "usage", "context_tokens": 5},
    )
    log.add(P.decode_line("plain text line"))
    assert log.events == 5
    assert log.tool_calls == 1
    assert log.objective == "x"


@pytest.mark.parametrize(
    ("name", "writes"),
    [
        ("write_file", True), ("Write", True), ("Edit", True), ("MultiEdit", True),
        ("NotebookEdit", True), ("apply_patch", True), ("create_file", True), ("mv", True),
        ("rm", True), ("delete_path", True), ("saveFile", True), ("str_replace_editor", True),
        ("read_file", False), ("Read", False), ("Grep", False), ("transform", False),
        ("format", False), ("credit_check", False), ("dispatch", False), ("bash", False),
    ],
)
def test_write_tool_names(name: str, writes: bool) -> None:
    assert is_write_tool(name) is writes


def test_paths_are_exact_and_split_by_read_or_write() -> None:
    log = feed(
        EpisodeLog(objective="x"),
        {"type": "tool_call", "id": "1", "name": "read_file", "input": {"path": "./src/a b.py"}},
        {"type": "tool_call", "id": "2", "name": "Read", "input": {"file_path": "/abs/ü.txt"}},
        {"type": "tool_call", "id": "3", "name": "edit", "input": {"file": "src/x.py"}},
        {"type": "tool_call", "id": "4", "name": "write", "input": {"filename": "out.json"}},
        {"type": "tool_call", "id": "5", "name": "cat", "input": {"paths": ["p1", "p2", 7]}},
        {"type": "tool_call", "id": "6", "name": "read_file", "input": {"path": "./src/a b.py"}},
        # Wrong types and blanks are skipped, not fatal.
        {"type": "tool_call", "id": "7", "name": "read", "input": {"path": 3, "file": "  "}},
        {"type": "tool_call", "id": "8", "name": "read", "input": {"paths": "notalist"}},
    )
    assert log.files_read == ["/abs/ü.txt", "p1", "p2", "./src/a b.py"]
    assert log.files_modified == ["src/x.py", "out.json"]


def test_file_lists_are_capped_keeping_the_newest() -> None:
    log = EpisodeLog(objective="x")
    for i in range(E.MAX_FILES + 25):
        log.add(ev(type="tool_call", id=str(i), name="read_file", input={"path": f"f{i}.py"}))
    assert len(log.files_read) == E.MAX_FILES
    assert log.files_read[-1] == f"f{E.MAX_FILES + 24}.py"
    assert "f0.py" not in log.files_read
    huge = "p" * (E.MAX_PATH_CHARS + 1)
    log.add(ev(type="tool_call", id="h", name="read_file", input={"path": huge}))
    assert huge not in log.files_read


def test_open_calls_and_recent_call_summaries() -> None:
    log = feed(
        EpisodeLog(objective="x"),
        {"type": "tool_call", "id": "1", "name": "bash", "input": {"command": "make test"}},
        {"type": "tool_call", "id": "2", "name": "read_file", "input": {"path": "a.py"}},
        {"type": "tool_result", "id": "1", "output": "boom", "is_error": True},
        {"type": "tool_call", "id": "3", "name": "write_file", "input": {"path": "b.py"}},
        {"type": "tool_result", "id": "3", "output": "written"},
    )
    assert list(log.open_calls) == ["2"]
    assert log.open_calls["2"].name == "read_file"
    # The open call is not among the finished ones: it is reported once, as interrupted.
    assert log.recent_calls == [
        'bash {"command":"make test"} -> error',
        'write_file {"path":"b.py"}',
    ]
    assert [c.id for c in log.interrupted_calls] == ["2"]
    assert log.announced_calls == []


def test_recent_calls_and_open_calls_are_bounded() -> None:
    log = EpisodeLog(objective="x")
    for i in range(200):
        log.add(ev(type="tool_call", id=f"c{i}", name="bash", input={"command": "x" * 500}))
        if i < 150:
            log.add(ev(type="tool_result", id=f"c{i}", output="ok"))
    assert log.recent_calls == []  # the last 20 calls are all still open
    assert len(log.open_calls) == E.MAX_OPEN_CALLS
    assert next(iter(log.open_calls)) == f"c{200 - E.MAX_OPEN_CALLS}"
    for i in range(200, 400):
        log.add(ev(type="tool_call", id=f"c{i}", name="bash", input={"command": "x" * 500}))
        log.add(ev(type="tool_result", id=f"c{i}", output="ok"))
    assert len(log.recent_calls) == E.MAX_RECENT_CALLS
    assert log.recent_calls[-1].startswith("bash ")
    assert all(len(s) <= len("bash ") + E.SHORT_INPUT_CHARS for s in log.recent_calls)
    assert log.tool_calls == 400
    assert len(log.open_calls) <= E.MAX_OPEN_CALLS and len(log._call_order) == len(log.open_calls)


def test_errors_are_verbatim_capped_and_only_real_errors() -> None:
    trace = 'Traceback (most recent call last):\n  File "a.py", line 3\nZeroDivisionError: x'
    log = feed(
        EpisodeLog(objective="x"),
        {"type": "tool_call", "id": "1", "name": "run", "input": {}},
        {"type": "tool_result", "id": "1", "output": trace, "is_error": True},
        {"type": "tool_result", "id": "2", "output": {"code": 2}, "is_error": True},
        {"type": "tool_call", "id": "3", "name": "fetch", "input": {}},
        {"type": "tool_result", "id": "3", "output": "", "is_error": True},
        {"type": "tool_result", "id": "4", "output": "fine"},
        {"type": "log", "level": "ERROR", "text": "disk full"},
        {"type": "log", "level": "critical", "text": "oom"},
        {"type": "log", "level": "warning", "text": "just a warning"},
        # An invalid protocol event (wrong field type) is not an agent error.
        {"type": "tool_result", "id": "5", "output": "x", "is_error": "yes"},
    )
    assert log.errors == [trace, '{"code":2}', "fetch failed with no output", "disk full", "oom"]

    long = "E" * 2000
    log.add(ev(type="tool_result", id="9", output=long, is_error=True))
    assert log.errors[-1] == "E" * (E.MAX_ERROR_CHARS - 1) + "…"
    for i in range(30):
        log.add(ev(type="log", level="error", text=f"err {i}"))
    assert len(log.errors) == E.MAX_ERRORS
    assert log.errors[-1] == "err 29"


def test_messages_last_assistant_user_constraints_and_decisions() -> None:
    log = feed(
        EpisodeLog(objective="x"),
        {"type": "message", "role": "user", "text": "Do not touch the vendor/ folder."},
        {"type": "message", "role": "system", "text": "Use Python 3.11 only."},
        {"type": "message", "role": "user", "text": "Do not touch the vendor/ folder."},
        {"type": "message", "role": "assistant", "text": (
            "Looked at the code.\n- Decision: keep the public API unchanged\n"
            "We will use SQLite for the cache.\nNothing else here.\n"
            "I chose orjson because it is faster."
        )},
        {"type": "message", "role": "assistant", "text": "Final words."},
        {"type": "message", "role": "assistant", "text": "   "},
    )
    assert log.user_messages == ["Use Python 3.11 only.", "Do not touch the vendor/ folder."]
    assert log.last_assistant == "Final words."
    assert log.decisions == [
        "Decision: keep the public API unchanged",
        "We will use SQLite for the cache.",
        "I chose orjson because it is faster.",
    ]
    log.add(ev(type="message", role="assistant", text="x" * 5000))
    assert len(log.last_assistant) == E.MAX_LAST_ASSISTANT_CHARS
    for i in range(40):
        log.add(ev(type="message", role="assistant", text=f"Decided to do step {i}"))
        log.add(ev(type="message", role="user", text=f"constraint {i}"))
    assert len(log.decisions) == E.MAX_DECISIONS
    assert log.decisions[-1] == "Decided to do step 39"
    assert len(log.user_messages) == E.MAX_USER_MESSAGES


def test_tasks_merge_over_prior_state_without_mutating_it() -> None:
    prior = {"t1": {"id": "t1", "title": "Parse", "status": "in_progress", "progress": 0.2,
                    "next_action": "read spec", "notes": "n", "files": ["a.py"],
                    "updated_at": "2025-01-01T00:00:00Z"}}
    log = feed(
        EpisodeLog(objective="x", prior_tasks=prior),
        {"type": "task", "id": "t1", "progress": 0.6, "next_action": "handle quotes"},
        {"type": "task", "id": "t2", "title": "Write", "status": "pending",
         "files": ["src/w.py"]},
        {"type": "task", "id": "t1", "status": "done"},
        {"type": "task", "id": "", "status": "done"},
    )
    assert prior["t1"]["progress"] == 0.2  # the caller's dict is untouched
    assert list(log.tasks) == ["t1", "t2"]
    assert log.tasks["t1"] == {
        "id": "t1", "title": "Parse", "status": "done", "progress": 0.6,
        "next_action": "handle quotes", "notes": "n", "files": ["a.py"],
        "updated_at": "2025-01-01T00:00:00Z",
    }
    assert log.tasks["t2"]["status"] == "pending"
    assert log.tasks["t2"]["next_action"] == ""
    assert log.tasks_touched == ["t1", "t2"]
    assert log.tasks_done == ["t1"]
    assert log.files_modified == []  # a task's files are not evidence of a change


def test_task_already_done_before_is_not_done_this_episode() -> None:
    prior = {"t1": {"id": "t1", "status": "done"}}
    log = feed(EpisodeLog(objective="x", prior_tasks=prior),
               {"type": "task", "id": "t1", "status": "done", "notes": "again"})
    assert log.tasks_done == []


def test_task_count_and_text_are_capped() -> None:
    log = EpisodeLog(objective="x")
    for i in range(E.MAX_TASKS + 10):
        log.add(ev(type="task", id=f"t{i}", status="pending"))
    assert len(log.tasks) == E.MAX_TASKS
    assert log.dropped_tasks == 10
    log.add(ev(type="task", id="t0", notes="n" * 10_000, files=[f"f{i}" for i in range(500)]))
    assert len(log.tasks["t0"]["notes"]) == E.MAX_TASK_TEXT["notes"]
    assert len(log.tasks["t0"]["files"]) == E.MAX_TASK_FILES


def test_memory_ops_latest_per_key_checkpoint_and_done() -> None:
    log = feed(
        EpisodeLog(objective="x"),
        {"type": "memory", "op": "add", "key": "style", "text": "tabs", "priority": 1},
        {"type": "memory", "op": "add", "key": "db", "text": "sqlite", "pinned": True},
        {"type": "memory", "op": "add", "key": "style", "text": "spaces"},
        {"type": "memory", "op": "remove", "key": "db"},
        {"type": "checkpoint", "state": {"objective": "old"}},
        {"type": "checkpoint", "state": {"objective": "new"}},
        {"type": "done", "summary": "all good"},
    )
    assert log.memory_ops == [
        {"op": "add", "key": "style", "text": "spaces", "pinned": False, "priority": 0},
        {"op": "remove", "key": "db", "text": "", "pinned": False, "priority": 0},
    ]
    assert log.agent_checkpoint == {"objective": "new"}
    assert log.done is not None and log.done.summary == "all good"
    for i in range(E.MAX_MEMORY_OPS + 5):
        log.add(ev(type="memory", op="add", key=f"k{i}", text="t"))
    assert len(log.memory_ops) == E.MAX_MEMORY_OPS


def test_memory_stays_bounded_over_a_long_episode() -> None:
    log = EpisodeLog(objective="x")
    big = "y" * 10_000
    for i in range(3000):
        log.add(P.ToolCall({}, id=f"c{i}", name="write_file", input={"path": f"f{i}", "body": big}))
        log.add(P.ToolResult({}, id=f"c{i}", output=big, is_error=i % 2 == 0))
        log.add(P.Message({}, role="assistant", text=f"We will do {i}\n{big}"))
        log.add(P.Message({}, role="user", text=f"{i}{big}"))
        log.add(P.MemoryOp({}, key=f"k{i}", text=big))
    assert log.events == 15_000
    assert len(log.files_modified) <= E.MAX_FILES
    assert len(log.errors) <= E.MAX_ERRORS
    assert all(len(e) <= E.MAX_ERROR_CHARS for e in log.errors)
    assert len(log.decisions) <= E.MAX_DECISIONS
    assert len(log.user_messages) <= E.MAX_USER_MESSAGES
    assert all(len(m) <= E.MAX_USER_MESSAGE_CHARS for m in log.user_messages)
    assert len(log.memory_ops) <= E.MAX_MEMORY_OPS
    assert all(len(op["text"]) <= E.MAX_FACT_CHARS for op in log.memory_ops)
    assert len(log.open_calls) == 0
    assert len(log.recent_calls) == E.MAX_RECENT_CALLS


def test_a_redirect_named_by_a_secret_is_not_recorded_as_a_file() -> None:
    # `password => 'x'` in a shell redirects to a file named by the secret: the path would
    # reach files_modified verbatim, where no rule sees a label any more.
    log = feed(
        EpisodeLog(objective="o"),
        {"type": "tool_call", "id": "c1", "name": "shell",
         "input": {"command": ":password => 'xP7UpCNBAoFCu^lP' && echo hi > notes.txt"}},
        {"type": "tool_result", "id": "c1", "output": "ok"},
    )
    assert log.files_modified == ["notes.txt"]
