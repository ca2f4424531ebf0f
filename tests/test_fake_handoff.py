"""The fake Anthropic server's handoff answer: built from the conversation it is sent, nothing else."""

from __future__ import annotations

import json

from fakes.fake_anthropic import asks_for_handoff, handoff_answer

from aether_cli.handoff import handoff_request, parse_handoff


def conversation(*, cut: bool, handoff_text: str) -> list[dict]:
    def use(cid: str, k: int) -> dict:
        block = {
            "type": "tool_use",
            "id": cid,
            "name": "Bash",
            "input": {"command": f'echo "step {k}" >> steps.txt'},
        }
        return {"role": "assistant", "content": [{"type": "text", "text": f"Step {k}."}, block]}

    def res(cid: str, error: bool, text: str) -> dict:
        return {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": cid, "is_error": error, "content": text}],
        }

    msgs = [{"role": "user", "content": "Append steps 1..5 to steps.txt."}, use("a", 1), res("a", False, "")]
    msgs += [use("b", 2), res("b", True, "bash: steps.txt: Permission denied")]
    msgs += [use("c", 3)]
    if cut:
        msgs += [res("c", True, "The user doesn't want to proceed with this tool use.")]
    return [*msgs, {"role": "user", "content": [{"type": "text", "text": handoff_text}]}]


def test_a_handoff_request_is_recognised_by_its_words() -> None:
    request = handoff_request(max_tokens=500, memory_dir=None)
    assert asks_for_handoff(conversation(cut=True, handoff_text=request))
    assert not asks_for_handoff(conversation(cut=True, handoff_text="Please continue with the steps."))
    assert not asks_for_handoff([])


def test_the_answer_states_what_the_conversation_shows() -> None:
    request = handoff_request(max_tokens=500, memory_dir=None)
    answer = handoff_answer(conversation(cut=True, handoff_text=request))
    assert answer["objective"] == "Append steps 1..5 to steps.txt."
    assert answer["progress"] == ['Done: echo "step 1" >> steps.txt']
    assert [a.split(": ", 1)[1] for a in answer["next_actions"][:2]] == [
        'echo "step 2" >> steps.txt',
        'echo "step 3" >> steps.txt',
    ]
    # A failure is an error; a call an interrupt stopped is not, it is redone.
    assert answer["errors"] == ["bash: steps.txt: Permission denied"] and answer["files"] == ["steps.txt"]
    # A call with no result at all is redone too.
    unanswered = handoff_answer(conversation(cut=False, handoff_text=request))
    assert 'echo "step 3" >> steps.txt' in unanswered["next_actions"][1]
    state, reason = parse_handoff(json.dumps(answer), max_tokens=500, count=lambda t: len(t.split()))
    assert reason is None and state is not None
