"""Codex CLI's `codex exec --json` stream.

Lines are `thread.started`, `turn.started`, `item.started` / `item.updated` /
`item.completed` (each with an `item` of a given type), `turn.completed`,
`turn.failed` and `error`. Usage in `turn.completed` is cumulative for the
whole thread, across resumes, so it is never reported as context.
See /work/shared/formats/README.md.
"""

from __future__ import annotations

from typing import Any

from aether_cli import protocol as P
from aether_cli.adapters.base import (
    Adapter,
    get_dict,
    get_list,
    get_str,
    hello,
    load_object,
    log,
    message,
    outcome_events,
    stream_started,
    task_update,
    text_event,
    todo_task_id,
    tool_call,
    tool_result,
    unknown,
)

AGENT = "codex"
SHELL_TOOL = "shell"
PATCH_TOOL = "apply_patch"
FAILED = ("failed", "declined")
# Calls announced by item.started and not completed yet; a runaway stream of
# never-completed items must not grow this without bound.
MAX_OPEN_ITEMS = 256


def todo_updates(item: dict[str, Any]) -> list[P.Event]:
    """One task update per todo_list item; the first unfinished one is the one in progress."""
    events: list[P.Event] = []
    current_marked = False
    for entry in get_list(item, "items") or []:
        text = get_str(entry, "text")
        if not text or not text.strip():
            continue
        if entry.get("completed") is True:
            status = "done"
        elif not current_marked:
            status, current_marked = "in_progress", True
        else:
            status = "pending"
        events.append(task_update(todo_task_id(text), {"title": text, "status": status}))
    return events


def command_output(item: dict[str, Any]) -> tuple[str, bool]:
    """A finished command's output with a closing "exit code N" line, and whether it failed."""
    out = get_str(item, "aggregated_output") or ""
    code = item.get("exit_code")
    status = get_str(item, "status") or ""
    has_code = isinstance(code, int) and not isinstance(code, bool)
    last = f"exit code {code}" if has_code else f"no exit code (status {status or 'unknown'})"
    if out and not out.endswith("\n"):
        out += "\n"
    failed = status in FAILED or (has_code and code != 0)
    return out + last, failed


def mcp_output(item: dict[str, Any]) -> tuple[Any, bool]:
    """An MCP call's result (its text blocks joined when it has them) or its error message."""
    error = item.get("error")
    if error:
        text = get_str(error, "message") if isinstance(error, dict) else None
        return (text if text is not None else error), True
    result = item.get("result")
    texts = [t for b in get_list(result, "content") or [] if (t := get_str(b, "text")) is not None]
    output: Any = "\n".join(texts) if texts else (result if result is not None else "")
    return output, get_str(item, "status") in FAILED


class CodexAdapter(Adapter):
    """Codex `exec --json` lines as protocol events."""

    name = "codex"
    # Measured on codex-cli 0.169.0 (`make e2e-real`), in cl100k tokens of its first
    # request: tool schemas 2,208, developer instructions 4,633 and 1,276, environment
    # context 310 (8,427 in all), before the user's prompt. MCP servers add more.
    context_overhead = 8_500

    def __init__(self) -> None:
        """Start with no calls open and no agent message seen."""
        self._open: dict[str, None] = {}
        self._last_message = ""

    def _feed(self, line: str) -> list[P.Event]:
        if not line.strip():
            return []
        obj = load_object(line)
        if obj is None:
            return [text_event(line)]
        kind = obj.get("type")
        events: list[P.Event] = []
        if kind == "thread.started":
            thread = get_str(obj, "thread_id")
            if thread:
                events = [stream_started(thread, None), hello(AGENT)]
        elif kind in ("item.started", "item.updated", "item.completed"):
            item = get_dict(obj, "item")
            if item is not None:
                events = self._item(kind, item)
        elif kind == "turn.completed":
            events = self._turn_completed(obj)
        elif kind == "turn.failed":
            text = get_str(get_dict(obj, "error"), "message") or ""
            events = outcome_events(False, text or "turn failed", text, error_text="codex turn failed")
        elif kind == "error":
            error = get_str(obj, "message")
            if error:
                events = [log("error", error)]
        return events or [unknown(obj)]

    def _turn_completed(self, obj: dict[str, Any]) -> list[P.Event]:
        extra: dict[str, Any] = {}
        usage = get_dict(obj, "usage")
        if usage is not None:
            # Cumulative for the thread: kept for the ledger, never a context size.
            extra["usage"] = usage
        text, self._last_message = self._last_message, ""
        return outcome_events(True, "completed", text, error_text="", extra=extra)

    def _item(self, kind: str, item: dict[str, Any]) -> list[P.Event]:
        item_type = get_str(item, "type")
        item_id = get_str(item, "id") or ""
        if item_type == "todo_list":
            return todo_updates(item)
        if kind == "item.started":
            call = self._call(item_type, item_id, item)
            if call is None:
                return []
            self._open[item_id] = None
            while len(self._open) > MAX_OPEN_ITEMS:
                del self._open[next(iter(self._open))]
            return [call]
        if kind != "item.completed":
            return []
        if item_type == "agent_message":
            text = get_str(item, "text")
            if text is None:
                return []
            self._last_message = text
            return [message("assistant", text)]
        if item_type == "reasoning":
            # The model's private notes: logged, neither shown nor counted.
            text = get_str(item, "text")
            return [log("debug", text)] if text is not None else []
        if item_type == "error":
            text = get_str(item, "message")
            return [log("error", text)] if text else []
        if item_type == "file_change":
            return self._file_change(item_id, item)
        if item_type in ("command_execution", "mcp_tool_call"):
            return self._call_completed(item_type, item_id, item)
        return []

    def _call(self, item_type: str | None, item_id: str, item: dict[str, Any]) -> P.ToolCall | None:
        if item_type == "command_execution":
            command = get_str(item, "command")
            return tool_call(item_id, SHELL_TOOL, {"command": command}) if command is not None else None
        if item_type == "mcp_tool_call":
            server, tool = get_str(item, "server"), get_str(item, "tool")
            if not tool:
                return None
            name = f"{server}.{tool}" if server else tool
            return tool_call(item_id, name, get_dict(item, "arguments") or {})
        return None

    def _call_completed(self, item_type: str, item_id: str, item: dict[str, Any]) -> list[P.Event]:
        events: list[P.Event] = []
        if item_id in self._open:
            del self._open[item_id]
        else:
            # Never announced (or announced too long ago): pair the result with a call.
            call = self._call(item_type, item_id, item)
            if call is None:
                return []
            events.append(call)
        if item_type == "command_execution":
            output, failed = command_output(item)
        else:
            output, failed = mcp_output(item)
        events.append(tool_result(item_id, output, failed))
        return events

    def _file_change(self, item_id: str, item: dict[str, Any]) -> list[P.Event]:
        changes = [c for c in get_list(item, "changes") or [] if get_str(c, "path")]
        paths = [c["path"] for c in changes]
        failed = get_str(item, "status") in FAILED
        summary = "\n".join(f"{get_str(c, 'kind') or 'change'} {c['path']}" for c in changes)
        if failed:
            summary = "patch failed" + (f":\n{summary}" if summary else "")
        return [
            tool_call(item_id, PATCH_TOOL, {"paths": paths, "changes": changes}),
            tool_result(item_id, summary, failed),
        ]
