"""Claude Code in stream-json input mode: the stdin lines aether writes, the command line, and the
adapter telling a work turn, an interrupted turn and the handoff turn apart from the stream alone.

The stream lines are shaped as Claude Code 2.1.332 printed them against the fake server (see
docs/adapters.md), trimmed to the keys that matter.
"""

from __future__ import annotations

import json

import orjson
import pytest

from aether_cli import protocol as P
from aether_cli.adapters import claude_input as CI
from aether_cli.adapters.argv import claude_input_mode, json_flag_missing, prompt_location
from aether_cli.adapters.base import TURN_HANDOFF, TURN_INTERRUPTED, TURN_WORK, Ack, Outcome, TurnEnd
from aether_cli.adapters.claude import ClaudeAdapter
from aether_cli.adapters.prompt_argv import claude_input_argv, native_resume_argv

# ------------------------------------------------------------------ stdin lines


def test_user_messages_are_one_json_line_each_and_say_whose_they_are() -> None:
    text = 'Line one\nline "two" \u2014 {prompt}'
    for build, kind in ((CI.prompt_message, "prompt"), (CI.handoff_message, "handoff")):
        raw = build(text)
        assert raw.endswith(b"\n") and raw.count(b"\n") == 1
        obj = orjson.loads(raw)
        assert obj["type"] == "user" and obj["message"] == {"role": "user", "content": text}
        assert CI.message_kind(obj["uuid"]) == kind
    assert CI.message_kind(orjson.loads(CI.user_message("x"))["uuid"]) == "message"


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "",
        "ae7e0002",
        "ae7e0009-0000-4000-8000-000000000000",
        "x" * 36,
        "12345678-aaaa-4bbb-8ccc-dddddddddddd",
    ],
)
def test_other_ids_are_not_aethers(bad: str | None) -> None:
    assert CI.message_kind(bad) is None


def test_each_interrupt_has_a_fresh_request_id() -> None:
    (id1, raw1), (id2, _) = CI.interrupt_request(), CI.interrupt_request()
    assert id1 != id2 and CI.is_interrupt_id(id1) and not CI.is_interrupt_id("req_1")
    assert orjson.loads(raw1) == {
        "type": "control_request",
        "request_id": id1,
        "request": {"subtype": "interrupt"},
    }


# ------------------------------------------------------------------ command line

BASE = ["--output-format", "stream-json", "--verbose"]


@pytest.mark.parametrize(
    "argv",
    [
        ["claude", "-p", "do the task", *BASE],
        ["claude", *BASE, "-p", "{prompt}", "--allowedTools", "Bash", "Read"],
        ["claude", "--input-format", "text", "-p", *BASE, "do it"],
        ["claude", "--input-format=stream-json", "-p", *BASE],
        ["claude", "-p", *BASE, "--", "-starts with a dash"],
    ],
)
def test_a_claude_command_is_put_in_input_mode_without_its_prompt(argv: list[str]) -> None:
    out = claude_input_argv(argv)
    assert claude_input_mode(out) and json_flag_missing(out) is None
    assert prompt_location("claude", out) is None, out
    assert out.count("--input-format") + sum(a.startswith("--input-format=") for a in out) == 1
    assert out.count("--replay-user-messages") == 1 and "stream-json" in out
    assert "{prompt}" not in out and "do the task" not in out and "do it" not in out
    assert claude_input_argv(out) == out  # a second pass changes nothing
    resumed = native_resume_argv("claude", out, session_id="sess-1", prompt="P")
    assert resumed is not None and resumed[1:3] == ["--resume", "sess-1"] and "P" not in resumed


def test_the_flag_check_still_asks_for_print_mode() -> None:
    assert json_flag_missing(claude_input_argv(["claude", *BASE])) == "claude needs -p to be supervised"
    assert not claude_input_mode(["claude", "-p", *BASE, "x"])


# ------------------------------------------------------------------ the stream

INIT = {"type": "system", "subtype": "init", "session_id": "s1", "model": "claude-fake"}
USAGE = {
    "input_tokens": 6100,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 6100,
    "output_tokens": 1,
}


def tool_use(call_id: str) -> dict:
    block = {
        "type": "tool_use",
        "id": call_id,
        "name": "Bash",
        "input": {"command": "sleep 4 && echo step 1"},
    }
    return {"type": "assistant", "message": {"id": "m1", "content": [block], "usage": USAGE}}


def replay(kind: str, text: str) -> dict:
    return {
        "type": "user",
        "message": {"role": "user", "content": text},
        "uuid": CI.message_uuid(kind),
        "isReplay": True,
    }


def ack(request_id: str, ok: bool = True) -> dict:
    response = {"subtype": "success", "request_id": request_id, "response": {"still_queued": []}}
    if not ok:
        response = {"subtype": "error", "request_id": request_id, "error": "no such request"}
    return {"type": "control_response", "response": response}


REJECTED = {
    "type": "user",
    "message": {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "is_error": True,
                "content": "The user doesn't want to proceed with this tool use.",
            }
        ],
    },
    "tool_use_result": "User rejected tool use",
    "tool_result_meta": [{"id": "toolu_1", "non_execution_kind": "user-rejected"}],
}
MARKER = {
    "type": "user",
    "message": {
        "role": "user",
        "content": [{"type": "text", "text": "[Request interrupted by user for tool use]"}],
    },
}


