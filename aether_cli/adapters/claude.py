"""Claude Code's `--output-format stream-json --verbose` stream.

Lines are `system` (init, status, compact_boundary, permission_denied…),
`assistant` (one content block per line, several lines per API message),
`user` (tool results, the user's own turns) and `result` (one per turn; its
keys come in no fixed order). See /work/shared/formats/README.md.

With `--input-format stream-json --replay-user-messages` (aether owns stdin,
see `claude_input`), the stream also carries `control_response` lines and
aether's own user messages echoed back; from those alone each `result` is
told apart as the end of a work turn, of a turn aether interrupted, or of the
handoff turn (a `TurnEnd` event with its phase). What aether sends, and when,
is not this module's business.
"""

from __future__ import annotations

import re
from typing import Any

from aether_cli import protocol as P
from aether_cli.adapters import claude_input
from aether_cli.adapters.base import (
    TURN_HANDOFF,
    TURN_INTERRUPTED,
    TURN_WORK,
    Ack,
    Adapter,
    Compaction,
    TurnEnd,
    get_dict,
    get_int,
    get_list,
    get_str,
    hello,
    load_object,
    log,
    message,
    one_line,
    outcome_events,
    stream_started,
    task_update,
    text_event,
    todo_task_id,
    tool_call,
    tool_result,
    unknown,
)

AGENT = "claude"
TODO_TOOL = "TodoWrite"
TODO_STATUS = {"pending": "pending", "in_progress": "in_progress", "completed": "done"}
# Usage fields whose sum is what the model had in context when it answered.
CONTEXT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
# Scalar `result` fields worth keeping in the ledger beside the verdict.
RESULT_EXTRAS = ("subtype", "terminal_reason", "num_turns", "total_cost_usd", "api_error_status")
# Claude's own marker of an interrupted turn, written as a user turn: not the user's words.
INTERRUPT_MARKER = re.compile(r"^\[Request interrupted by user[^\]]*\]$")
# terminal_reason of a turn an interrupt cut (2.1.332: aborted_tools, aborted_streaming).
ABORTED_PREFIX = "aborted"
# tool_result_meta's mark on a call that an interrupt stopped (before or while it ran).
REJECTED_KIND = "user-rejected"


def todo_updates(inp: dict[str, Any]) -> list[P.Event]:
    """One task update per item of a TodoWrite call's `todos`."""
    events: list[P.Event] = []
    for todo in get_list(inp, "todos") or []:
        content = get_str(todo, "content")
        if not content or not content.strip():
            continue
        fields: dict[str, Any] = {"title": content}
        status = TODO_STATUS.get(get_str(todo, "status") or "")
        if status:
            fields["status"] = status
        active = get_str(todo, "activeForm")
        if status == "in_progress" and active:
            fields["next_action"] = active
        events.append(task_update(todo_task_id(content), fields))
    return events


