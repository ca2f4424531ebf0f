"""What happened in one episode, kept small enough to distil from.

An episode can run for hours and print gigabytes; the distiller only needs the
facts a free-text summary tends to lose: the merged task states, which calls
never got a result, the exact paths touched (named by file tools or written by
shell commands), every finished call with its outcome (`work_log.StepLog`),
the failures no later success cleared (`error_book.ErrorBook`), the agent's
todo list, what the user asked for and what the agent decided, and the last
lines it printed as plain text (cleaned of escape sequences; `output_tail`
gives them redacted to a `--distill-command`). `EpisodeLog`
folds every protocol event into those facts as it arrives and keeps each of
them capped, so its memory is bounded however long the episode lasts. It
reads events only: no processes, no files, no token counting.
"""

from __future__ import annotations

import copy
import re
from collections import OrderedDict, deque
from typing import Any

from aether_cli import constants as C
from aether_cli import protocol
from aether_cli.error_book import ErrorBook, Outcome, outcome
from aether_cli.plain_text import clean
from aether_cli.protocol import (
    CheckpointEvent,
    Done,
    Log,
    MemoryOp,
    Message,
    TaskUpdate,
    Text,
    ToolCall,
    ToolResult,
)
from aether_cli.redact import redact_text
from aether_cli.redact_values import MARK_PREFIX
from aether_cli.shell_writes import written_paths
from aether_cli.tool_calls import (
    MAX_TODOS,
    PATH_KEYS,
    SHORT_INPUT_CHARS,
    cap,
    identity,
    is_write_tool,
    named_paths,
    shell_command,
    short_input,
    todo_item,
    todo_list,
)
from aether_cli.work_log import StepLog

__all__ = ["PATH_KEYS", "SHORT_INPUT_CHARS", "EpisodeLog", "cap", "is_write_tool", "short_input"]

