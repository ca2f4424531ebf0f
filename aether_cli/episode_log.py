"""What happened in one episode, kept small enough to distil from.

An episode can run for hours and print gigabytes; the distiller only needs the
facts a free-text summary tends to lose: the merged task states, which calls
never got a result, the exact paths touched, the verbatim errors, what the user
asked for and what the agent decided. `EpisodeLog` folds every protocol event
into those facts as it arrives and keeps each of them capped, so its memory is
bounded however long the episode lasts. It reads events only: no processes, no
files, no token counting.
"""

from __future__ import annotations

import copy
import re
from collections import OrderedDict, deque
from typing import Any

from aether_cli import protocol
from aether_cli.protocol import (
    CheckpointEvent,
    Done,
    Log,
    MemoryOp,
    Message,
    TaskUpdate,
    ToolCall,
    ToolResult,
)
from aether_cli.redact import redact_text

# Caps: generous enough for a real episode, small enough that a runaway agent
# cannot make the supervisor hold more than a few megabytes here.
MAX_RECENT_CALLS = 20
MAX_FILES = 50
MAX_PATH_CHARS = 1024
MAX_ERRORS = 10
MAX_ERROR_CHARS = 500
MAX_LAST_ASSISTANT_CHARS = 2000
MAX_USER_MESSAGES = 20
MAX_USER_MESSAGE_CHARS = 1000
MAX_DECISIONS = 10
MAX_DECISION_CHARS = 300
MAX_MEMORY_OPS = 200
MAX_FACT_CHARS = 2000
MAX_OPEN_CALLS = 32
MAX_TASKS = 500
MAX_TASK_FILES = 50
MAX_TASK_TEXT = {"title": 300, "next_action": 2000, "notes": 2000}
SHORT_INPUT_CHARS = 120
ELLIPSIS = "…"
_REDACT_MARGIN = 1024

PATH_KEYS = ("path", "file", "file_path", "filename")
PATH_LIST_KEYS = ("paths",)

# A tool that changes files: matched against the words of its name, so
# "write_file", "MultiEdit", "apply_patch" and "rm" count, "format" does not.
_WRITE_VERBS = (
    "write", "edit", "create", "patch", "apply", "save", "delete", "remove", "rename",
    "replace", "append", "insert", "move", "mkdir", "touch", "unlink",
)
_WRITE_SHORT = frozenset({"mv", "rm", "cp"})
_NOT_WRITE = frozenset({"credit", "dispatch"})
_NAME_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")

_DECISION_WORDS = (
    "decision:", "decided", "we will", "we'll", "i will use", "i'll use", "chose", "choosing",
    "going with", "opted", "settled on",
)
_DECISION = re.compile(
    r"\b(?:decision:|decided\b|we will\b|we'll\b|i will use\b|i'll use\b|chose\b|choosing\b"
    r"|going with\b|opted\b|settled on\b)",
    re.IGNORECASE,
)
# A decision is stated in a line, not buried in a wall of text; longer lines
# are not scanned, which also keeps huge messages cheap.
MAX_DECISION_LINE = 1000
_BULLET = re.compile(r"^\s*(?:[-*•>]+|\d+[.)])\s*")
_ERROR_LEVELS = frozenset({"error", "critical", "fatal"})


