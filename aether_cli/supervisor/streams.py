"""The child's two pipes as one queue of typed items for the supervisor's loop.

A reader thread per pipe turns stdout into protocol events (through the
format's adapter) with their token counts, and stderr into lines. Each stdout
line becomes one item, so the events of one line (a tool call and the usage
figure printed with it) are judged together. Counting happens off the main
loop: short lines in the reader thread, long ones in a two-thread pool (tiktoken
lets go of the GIL, so both cores count while the next line is parsed).

The queue is bounded by bytes: a flood of huge lines makes the readers wait
instead of growing aether's memory. Items are tagged with the launch
generation, so a late line of a dead child is never taken for the next one's.

Knows nothing of budgets, checkpoints, the store or the terminal.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from aether_cli import protocol as P
from aether_cli.adapters import Adapter, make_adapter
from aether_cli.launcher import Child
from aether_cli.reader import iter_lines

# What the reader threads may hold for the main loop; past it they wait, so a
# flood of huge lines holds at most this much memory.
QUEUE_BYTES = 64 << 20
# ...and at most this many items: each holds decoded events and dicts several times its
# text's size, so a flood of short lines would otherwise hold hundreds of MB while the
# main loop writes the ledger (1,000,000 short lines once took aether to 285 MB).
QUEUE_ITEMS = 4096
# Stdout lines longer than this are counted in the counting pool, shorter ones in
# the reader thread itself (handing a few words to another thread costs more than
# counting them).
COUNT_INLINE_CHARS = 1024
COUNT_THREADS = 2
# How long after the child's exit we keep waiting for its stdout to close
# (a grandchild that escaped the process group may hold it open forever).
EOF_AFTER_EXIT = 1.0
STDERR_LINE_BYTES = 16_384

# (kind, generation, payload): kind is "events", "stderr", "eof" (stdout's end) or
# "stderr-eof" (stderr's end: every stderr line of that child is queued before it).
Item = tuple[str, int, Any]
Tokens = list[int] | Future[list[int]]


class ByteBoundedQueue:
    """A FIFO whose producers wait while the queued items' sizes exceed a byte budget,
    or their number a count.

    A single item larger than the budget is still accepted when the queue is
    empty, so a producer can never wait forever.
    """

    def __init__(self, max_bytes: int, max_items: int = QUEUE_ITEMS) -> None:
        self.max_bytes = max_bytes
        self.max_items = max_items
        self._items: deque[tuple[Item, int]] = deque()
        self._bytes = 0
        self._cond = threading.Condition()

    def put(self, item: Item, size: int) -> None:
        """Append an item of `size` bytes, waiting while the queue is over budget."""
        with self._cond:
            while self._items and (
                self._bytes + size > self.max_bytes or len(self._items) >= self.max_items
            ):
                self._cond.wait()
            self._items.append((item, size))
            self._bytes += size
            self._cond.notify_all()

    def get(self, timeout: float) -> Item:
        """The oldest item; queue.Empty after `timeout` seconds without one."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout):
                raise queue.Empty
            item, size = self._items.popleft()
            self._bytes -= size
            self._cond.notify_all()
            return item

    def get_nowait(self) -> Item:
        """The oldest item, or queue.Empty."""
        return self.get(0.0)


class Streams:
    """Reader threads for each launched child, feeding one byte-bounded queue."""

    def __init__(self, fmt: str, count: Callable[[str], int], *, max_bytes: int = QUEUE_BYTES) -> None:
        self.fmt = fmt
        self.count = count
        self.queue = ByteBoundedQueue(max_bytes)
        # Per generation: when its stdout reader last finished a line (inf while it
        # works on one), to judge a pipe held open after the child's exit.
        self.active: dict[int, float] = {}
        # Threads start on the first long line.
        self._pool = ThreadPoolExecutor(COUNT_THREADS, thread_name_prefix="aether-count")

    def close(self) -> None:
        """Let queued counts finish in the background (the loop has taken what it needs)."""
        self._pool.shutdown(wait=False)

    def get(self, timeout: float) -> Item | None:
        """The next item, or None after `timeout` seconds without one."""
        try:
            return self.queue.get(timeout)
        except queue.Empty:
            return None

    def pending(self, gen: int) -> list[Item]:
        """What the readers already queued for generation `gen` (others' items are dropped)."""
        out: list[Item] = []
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return out
            if item[1] == gen:
                out.append(item)

    def gave_up_on_eof(self, gen: int, exited_at: float | None, now: float) -> bool:
        """After the child's exit, stop waiting for its stdout to close once the reader has
        been idle a while: a grandchild may hold the pipe open forever, but a reader still
        parsing and counting a huge last line is not done."""
        if exited_at is None or now - exited_at < EOF_AFTER_EXIT:
            return False
        busy_since = self.active.get(gen, 0.0)
        return time.monotonic() - busy_since >= EOF_AFTER_EXIT

    def _tokens_of(self, events: list[P.Event]) -> list[int]:
        out: list[int] = []
        for ev in events:
            text = P.counted_text(ev)
            out.append(self.count(text) if text else 0)
        return out

    def start(self, child: Child, gen: int) -> None:
        """Start reading `child`'s stdout and stderr as generation `gen`."""
        assert child.proc.stdout is not None and child.proc.stderr is not None
        # Each reader owns a duplicate of its pipe and closes it at EOF: if the episode
        # ends while a grandchild still holds the pipe, closing the original cannot free
        # the fd number for the next child's pipe under a reader that is still reading.
        out_fd = os.dup(child.proc.stdout.fileno())
        err_fd = os.dup(child.proc.stderr.fileno())
        adapter = make_adapter(self.fmt)
        self.active[gen] = time.monotonic()
        for target, args, name in (
            (self._read_out, (out_fd, gen, adapter), "aether-stdout"),
            (self._read_err, (err_fd, gen), "aether-stderr"),
        ):
            threading.Thread(target=target, args=args, name=name, daemon=True).start()

    def _read_out(self, fd: int, gen: int, adapter: Adapter) -> None:
        q, active = self.queue, self.active
        try:
            for line in iter_lines(fd):
                active[gen] = math.inf  # working on a line
                if not line.text.strip() and not line.dropped_bytes:
                    active[gen] = time.monotonic()
                    continue
                events = adapter.feed(line.text)
                if line.dropped_bytes and not events:
                    # The line said nothing we model, but its lost bytes still count.
                    events = [P.Text({"type": "text", "text": ""}, text="")]
                tokens: Tokens
                if len(line.text) > COUNT_INLINE_CHARS:
                    tokens = self._pool.submit(self._tokens_of, events)
                else:
                    tokens = self._tokens_of(events)
                q.put(("events", gen, (events, tokens, line.dropped_bytes)), len(line.text))
                active[gen] = time.monotonic()
            last = adapter.finish()
            q.put(("events", gen, (last, self._tokens_of(last), 0)), 0)
        finally:
            os.close(fd)
            q.put(("eof", gen, None), 0)
            active.pop(gen, None)

    def _read_err(self, fd: int, gen: int) -> None:
        try:
            for line in iter_lines(fd, max_line_bytes=STDERR_LINE_BYTES):
                self.queue.put(("stderr", gen, line.text), len(line.text))
        finally:
            os.close(fd)
            self.queue.put(("stderr-eof", gen, None), 0)
