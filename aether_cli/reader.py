"""Bounded line reading from a pipe: bytes in, `Line`s out, memory capped per line.

This module owns the only place where the child's raw output bytes become
text. An agent (or a tool it runs) can print anything: a 100 MB line with no
newline, invalid UTF-8, `\\r\\n` endings, or output that stops mid-line when it
crashes. The supervisor must survive all of it without its memory growing with
the size of a line, so each line keeps at most `max_line_bytes` bytes and only
*counts* the rest (the count still feeds the token budget, so a flood of
unseen output is not free).

It knows nothing of what a line means (see `protocol.decode_line`) and nothing
of threads: `iter_lines` blocks exactly as long as `os.read` does, and the
supervisor runs it in a dedicated thread per pipe.
"""

from __future__ import annotations

import errno
import os
import select
from collections.abc import Iterator
from dataclasses import dataclass

from aether_cli import constants as C


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a pipe's output.

    `text` is the kept part of the line decoded as UTF-8 (invalid bytes become
    U+FFFD), without its `\\n` and without one trailing `\\r`. `dropped_bytes`
    counts the bytes past the cap that were discarded unseen. `terminated` is
    False only for a final line that ended at EOF without a `\\n`.
    """

    text: str
    dropped_bytes: int
    terminated: bool


def _utf8_safe_end(buf: bytearray | bytes) -> int:
    """Length of `buf` without a trailing, incomplete UTF-8 sequence.

    A line cut at the cap may end inside a multi-byte character; cutting back
    to the character's start keeps the kept text free of a spurious U+FFFD
    (and its encoded size within the cap).
    """
    n = len(buf)
    # A UTF-8 sequence is at most 4 bytes, so its lead byte is within the last 4.
    for back in range(1, min(4, n) + 1):
        b = buf[n - back]
        if b & 0xC0 == 0x80:  # continuation byte: keep looking for the lead
            continue
        if b < 0x80:
            return n
        if b >= 0xF0:
            need = 4
        elif b >= 0xE0:
            need = 3
        elif b >= 0xC0:
            need = 2
        else:  # pragma: no cover - excluded by the continuation test above
            return n
        return n - back if back < need else n
    return n


class LineSplitter:
    """Incremental splitter: feed it chunks of bytes, get complete `Line`s back.

    Holds at most `max_line_bytes` of the current line; bytes past the cap are
    counted in `dropped_bytes` and discarded at once. `iter_lines` drives it
    from a file descriptor; it is public for sources that are not a pipe.
    """

    __slots__ = ("_dropped", "_kept", "_last_byte", "_max", "_pending")

    def __init__(self, max_line_bytes: int = C.MAX_LINE_BYTES) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self._max = max_line_bytes
        self._kept = bytearray()
        self._dropped = 0
        # The last byte of the current line seen so far (kept or not), so a
        # "\r" before "\n" is recognised even when it fell past the cap.
        self._last_byte = -1
        # True once any byte of an unfinished line has arrived.
        self._pending = False

    def _take(self, data: bytes, start: int, end: int) -> None:
        if end <= start:
            return
        self._pending = True
        self._last_byte = data[end - 1]
        room = self._max - len(self._kept)
        if room > 0:
            take = min(room, end - start)
            self._kept += data[start : start + take]
            start += take
        self._dropped += end - start

    def _finish(self, terminated: bool) -> Line:
        kept, dropped = self._kept, self._dropped
        if self._last_byte == 0x0D:
            # The "\r" was the line's last byte: if anything was dropped it was
            # dropped too (the cap filled before it), otherwise it is kept.
            if dropped:
                dropped -= 1
            else:
                del kept[-1]
        if dropped:
            end = _utf8_safe_end(kept)
            dropped += len(kept) - end
            del kept[end:]
        line = Line(kept.decode("utf-8", errors="replace"), dropped, terminated)
        self._kept = bytearray()
        self._dropped = 0
        self._last_byte = -1
        self._pending = False
        return line

    def feed(self, data: bytes) -> list[Line]:
        """Add one chunk; return the lines it completed (possibly none)."""
        lines: list[Line] = []
        pos = 0
        n = len(data)
        while pos < n:
            nl = data.find(b"\n", pos)
            if nl < 0:
                self._take(data, pos, n)
                break
            self._take(data, pos, nl)
            lines.append(self._finish(terminated=True))
            pos = nl + 1
        return lines

    def close(self) -> Line | None:
        """End of input: the unterminated last line, if any bytes of one arrived."""
        if not self._pending:
            return None
        return self._finish(terminated=False)


def _read(fd: int, size: int) -> bytes:
    """os.read that survives EINTR and non-blocking descriptors; b"" means EOF."""
    while True:
        try:
            return os.read(fd, size)
        except InterruptedError:
            # PEP 475 retries for us unless a signal handler raised; be explicit anyway.
            continue
        except BlockingIOError:
            # A descriptor left in non-blocking mode: wait for it instead of spinning.
            select.select([fd], [], [])
        except OSError as exc:
            # A pty master reports EIO once the other side has closed: that is EOF.
            if exc.errno == errno.EIO:
                return b""
            raise


def iter_lines(
    fd: int, *, max_line_bytes: int = C.MAX_LINE_BYTES, chunk: int = C.READ_CHUNK
) -> Iterator[Line]:
    """Read a pipe's file descriptor with os.read until EOF, yielding Lines.

    At most `max_line_bytes` of any line (plus one chunk being scanned) is held
    in memory, however long the line is. Blank lines are yielded as `""` (the
    caller decides to skip them). A final line without `\\n` is yielded with
    `terminated=False`. The descriptor is not closed.
    """
    if chunk < 1:
        raise ValueError("chunk must be at least 1")
    splitter = LineSplitter(max_line_bytes)
    while True:
        data = _read(fd, chunk)
        if not data:
            break
        yield from splitter.feed(data)
    last = splitter.close()
    if last is not None:
        yield last