def result(
    subtype: str = "success", terminal: str = "completed", text: str | None = "done", **more: object
) -> dict:
    obj = {
        "type": "result",
        "subtype": subtype,
        "is_error": subtype != "success",
        "terminal_reason": terminal,
        "duration_ms": 1622,
        "usage": {**USAGE, "output_tokens": 28},
        **more,
    }
    if text is not None:
        obj["result"] = text
    return obj


def feed(adapter: ClaudeAdapter, *objs: dict) -> list[P.Event]:
    return [ev for obj in objs for ev in adapter.feed(json.dumps(obj))]


def test_the_whole_sequence_interrupt_then_handoff() -> None:
    adapter = ClaudeAdapter()
    request_id, _ = CI.interrupt_request()
    handoff = json.dumps({"objective": "x", "progress": [], "next_actions": ["redo step 1"]})
    events = feed(
        adapter,
        INIT,
        replay("prompt", "the rehydrated prompt"),
        tool_use("toolu_1"),
        ack(request_id),
        REJECTED,
        MARKER,
        result("error_during_execution", "aborted_tools", None, errors=["[ede_diagnostic] result_type=user"]),
        INIT,
        replay("handoff", "write your handoff"),
        {
            "type": "assistant",
            "message": {"id": "m2", "content": [{"type": "text", "text": handoff}], "usage": USAGE},
        },
        result(text=handoff),
    )
    acks = [(e.what, e.ok) for e in events if isinstance(e, Ack)]
    assert acks == [("prompt", True), ("interrupt", True), ("handoff", True)]
    turns = [e for e in events if isinstance(e, TurnEnd)]
    assert [(t.phase, t.ok, t.reason) for t in turns] == [
        (TURN_INTERRUPTED, False, "error_during_execution"),
        (TURN_HANDOFF, True, "completed"),
    ]
    assert turns[1].text == handoff and turns[1].seconds == 1.622
    assert (turns[1].input_tokens, turns[1].output_tokens) == (12200, 28)
    # Neither turn is the agent's verdict: no Outcome, no done, no error from the diagnostic.
    assert not [e for e in events if isinstance(e, Outcome | P.Done)]
    assert not [e for e in events if isinstance(e, P.Log) and e.level == "error"]
    # The stopped call has no result (it stays open: interrupted); no user words were invented.
    assert not [e for e in events if isinstance(e, P.ToolResult)]
    assert [e.text for e in events if isinstance(e, P.Message) and e.role == "user"] == []


def test_a_work_turn_is_still_the_agents_verdict() -> None:
    events = feed(ClaudeAdapter(), INIT, result())
    kinds = [type(e).__name__ for e in events]
    assert kinds[-3:] == ["Outcome", "Done", "TurnEnd"] and events[-1].phase == TURN_WORK


def test_an_interrupt_when_idle_leaves_the_next_turn_a_plain_handoff() -> None:
    adapter = ClaudeAdapter()
    request_id, _ = CI.interrupt_request()
    events = feed(adapter, INIT, result(), ack(request_id), replay("handoff", "h"), result(text="{}"))
    assert [e.phase for e in events if isinstance(e, TurnEnd)] == [TURN_WORK, TURN_HANDOFF]


def test_without_aethers_interrupt_an_abort_and_a_rejection_are_reported_as_they_are() -> None:
    events = feed(
        ClaudeAdapter(),
        INIT,
        tool_use("toolu_1"),
        REJECTED,
        result("error_during_execution", "aborted_tools", None),
    )
    assert [e.is_error for e in events if isinstance(e, P.ToolResult)] == [True]
    assert [e.phase for e in events if isinstance(e, TurnEnd)] == [TURN_WORK]
    assert any(isinstance(e, Outcome) and not e.ok for e in events)


def test_a_failed_control_request_and_a_foreign_replay() -> None:
    adapter = ClaudeAdapter()
    events = feed(
        adapter,
        ack("req_other", ok=False),
        {**replay("message", "hi"), "uuid": "12345678-aaaa-4bbb-8ccc-dddddddddddd"},
    )
    assert [(e.what, e.ok, e.error) for e in events if isinstance(e, Ack)] == [
        ("control", False, "no such request")
    ]
    assert [e.text for e in events if isinstance(e, P.Message)] == ["hi"]


@pytest.mark.parametrize(
    "line",
    [
        {"type": "control_response"},
        {"type": "control_response", "response": "yes"},
        {"type": "control_response", "response": {"request_id": 7, "subtype": None}},
        {"type": "user", "isReplay": True, "uuid": 5, "message": {"content": "x"}},
        {"type": "user", "tool_result_meta": "junk", "message": {"content": [{"type": "tool_result"}]}},
        {"type": "result", "duration_ms": "soon", "usage": {"input_tokens": -3}},
    ],
)
def test_odd_lines_never_raise(line: dict) -> None:
    adapter = ClaudeAdapter()
    adapter.feed(json.dumps(ack(CI.interrupt_request()[0])))
    events = adapter.feed(json.dumps(line))
    assert events and not any(isinstance(e, P.Invalid) for e in events)
