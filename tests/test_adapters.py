"""Adapters: every agent format's real stream becomes the protocol events aether acts on.

The claude_* and codex_* fixtures in tests/fixtures/formats/ are real output of
Claude Code 2.1.330 and Codex CLI 0.169.0 (copied from /work/shared/formats/).
gemini_stream.jsonl is NOT recorded: it is synthesised from the Gemini CLI
headless documentation (event types init, message with delta, tool_use,
tool_result, error, result), because no Gemini CLI could be run here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether_cli import protocol as P
from aether_cli.adapters import FORMATS, Adapter, Compaction, Outcome, StreamStarted, make_adapter
from aether_cli.adapters.base import todo_task_id
from aether_cli.episode_log import EpisodeLog
from aether_cli.errors import UsageError
from aether_cli.store import MemoryStore

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
SAMPLES = sorted(FIXTURES.glob("*.jsonl"))


def sample_lines(name: str) -> list[str]:
    """The lines of a fixture, without their newlines (as the reader hands them over)."""
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()


def run(fmt: str, lines: list[str]) -> list[P.Event]:
    """Feed `lines` to a fresh adapter of `fmt`, then finish it; every event checked for shape."""
    adapter = make_adapter(fmt)
    events: list[P.Event] = []
    for line in lines:
        events.extend(adapter.feed(line))
    events.extend(adapter.finish())
    for ev in events:
        assert_well_formed(ev)
    return events


def run_sample(name: str) -> list[P.Event]:
    """Parse one fixture with the adapter its name starts with."""
    return run(name.split("_")[0], sample_lines(name))


def assert_well_formed(ev: Any) -> None:
    """An event as the supervisor and ledger need it: an Event with a dumpable dict `raw`."""
    assert isinstance(ev, P.Event)
    assert isinstance(ev.raw, dict)
    orjson.dumps(ev.raw)
    if not isinstance(ev, P.Unknown | P.Invalid):
        # The ledger stores `raw`: it must describe this very event. (Unknown keeps the
        # line as received; the aether protocol's own Invalid does too.)
        assert ev.raw.get("type") == ev.type


def of(events: list[P.Event], cls: type) -> list[Any]:
    """The events of one class, in order."""
    return [e for e in events if isinstance(e, cls)]


def assert_paired(events: list[P.Event]) -> list[str]:
    """Every tool result answers an earlier call with the same id; returns the call ids."""
    calls = [e.id for e in of(events, P.ToolCall)]
    results = [e.id for e in of(events, P.ToolResult)]
    assert len(set(calls)) == len(calls)
    seen: set[str] = set()
    for ev in events:
        if isinstance(ev, P.ToolCall):
            seen.add(ev.id)
        elif isinstance(ev, P.ToolResult):
            assert ev.id in seen, f"result {ev.id} before its call"
    assert set(results) <= set(calls)
    return calls


def distil(events: list[P.Event]) -> EpisodeLog:
    """Fold events into the real episode log, as the supervisor does."""
    log = EpisodeLog(objective="test")
    for ev in events:
        log.add(ev)
    return log


# ---------------------------------------------------------------- claude


def test_claude_stream_full_turn() -> None:
    events = run_sample("claude_stream.jsonl")
    started = of(events, StreamStarted)
    assert [(s.session_id, s.model) for s in started] == [
        ("533ae955-86e9-4d7d-878d-4fa55c4099a6", "claude-opus-5-5")
    ]
    hellos = of(events, P.Hello)
    assert [(h.agent, h.model, h.context_window) for h in hellos] == [
        ("claude", "claude-opus-5-5", None),
        ("claude", "claude-opus-5-5", 1_000_000),
    ]
    assert assert_paired(events) == ["toolu_946e530bdedc4d2c863df585", "toolu_bc56afa3454640ed896adf6e"]
    assert [c.name for c in of(events, P.ToolCall)] == ["Write", "Bash"]
    assert of(events, P.ToolResult)[1].output == "checkpoint me\nhi"
    # One usage per API message (two lines share the first one), input + both cache figures.
    assert [(u.context_tokens, u.input_tokens, u.output_tokens) for u in of(events, P.Usage)] == [
        (12341, 12341, 1),
        (12463, 12463, 1),
        (12549, 12549, 1),
    ]
    assert [m.text for m in of(events, P.Message)] == [
        "I'll create notes.txt, then check it with Bash.",
        "Created notes.txt and ran the check; it printed the file and hi.",
    ]
    [outcome] = of(events, Outcome)
    assert (outcome.ok, outcome.reason) == (True, "completed")
    assert outcome.raw["num_turns"] == 3 and outcome.raw["usage"]["input_tokens"] == 37353
    [done] = of(events, P.Done)
    assert done.summary == "Created notes.txt and ran the check; it printed the file and hi."
    assert not of(events, P.Log)


def test_claude_usage_comes_before_the_content_it_precedes() -> None:
    events = run_sample("claude_stream.jsonl")
    kinds = [e.type for e in events if e.type in ("usage", "message", "tool_call")]
    assert kinds[:3] == ["usage", "message", "tool_call"]


def test_claude_usage_sums_cache_figures() -> None:
    line = orjson.dumps(
        {
            "type": "assistant",
            "message": {
                "id": "m1",
                "content": [{"type": "text", "text": "hi"}],
                "usage": {
                    "input_tokens": 5,
                    "cache_creation_input_tokens": 300,
                    "cache_read_input_tokens": 40000,
                    "output_tokens": 7,
                },
            },
        }
    ).decode()
    [usage, msg] = run("claude", [line])
    assert isinstance(usage, P.Usage) and isinstance(msg, P.Message)
    assert (usage.context_tokens, usage.input_tokens, usage.output_tokens) == (40305, 5, 7)
    assert usage.raw == {"type": "usage", "context_tokens": 40305, "input_tokens": 5, "output_tokens": 7}


def test_claude_prompt_too_long() -> None:
    events = run_sample("claude_err.jsonl")
    [outcome] = of(events, Outcome)
    assert (outcome.ok, outcome.reason, outcome.text) == (False, "prompt_too_long", "Prompt is too long")
    assert outcome.raw["api_error_status"] == 400
    assert [(g.level, g.text) for g in of(events, P.Log)] == [("error", "Prompt is too long")]
    assert not of(events, P.Done)
    # The synthetic error message reports zero usage: it must not reset the budget.
    assert [u.context_tokens for u in of(events, P.Usage)] == [12314]
    assert distil(events).errors == ["Prompt is too long"]


def test_claude_max_turns() -> None:
    events = run_sample("claude_maxturns.jsonl")
    [outcome] = of(events, Outcome)
    assert (outcome.ok, outcome.reason) == (False, "error_max_turns")
    assert outcome.text == "Reached maximum number of turns (1)"
    assert outcome.raw["terminal_reason"] == "max_turns"
    assert [g.text for g in of(events, P.Log) if g.level == "error"] == [
        "Reached maximum number of turns (1)"
    ]
    assert assert_paired(events) == ["toolu_51b91c6ef8a94b5cadb3285b"]


def test_claude_killed_has_no_outcome() -> None:
    events = run_sample("claude_kill.jsonl")
    assert not of(events, Outcome) and not of(events, P.Done)
    assert assert_paired(events) == ["toolu_6ff42c9198434cc6992bc53f"]
    [result] = of(events, P.ToolResult)
    assert (result.output, result.is_error) == ("Exit code 137", True)
    assert distil(events).errors == ["Exit code 137"]


def test_claude_autocompact() -> None:
    events = run_sample("claude_autocompact.jsonl")
    assert [(c.trigger, c.pre_tokens, c.post_tokens) for c in of(events, Compaction)] == [
        ("auto", 162414, 2625),
        ("auto", 162694, 2556),
        ("auto", 162566, 2556),
    ]
    assert len(assert_paired(events)) == 5
    # The compaction summaries are synthetic user turns: context, but not the user's words.
    # They are logged, not turned into messages the distiller would read as the user's rules.
    assert not [m for m in of(events, P.Message) if m.role != "assistant"]
    summaries = [e for e in of(events, P.Log) if e.level == "info" and e.text]
    assert len(summaries) == 3
    [outcome] = of(events, Outcome)
    assert (outcome.ok, outcome.reason) == (False, "rapid_refill_breaker")
    assert outcome.text.startswith("Autocompact is thrashing")
    # system/status lines map to nothing we model: kept as they came.
    statuses = [e for e in events if isinstance(e, P.Unknown)]
    assert len(statuses) == 8 and all(e.raw["subtype"] == "status" for e in statuses)


def test_claude_stream_input_two_turns() -> None:
    events = run_sample("claude_stream_input.jsonl")
    assert [s.session_id for s in of(events, StreamStarted)] == ["2db129a6-5343-49b5-901e-cd32eb671767"] * 2
    users = [m.text for m in of(events, P.Message) if m.role == "user"]
    assert users == ["Create notes.txt containing 'checkpoint me' and show it", "Anything else?"]
    assert [o.ok for o in of(events, Outcome)] == [True, True]
    assert len(of(events, P.Done)) == 2


def test_claude_events_feed_the_distiller() -> None:
    log = distil(run_sample("claude_stream.jsonl"))
    assert log.files_modified == ["/home/dev/work-claude/notes.txt"]
    assert log.last_assistant == "Created notes.txt and ran the check; it printed the file and hi."
    assert log.open_calls == {}
    assert log.done is not None


def todo_line(todos: list[dict[str, Any]], call_id: str = "toolu_1") -> str:
    return orjson.dumps(
        {
            "type": "assistant",
            "message": {
                "id": "m",
                "content": [
                    {"type": "tool_use", "id": call_id, "name": "TodoWrite", "input": {"todos": todos}}
                ],
            },
        }
    ).decode()


def test_claude_todowrite_becomes_tasks() -> None:
    todos = [
        {"content": "Port the tests to pytest", "status": "completed", "activeForm": "Porting the tests"},
        {"content": "Fix CI", "status": "in_progress", "activeForm": "Fixing CI"},
        {"content": "Write the changelog", "status": "pending", "activeForm": "Writing the changelog"},
        {"content": "", "status": "pending"},
        {"status": "pending"},
    ]
    events = run("claude", [todo_line(todos)])
    [call] = of(events, P.ToolCall)
    assert call.name == "TodoWrite"
    tasks = of(events, P.TaskUpdate)
    assert [t.fields for t in tasks] == [
        {"title": "Port the tests to pytest", "status": "done"},
        {"title": "Fix CI", "status": "in_progress", "next_action": "Fixing CI"},
        {"title": "Write the changelog", "status": "pending"},
    ]
    assert tasks[0].id.startswith("todo-port-the-tests-to-pytest-")
    assert all(MemoryStore.valid_task_id(t.id) for t in tasks)
    assert tasks[1].raw == {"type": "task", "id": tasks[1].id, **tasks[1].fields}
    # Sent again with new statuses, the same todos update the same tasks.
    todos[1]["status"] = "completed"
    again = of(run("claude", [todo_line(todos, "toolu_2")]), P.TaskUpdate)
    assert [t.id for t in again] == [t.id for t in tasks]
    assert again[1].fields == {"title": "Fix CI", "status": "done"}
    log = distil(events + again)
    assert log.tasks[tasks[1].id]["status"] == "done"


@pytest.mark.parametrize(
    "text",
    [
        "Fix #1",
        "Fix #2!",
        "fix 1",
        "",
        "!!!",
        "Ünïcode only ✓",
        "x" * 500,
        "Rotate the key xoxb-1234567890-abcdefghij and ghp_" + "a1" * 20,
        "sk-ant-abcdefghijklmnopqrstuvwxyz0123456789",
        ".hidden start",
    ],
)
def test_todo_ids_are_valid_store_ids(text: str) -> None:
    tid = todo_task_id(text)
    assert MemoryStore.valid_task_id(tid), tid
    assert len(tid) <= 48
    assert tid == todo_task_id(text)


def test_todo_ids_of_similar_texts_differ() -> None:
    ids = {todo_task_id(t) for t in ("Fix #1", "Fix #2!", "fix 1", "FIX-1", "Fix 1.")}
    assert len(ids) == 5


@given(st.text(max_size=200))
def test_todo_ids_always_valid(text: str) -> None:
    assert MemoryStore.valid_task_id(todo_task_id(text))


def test_claude_thinking_only_line_is_unknown() -> None:
    line = orjson.dumps(
        {"type": "assistant", "message": {"id": "m", "content": [{"type": "thinking", "thinking": "hmm"}]}}
    ).decode()
    [ev] = run("claude", [line])
    assert isinstance(ev, P.Unknown) and ev.raw["type"] == "assistant"


def test_claude_subagent_usage_is_not_our_context() -> None:
    line = orjson.dumps(
        {
            "type": "assistant",
            "parent_tool_use_id": "toolu_task",
            "message": {
                "id": "m",
                "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {"file_path": "a.py"}}],
                "usage": {"input_tokens": 900},
            },
        }
    ).decode()
    events = run("claude", [line])
    assert not of(events, P.Usage)
    assert [c.name for c in of(events, P.ToolCall)] == ["Read"]


def test_claude_permission_denied_is_an_error_log() -> None:
    line = orjson.dumps(
        {
            "type": "system",
            "subtype": "permission_denied",
            "tool_name": "Bash",
            "message": "Permission to use Bash\nwas denied",
        }
    ).decode()
    [ev] = run("claude", [line])
    assert isinstance(ev, P.Log)
    assert (ev.level, ev.text) == ("error", "permission denied for Bash: Permission to use Bash was denied")


def test_claude_tool_result_content_blocks_are_joined() -> None:
    line = orjson.dumps(
        {
            "type": "user",
            "message": {
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "a"},
                            {"type": "image"},
                            {"type": "text", "text": "b"},
                        ],
                    },
                    {"type": "text", "text": "please go on"},
                ]
            },
        }
    ).decode()
    [result, msg] = run("claude", [line])
    assert isinstance(result, P.ToolResult) and (result.id, result.output, result.is_error) == (
        "t1",
        "a\nb",
        True,
    )
    assert isinstance(msg, P.Message) and (msg.role, msg.text) == ("user", "please go on")


@pytest.mark.parametrize(
    ("line", "cls"),
    [
        ("not json at all", P.Text),
        ('{"type": "assistant", "message": ', P.Text),
        ("[1, 2, 3]", P.Text),
        ('{"type": "stream_event", "event": {}}', P.Unknown),
        ('{"no_type": 1}', P.Unknown),
        ('{"type": "system", "subtype": "hook_response"}', P.Unknown),
        ('{"type": "assistant", "message": "odd"}', P.Unknown),
        ('{"type": "result"}', Outcome),
    ],
)
def test_claude_odd_lines(line: str, cls: type) -> None:
    events = run("claude", [line])
    assert isinstance(events[0], cls)


def test_claude_result_with_odd_fields_still_gives_a_verdict() -> None:
    line = orjson.dumps(
        {
            "type": "result",
            "subtype": 3,
            "is_error": "yes",
            "result": ["x"],
            "modelUsage": {"m": {"contextWindow": "big"}},
        }
    ).decode()
    events = run("claude", [line])
    [outcome] = of(events, Outcome)
    assert not outcome.ok
    assert not of(events, P.Hello)
    assert of(events, P.Log)[0].text == f"claude ended: {outcome.reason}"


# ---------------------------------------------------------------- codex


def test_codex_stream_full_turn() -> None:
    events = run_sample("codex_stream.jsonl")
    [started] = of(events, StreamStarted)
    assert started.session_id == "01a1feb9-8524-7fd1-9725-de9d015eb1a8"
    assert [(h.agent, h.context_window) for h in of(events, P.Hello)] == [("codex", None)]
    assert assert_paired(events) == ["item_1", "item_3", "item_4"]
    calls = of(events, P.ToolCall)
    assert [c.name for c in calls] == ["shell", "apply_patch", "shell"]
    assert calls[0].input == {"command": "/bin/bash -lc 'echo hi'"}
    assert calls[1].input["paths"] == ["/home/dev/work-codex/notes.txt"]
    results = of(events, P.ToolResult)
    assert [r.output for r in results] == [
        "hi\nexit code 0",
        "add /home/dev/work-codex/notes.txt",
        "checkpoint me\nexit code 0",
    ]
    assert not any(r.is_error for r in results)
    # Reasoning is logged at debug level: neither shown as output nor counted.
    assert [(g.level, g.text) for g in of(events, P.Log)] == [
        ("debug", "**Checking the workspace**"),
        ("debug", "**Creating notes.txt**"),
    ]
    assert not of(events, P.Text)
    assert not of(events, P.Usage)
    [outcome] = of(events, Outcome)
    assert (outcome.ok, outcome.reason) == (True, "completed")
    assert outcome.raw["usage"]["input_tokens"] == 39592
    [done] = of(events, P.Done)
    assert done.summary == "Created notes.txt and verified it contains 'checkpoint me'."
    log = distil(events)
    assert log.files_modified == ["/home/dev/work-codex/notes.txt"]
    assert log.open_calls == {}


def test_codex_context_overflow() -> None:
    events = run_sample("codex_err400.jsonl")
    message = (
        "Codex ran out of room in the model's context window. "
        "Start a new thread or clear earlier history before retrying."
    )
    [outcome] = of(events, Outcome)
    assert (outcome.ok, outcome.reason, outcome.text) == (False, message, message)
    assert [g.text for g in of(events, P.Log) if g.level == "error"] == [message, message]
    assert not of(events, P.Done)
    assert distil(events).errors == [message]
    assert of(events, P.ToolResult)[0].output.endswith("hi\nexit code 0")


def test_codex_killed_mid_command() -> None:
    events = run_sample("codex_kill.jsonl")
    [call] = of(events, P.ToolCall)
    assert (call.id, call.input) == ("item_0", {"command": "/bin/bash -lc 'sleep 4; echo slept'"})
    assert not of(events, P.ToolResult) and not of(events, Outcome)
    assert list(distil(events).open_calls) == ["item_0"]


def test_codex_resume_keeps_cumulative_usage_out_of_context() -> None:
    events = run_sample("codex_resume.jsonl")
    assert [s.session_id for s in of(events, StreamStarted)] == ["01a1feb6-8f4f-72b2-b471-5f3201e8684d"]
    assert not of(events, P.Usage)
    [outcome] = of(events, Outcome)
    assert outcome.ok and outcome.raw["usage"]["input_tokens"] == 49814


def item(kind: str, **fields: Any) -> str:
    """One codex item line."""
    return orjson.dumps({"type": kind, "item": fields}).decode()


def test_codex_failed_command_and_unannounced_items() -> None:
    events = run(
        "codex",
        [
            item(
                "item.completed",
                id="i1",
                type="command_execution",
                command="false",
                aggregated_output="boom",
                exit_code=2,
                status="failed",
            ),
            item(
                "item.completed",
                id="i2",
                type="mcp_tool_call",
                server="docs",
                tool="search",
                arguments={"q": "x"},
                error={"message": "server gone"},
                status="failed",
            ),
            item("item.started", id="i3", type="mcp_tool_call", server="docs", tool="fetch", arguments="bad"),
            item(
                "item.completed",
                id="i3",
                type="mcp_tool_call",
                server="docs",
                tool="fetch",
                result={"content": [{"type": "text", "text": "page"}]},
                status="completed",
            ),
            item(
                "item.completed",
                id="i4",
                type="file_change",
                changes=[{"path": "a.py", "kind": "update"}],
                status="failed",
            ),
            item("item.completed", id="i5", type="error", message="model hiccup"),
            item("item.completed", id="i6", type="web_search", query="x"),
            orjson.dumps({"type": "error", "message": "stream disconnected"}).decode(),
        ],
    )
    assert assert_paired(events) == ["i1", "i2", "i3", "i4"]
    calls = {c.id: c for c in of(events, P.ToolCall)}
    assert calls["i2"].name == "docs.search" and calls["i2"].input == {"q": "x"}
    assert calls["i3"].input == {}
    results = {r.id: r for r in of(events, P.ToolResult)}
    assert (results["i1"].output, results["i1"].is_error) == ("boom\nexit code 2", True)
    assert (results["i2"].output, results["i2"].is_error) == ("server gone", True)
    assert (results["i3"].output, results["i3"].is_error) == ("page", False)
    assert results["i4"].is_error and "a.py" in results["i4"].output
    assert [g.text for g in of(events, P.Log)] == ["model hiccup", "stream disconnected"]
    assert len(of(events, P.Unknown)) == 1


def test_codex_todo_list_marks_the_first_open_item_in_progress() -> None:
    items = [
        {"text": "Read the code", "completed": True},
        {"text": "Port the tests", "completed": False},
        {"text": "Update the docs", "completed": False},
    ]
    events = run("codex", [item("item.updated", id="t", type="todo_list", items=items)])
    tasks = of(events, P.TaskUpdate)
    assert [(t.fields["title"], t.fields["status"]) for t in tasks] == [
        ("Read the code", "done"),
        ("Port the tests", "in_progress"),
        ("Update the docs", "pending"),
    ]
    assert tasks[1].id == todo_task_id("Port the tests")


def test_codex_failed_turn_without_message() -> None:
    events = run("codex", ['{"type": "turn.failed", "error": "odd"}'])
    [outcome] = of(events, Outcome)
    assert (outcome.ok, outcome.reason) == (False, "turn failed")
    assert of(events, P.Log)[0].text == "codex turn failed"


# ---------------------------------------------------------------- gemini


def test_gemini_stream_synthesised_from_docs() -> None:
    events = run_sample("gemini_stream.jsonl")
    [started] = of(events, StreamStarted)
    assert (started.session_id, started.model) == ("c7b0a9e2-3f41-4e0c-9d8a-5b2f6e1d7a90", "gemini-2.5-pro")
    assert [(h.agent, h.model) for h in of(events, P.Hello)] == [("gemini", "gemini-2.5-pro")]
    # Streamed deltas become one message each, in order with the tool events around them.
    assert [(m.role, m.text) for m in of(events, P.Message)] == [
        ("user", "Create notes.txt containing 'checkpoint me' and show it"),
        ("assistant", "I'll create notes.txt, then check it."),
        ("assistant", "Created notes.txt; it contains 'checkpoint me'."),
    ]
    kinds = [e.type for e in events]
    assert kinds.index("message", 3) < kinds.index("tool_call")
    assert len(assert_paired(events)) == 3
    results = of(events, P.ToolResult)
    assert [r.is_error for r in results] == [False, True, False]
    assert results[1].output == "cat: note.txt: No such file or directory"
    assert [(g.level, g.text) for g in of(events, P.Log)] == [
        ("warning", "Loop detection: repeated tool call pattern")
    ]
    assert not of(events, P.Usage)
    [outcome] = of(events, Outcome)
    assert (outcome.ok, outcome.reason) == (True, "success")
    assert outcome.raw["stats"]["total_tokens"] == 24913
    assert of(events, P.Done)[0].summary == "Created notes.txt; it contains 'checkpoint me'."
    assert distil(events).files_modified == ["/home/dev/work-gemini/notes.txt"]


def test_gemini_finish_flushes_deltas_and_failed_result() -> None:
    adapter = make_adapter("gemini")
    delta = '{"type":"message","role":"assistant","content":"%s","delta":true}'
    assert adapter.feed(delta % "half ") == []
    assert adapter.feed(delta % "done") == []
    [msg] = adapter.finish()
    assert isinstance(msg, P.Message) and msg.text == "half done"
    assert adapter.finish() == []
    events = adapter.feed(
        '{"type":"result","status":"error","error":{"type":"FatalTurnLimitedError","message":"turn limit"}}'
    )
    [outcome] = of(events, Outcome)
    assert (outcome.ok, outcome.reason, outcome.text) == (False, "FatalTurnLimitedError", "turn limit")
    assert [(g.level, g.text) for g in of(events, P.Log)] == [("error", "turn limit")]


def test_gemini_text_line_flushes_before_itself() -> None:
    events = run(
        "gemini",
        ['{"type":"message","role":"assistant","content":"a","delta":true}', "stray text"],
    )
    assert [e.type for e in events] == ["message", "text"]


def test_gemini_buffer_is_bounded() -> None:
    chunk = "x" * 1000
    line = orjson.dumps({"type": "message", "role": "assistant", "content": chunk, "delta": True}).decode()
    adapter = make_adapter("gemini")
    emitted = [ev for _ in range(200) for ev in adapter.feed(line)]
    emitted += adapter.finish()
    assert len(emitted) >= 3
    assert "".join(m.text for m in emitted) == chunk * 200


# ---------------------------------------------------------------- text, aether, registry


def test_text_adapter_never_parses() -> None:
    events = run("text", ['{"type": "done", "summary": "x"}', "", "plain"])
    assert [(e.type, e.text) for e in events] == [
        ("text", '{"type": "done", "summary": "x"}'),
        ("text", "plain"),
    ]
    assert events[0].raw == {"type": "text", "text": '{"type": "done", "summary": "x"}'}


def test_aether_adapter_decodes_the_protocol() -> None:
    events = run(
        "aether", ['{"type": "done", "summary": "ok"}', "hello", '{"type": "usage", "context_tokens": -1}']
    )
    assert [type(e) for e in events] == [P.Done, P.Text, P.Invalid]


def test_registry_and_flags() -> None:
    assert FORMATS == ("aether", "claude", "codex", "gemini", "text")
    adapters = {fmt: make_adapter(fmt) for fmt in FORMATS}
    assert {f for f, a in adapters.items() if a.speaks_protocol} == {"aether"}
    assert {f for f, a in adapters.items() if a.usage_is_context} == {"aether", "claude"}
    assert all(a.name == f for f, a in adapters.items())
    # One instance per episode: state must not leak between them.
    assert make_adapter("gemini") is not make_adapter("gemini")
    with pytest.raises(UsageError, match="unknown agent format 'cursor'"):
        make_adapter("cursor")


class _Broken(Adapter):
    """An adapter whose parsing always fails, to check the base class's guarantee."""

    name = "broken"

    def _feed(self, line: str) -> list[P.Event]:
        raise KeyError(line)

    def _finish(self) -> list[P.Event]:
        raise RuntimeError("buffer\ncorrupt")


