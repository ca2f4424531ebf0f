"""Events in and out of the engine: the agent's, checked at the door, and aether's own.

A process agent's events arrive as JSON lines, and `protocol.decode_obj` turns
a malformed one into a warning, because a misbehaving agent must not stop the
supervisor. An in-process caller is a program that can be told at once: here
each event is built as the same wire dict a process would print, decoded by
the same `protocol` rules, and refused with an `EventError` (a `ValueError`
and an `AetherError`) naming the field, so a wrong type fails at the call that
made it, never deep inside a checkpoint. Values must be JSON: they go to the
ledger and, through the distiller, into `.memory/`.

`AgentCalls` is the engine's side of it: one typed method per event
(`message`, `tool_call`, `tool_result`, `task`, `fact`, `forget`, `usage`,
`log`, `event`), each building its event here and handing it to the engine's
`_take`; the engine mixes them in.

Out: `EngineEvent`, one of aether's own events (a checkpoint written, a
threshold crossed…), and `Subscribers`, the callbacks that get them.

Knows nothing of budgets, checkpoints or processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from aether_cli import protocol as P
from aether_cli.errors import AetherError

# Event types the engine takes through `Engine.event`; the others have their own calls.
ACCEPTED = ("message", "tool_call", "tool_result", "task", "memory", "usage", "log")
ELSEWHERE = {
    "checkpoint": "call Engine.checkpoint(state) instead",
    "done": "call Engine.done(summary) instead",
    "hello": "give the window to Engine.open(window=...) instead",
}


class EventError(AetherError, ValueError):
    """An event a Python agent handed the engine has a wrong type or value."""


def json_value(value: Any, what: str) -> Any:
    """`value` as plain JSON data (a copy), or EventError naming `what`."""
    try:
        return orjson.loads(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise EventError(f"{what} must be JSON data (dict, list, str, number, bool, None): {exc}") from None


def decode(wire: dict[str, Any]) -> P.Event:
    """The protocol event of `wire`, or EventError with the protocol's reason."""
    kind = wire.get("type")
    if not isinstance(kind, str):
        raise EventError(f"an event needs a string 'type', one of {', '.join(ACCEPTED)}")
    if kind in ELSEWHERE:
        raise EventError(f"a {kind!r} event is not recorded with Engine.event: {ELSEWHERE[kind]}")
    if kind not in ACCEPTED:
        raise EventError(f"unknown event type {kind!r}: one of {', '.join(ACCEPTED)}")
    data = json_value(wire, f"the {kind} event")
    ev = P.decode_obj(data, "")
    if isinstance(ev, P.Invalid):
        raise EventError(f"bad {ev.reason}")
    return ev


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that were given (not None)."""
    return {k: v for k, v in fields.items() if v is not None}


def _key(key: Any) -> None:
    if not isinstance(key, str) or not key.strip():
        raise EventError("a fact's key must be a non-empty string")


def new_message(text: str, role: str) -> P.Event:
    """A message of `role` (assistant, user or system)."""
    return decode({"type": "message", "role": role, "text": text})


def new_tool_call(call_id: str, name: str, data: dict[str, Any] | None) -> P.Event:
    """A tool call with its input (an object)."""
    if not isinstance(call_id, str) or not call_id:
        raise EventError("a tool call's id must be a non-empty string")
    return decode({"type": "tool_call", "id": call_id, "name": name, "input": {} if data is None else data})


def new_tool_result(call_id: str, output: Any, is_error: bool) -> P.Event:
    """The result of the tool call `call_id`."""
    if not isinstance(call_id, str) or not call_id:
        raise EventError("a tool result's id must be the non-empty string id of its call")
    return decode({"type": "tool_result", "id": call_id, "output": output, "is_error": is_error})


def new_task(task_id: str, **fields: Any) -> P.Event:
    """A task's new state: only the fields given change."""
    if not isinstance(task_id, str):
        raise EventError("a task id must be a string")
    return decode({"type": "task", "id": task_id, **_given(**fields)})


def new_fact(key: str, text: str, pinned: bool, priority: int) -> P.Event:
    """A fact for the project memory (committed at the next checkpoint)."""
    _key(key)
    if not isinstance(text, str) or not text.strip():
        raise EventError("a fact's text must be a non-empty string")
    return decode(
        {"type": "memory", "op": "add", "key": key, "text": text, "pinned": pinned, "priority": priority}
    )


def new_forget(key: str) -> P.Event:
    """Remove the fact `key` from the project memory (at the next checkpoint)."""
    _key(key)
    return decode({"type": "memory", "op": "remove", "key": key})


