"""The fake Responses API's handoff answers: built from the conversation alone, as a model would.

Items are in the shape Codex 0.169.0 sends (function_call arguments as a JSON string, the
exec_command output with its "Process exited with code N" line).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fakes.fake_openai import (
    conversation_steps,
    failed_last_call,
    handoff_answer,
    is_handoff_request,
    special_turn,
)

ASK = "Stop now. Write your handoff: reply with ONE JSON object with objective, progress, next_actions."


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def step(k: int, code: int = 0, out: str = "") -> list[dict[str, Any]]:
    call = f"call_{k}_{code}"
    return [
        {"type": "function_call", "name": "exec_command", "call_id": call,
         "arguments": json.dumps({"cmd": f'echo "step {k}" >> steps.txt'})},
        {"type": "function_call_output", "call_id": call,
         "output": f"Chunk ID: x\nWall time: 0.0 seconds\nProcess exited with code {code}\nOutput:\n{out}"},
    ]


def conversation(*steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    items = [user("<environment_context>cwd</environment_context>"), user("Append step K for K = 1..9.")]
    for s in steps:
        items += s
    return items


def test_done_steps_and_failures_come_from_the_calls_and_their_outputs() -> None:
    items = conversation(step(1), step(2), step(3, 1, "bash: steps.txt: Read-only file system"))
    done, failed, unverified = conversation_steps(items)
    assert done == [1, 2] and unverified == []
    assert failed == ['`{"cmd": "echo \\"step 3\\" >> steps.txt"}` failed (exit 1): '
                      "bash: steps.txt: Read-only file system"]


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        (ASK, True),
        ("Your context will be reset soon. Give me a checkpoint as JSON.", True),
        ("Please hand over your state as a json object", True),
        ("Write your handoff notes.", False),  # no JSON asked for
        ("Return JSON with the results.", False),  # not a handoff
    ],
)
def test_a_handoff_request_is_recognised_from_its_words(text: str, asked: bool) -> None:
    assert is_handoff_request([*conversation(step(1)), user(text)]) is asked


def test_only_the_latest_message_counts_as_the_request() -> None:
    assert not is_handoff_request([*conversation(), user(ASK), *step(1)])


def test_the_answer_is_json_state_from_the_conversation() -> None:
    state = json.loads(handoff_answer([*conversation(step(1), step(2)), user(ASK)]))
    assert state["objective"] == "Append step K for K = 1..9."
    assert state["progress"] == ['Appended "step 1" to steps.txt (exit code 0).',
                                 'Appended "step 2" to steps.txt (exit code 0).']
    assert state["next_actions"] == ['Append "step 3" to steps.txt with one shell command.']
    assert state["errors"] == []


def test_a_call_codex_answered_aborted_is_next_with_a_warning() -> None:
    cut = step(3)
    cut[1]["output"] = "aborted"  # what Codex 0.169.0 puts in for a call it was stopped in
    items = [*conversation(step(1), step(2), cut), user(ASK)]
    assert conversation_steps(items) == ([1, 2], [], [3])
    state = json.loads(handoff_answer(items))
    assert state["next_actions"][0].startswith('Append "step 3" to steps.txt')
    assert "check steps.txt first" in state["next_actions"][0]


def test_the_request_is_ignored_in_ignore_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [*conversation(step(1)), user(ASK)]
    turn, kind = special_turn(items) or (None, "")
    assert kind == "handoff" and turn is not None and json.loads(turn.text)["state"]["last_step_done"] == 1
    monkeypatch.setenv("FAKE_OPENAI_HANDOFF", "ignore")
    assert special_turn(items) is None


def test_after_a_failed_command_it_stops_instead_of_retrying() -> None:
    items = conversation(step(1), step(2, 1, "bash: steps.txt: Read-only file system"))
    assert failed_last_call(items) == "bash: steps.txt: Read-only file system"
    turn, kind = special_turn(items) or (None, "")
    assert kind == "stopped" and turn is not None and "Read-only file system" in turn.text
    assert special_turn(conversation(step(1))) is None