def test_internal_errors_become_invalid_events() -> None:
    adapter = _Broken()
    [ev] = adapter.feed("x" * 500)
    assert isinstance(ev, P.Invalid)
    assert ev.text == "x" * 200 and ev.reason.startswith("broken adapter: KeyError")
    assert ev.raw == {"type": "invalid", "reason": ev.reason, "text": ev.text}
    [end] = adapter.finish()
    assert isinstance(end, P.Invalid) and "\n" not in end.reason


# ---------------------------------------------------------------- robustness

JSON_FORMATS = ("claude", "codex", "gemini")
TYPES = {
    "claude": ["system", "assistant", "user", "result", "stream_event"],
    "codex": [
        "thread.started",
        "turn.started",
        "item.started",
        "item.updated",
        "item.completed",
        "turn.completed",
        "turn.failed",
        "error",
    ],
    "gemini": ["init", "message", "tool_use", "tool_result", "error", "result"],
}
KEYS = [
    "subtype",
    "message",
    "content",
    "usage",
    "id",
    "name",
    "input",
    "text",
    "session_id",
    "model",
    "compact_metadata",
    "modelUsage",
    "is_error",
    "result",
    "errors",
    "terminal_reason",
    "tool_use_id",
    "parent_tool_use_id",
    "isSynthetic",
    "thread_id",
    "item",
    "type",
    "command",
    "aggregated_output",
    "exit_code",
    "status",
    "changes",
    "items",
    "server",
    "tool",
    "arguments",
    "error",
    "role",
    "delta",
    "tool_id",
    "tool_name",
    "parameters",
    "output",
    "severity",
    "stats",
    "todos",
    "contextWindow",
]
# Strings the adapters branch on, so nested blocks and items of every kind turn up.
WORDS = [
    "text",
    "tool_use",
    "tool_result",
    "thinking",
    "command_execution",
    "mcp_tool_call",
    "file_change",
    "todo_list",
    "agent_message",
    "reasoning",
    "error",
    "init",
    "compact_boundary",
    "permission_denied",
    "success",
    "assistant",
    "user",
    "system",
    "TodoWrite",
    "completed",
    "in_progress",
    "pending",
    "failed",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(WORDS),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=8,
)


