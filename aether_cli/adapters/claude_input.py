"""What aether writes on Claude Code's stdin in `--input-format stream-json` mode.

Three messages, each one JSON line as bytes: a user message (the prompt, the
handoff request, anything else aether says), and the control request the
Claude Agent SDK uses to interrupt a running turn. Each carries an id aether
can recognise when Claude echoes it back (`--replay-user-messages` echoes a
user message with its `uuid`; a `control_response` names its `request_id`),
so the adapter tells aether's own messages and acknowledgements apart from
the stream alone, with no state shared between the writer and the reader.

This module knows nothing of processes, pipes or episodes: it builds bytes
and reads ids back.
"""

from __future__ import annotations

import uuid

import orjson

# Message kinds, spelt in the first group of the message's uuid (8 hex digits), so that
# a replayed line says which of aether's messages it is. A random uuid starts the same
# way once in 2**32; the adapter only looks at lines Claude marks as replays.
UUID_PREFIX = "ae7e"
KIND_CODES = {"prompt": "0001", "handoff": "0002", "message": "0003"}
_KIND_BY_GROUP = {UUID_PREFIX + code: kind for kind, code in KIND_CODES.items()}
INTERRUPT_ID_PREFIX = "aether_interrupt_"


def message_uuid(kind: str) -> str:
    """A fresh uuid whose first group names `kind` (one of KIND_CODES)."""
    code = KIND_CODES[kind]
    return UUID_PREFIX + code + str(uuid.uuid4())[8:]


def message_kind(message_id: str | None) -> str | None:
    """The kind of aether's message with this uuid, or None when it is not one of aether's."""
    if not message_id or len(message_id) != 36:
        return None
    return _KIND_BY_GROUP.get(message_id[:8])


def user_message(text: str, *, kind: str = "message") -> bytes:
    """One user message as a stream-json input line (newline included)."""
    line = {
        "type": "user",
        "uuid": message_uuid(kind),
        "session_id": "",
        "parent_tool_use_id": None,
        "message": {"role": "user", "content": text},
    }
    return orjson.dumps(line) + b"\n"


def prompt_message(text: str) -> bytes:
    """The launch's prompt, sent as the first user message."""
    return user_message(text, kind="prompt")


def handoff_message(text: str) -> bytes:
    """The handoff request, sent once the interrupted turn has ended."""
    return user_message(text, kind="handoff")


def interrupt_request() -> tuple[str, bytes]:
    """(request id, line) of a control request that ends the running turn.

    Claude answers with a `control_response` naming the id, whether a turn was
    running or not; a running turn then ends with a `result` line.
    """
    request_id = INTERRUPT_ID_PREFIX + uuid.uuid4().hex[:16]
    line = {"type": "control_request", "request_id": request_id, "request": {"subtype": "interrupt"}}
    return request_id, orjson.dumps(line) + b"\n"


def is_interrupt_id(request_id: str | None) -> bool:
    """Whether `request_id` is one of aether's interrupt requests."""
    return bool(request_id) and str(request_id).startswith(INTERRUPT_ID_PREFIX)
