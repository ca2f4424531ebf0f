"""Codex's own account of its context: the token counts in its session rollout file.

`codex exec --json` prints usage once per turn, summed over the whole thread, so
the stream cannot say how big the context is now. Codex itself writes every
thread it persists to `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<thread
id>.jsonl` (`$CODEX_HOME` defaults to `~/.codex`), one JSON object a line,
`{timestamp, type, payload}`. After each model request it appends an
`event_msg` whose `payload.type` is `token_count`: `payload.info` (null when
only rate limits changed) holds `last_token_usage` (that request: its
`input_tokens`, cached tokens included, is the context size then),
`total_token_usage` (the thread so far) and `model_context_window`. Codex
0.169.0 also writes a `token_usage_record` line as soon as a response ends,
before the tool call it asked for runs, with `usage` (that request),
`turn_token_usage` and `thread_token_usage` but no window.

This module finds that file and reads it incrementally: only new bytes, at most
`max_poll_bytes` a poll (a backlog larger than that is skipped: only the latest
figure matters), lines longer than `MAX_LINE` skipped unread, nothing parsed
but the two usage lines. The file is untrusted input: it may be missing,
truncated, a symlink, a FIFO, full of garbage or of absurd numbers, and none of
it raises. No symlink below `$CODEX_HOME/sessions` is ever followed (every
folder and the file are opened with O_NOFOLLOW, relative to their parent), so a
planted link cannot make aether read a file elsewhere.

It knows nothing of the stream adapter, the budget or the episode: the caller
decides what a figure means for the run.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from aether_cli.reader import LineSplitter

MAX_POLL_BYTES = 4 << 20
# A usage line is under 1 KB; longer lines are prompts and tool outputs, never parsed.
MAX_LINE = 64 << 10
# A count above this is garbage (no model holds a billion tokens).
MAX_TOKENS = 1 << 30
# Folders and files looked at in one search: a huge sessions tree costs a bounded scan.
MAX_SCAN_ENTRIES = 50_000
RESCAN_SECONDS = 1.0
# Codex thread ids are UUIDs; anything else (a slash, "..", a glob) is refused unsearched.
THREAD_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z-]{7,63}")
_YEAR, _TWO_DIGITS = re.compile(r"\d{4}"), re.compile(r"\d{2}")
_MARKERS = ('"token_count"', '"token_usage_record"')
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass(frozen=True)
class RolloutUsage:
    """Codex's latest figures for one thread.

    `context_tokens`: input tokens of the latest model request (cached ones
    included), the context Codex holds now. `window`: Codex's own usable
    window for its model, when a `token_count` line said it. `thread_tokens`:
    input plus output over the whole thread so far.
    """

    context_tokens: int
    window: int | None = None
    thread_tokens: int | None = None


def codex_home(env: Mapping[str, str]) -> Path | None:
    """The CODEX_HOME a Codex launched with `env` uses: `$CODEX_HOME`, else `$HOME/.codex`."""
    home = env.get("CODEX_HOME")
    if home:
        return Path(home)
    user_home = env.get("HOME")
    return Path(user_home) / ".codex" if user_home else None


def watch(env: Mapping[str, str], thread_id: str) -> RolloutWatcher | None:
    """A watcher for `thread_id` of a Codex launched with `env`; None when no CODEX_HOME can be known."""
    home = codex_home(env)
    return RolloutWatcher(home, thread_id) if home is not None else None


def _count(value: Any) -> int | None:
    """A token count as Codex would write it, or None for anything else (bool, float, negative, absurd)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
        return value
    return None


def _io_total(usage: Any) -> int | None:
    """Input plus output of one usage object (its `total_tokens` when that is sound)."""
    if not isinstance(usage, dict):
        return None
    total = _count(usage.get("total_tokens"))
    if total is not None:
        return total
    inp, out = _count(usage.get("input_tokens")), _count(usage.get("output_tokens"))
    return None if inp is None else inp + (out or 0)


