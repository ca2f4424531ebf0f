"""The agent's own handoff: the request aether sends, and the answer it accepts.

When a threshold stops an agent that can still take a message (Claude Code in
stream-json input mode), aether asks it for a handoff: the state it holds in
its context, as one JSON object. This module renders that request from
`templates/handoff.md` and reads the answer back, failing closed: an answer
that is not exactly one JSON object, too big, missing a field or with a field
of the wrong type is refused with a one-line reason, and the caller falls back
to rules. An accepted answer is shaped like a protocol `checkpoint` state and
redacted here already (the store redacts again; a secret the agent repeats
must never reach a checkpoint, even through a path that forgot to).

It knows nothing of processes, adapters or stores: text in, state or reason out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aether_cli.distill import Counter, validate_agent_state
from aether_cli.prompt_template import load_template, render
from aether_cli.redact import redact_obj

TEMPLATE = "handoff.md"
REQUIRED = ("objective", "progress", "next_actions")
LIST_FIELDS = ("progress", "next_actions", "errors", "files")
# An answer this many times its token budget in characters cannot fit the budget
# (cl100k averages ~4 characters a token), and is refused before any parsing or counting.
CHARS_PER_TOKEN_CAP = 16
MIN_CHAR_CAP = 16 * 1024
# Each "{" in the text is one attempt to decode an object from there; prose full of
# braces must not make the scan quadratic.
MAX_DECODE_ATTEMPTS = 200


def handoff_request(*, max_tokens: int, memory_dir: Path | None) -> str:
    """The handoff request, from `templates/handoff.md` (overridable in `.memory/templates/`)."""
    return render(
        load_template(TEMPLATE, memory_dir),
        {"max_tokens": str(max_tokens)},
        name=TEMPLATE,
    )


def _objects(text: str) -> tuple[list[Any], bool]:
    """The JSON objects that stand at the top level of `text`, and whether the scan was cut short."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    i, attempts = text.find("{"), 0
    while i != -1:
        attempts += 1
        if attempts > MAX_DECODE_ATTEMPTS:
            return found, True
        try:
            value, end = decoder.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        found.append(value)
        i = text.find("{", end)
    return found, False


def extract_object(text: str) -> tuple[dict[str, Any] | None, str | None]:
    """The one JSON object in `text` (prose or a code fence around it tolerated); else the reason."""
    if not text.strip():
        return None, "empty answer"
    found, cut = _objects(text)
    if cut:
        return None, "answer is not JSON (too many braces to scan)"
    if not found:
        return None, "answer is not JSON"
    if len(found) > 1:
        return None, f"answer holds {len(found)} JSON objects, expected one"
    value = found[0]
    if not isinstance(value, dict):
        return None, "answer is JSON but not an object"
    return value, None


def _type_problem(answer: dict[str, Any]) -> str | None:
    missing = [key for key in REQUIRED if key not in answer]
    if missing:
        return "missing fields: " + ", ".join(missing)
    for key in LIST_FIELDS:
        value = answer.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"{key} is not a list of strings"
    if not isinstance(answer.get("resume_instructions", ""), str):
        return "resume_instructions is not a string"
    return None


def parse_handoff(text: str, *, max_tokens: int, count: Counter) -> tuple[dict[str, Any] | None, str | None]:
    """(state, None) for a usable handoff answer, else (None, reason in one line).

    The state has the shape of a protocol `checkpoint` state: objective,
    progress, next_actions, errors, resume_instructions, and the files under
    `state.files_modified`; keys the template did not ask for are dropped.
    It passed `distill.validate_agent_state` and is redacted.
    """
    cap = max(MIN_CHAR_CAP, max_tokens * CHARS_PER_TOKEN_CAP)
    if len(text) > cap:
        return None, f"answer too big: {len(text)} characters > {cap}"
    answer, reason = extract_object(text)
    if answer is None:
        return None, reason
    problem = _type_problem(answer)
    if problem is not None:
        return None, problem
    state: dict[str, Any] = {
        "objective": answer["objective"],
        "progress": answer["progress"],
        "next_actions": answer["next_actions"],
        "errors": answer.get("errors", []),
        "resume_instructions": answer.get("resume_instructions", ""),
        "state": {"files_modified": answer.get("files", [])},
    }
    problem = validate_agent_state(state, max_tokens=max_tokens, count=count)
    if problem is not None:
        return None, problem
    redacted: dict[str, Any] = redact_obj(state)
    return redacted, None
