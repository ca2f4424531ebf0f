"""Gemini CLI's `--output-format stream-json` stream (from its documentation; not observed here).

Lines are `init`, `message` (assistant text streams as `delta: true` chunks),
`tool_use`, `tool_result`, `error` and `result`, each with a `type` and a
`timestamp`. The `result` stats are totals for the run, not the context size.
See /work/shared/formats/README.md.
"""

from __future__ import annotations

from typing import Any

from aether_cli import protocol as P
from aether_cli.adapters.base import (
    Adapter,
    get_dict,
    get_str,
    hello,
    load_object,
    log,
    message,
    outcome_events,
    stream_started,
    text_event,
    tool_call,
    tool_result,
    unknown,
)

AGENT = "gemini"
# Deltas are joined into one message; past this size the part so far is
# emitted, so a reply that never ends cannot grow the buffer without bound.
MAX_BUFFER_CHARS = 64 * 1024


def error_text(value: Any) -> str | None:
    """The message of an `error` field: a string, or an object's `message`."""
    if isinstance(value, str):
        return value
    return get_str(value, "message")


class GeminiAdapter(Adapter):
    """Gemini CLI stream-json lines as protocol events."""

    name = "gemini"

    def __init__(self) -> None:
        """Start with an empty delta buffer."""
        self._deltas: list[str] = []
        self._buffered = 0
        self._last_message = ""

    def _feed(self, line: str) -> list[P.Event]:
        if not line.strip():
            return []
        obj = load_object(line)
        if obj is not None and self._is_delta(obj):
            text = obj["content"]
            self._deltas.append(text)
            self._buffered += len(text)
            return self._flush() if self._buffered >= MAX_BUFFER_CHARS else []
        # Anything else closes the streamed message first, so events keep their order.
        events = self._flush()
        if obj is None:
            events.append(text_event(line))
        else:
            events.extend(self._event(obj) or [unknown(obj)])
        return events

    def _finish(self) -> list[P.Event]:
        return self._flush()

    @staticmethod
    def _is_delta(obj: dict[str, Any]) -> bool:
        return (
            obj.get("type") == "message"
            and obj.get("delta") is True
            and obj.get("role") == "assistant"
            and isinstance(obj.get("content"), str)
        )

    def _flush(self) -> list[P.Event]:
        if not self._deltas:
            return []
        text = "".join(self._deltas)
        self._deltas, self._buffered = [], 0
        self._last_message = text
        return [message("assistant", text)]

    def _event(self, obj: dict[str, Any]) -> list[P.Event]:
        kind = obj.get("type")
        if kind == "init":
            model = get_str(obj, "model")
            session = get_str(obj, "session_id")
            events: list[P.Event] = [stream_started(session, model)] if session else []
            return [*events, hello(AGENT, model)]
        if kind == "message":
            role, text = get_str(obj, "role"), get_str(obj, "content")
            if role not in P.ROLES or text is None:
                return []
            if role == "assistant":
                self._last_message = text
            return [message(role, text)]
        if kind == "tool_use":
            call_id, name = get_str(obj, "tool_id"), get_str(obj, "tool_name")
            if call_id is None or not name:
                return []
            return [tool_call(call_id, name, get_dict(obj, "parameters") or {})]
        if kind == "tool_result":
            return self._tool_result(obj)
        if kind == "error":
            text = get_str(obj, "message")
            if not text:
                return []
            return [log("error" if obj.get("severity") == "error" else "warning", text)]
        if kind == "result":
            return self._result(obj)
        return []

    def _tool_result(self, obj: dict[str, Any]) -> list[P.Event]:
        call_id = get_str(obj, "tool_id")
        if call_id is None:
            return []
        is_error = obj.get("status") != "success"
        output = obj.get("output")
        if is_error:
            output = error_text(obj.get("error")) or output
        if output is None:
            output = ""
        return [tool_result(call_id, output, is_error)]

    def _result(self, obj: dict[str, Any]) -> list[P.Event]:
        status = get_str(obj, "status") or ""
        ok = status == "success"
        error = obj.get("error")
        failure = error_text(error) or ""
        reason = status if ok else (get_str(error, "type") or status or "error")
        text = self._last_message if ok else failure
        extra: dict[str, Any] = {"status": status}
        stats = get_dict(obj, "stats")
        if stats is not None:
            # Totals for the run: kept for the ledger, never a context size.
            extra["stats"] = stats
        return outcome_events(ok, reason, text, error_text=f"gemini ended: {reason}", extra=extra)