def usage_of_line(obj: Any, window: int | None) -> RolloutUsage | None:
    """The usage one rollout line carries (None for any other line); `window` is the last one known."""
    if not isinstance(obj, dict):
        return None
    payload = obj.get("payload")
    if not isinstance(payload, dict):
        return None
    kind = obj.get("type")
    if kind == "event_msg" and payload.get("type") == "token_count":
        info = payload.get("info")
        if not isinstance(info, dict):
            return None  # rate limits only
        last = info.get("last_token_usage")
        context = _count(last.get("input_tokens")) if isinstance(last, dict) else None
        if context is None:
            return None
        stated = _count(info.get("model_context_window"))
        return RolloutUsage(context, stated or window, _io_total(info.get("total_token_usage")))
    if kind == "token_usage_record":
        request = payload.get("usage")
        context = _count(request.get("input_tokens")) if isinstance(request, dict) else None
        if context is None:
            return None
        return RolloutUsage(context, window, _io_total(payload.get("thread_token_usage")))
    return None


# ------------------------------------------------------------ finding the file


def _open_dir(name: str, parent: int) -> int | None:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError:
        return None  # gone, not a folder, or a symlink: never followed


def _names(fd: int, pattern: re.Pattern[str], budget: list[int]) -> list[str]:
    """Sub-folder names of `fd` matching `pattern`, newest (largest) first."""
    found = []
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                budget[0] -= 1
                if budget[0] < 0:
                    break
                if pattern.fullmatch(entry.name):
                    found.append(entry.name)
    except OSError:
        return []
    return sorted(found, reverse=True)


def _day_dirs(root: int, budget: list[int]) -> Iterator[int]:
    """Open descriptors of the dated folders under `root`, newest first; the caller closes each."""
    for year in _names(root, _YEAR, budget):
        year_fd = _open_dir(year, root)
        if year_fd is None:
            continue
        try:
            for month in _names(year_fd, _TWO_DIGITS, budget):
                month_fd = _open_dir(month, year_fd)
                if month_fd is None:
                    continue
                try:
                    for day in _names(month_fd, _TWO_DIGITS, budget):
                        day_fd = _open_dir(day, month_fd)
                        if day_fd is not None:
                            yield day_fd
                finally:
                    os.close(month_fd)
        finally:
            os.close(year_fd)


def _open_in(day: int, suffix: str, budget: list[int]) -> int | None:
    """The rollout file in folder `day` whose name ends with `suffix`, opened; None if none is usable."""
    try:
        with os.scandir(day) as entries:
            names = []
            for entry in entries:
                budget[0] -= 1
                if budget[0] < 0:
                    break
                if entry.name.startswith("rollout-") and entry.name.endswith(suffix):
                    names.append(entry.name)
    except OSError:
        return None
    for name in sorted(names, reverse=True):
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=day)
        except OSError:
            continue  # a symlink (ELOOP) or gone
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)  # a FIFO, a device, a folder
    return None


