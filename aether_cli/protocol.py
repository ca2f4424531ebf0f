"""The aether line protocol, version 1: typed events (child to aether) and commands
(aether to child), decoded from and encoded to JSON lines.

This module owns the mapping between wire dicts and Python types and nothing
else: it never touches processes or files (the JSON Schemas it ships are read
lazily, only by whoever asks for them). Decoding never raises on agent input:
a line that is not a protocol message becomes a `Text` event, and a message
with wrong field types becomes a `Text`-like `Invalid` event with a warning,
so a misbehaving agent can never crash the supervisor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import orjson

from aether_cli.constants import PROTOCOL_VERSION, TASK_STATUSES

ROLES = ("assistant", "user", "system")
# The largest count an agent may send (2**53 - 1: exact in JSON everywhere, and far
# above any real token count); a larger one makes its event malformed.
MAX_NUMBER = 2**53 - 1
BUDGET_LEVELS = ("soft", "checkpoint", "emergency")

EVENT_TYPES = (
    "hello", "message", "tool_call", "tool_result", "usage", "task", "memory", "checkpoint", "done", "log",
)  # fmt: skip
COMMAND_TYPES = ("start", "budget", "checkpoint_request", "rehydrate", "stop")


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every decoded event; `raw` is the wire dict as received (for the ledger)."""

    raw: dict[str, Any] = field(repr=False, compare=False)

    type = "event"


@dataclass(frozen=True, slots=True)
class Hello(Event):
    agent: str = ""
    model: str | None = None
    context_window: int | None = None
    capabilities: tuple[str, ...] = ()
    type = "hello"


@dataclass(frozen=True, slots=True)
class Message(Event):
    role: str = "assistant"
    text: str = ""
    type = "message"


@dataclass(frozen=True, slots=True)
class ToolCall(Event):
    id: str = ""
    name: str = ""
    input: dict[str, Any] = field(default_factory=dict)
    type = "tool_call"


@dataclass(frozen=True, slots=True)
class ToolResult(Event):
    id: str = ""
    output: Any = ""
    is_error: bool = False
    type = "tool_result"


@dataclass(frozen=True, slots=True)
class Usage(Event):
    context_tokens: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    type = "usage"


@dataclass(frozen=True, slots=True)
class TaskUpdate(Event):
    """Create or update one task; `fields` holds only what the agent sent."""

    id: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    type = "task"


@dataclass(frozen=True, slots=True)
class MemoryOp(Event):
    op: str = "add"
    key: str = ""
    text: str = ""
    pinned: bool = False
    priority: int = 0
    type = "memory"


@dataclass(frozen=True, slots=True)
class CheckpointEvent(Event):
    state: dict[str, Any] = field(default_factory=dict)
    type = "checkpoint"


@dataclass(frozen=True, slots=True)
class Done(Event):
    summary: str = ""
    type = "done"


@dataclass(frozen=True, slots=True)
class Log(Event):
    level: str = "info"
    text: str = ""
    type = "log"


@dataclass(frozen=True, slots=True)
class Text(Event):
    """A stdout line that is not a protocol message; shown, logged and counted."""

    text: str = ""
    type = "text"


@dataclass(frozen=True, slots=True)
class Unknown(Event):
    """A JSON object with an unknown `type`: kept in the ledger, otherwise ignored."""

    type = "unknown"


@dataclass(frozen=True, slots=True)
class Invalid(Event):
    """A known `type` with fields of the wrong shape: a counted protocol warning."""

    reason: str = ""
    text: str = ""
    type = "invalid"


# Events whose text counts as context.
COUNTED = (Message, ToolCall, ToolResult, Text)


class _Bad(Exception):
    pass


def _str(d: dict[str, Any], key: str, default: str | None = None, required: bool = False) -> str:
    v = d.get(key, default)
    if v is None:
        if required:
            raise _Bad(f"missing {key!r}")
        return "" if default is None else default
    if not isinstance(v, str):
        raise _Bad(f"{key!r} must be a string")
    return v


