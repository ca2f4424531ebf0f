"""Claude Code asked for its own handoff at the step boundary (issue 11, point 2).

The episode's state machine with a fake child and clock: the turn is cut with
the interrupt control request, the handoff request follows the cut turn's
result, the answer's state (or the reason it failed) becomes the episode's
handoff result, and stdin is closed so Claude exits. Every failure falls back
to rules; near overflow no handoff is asked for.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from test_episode_machine import RESULT, TEXT, Harness, make, usage

from aether_cli.adapters.base import TURN_HANDOFF, TURN_INTERRUPTED, TURN_WORK, Ack, TurnEnd
from aether_cli.supervisor.claude_handoff import ClaudeHandoff
from aether_cli.supervisor.episode import Phase
from aether_cli.tokens import estimate_tokens

CALL = {"type": "tool_call", "id": "t8", "name": "Bash", "input": {"command": "echo 8 >> steps.txt"}}
ANSWER = {
    "objective": "Append the steps",
    "progress": ["steps 1-8 appended"],
    "next_actions": ["append step 9"],
    "errors": [],
    "files": ["steps.txt"],
    "resume_instructions": "Go on from step 9.",
}


def claude(tmp_path: Path, timeout: float = 120.0) -> Harness:
    return make(
        tmp_path,
        protocol_format=False,
        safe_point="turns",
        handoff=lambda child: ClaudeHandoff(
            child.send, request="Write your handoff as ONE JSON object.", max_tokens=2000,
            count=estimate_tokens, timeout=timeout,
        ),
    )


def turn_end(h: Harness, phase: str, text: str = "", **extra: Any) -> None:
    h.ep.take("events", ([TurnEnd({}, phase=phase, ok=True, text=text, **extra)], [0], 0))


def at_the_boundary(h: Harness) -> None:
    """A turn crossed the threshold on its text; its tool call then ran to the end."""
    h.say(usage(850), TEXT)
    h.tick()
    assert h.ep.phase is Phase.SAFE_POINT
    h.say(CALL)
    h.tick()
    assert h.ep.phase is Phase.SAFE_POINT, "the announced call runs first"
    h.say(RESULT)
    h.tick()


def test_the_turn_is_cut_then_the_handoff_is_asked_and_read(tmp_path: Path) -> None:
    h = claude(tmp_path)
    at_the_boundary(h)
    assert h.ep.phase is Phase.HANDOFF
    interrupt = h.child.sent[-1]
    assert interrupt["type"] == "control_request" and interrupt["request"] == {"subtype": "interrupt"}
    assert not h.child.stdin_closed
    turn_end(h, TURN_INTERRUPTED)
    h.tick()
    request = h.child.sent[-1]
    assert request["type"] == "user" and "ONE JSON object" in request["message"]["content"]
    h.tick(10)
    assert h.ep.phase is Phase.HANDOFF, "waits for the answer"
    turn_end(h, TURN_HANDOFF, json.dumps(ANSWER), input_tokens=900, output_tokens=120)
    h.tick()
    assert h.ep.phase is Phase.STOPPING and h.child.stdin_closed
    result = h.ep.handoff_result
    assert result is not None and result.reason == "" and result.tokens == 1020
    assert result.state is not None and result.state["next_actions"] == ["append step 9"]
    assert result.seconds is not None and 10 <= result.seconds < 11
    assert h.ep.log.last_assistant == TEXT["text"], "the answer is not the agent's last intent"
    assert not any(c.get("type") == "stop" for c in h.child.sent), "no protocol on Claude's stdin"
    end = h.exit(1)  # Claude exits 1 after an interrupted turn: not a crash
    assert (end.kind, end.trigger) == ("relaunch", "budget")


def test_between_turns_the_request_goes_at_once(tmp_path: Path) -> None:
    h = claude(tmp_path)
    h.say(usage(850), TEXT)
    turn_end(h, TURN_WORK)  # the turn ended on its own with the threshold crossed
    h.tick()
    h.tick()
    assert h.ep.phase is Phase.HANDOFF
    assert [c["type"] for c in h.child.sent] == ["user"], "no interrupt: no turn is running"


def test_an_answer_that_is_not_json_fails_closed_with_the_reason(tmp_path: Path) -> None:
    h = claude(tmp_path)
    at_the_boundary(h)
    turn_end(h, TURN_INTERRUPTED)
    h.tick()
    h.say({"type": "message", "role": "assistant", "text": "Sure, continuing with step 9."})
    turn_end(h, TURN_HANDOFF, "Sure, continuing with step 9.")
    h.tick()
    result = h.ep.handoff_result
    assert result is not None and result.state is None and result.reason == "answer is not JSON"
    assert h.ep.phase is Phase.STOPPING and h.child.stdin_closed
    handoffs = [f for k, f in h.records if k == "handoff"]
    assert [(f["ok"], f["reason"]) for f in handoffs] == [(False, "answer is not JSON")]


def test_no_answer_in_time_fails_closed_and_the_stop_escalates(tmp_path: Path) -> None:
    h = claude(tmp_path, timeout=30.0)
    at_the_boundary(h)
    h.tick(31)
    result = h.ep.handoff_result
    assert result is not None and result.state is None
    assert result.reason == "the interrupted turn did not end within 30s"
    assert h.ep.phase is Phase.STOPPING
    h.tick(3.1)
    assert h.child.signals == [signal.SIGTERM]


def test_an_agent_that_exits_during_the_handoff_is_relaunched_by_rules(tmp_path: Path) -> None:
    h = claude(tmp_path)
    at_the_boundary(h)
    end = h.exit(1)
    result = h.ep.handoff_result
    assert result is not None and result.reason == "the agent exited before it answered"
    assert end.kind == "relaunch"


def test_near_overflow_no_handoff_is_asked(tmp_path: Path) -> None:
    h = claude(tmp_path)
    h.say(usage(990), TEXT)
    h.tick()
    assert h.ep.phase is Phase.STOPPING and h.ep.handoff_result is None
    assert not h.child.sent and h.child.stdin_closed
    h.tick()
    assert h.child.signals == [signal.SIGTERM], "a closed stdin would let Claude finish its turn"


def test_a_work_turn_that_ends_below_the_threshold_closes_stdin(tmp_path: Path) -> None:
    h = claude(tmp_path)
    h.say(usage(300), TEXT)
    h.tick()
    assert not h.child.stdin_closed
    turn_end(h, TURN_WORK, "All done.")
    h.tick()
    assert h.child.stdin_closed and h.ep.phase is Phase.RUNNING
    assert ("command", {"command": "close_stdin", "reason": "turn ended"}) in h.records


def test_an_interrupt_refused_means_no_turn_ran_so_the_request_goes(tmp_path: Path) -> None:
    h = claude(tmp_path)
    at_the_boundary(h)
    interrupt_id = h.child.sent[-1]["request_id"]
    h.ep.take("events", ([Ack({}, what="interrupt", id=interrupt_id, ok=False, error="no turn")], [0], 0))
    h.tick()
    assert h.child.sent[-1]["type"] == "user"


def test_events_during_the_handoff_are_logged_as_work(tmp_path: Path) -> None:
    # A model that ignores the request and runs a tool: the call really ran, so it is in the log.
    h = claude(tmp_path)
    at_the_boundary(h)
    turn_end(h, TURN_INTERRUPTED)
    h.tick()
    h.say({"type": "tool_call", "id": "t9", "name": "Bash", "input": {"command": "echo 9 >> steps.txt"}})
    h.say({"type": "tool_result", "id": "t9", "output": ""})
    assert h.ep.log.tool_calls == 2 and "echo 9" in str(h.ep.log.recent_calls)


def test_a_call_announced_before_the_interrupt_took_effect_may_have_run(tmp_path: Path) -> None:
    # Claude had sent its next request when the interrupt went out; the model's tool_use came
    # back and the command started before the interrupt was acknowledged (seen with the fake
    # server: step 25 ran, and the prompt called it "announced, never run").
    h = claude(tmp_path)
    at_the_boundary(h)
    interrupt_id = h.child.sent[-1]["request_id"]
    h.say({"type": "tool_call", "id": "t9", "name": "Bash", "input": {"command": "echo 9 >> steps.txt"}})
    h.ep.take("events", ([Ack({}, what="interrupt", id=interrupt_id, ok=True)], [0], 0))
    h.say({"type": "tool_call", "id": "t10", "name": "Bash", "input": {"command": "echo 10 >> steps.txt"}})
    turn_end(h, TURN_INTERRUPTED)
    h.tick()
    assert [c.id for c in h.ep.log.interrupted_calls] == ["t9"], "started before the cut: may have run"
    assert "t10" in h.ep.log.open_calls and "t10" not in [c.id for c in h.ep.log.interrupted_calls]