def open_rollout(home: Path, thread_id: str) -> tuple[int | None, str]:
    """(descriptor, "") of the thread's rollout file, or (None, why not); the caller closes it."""
    if not THREAD_ID.fullmatch(thread_id):
        return None, "the thread id is not an id"
    try:
        # The sessions folder itself may be a link (a user's own setup); nothing below it is followed.
        root = os.open(home / "sessions", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None, f"no sessions folder in {home}"
    budget = [MAX_SCAN_ENTRIES]
    try:
        for day in _day_dirs(root, budget):
            try:
                fd = _open_in(day, f"-{thread_id}.jsonl", budget)
            finally:
                os.close(day)
            if fd is not None:
                return fd, ""
    finally:
        os.close(root)
    return None, f"no rollout file for thread {thread_id} in {home / 'sessions'}"


# ------------------------------------------------------------ reading it


class RolloutWatcher:
    """Follows one thread's rollout file: `poll()` reads what was appended since the last poll.

    Until the file exists (Codex writes it at its first request) a poll looks
    for it at most every `rescan_seconds`. `clock` is a seam for tests.
    """

    def __init__(
        self,
        home: Path,
        thread_id: str,
        *,
        max_poll_bytes: int = MAX_POLL_BYTES,
        rescan_seconds: float = RESCAN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Nothing is opened yet: the file may not exist until Codex's first request."""
        if max_poll_bytes < 1:
            raise ValueError("max_poll_bytes must be at least 1")
        self.home, self.thread_id = home, thread_id
        self.max_poll_bytes = max_poll_bytes
        self.latest: RolloutUsage | None = None
        # `token_count` lines read: Codex writes one right after it records a tool call's
        # output in the thread, so a count that grew means the last output is persisted.
        self.token_counts = 0
        self.note = "not looked for yet"
        self.bytes_read = 0
        self._rescan, self._clock = rescan_seconds, clock
        self._next_scan = float("-inf")
        self._fd: int | None = None
        self._offset = 0
        self._splitter = LineSplitter(MAX_LINE)
        self._skip_first = False

    def __enter__(self) -> RolloutWatcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file; a later poll finds it again."""
        if self._fd is not None:
            with suppress(OSError):
                os.close(self._fd)
            self._fd = None

    @property
    def found(self) -> bool:
        """Whether the rollout file is open."""
        return self._fd is not None

    def _locate(self) -> bool:
        now = self._clock()
        if now < self._next_scan:
            return False
        self._next_scan = now + self._rescan
        fd, self.note = open_rollout(self.home, self.thread_id)
        if fd is None:
            return False
        self._fd = fd
        self._restart(0)
        self.note = "reading"
        return True

    def _restart(self, offset: int) -> None:
        """Read on from `offset`, dropping the partial line there unless a line starts exactly at it."""
        self._offset = offset
        self._splitter = LineSplitter(MAX_LINE)
        self._skip_first = False
        if offset > 0 and self._fd is not None:
            try:
                self._skip_first = os.pread(self._fd, 1, offset - 1) != b"\n"
            except OSError:
                self._skip_first = True

    def poll(self) -> RolloutUsage | None:
        """The newest usage among the bytes appended since the last poll; None if they hold none."""
        if self._fd is None and not self._locate():
            return None
        assert self._fd is not None
        try:
            size = os.fstat(self._fd).st_size
            if size < self._offset:
                self._restart(0)  # truncated or rewritten: read it again
            if size - self._offset > self.max_poll_bytes:
                self._restart(size - self.max_poll_bytes)  # only the latest figures matter
            data = os.pread(self._fd, min(size - self._offset, self.max_poll_bytes), self._offset)
        except OSError as exc:
            self.note = f"cannot read the rollout file: {exc.strerror or exc}"
            self.close()
            return None
        self._offset += len(data)
        self.bytes_read += len(data)
        return self._take(data)

    def catch_up(self, max_bytes: int = 4 * MAX_POLL_BYTES) -> RolloutUsage | None:
        """Poll until the file has nothing new (or `max_bytes` were read); the latest usage known."""
        start = self.bytes_read
        while self.bytes_read - start < max_bytes:
            before = self.bytes_read
            self.poll()
            if self.bytes_read == before:
                break
        return self.latest

    def _take(self, data: bytes) -> RolloutUsage | None:
        newest = None
        for line in self._splitter.feed(data):
            if self._skip_first:
                self._skip_first = False
                continue
            if line.dropped_bytes or not any(m in line.text for m in _MARKERS):
                continue
            try:
                obj = orjson.loads(line.text)
            except orjson.JSONDecodeError:
                continue
            window = self.latest.window if self.latest else None
            usage = usage_of_line(obj, window)
            if usage is not None:
                newest = self.latest = usage
                if obj.get("type") == "event_msg":
                    self.token_counts += 1
        return newest