def typed_dicts(fmt: str) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts shaped like the format's lines: a known `type`, known keys, values of any shape."""
    return st.builds(
        lambda kind, fields, item: {**fields, "type": kind, **({"item": item} if item is not None else {})},
        st.sampled_from(TYPES[fmt]),
        st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5),
        st.none() | st.dictionaries(st.sampled_from(KEYS), json_values, max_size=5),
    )


def feed_all(lines: list[str]) -> None:
    """Every adapter survives `lines` and returns well-formed events.

    Beyond never raising, the format adapters must not even need their safety
    net: an Invalid event from them means a value shape their parsing missed.
    """
    for fmt in FORMATS:
        adapter = make_adapter(fmt)
        events: list[P.Event] = []
        for line in lines:
            out = adapter.feed(line)
            assert isinstance(out, list)
            events.extend(out)
        events.extend(adapter.finish())
        for ev in events:
            assert_well_formed(ev)
        if fmt != "aether":
            assert not of(events, P.Invalid), of(events, P.Invalid)[0].reason


ROBUST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@ROBUST
@given(st.lists(st.text(max_size=300), max_size=8))
def test_random_text_lines(lines: list[str]) -> None:
    feed_all(lines)


@ROBUST
@given(st.lists(json_values, max_size=6))
def test_random_json_values(values: list[Any]) -> None:
    feed_all([orjson.dumps(v).decode() for v in values])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(JSON_FORMATS).flatmap(lambda f: st.lists(typed_dicts(f), min_size=1, max_size=4)))
def test_random_dicts_with_the_formats_types(objs: list[dict[str, Any]]) -> None:
    feed_all([orjson.dumps(o).decode() for o in objs])


@ROBUST
@given(st.sampled_from(SAMPLES), st.data())
def test_sample_lines_truncated_at_random_positions(path: Path, data: st.DataObject) -> None:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    line = data.draw(st.sampled_from(lines))
    cut = data.draw(st.integers(min_value=0, max_value=len(line)))
    feed_all([line[:cut], line[cut:], line])


@pytest.mark.parametrize("name", ["codex_stream.jsonl", "codex_err400.jsonl", "gemini_stream.jsonl"])
def test_short_sample_lines_truncated_at_every_position(name: str) -> None:
    fmt = name.split("_")[0]
    adapter = make_adapter(fmt)
    for line in sample_lines(name):
        for cut in range(len(line) + 1):
            for ev in adapter.feed(line[:cut]):
                assert_well_formed(ev)
    for ev in adapter.finish():
        assert_well_formed(ev)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_parses_without_invalid_events(path: Path) -> None:
    events = run(path.name.split("_")[0], sample_lines(path.name))
    assert events
    assert not of(events, P.Invalid)
    assert not of(events, P.Text)