def block_text(content: Any) -> str:
    """Text of a tool result's content: a string, or the text blocks of a list, joined."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(t for b in content if (t := get_str(b, "text")) is not None)
    return ""


def permission_text(obj: dict[str, Any]) -> str:
    """A one-line description of a `system/permission_denied` line."""
    tool = get_str(obj, "tool_name") or get_str(obj, "tool") or "a tool"
    why = next(
        (v for key in ("message", "reason", "decision_reason") if (v := get_str(obj, key))),
        "",
    )
    return one_line(f"permission denied for {tool}" + (f": {why}" if why else ""))


def turn_end(phase: str, ok: bool, reason: str, text: str, obj: dict[str, Any]) -> TurnEnd:
    """The TurnEnd of a `result` line: its phase, verdict, final text and what the turn cost."""
    ms = get_int(obj, "duration_ms")
    seconds = ms / 1000 if ms is not None else None
    usage = get_dict(obj, "usage")
    read = [get_int(usage, key) for key in CONTEXT_FIELDS]
    input_tokens = sum(n for n in read if n is not None) if any(n is not None for n in read) else None
    output_tokens = get_int(usage, "output_tokens")
    raw = {
        "type": "turn_end", "phase": phase, "ok": ok, "reason": reason, "text": text,
        "seconds": seconds, "input_tokens": input_tokens, "output_tokens": output_tokens,
    }
    return TurnEnd(
        raw, phase=phase, ok=ok, reason=reason, text=text, seconds=seconds,
        input_tokens=input_tokens, output_tokens=output_tokens,
    )


class ClaudeAdapter(Adapter):
    """Claude Code stream-json lines as protocol events."""

    name = "claude"
    usage_is_context = True

    def __init__(self) -> None:
        """Start with no model and no usage seen."""
        self._model: str | None = None
        self._last_usage: tuple[str | None, int] | None = None
        # An interrupt of aether's was acknowledged: calls it stopped stay open (interrupted).
        self._interrupt_acked = False
        # aether's handoff request was echoed: the next `result` ends the handoff turn.
        self._handoff_turn = False

    def _feed(self, line: str) -> list[P.Event]:
        if not line.strip():
            return []
        obj = load_object(line)
        if obj is None:
            return [text_event(line)]
        kind = obj.get("type")
        if kind == "assistant":
            events = self._assistant(obj)
        elif kind == "user":
            events = self._user(obj)
        elif kind == "result":
            events = self._result(obj)
        elif kind == "system":
            events = self._system(obj)
        elif kind == "control_response":
            events = self._control(obj)
        else:
            events = []
        return events or [unknown(obj)]

    # ------------------------------------------------------------ lines

    def _system(self, obj: dict[str, Any]) -> list[P.Event]:
        subtype = obj.get("subtype")
        if subtype == "init":
            self._model = get_str(obj, "model") or self._model
            events: list[P.Event] = []
            session = get_str(obj, "session_id")
            if session:
                events.append(stream_started(session, self._model))
            events.append(hello(AGENT, self._model))
            return events
        if subtype == "compact_boundary":
            meta = get_dict(obj, "compact_metadata") or {}
            trigger = get_str(meta, "trigger") or ""
            pre, post = get_int(meta, "pre_tokens"), get_int(meta, "post_tokens")
            raw = {"type": "compaction", "trigger": trigger, "pre_tokens": pre, "post_tokens": post}
            return [Compaction(raw, trigger=trigger, pre_tokens=pre, post_tokens=post)]
        if subtype == "permission_denied":
            return [log("error", permission_text(obj))]
        return []

    def _assistant(self, obj: dict[str, Any]) -> list[P.Event]:
        msg = get_dict(obj, "message") or {}
        events: list[P.Event] = []
        # A subagent's (Task tool) lines carry the subagent's context size, not ours.
        if not get_str(obj, "parent_tool_use_id"):
            usage = self._usage(get_str(msg, "id"), get_dict(msg, "usage"))
            if usage is not None:
                # Before the content: the figure is the context the model read
                # before writing this block, so the block's own tokens add on top.
                events.append(usage)
        content = msg.get("content")
        if isinstance(content, str):
            events.append(message("assistant", content))
            return events
        for block in content if isinstance(content, list) else []:
            kind = get_str(block, "type")
            if kind == "text":
                text = get_str(block, "text")
                if text is not None:
                    events.append(message("assistant", text))
            elif kind == "tool_use":
                events.extend(self._tool_use(block))
            # thinking / redacted_thinking: not shown, not counted.
        return events

    def _usage(self, msg_id: str | None, usage: dict[str, Any] | None) -> P.Usage | None:
        if usage is None:
            return None
        parts = [get_int(usage, key) for key in CONTEXT_FIELDS]
        if all(p is None for p in parts):
            return None
        ctx = sum(p for p in parts if p is not None)
        # Synthetic messages (an API error shown as text) report all zeros: a
        # real request always has input, and zero would wipe the budget.
        if ctx == 0:
            return None
        # Every content block of one API message repeats the same usage; only
        # the first may reset the count, or the blocks between would be lost.
        if self._last_usage == (msg_id, ctx):
            return None
        self._last_usage = (msg_id, ctx)
        out = get_int(usage, "output_tokens")
        raw = {"type": "usage", "context_tokens": ctx, "input_tokens": parts[0], "output_tokens": out}
        return P.Usage(raw, context_tokens=ctx, input_tokens=parts[0], output_tokens=out)

    def _tool_use(self, block: dict[str, Any]) -> list[P.Event]:
        call_id, name = get_str(block, "id"), get_str(block, "name")
        if call_id is None or not name:
            return []
        inp = get_dict(block, "input") or {}
        events: list[P.Event] = [tool_call(call_id, name, inp)]
        if name == TODO_TOOL:
            events.extend(todo_updates(inp))
        return events

    def _control(self, obj: dict[str, Any]) -> list[P.Event]:
        response = get_dict(obj, "response") or {}
        request_id = get_str(response, "request_id") or ""
        ok = get_str(response, "subtype") == "success"
        error = "" if ok else one_line(get_str(response, "error") or "control request failed")
        what = "interrupt" if claude_input.is_interrupt_id(request_id) else "control"
        if what == "interrupt" and ok:
            self._interrupt_acked = True
        raw = {"type": "ack", "what": what, "id": request_id, "ok": ok, "error": error}
        return [Ack(raw, what=what, id=request_id, ok=ok, error=error)]

    def _replay(self, obj: dict[str, Any]) -> list[P.Event] | None:
        """aether's own message echoed back: an Ack (not the user's words), else None."""
        message_id = get_str(obj, "uuid")
        kind = claude_input.message_kind(message_id)
        if kind is None or message_id is None:
            return None
        if kind == "handoff":
            self._handoff_turn = True
        raw = {"type": "ack", "what": kind, "id": message_id, "ok": True, "error": ""}
        return [Ack(raw, what=kind, id=message_id)]

    def _rejected_ids(self, obj: dict[str, Any]) -> set[str]:
        """Ids of the calls an acknowledged interrupt stopped (they stay open: interrupted)."""
        if not self._interrupt_acked:
            return set()
        return {
            call_id
            for meta in get_list(obj, "tool_result_meta") or []
            if get_str(meta, "non_execution_kind") == REJECTED_KIND and (call_id := get_str(meta, "id"))
        }

    def _user(self, obj: dict[str, Any]) -> list[P.Event]:
        if obj.get("isReplay") is True:
            replayed = self._replay(obj)
            if replayed is not None:
                return replayed
        msg = get_dict(obj, "message") or {}
        # Claude Code's compaction summary arrives as a synthetic user turn: it is
        # context, but not the user's words, so it must not become a "constraint" of
        # the checkpoint. Claude reports its own context size, so nothing is lost by
        # logging it instead of counting it.
        content = msg.get("content")
        if obj.get("isSynthetic") is True:
            text = content if isinstance(content, str) else block_text(content)
            return [P.Log({"type": "log", "level": "info", "text": text}, level="info", text=text)]
        role = "user"
        if isinstance(content, str):
            return [message(role, content)]
        events: list[P.Event] = []
        rejected = self._rejected_ids(obj)
        for block in content if isinstance(content, list) else []:
            kind = get_str(block, "type")
            if kind == "tool_result":
                call_id = get_str(block, "tool_use_id")
                if call_id in rejected:
                    events.append(log("info", f"tool call {call_id} stopped by aether's interrupt"))
                elif call_id is not None:
                    is_error = block.get("is_error") is True
                    events.append(tool_result(call_id, block_text(block.get("content")), is_error))
            elif kind == "text":
                said = get_str(block, "text")
                if said is not None and INTERRUPT_MARKER.match(said.strip()):
                    events.append(log("info", said.strip()))
                elif said is not None:
                    events.append(message(role, said))
        return events

    def _result(self, obj: dict[str, Any]) -> list[P.Event]:
        events: list[P.Event] = []
        window = self._window(get_dict(obj, "modelUsage"))
        if window is not None:
            events.append(hello(AGENT, window[0], window[1]))
        subtype = get_str(obj, "subtype") or ""
        terminal = get_str(obj, "terminal_reason") or ""
        ok = obj.get("is_error") is not True and subtype == "success"
        phase = self._phase(terminal)
        # An error subtype (error_max_turns, error_during_execution) names the
        # failure best; a "success" that failed says why in terminal_reason
        # (prompt_too_long).
        if subtype and subtype != "success":
            reason = subtype
        else:
            reason = terminal or subtype or ("completed" if ok else "error")
        text = get_str(obj, "result")
        if text is None:
            errors = get_list(obj, "errors") or []
            text = "; ".join(e for e in errors if isinstance(e, str))
        extra: dict[str, Any] = {
            k: obj[k] for k in RESULT_EXTRAS if isinstance(obj.get(k), str | int | float)
        }
        usage = get_dict(obj, "usage")
        if usage is not None:
            extra["usage"] = usage
        if phase == TURN_WORK:
            events.extend(outcome_events(ok, reason, text, error_text=f"claude ended: {reason}", extra=extra))
        # Last, so a work turn's verdict comes first, as it did before turns were reported.
        events.append(turn_end(phase, ok, reason, text, obj))
        return events

    def _phase(self, terminal: str) -> str:
        """The phase of the turn a `result` line ends; the handoff's turn ends here."""
        if self._handoff_turn:
            self._handoff_turn = False
            return TURN_HANDOFF
        if self._interrupt_acked and terminal.startswith(ABORTED_PREFIX):
            self._interrupt_acked = False
            return TURN_INTERRUPTED
        return TURN_WORK

    def _window(self, model_usage: dict[str, Any] | None) -> tuple[str, int] | None:
        """(model, context window) from `result.modelUsage`: the session's model, else the busiest."""
        if not model_usage:
            return None
        known: list[tuple[str, int, int]] = []
        for name, info in model_usage.items():
            window = get_int(info, "contextWindow")
            if window:
                known.append((name, window, get_int(info, "inputTokens") or 0))
        if not known:
            return None
        for name, window, _ in known:
            if name == self._model:
                return name, window
        name, window, _ = max(known, key=lambda c: c[2])
        return name, window