def new_usage(context_tokens: int) -> P.Event:
    """The model's own count of its context."""
    if isinstance(context_tokens, bool) or not isinstance(context_tokens, int):
        raise EventError("context_tokens must be an int")
    return decode({"type": "usage", "context_tokens": context_tokens})


def new_log(text: str, level: str) -> P.Event:
    """A log line; "error" and "critical" ones count as errors."""
    return decode({"type": "log", "level": level, "text": text})


@dataclass(frozen=True)
class EngineEvent:
    """One of aether's own events: `kind` and its figures.

    Kinds: "episode" (episode, checkpoint, prompt_tokens), "threshold" (level,
    used, window, fraction), "wanted" (trigger, urgent), "checkpoint" (id,
    trigger, distiller, note, episode, episode_tokens, checkpoint_tokens),
    "notice" (text, kind), "end" (status, checkpoint)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


Callback = Callable[[EngineEvent], None]


class Subscribers:
    """The callbacks of aether's own events, called in the order they subscribed."""

    def __init__(self) -> None:
        self._callbacks: list[Callback] = []

    def add(self, callback: Callback) -> Callable[[], None]:
        """Subscribe `callback`; returns the function that unsubscribes it."""
        if not callable(callback):
            raise EventError(f"subscribe takes a callable, got {type(callback).__name__}")
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    def emit(self, event: EngineEvent) -> None:
        """Call every callback with `event` (one may unsubscribe itself meanwhile)."""
        for callback in list(self._callbacks):
            callback(event)


class _TaskIds(Protocol):
    def valid_task_id(self, task_id: str) -> bool: ...


class AgentCalls:
    """The calls a Python agent records its doings with (mixed into `engine.Engine`)."""

    store: _TaskIds
    _calls: int = 0

    def _take(self, ev: P.Event) -> None:
        raise NotImplementedError

    def message(self, text: str, role: str = "assistant") -> None:
        """A message of the agent ("assistant"), the user or the system."""
        self._take(new_message(text, role))

    def tool_call(self, name: str, input: dict[str, Any] | None = None, *, id: str | None = None) -> str:
        """A tool call with its input; returns its id (`id`, else a new one) for `tool_result`."""
        if id is None:
            id = f"call_{self._calls + 1}"
        self._take(new_tool_call(id, name, input))
        self._calls += 1
        return id

    def tool_result(self, id: str, output: Any, *, is_error: bool = False) -> None:
        """The result of the tool call `id` (any JSON data)."""
        self._take(new_tool_result(id, output, is_error))

    def task(
        self, id: str, *, status: str | None = None, title: str | None = None,
        progress: float | None = None, next_action: str | None = None, notes: str | None = None,
        files: list[str] | None = None,
    ) -> None:
        """Create or update a task (status: pending, in_progress, blocked, done…); only the
        fields given change."""
        self._task_id(id)
        self._take(new_task(
            id, status=status, title=title, progress=progress, next_action=next_action,
            notes=notes, files=files,
        ))  # fmt: skip

    def fact(self, key: str, text: str, *, pinned: bool = False, priority: int = 0) -> None:
        """A fact for the project memory, committed at the next checkpoint; a pinned one is in
        every prompt."""
        self._take(new_fact(key, text, pinned, priority))

    def forget(self, key: str) -> None:
        """Remove the fact `key` from the project memory at the next checkpoint."""
        self._take(new_forget(key))

    def usage(self, context_tokens: int) -> None:
        """The model's own count of its context: it replaces aether's estimate."""
        self._take(new_usage(context_tokens))

    def log(self, text: str, level: str = "info") -> None:
        """A log line; "error" and "critical" ones are kept as errors in the checkpoint."""
        self._take(new_log(text, level))

    def event(self, event: dict[str, Any]) -> None:
        """A protocol v1 event as a dict (message, tool_call, tool_result, task, memory, usage, log)."""
        if not isinstance(event, dict):
            raise EventError(f"an event is a dict, got {type(event).__name__}")
        ev = decode(event)
        if isinstance(ev, P.TaskUpdate):
            self._task_id(ev.id)
        self._take(ev)

    def _task_id(self, task_id: Any) -> None:
        """Refuse a task id that cannot name a file under `.memory/task_states/`."""
        if isinstance(task_id, str) and not self.store.valid_task_id(task_id):
            raise EventError(f"bad task id {task_id[:80]!r}: ids are letters, digits, _ - . (max 64)")