def _opt_int(d: dict[str, Any], key: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise _Bad(f"{key!r} must be a non-negative number")
    if v > MAX_NUMBER:
        # Out of range is malformed, never clamped: a count this large is a lie or a bug.
        raise _Bad(f"{key!r} is out of range (at most {MAX_NUMBER})")
    return int(v)


def _decode(d: dict[str, Any]) -> Event:
    t = d.get("type")
    if t == "message":
        role = _str(d, "role", "assistant")
        if role not in ROLES:
            raise _Bad(f"unknown role {role!r}")
        return Message(d, role=role, text=_str(d, "text", required=True))
    if t == "tool_call":
        inp = d.get("input", {})
        if inp is None:
            inp = {}
        if not isinstance(inp, dict):
            raise _Bad("'input' must be an object")
        return ToolCall(d, id=_str(d, "id"), name=_str(d, "name", required=True), input=inp)
    if t == "tool_result":
        is_error = d.get("is_error", False)
        if not isinstance(is_error, bool):
            raise _Bad("'is_error' must be a boolean")
        return ToolResult(d, id=_str(d, "id"), output=d.get("output", ""), is_error=is_error)
    if t == "usage":
        ctx = _opt_int(d, "context_tokens")
        if ctx is None:
            raise _Bad("missing 'context_tokens'")
        return Usage(
            d,
            context_tokens=ctx,
            input_tokens=_opt_int(d, "input_tokens"),
            output_tokens=_opt_int(d, "output_tokens"),
        )
    if t == "task":
        return _decode_task(d)
    if t == "memory":
        return _decode_memory(d)
    if t == "checkpoint":
        state = d.get("state")
        if not isinstance(state, dict):
            raise _Bad("'state' must be an object")
        return CheckpointEvent(d, state=state)
    if t == "done":
        return Done(d, summary=_str(d, "summary"))
    if t == "log":
        return Log(d, level=_str(d, "level", "info"), text=_str(d, "text"))
    if t == "hello":
        return _decode_hello(d)
    return Unknown(d)


def _decode_task(d: dict[str, Any]) -> TaskUpdate:
    tid = _str(d, "id", required=True)
    fields: dict[str, Any] = {}
    if "title" in d:
        fields["title"] = _str(d, "title")
    if "status" in d:
        status = _str(d, "status")
        if status not in TASK_STATUSES:
            raise _Bad(f"unknown task status {status!r}")
        fields["status"] = status
    if "progress" in d:
        p = d["progress"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p):
            raise _Bad("'progress' must be a number")
        fields["progress"] = min(1.0, max(0.0, float(p)))
    for key in ("next_action", "notes"):
        if key in d:
            fields[key] = _str(d, key)
    if "files" in d:
        files = d["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise _Bad("'files' must be a list of strings")
        fields["files"] = list(files)
    return TaskUpdate(d, id=tid, fields=fields)


def _decode_memory(d: dict[str, Any]) -> MemoryOp:
    op = _str(d, "op", "add")
    if op not in ("add", "remove"):
        raise _Bad(f"unknown memory op {op!r}")
    pinned = d.get("pinned", False)
    if not isinstance(pinned, bool):
        raise _Bad("'pinned' must be a boolean")
    prio = d.get("priority", 0)
    if isinstance(prio, bool) or not isinstance(prio, int) or abs(prio) > MAX_NUMBER:
        raise _Bad("'priority' must be an integer")
    return MemoryOp(
        d,
        op=op,
        key=_str(d, "key", required=True),
        text=_str(d, "text"),
        pinned=pinned,
        priority=prio,
    )


def _decode_hello(d: dict[str, Any]) -> Hello:
    caps = d.get("capabilities", [])
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise _Bad("'capabilities' must be a list of strings")
    return Hello(
        d,
        agent=_str(d, "agent"),
        model=d.get("model") if isinstance(d.get("model"), str) else None,
        context_window=_opt_int(d, "context_window"),
        capabilities=tuple(caps),
    )


def decode_obj(obj: Any, line: str) -> Event:
    """Turn one parsed JSON value into an Event; never raises."""
    if not isinstance(obj, dict):
        return Text({"type": "text", "text": line}, text=line)
    if not isinstance(obj.get("type"), str):
        return Text({"type": "text", "text": line}, text=line)
    try:
        return _decode(obj)
    except _Bad as exc:
        return Invalid(obj, reason=f"{obj.get('type')}: {exc}", text=line)


def decode_line(line: str) -> Event:
    """Decode one stdout line (already stripped of its newline); never raises."""
    s = line.strip()
    if not s.startswith("{"):
        return Text({"type": "text", "text": line}, text=line)
    try:
        obj = orjson.loads(s)
    except orjson.JSONDecodeError:
        return Text({"type": "text", "text": line}, text=line)
    return decode_obj(obj, line)


def counted_text(ev: Event) -> str:
    """The text of an event that counts as context (empty for uncounted events).

    Tool calls count their name and input; tool results their output, as the
    model would see them serialised.
    """
    if isinstance(ev, Message):
        return ev.text
    if isinstance(ev, ToolCall):
        return ev.name + " " + dumps_compact(ev.input)
    if isinstance(ev, ToolResult):
        out = ev.output
        return out if isinstance(out, str) else dumps_compact(out)
    if isinstance(ev, Text | Invalid):
        # A malformed event still reached the model as text.
        return ev.text
    return ""


def dumps_compact(obj: Any) -> str:
    """Compact JSON text of any value; non-JSON values become strings, never an error."""
    try:
        return orjson.dumps(obj, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        return str(obj)
    except RecursionError:  # an agent's value nested ~1000 deep: repr() itself gives up
        return "<value nested too deep to show>"


# --------------------------------------------------------------- commands


def _line(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def cmd_start(
    *,
    session: str,
    episode: int,
    objective: str,
    prompt: str,
    checkpoint: str | None,
    window: int,
    limit: int,
) -> bytes:
    """The first line of every launch."""
    return _line(
        {
            "type": "start",
            "protocol": PROTOCOL_VERSION,
            "session": session,
            "episode": episode,
            "objective": objective,
            "prompt": prompt,
            "checkpoint": checkpoint,
            "budget": {"window": window, "limit": limit},
        }
    )


def cmd_budget(*, used: int, window: int, level: str) -> bytes:
    """Advisory sent once per episode as each threshold is crossed."""
    return _line(
        {
            "type": "budget",
            "used": used,
            "window": window,
            "fraction": round(used / window, 4) if window else 0.0,
            "level": level,
        }
    )


def cmd_checkpoint_request(*, reason: str, deadline_ms: int) -> bytes:
    """Ask the agent for its own distilled state."""
    return _line({"type": "checkpoint_request", "reason": reason, "deadline_ms": deadline_ms})


def cmd_rehydrate(*, episode: int, prompt: str, checkpoint: str) -> bytes:
    """Tell an agent with the `rehydrate` capability to reset its context in place."""
    return _line({"type": "rehydrate", "episode": episode, "prompt": prompt, "checkpoint": checkpoint})


def cmd_stop(*, reason: str) -> bytes:
    """Ask the agent to finish and exit."""
    return _line({"type": "stop", "reason": reason})


def schema(message_type: str) -> dict[str, Any]:
    """The JSON Schema shipped for one message type (event or command)."""
    if message_type not in EVENT_TYPES + COMMAND_TYPES + ("text",):
        raise KeyError(message_type)
    from importlib import resources

    path = resources.files("aether_cli") / "schemas" / f"{message_type}.schema.json"
    return orjson.loads(path.read_bytes())