# Caps: generous enough for a real episode, small enough that a runaway agent
# cannot make the supervisor hold more than a few megabytes here.
MAX_RECENT_CALLS = 20
MAX_FILES = 50
MAX_PATH_CHARS = 1024
MAX_ERRORS = 10
MAX_ERROR_CHARS = 500
MAX_LAST_ASSISTANT_CHARS = 2000
# A plain-text agent's last words: at most this many of its last lines, within the
# characters a prompt shows of them, so the newest line is never the one cut.
MAX_TEXT_TAIL_LINES = 5
# The output tail a --distill-command gets: the last lines the agent printed, whichever
# bound comes first. The log holds MAX_TAIL_LINES lines of at most MAX_TAIL_LINE_CHARS.
MAX_TAIL_LINES = 200
MAX_TAIL_BYTES = 16 * 1024
MAX_TAIL_LINE_CHARS = 2000
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
TODO_PREFIX = "todo-"

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
        # The agent's last plain output lines, cleaned and capped: a text agent's only
        # words when it sends no messages, and what a distill command works from.
        self._output: deque[str] = deque(maxlen=MAX_TAIL_LINES)
        self.user_messages: list[str] = []
        self.decisions: list[str] = []
        self._memory: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.agent_checkpoint: dict[str, Any] | None = None
        self.done: Done | None = None
        self.dropped_tasks = 0
        self.steps = StepLog()  # this episode's finished calls, numbered from 1
        self.error_book = ErrorBook()
        self.other_errors: list[str] = []  # errors not tied to a known call (log lines, orphan results)
        # The agent's latest todo list, None until it sends one this episode.
        self.todos: list[dict[str, str]] | None = None
        self._todo_mode: str | None = None  # "call" or "updates" while a list is arriving
        self._call_order: dict[str, int] = {}  # open call id → its ordinal among this episode's calls
        self._stop_mark: int | None = None

    # ------------------------------------------------------------ views

    @property
    def recent_calls(self) -> list[str]:
        """The last finished calls as "name {short input}", with " -> error" when one failed.

        A call still open is left out: it is reported once, as interrupted or
        announced, never as if it had run.
        """
        return [summary for cid, summary in self._recent if cid not in self.open_calls]

    @property
    def last_words(self) -> str:
        """The agent's last message, or, from an agent that sent none, its last output lines."""
        if self.last_assistant:
            return self.last_assistant
        # Newest first, as many as the prompt shows: its cut keeps the head of the text,
        # and a head of old lines would tell the agent it stopped earlier than it did.
        lines: list[str] = []
        size = 0
        for line in reversed(self._output):
            if len(lines) == MAX_TEXT_TAIL_LINES or (lines and size + len(line) + 1 > C.LAST_INTENT_CHARS):
                break
            lines.append(line)
            size += len(line) + 1
        return cap("\n".join(reversed(lines)), MAX_LAST_ASSISTANT_CHARS)

    def output_tail(self, max_lines: int = MAX_TAIL_LINES, max_bytes: int = MAX_TAIL_BYTES) -> list[str]:
        """The last lines the agent printed as plain text, redacted, within `max_lines` and
        `max_bytes` (UTF-8, newlines counted); oldest first. Empty if it printed none."""
        # Redacted before it is cut: a private key cut at its header would no longer
        # look like one. Twice the bytes leaves room for a secret that starts earlier.
        picked: list[str] = []
        size = 0
        for line in reversed(self._output):
            if len(picked) == max_lines or size > 2 * max_bytes:
                break
            picked.append(line)
            size += len(line) + 1
        lines = redact_text("\n".join(reversed(picked))).split("\n") if picked else []
        tail: list[str] = []
        size = 0
        for line in reversed(lines):
            size += len(line.encode("utf-8", "replace")) + (1 if tail else 0)
            if len(tail) == max_lines or size > max_bytes:
                break
            tail.append(line)
        return tail[::-1]

    def mark_stopping(self) -> None:
        """Note that aether has begun stopping the agent: a call announced from now on never ran."""
        if self._stop_mark is None:
            self._stop_mark = self.tool_calls

    @property
    def interrupted_calls(self) -> list[ToolCall]:
        """Open calls that started before the stop: they may have run in part."""
        mark = self._stop_mark
        order = self._call_order
        return [c for cid, c in self.open_calls.items() if mark is None or order.get(cid, 0) <= mark]

    @property
    def announced_calls(self) -> list[ToolCall]:
        """Open calls announced after the stop began: the agent never got to run them."""
        mark = self._stop_mark
        if mark is None:
            return []
        return [c for cid, c in self.open_calls.items() if self._call_order.get(cid, 0) > mark]

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
        if not (isinstance(ev, TaskUpdate) and ev.id.startswith(TODO_PREFIX)):
            self._todo_mode = None  # a todo list arrives as one unbroken run of events
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
        elif isinstance(ev, Text):
            self._text(ev.text)
        elif isinstance(ev, Log) and ev.level.lower() in _ERROR_LEVELS and ev.text:
            _push_unique(self.errors, cap(ev.text, MAX_ERROR_CHARS), MAX_ERRORS)
            _push_unique(self.other_errors, cap(ev.text, MAX_ERROR_CHARS), MAX_ERRORS)
        # hello, usage, unknown and invalid events carry nothing to distil.

    def _text(self, text: str) -> None:
        # Escape sequences go first: a colour code or a retitled window is no word of the
        # agent's, and whoever reads these lines later (a model, a prompt) must not get them.
        line = clean(text).strip()
        if line:
            self._output.append(cap(line, MAX_TAIL_LINE_CHARS))

    def _tool_call(self, ev: ToolCall) -> None:
        self.tool_calls += 1
        name = cap(ev.name, 100)
        self.open_calls.pop(ev.id, None)
        self.open_calls[ev.id] = ev
        self._call_order[ev.id] = self.tool_calls
        while len(self.open_calls) > MAX_OPEN_CALLS:
            dropped, _ = self.open_calls.popitem(last=False)
            self._call_order.pop(dropped, None)
        self._recent.append([ev.id, f"{name} {short_input(ev.input)}"])
        target = self.files_modified if is_write_tool(ev.name) else self.files_read
        for path in named_paths(ev.input, MAX_FILES):
            _add_path(target, path)
        todos = todo_list(ev.name, ev.input)
        if todos is not None:
            self.todos, self._todo_mode = todos, "call"

    def _tool_result(self, ev: ToolResult) -> None:
        call = self.open_calls.pop(ev.id, None)
        self._call_order.pop(ev.id, None)
        result = outcome(ev.output, ev.is_error)
        out = ""
        if not result.ok:
            for entry in reversed(self._recent):
                if entry[0] == ev.id and not entry[1].endswith(" -> error"):
                    entry[1] += " -> error"
                    break
            out = ev.output if isinstance(ev.output, str) else protocol.dumps_compact(ev.output)
            if not out.strip():
                out = f"{call.name if call else 'a tool'} failed with no output"
            out = cap(out, MAX_ERROR_CHARS)
            _push_unique(self.errors, out, MAX_ERRORS)
            if call is None:
                _push_unique(self.other_errors, out, MAX_ERRORS)
        if call is not None:
            self._finished(call, result, out)

    def _finished(self, call: ToolCall, result: Outcome, error_text: str) -> None:
        """A call got its result: a step of the work log, an error opened or cleared, files written."""
        ident = identity(call.name, call.input)
        n = self.steps.add(cap(call.name, 100), ident.call, result.ok, result.describe())
        if result.ok:
            self.error_book.succeeded(ident)
        else:
            self.error_book.failed(ident, result, n, error_text)
        command = shell_command(call.name, call.input)
        if command is not None:
            # The command ran (whatever its exit code): what it redirected to was opened.
            # Read from the redacted command: `password => 'hunter2'` redirects to a
            # file named by the secret, and a path is never redacted later.
            for path in written_paths(redact_text(command)):
                if MARK_PREFIX not in path:
                    _add_path(self.files_modified, path)

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
        if tid.startswith(TODO_PREFIX):
            self._todo(task)
        # A task's `files` stay in its own state: they say which files the task
        # concerns, not whether anything read or changed them.

    def _todo(self, task: dict[str, Any]) -> None:
        # Adapters send a todo list (Codex's todo_list item) as one run of todo
        # task updates: a new run is a new list. After a TodoWrite call the list
        # is already taken from the call itself.
        if self._todo_mode == "call":
            return
        if self._todo_mode is None or self.todos is None:
            self.todos, self._todo_mode = [], "updates"
        title = task.get("title")
        if isinstance(title, str) and title.strip() and len(self.todos) < MAX_TODOS:
            self.todos.append(todo_item(title, task.get("status")))

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
