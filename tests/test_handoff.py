"""The agent's handoff answer read back: fail closed on anything but one valid, small JSON object."""

from __future__ import annotations

import json
import time

import pytest
from corpus import leftovers, secret_cases

from aether_cli.handoff import MAX_DECODE_ATTEMPTS, extract_object, handoff_request, parse_handoff


def words(text: str) -> int:
    """A cheap, deterministic token count: whitespace-separated words."""
    return len(text.split())


GOOD = {
    "objective": "Append step K to steps.txt for K = 1..12",
    "progress": ["step 1 appended", "step 2 appended"],
    "next_actions": ["Check steps.txt ends with step 2, then append step 3"],
    "errors": ["grep: steps.txt: No such file or directory"],
    "files": ["steps.txt"],
    "resume_instructions": "Read steps.txt first.",
}


def parse(text: str, max_tokens: int = 1000) -> tuple[dict | None, str | None]:
    return parse_handoff(text, max_tokens=max_tokens, count=words)


def test_a_good_answer_becomes_a_checkpoint_state() -> None:
    state, reason = parse(json.dumps(GOOD))
    assert reason is None and state is not None
    assert state["objective"] == GOOD["objective"]
    assert state["progress"] == GOOD["progress"] and state["next_actions"] == GOOD["next_actions"]
    assert state["errors"] == GOOD["errors"] and state["resume_instructions"] == GOOD["resume_instructions"]
    assert state["state"] == {"files_modified": ["steps.txt"]}


def test_optional_fields_may_be_left_out_and_unknown_ones_are_dropped() -> None:
    answer = {k: GOOD[k] for k in ("objective", "progress", "next_actions")} | {"mood": "tired"}
    state, reason = parse(json.dumps(answer))
    assert reason is None and state is not None
    assert "mood" not in state and state["errors"] == [] and state["state"] == {"files_modified": []}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty answer"),
        ("   \n", "empty answer"),
        ("I have finished step 2 and will do step 3 next.", "answer is not JSON"),
        ('{"objective": "x", "progress": [', "answer is not JSON"),
        ("[1, 2, 3]", "answer is not JSON"),
        ('"just a string"', "answer is not JSON"),
        (json.dumps(GOOD) + "\n" + json.dumps(GOOD), "answer holds 2 JSON objects, expected one"),
        ('Here: {"a": 1} and also {"b": 2}', "answer holds 2 JSON objects, expected one"),
    ],
)
def test_what_is_not_one_json_object_is_refused(text: str, reason: str) -> None:
    assert parse(text) == (None, reason)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"objective": None}, "missing fields: objective"),
        ({"progress": None, "next_actions": None}, "missing fields: progress, next_actions"),
        ({"progress": "step 1 done"}, "progress is not a list of strings"),
        ({"next_actions": [1, 2]}, "next_actions is not a list of strings"),
        ({"errors": "none"}, "errors is not a list of strings"),
        ({"files": [{"path": "a"}]}, "files is not a list of strings"),
        ({"resume_instructions": ["read"]}, "resume_instructions is not a string"),
        ({"objective": 7}, "objective is not a string"),
        ({"objective": "  "}, "objective is empty"),
        ({"progress": [], "next_actions": [" "]}, "no progress and no next_actions"),
    ],
)
def test_missing_fields_and_wrong_types_are_refused(change: dict, reason: str) -> None:
    answer = {k: v for k, v in (GOOD | change).items() if v is not None}
    assert parse(json.dumps(answer)) == (None, reason)


def test_json_inside_prose_or_a_fence_is_taken_when_it_is_the_only_object() -> None:
    fenced = f"Here is my handoff:\n```json\n{json.dumps(GOOD, indent=2)}\n```\nGood luck!"
    state, reason = parse(fenced)
    assert reason is None and state is not None and state["progress"] == GOOD["progress"]
    # Braces inside the object's strings are part of it, not a second object.
    braced = GOOD | {"resume_instructions": "run `jq '{a}' x.json`, then {continue}"}
    state, reason = parse("Handoff: " + json.dumps(braced))
    assert reason is None and state is not None


def test_an_oversized_answer_fails_fast_before_any_parsing() -> None:
    huge = json.dumps(GOOD | {"progress": ["x" * 1000] * 1000})  # ~1 MB
    assert len(huge) > 1_000_000
    start = time.perf_counter()
    state, reason = parse(huge)
    assert state is None and reason is not None and reason.startswith("answer too big: ")
    assert time.perf_counter() - start < 0.5
    # Under the character cap but over the token budget: the validator's reason.
    state, reason = parse(json.dumps(GOOD | {"progress": ["one more step done"] * 100}), max_tokens=100)
    assert state is None and reason is not None and reason.startswith("oversized: ")


def test_prose_full_of_braces_is_refused_without_a_quadratic_scan() -> None:
    text = '{"unterminated": "' + "{ " * (MAX_DECODE_ATTEMPTS * 20)
    start = time.perf_counter()
    assert extract_object(text) == (None, "answer is not JSON (too many braces to scan)")
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("case", secret_cases()[:40:4], ids=lambda c: c.id)
def test_a_secret_in_the_answer_never_reaches_the_state(case) -> None:
    answer = GOOD | {
        "errors": [f"deploy failed: {case.text}"],
        "progress": [*GOOD["progress"], case.text],
        "resume_instructions": case.text,
    }
    state, reason = parse(json.dumps(answer), max_tokens=5000)
    assert reason is None and state is not None
    assert not leftovers(json.dumps(state), case.secrets), case.text


def test_the_request_asks_for_the_fields_the_parser_reads() -> None:
    text = handoff_request(max_tokens=1234, memory_dir=None)
    for key in ("objective", "progress", "next_actions", "errors", "files", "resume_instructions"):
        assert f'"{key}"' in text
    assert "1234" in text and "JSON" in text and "$" not in text