def cap(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis when cut.

    A text is redacted before it is cut: a secret cut in half no longer has the
    shape or the closing quote the rules know it by, and its first half would
    reach the checkpoint.
    """
    if len(text) <= limit:
        return text
    # A margin past the cut, so that a secret starting before it is seen whole.
    head = text[: limit + _REDACT_MARGIN]
    redacted = redact_text(head)
    if len(head) == len(text) and len(redacted) <= limit:
        return redacted  # the secret's marker is shorter than the secret: it fits now
    return redacted[: max(0, limit - 1)] + ELLIPSIS


def short_input(data: Any, limit: int = SHORT_INPUT_CHARS) -> str:
    """A one-line rendering of a tool input, capped (used in call summaries)."""
    return cap(protocol.dumps_compact(data), limit)


def is_write_tool(name: str) -> bool:
    """True if a tool's name suggests it changes files (write/edit/create/patch/mv/rm …)."""
    for word in _NAME_WORDS.findall(name):
        w = word.lower()
        if w in _NOT_WRITE:
            continue
        if w in _WRITE_SHORT:
            return True
        if any(w.startswith(v) or w.endswith(v) for v in _WRITE_VERBS):
            return True
    return False


def _push_unique(items: list[str], value: str, limit: int) -> None:
    """Append `value` (moving it to the end if present) and keep the newest `limit`."""
    if value in items:
        items.remove(value)
    items.append(value)
    if len(items) > limit:
        del items[: len(items) - limit]


def _add_path(items: list[str], value: Any) -> None:
    # Paths are kept exactly as the agent wrote them: a normalised path may
    # not be the one the agent can open again.
    if isinstance(value, str) and value.strip() and len(value) <= MAX_PATH_CHARS:
        _push_unique(items, value, MAX_FILES)


class EpisodeLog:
    """Accumulates one episode's events for distillation.

    Memory stays bounded however long the episode: every list is capped and
    every kept text is cut to a fixed length.
    """

    def __init__(self, *, objective: str, prior_tasks: dict[str, dict] | None = None) -> None:
        """Start an empty log; `prior_tasks` (id → task state) are copied, never mutated."""
        self.objective = objective
        self.events = 0
        self.tool_calls = 0
        self.tasks: dict[str, dict[str, Any]] = {}
        for tid, task in (prior_tasks or {}).items():
            if isinstance(tid, str) and isinstance(task, dict):
                self.tasks[tid] = copy.deepcopy(task)
        self._prior_status = {tid: t.get("status") for tid, t in self.tasks.items()}
        self.tasks_touched: list[str] = []
        self.open_calls: OrderedDict[str, ToolCall] = OrderedDict()
        self._recent: deque[list[str]] = deque(maxlen=MAX_RECENT_CALLS)
        self.files_read: list[str] = []
        self.files_modified: list[str] = []
        self.errors: list[str] = []
        self.last_assistant = ""
        self.user_messages: list[str] = []
        self.decisions: list[str] = []
        self._memory: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.agent_checkpoint: dict[str, Any] | None = None
        self.done: Done | None = None
        self.dropped_tasks = 0

    # ------------------------------------------------------------ views

    @property
    def recent_calls(self) -> list[str]:
        """The last calls as "name {short input}", with " -> error" when the call failed."""
        return [summary for _, summary in self._recent]

    @property
    def memory_ops(self) -> list[dict[str, Any]]:
        """Proposed facts, the latest op per key, oldest first (same effect as replaying all)."""
        return [dict(op) for op in self._memory.values()]

    @property
    def tasks_done(self) -> list[str]:
        """Ids of tasks that became done during this episode (in the order first touched)."""
        return [
            tid for tid in self.tasks_touched
            if self.tasks.get(tid, {}).get("status") == "done"
            and self._prior_status.get(tid) != "done"
        ]

    # ------------------------------------------------------------ intake

    def add(self, ev: protocol.Event) -> None:
        """Fold one decoded event into the log; never raises on agent data."""
        self.events += 1
        if isinstance(ev, ToolCall):
            self._tool_call(ev)
        elif isinstance(ev, ToolResult):
            self._tool_result(ev)
        elif isinstance(ev, Message):
            self._message(ev)
        elif isinstance(ev, TaskUpdate):
            self._task(ev)
        elif isinstance(ev, MemoryOp):
            self._memory_op(ev)
        elif isinstance(ev, CheckpointEvent):
            self.agent_checkpoint = ev.state
        elif isinstance(ev, Done):
            self.done = ev
        elif isinstance(ev, Log) and ev.level.lower() in _ERROR_LEVELS and ev.text:
            _push_unique(self.errors, cap(ev.text, MAX_ERROR_CHARS), MAX_ERRORS)
        # hello, usage, text, unknown and invalid events carry nothing to distil.

    def _tool_call(self, ev: ToolCall) -> None:
        self.tool_calls += 1
        name = cap(ev.name, 100)
        self.open_calls.pop(ev.id, None)
        self.open_calls[ev.id] = ev
        while len(self.open_calls) > MAX_OPEN_CALLS:
            self.open_calls.popitem(last=False)
        self._recent.append([ev.id, f"{name} {short_input(ev.input)}"])
        target = self.files_modified if is_write_tool(ev.name) else self.files_read
        for key in PATH_KEYS:
            _add_path(target, ev.input.get(key))
        for key in PATH_LIST_KEYS:
            values = ev.input.get(key)
            if isinstance(values, list):
                for value in values[:MAX_FILES]:
                    _add_path(target, value)

    def _tool_result(self, ev: ToolResult) -> None:
        call = self.open_calls.pop(ev.id, None)
        if not ev.is_error:
            return
        for entry in reversed(self._recent):
            if entry[0] == ev.id and not entry[1].endswith(" -> error"):
                entry[1] += " -> error"
                break
        out = ev.output if isinstance(ev.output, str) else protocol.dumps_compact(ev.output)
        if not out.strip():
            out = f"{call.name if call else 'a tool'} failed with no output"
        _push_unique(self.errors, cap(out, MAX_ERROR_CHARS), MAX_ERRORS)

    def _message(self, ev: Message) -> None:
        if ev.role == "assistant":
            if ev.text.strip():
                self.last_assistant = cap(ev.text, MAX_LAST_ASSISTANT_CHARS)
            self._decisions(ev.text)
        elif ev.text.strip():
            _push_unique(
                self.user_messages, cap(ev.text, MAX_USER_MESSAGE_CHARS), MAX_USER_MESSAGES
            )

    def _decisions(self, text: str) -> None:
        # Plain substring tests first: most messages state no decision, and
        # they are much cheaper than the regex over a long text.
        lower = text.lower()
        if not any(word in lower for word in _DECISION_WORDS):
            return
        for line in text.splitlines():
            if len(line) <= MAX_DECISION_LINE and _DECISION.search(line):
                clean = _BULLET.sub("", line).strip()
                if clean:
                    _push_unique(self.decisions, cap(clean, MAX_DECISION_CHARS), MAX_DECISIONS)

    def _task(self, ev: TaskUpdate) -> None:
        tid = ev.id
        if not tid:
            return
        task = self.tasks.get(tid)
        if task is None:
            if len(self.tasks) >= MAX_TASKS:
                self.dropped_tasks += 1
                return
            task = {
                "id": tid, "title": "", "status": "pending", "progress": 0.0,
                "next_action": "", "notes": "", "files": [],
            }
            self.tasks[tid] = task
        for key, value in ev.fields.items():
            if key in MAX_TASK_TEXT and isinstance(value, str):
                task[key] = cap(value, MAX_TASK_TEXT[key])
            elif key == "files" and isinstance(value, list):
                task[key] = [f for f in value if isinstance(f, str)][:MAX_TASK_FILES]
            else:
                task[key] = value
        if tid not in self.tasks_touched:
            self.tasks_touched.append(tid)
        # A task's `files` stay in its own state: they say which files the task
        # concerns, not whether anything read or changed them.

    def _memory_op(self, ev: MemoryOp) -> None:
        # Only the last op per key matters: "add" replaces a fact, "remove"
        # deletes it, so replaying the latest op per key equals replaying all.
        self._memory.pop(ev.key, None)
        self._memory[ev.key] = {
            "op": ev.op, "key": ev.key, "text": cap(ev.text, MAX_FACT_CHARS),
            "pinned": ev.pinned, "priority": ev.priority,
        }
        while len(self._memory) > MAX_MEMORY_OPS:
            self._memory.popitem(last=False)
