"""The run ledger: an append-only JSONL record of one session (runs/<session>.jsonl).

Promises:

- every record is redacted and stamped with `seq` (no gaps, continuing an
  existing file) and `ts`, and written by one `os.write` of the whole line in
  O_APPEND mode, so a crash leaves at worst a torn last line;
- a torn last line is skipped by readers, and repaired (cut off, with a
  `ledger_repair` record saying how many bytes) only by the run-lock holder;
- a record that cannot be serialised becomes a `ledger_error` record instead
  of stopping the run; a failed append leaves no partial line behind;
- a ledger is never read or written through a symlink.

Every filesystem call that can fail goes through `files.FS` (looked up at
call time), so fault-injection tests reach it. It knows nothing of what a
record means.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from aether_cli.errors import AetherError, CorruptMemoryError, StorageError
from aether_cli.redact import redact_obj, redact_text
from aether_cli.store import files
from aether_cli.store.clock import Clock, iso_utc, utc_now
from aether_cli.store.files import (
    decode_error_text,
    dumps_line,
    loads,
    open_nofollow,
    refuse_hard_link,
    write_all,
)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class Ledger:
    """An append-only JSONL record of one session (runs/<session>.jsonl).

    Each record is redacted, stamped with `seq` (continuing after the last
    complete line of an existing file) and `ts`, and written with a single
    `os.write` of the whole line in O_APPEND mode, so a crash can at worst
    leave a torn last line, which readers skip. Appends are not fsynced (the
    ledger is hot); `close()` fsyncs.

    A torn last line found at open is repaired by a writer opened with
    `repair=True` (the holder of the run lock): it truncates the file back to
    its last complete line and appends a `ledger_repair` record saying how
    many bytes it cut, so `seq` has no gap and the repair is on record. Any
    other writer only closes the torn line off with a newline. An append the
    filesystem fails raises `StorageError` and leaves no partial line behind
    (a repairing writer truncates it away; the seq is reused by the next
    append).
    """

    def __init__(self, path: Path, *, clock: Clock | None = None, repair: bool = False) -> None:
        self.path = Path(path)
        self._clock = clock or utc_now
        self._mutex = threading.Lock()
        self._repair = repair
        self.repaired_bytes = 0
        if os.path.islink(self.path):
            raise CorruptMemoryError(f"{self.path}: is a symlink; refusing to write through it")
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _CLOEXEC
        try:
            self._fd: int | None = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if os.path.islink(self.path):
                raise CorruptMemoryError(f"{self.path}: is a symlink; refusing to write through it") from exc
            raise StorageError(self.path, "opening the ledger", exc) from exc
        refuse_hard_link(self._fd, self.path)
        # A failed append may have left part of a line: the next one must first undo it.
        self._dirty = False
        try:
            self._seq, good_end, size, torn = _scan_tail(self.path)
            self._end = size
            if torn and repair:
                self._truncate(good_end, "cutting a torn last line")
                self.repaired_bytes = size - good_end
                self.append(
                    {
                        "kind": "ledger_repair",
                        "truncated_bytes": self.repaired_bytes,
                        "note": "a torn last line (an interrupted write) was cut off",
                    }
                )
            elif torn:
                # Close off a torn line left by a killed writer so the next
                # record starts on a line of its own. A fragment that is a whole
                # record short only of its newline becomes that record again.
                self._write(b"\n", "closing a torn last line")
                fragment_seq = _seq_of_line(torn)
                if fragment_seq is not None and fragment_seq > self._seq:
                    self._seq = fragment_seq
        except BaseException:
            os.close(self._fd)
            self._fd = None
            raise

    @property
    def seq(self) -> int:
        """The seq of the last record written (0 for an empty ledger)."""
        return self._seq

    def _truncate(self, size: int, action: str) -> None:
        assert self._fd is not None
        try:
            files.FS.truncate(self._fd, size)
        except OSError as exc:
            raise StorageError(self.path, action, exc) from exc
        self._end = size
        self._dirty = False

    def _write(self, data: bytes, action: str) -> None:
        assert self._fd is not None
        try:
            write_all(self._fd, data)
        except OSError as exc:
            self._dirty = True
            if self._repair:
                # Best effort now; if this fails too, the next append retries before writing.
                with contextlib.suppress(StorageError):
                    self._truncate(self._end, "removing a partly written line")
            raise StorageError(self.path, action, exc) from exc
        self._end += len(data)

    def append(self, record: dict[str, Any]) -> int:
        """Redact `record`, add `seq` and `ts`, append it as one line; return its seq.

        A record that cannot be serialised (too deep, an unknown type) is
        replaced by a `ledger_error` record naming the problem, never an
        exception: the ledger must not stop a run. A filesystem failure raises
        `StorageError`; the record is then not written and its seq is reused.
        """
        with self._mutex:
            if self._fd is None:
                raise AetherError(f"{self.path}: ledger is closed")
            if self._dirty:
                if self._repair:
                    self._truncate(self._end, "removing a partly written line")
                else:
                    # Not ours to truncate: end the partial line so this record stands alone.
                    self._write(b"\n", "closing a partly written line")
                    self._dirty = False
            seq = self._seq + 1
            stamp = {"seq": seq, "ts": iso_utc(self._clock())}
            try:
                line = dumps_line({**redact_obj(record), **stamp})
            except (TypeError, ValueError, RecursionError) as exc:
                line = dumps_line(
                    {
                        "type": "ledger_error",
                        "error": f"{type(exc).__name__}: {exc}",
                        "record": redact_text(_bounded_repr(record)),
                        **stamp,
                    }
                )
            # One write for the whole line; a short write (disk full, signal)
            # is finished rather than left torn.
            self._write(line, "appending to the ledger")
            self._seq = seq
            return seq

    @property
    def size(self) -> int:
        """The ledger's size in bytes (what this writer knows of)."""
        return self._end

    def close(self) -> None:
        """Flush the ledger to disk and close it (idempotent); StorageError if the flush fails."""
        with self._mutex:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            try:
                files.FS.fsync(fd)
            except OSError as exc:
                raise StorageError(self.path, "fsync of the ledger", exc) from exc
            finally:
                os.close(fd)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _bounded_repr(value: Any, limit: int = 2000) -> str:
    try:
        return repr(value)[:limit]
    except RecursionError:  # nested deeper than repr() goes
        return "<nested too deep to show>"


def _reverse_lines(fh: Any, size: int, chunk: int = 1 << 16) -> Iterator[bytes]:
    """The newline-separated segments of a file from last to first, reading backwards in chunks.

    The first segment yielded is what follows the last newline: b"" for a
    well-terminated file, else a torn line.
    """
    pos = size
    pending: list[bytes] = []  # pieces of a segment that spans chunks, last piece first
    while pos > 0:
        start = max(0, pos - chunk)
        fh.seek(start)
        block = fh.read(pos - start)
        pos = start
        parts = block.split(b"\n")
        if len(parts) == 1:
            pending.append(block)
            continue
        yield parts[-1] + b"".join(reversed(pending))
        yield from reversed(parts[1:-1])
        pending = [parts[0]]
    yield b"".join(reversed(pending))


def _scan_tail(path: Path) -> tuple[int, int, int, bytes]:
    """(seq of the last complete record, where the complete lines end, file size, the torn tail).

    The torn tail is what follows the last newline (b"" for a well-terminated file).
    """
    with os.fdopen(open_nofollow(path), "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0, 0, 0, b""
        segments = _reverse_lines(fh, size)
        torn = next(segments)
        good_end = size - len(torn)
        for raw in segments:
            seq = _seq_of_line(raw)
            if seq is not None:
                return seq, good_end, size, torn
        return 0, good_end, size, torn


def _seq_of_line(raw: bytes) -> int | None:
    if not raw.strip():
        return None
    try:
        record = loads(raw)
    except ValueError:
        return None
    seq = record.get("seq") if isinstance(record, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


def read_ledger(path: Path, problems: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """The records of a ledger in order; the file is never modified.

    A torn last line (no newline) and any line that does not parse as a JSON
    object are skipped; if `problems` is given, each interior line skipped is
    added to it as "<path>: line N: <reason>" (blank lines and the torn tail,
    the normal trace of a kill, are not problems).
    """
    path = Path(path)
    with os.fdopen(open_nofollow(path), "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                return
            try:
                record = loads(raw)
            except ValueError as exc:
                if problems is not None and raw.strip():
                    reason = decode_error_text(exc) if isinstance(exc, orjson.JSONDecodeError) else str(exc)
                    problems.append(f"{path}: line {number}: {reason}")
                continue
            if isinstance(record, dict):
                yield record
            elif problems is not None:
                problems.append(f"{path}: line {number}: not a JSON object")


def last_record(path: Path, kind: str) -> dict[str, Any] | None:
    """The last complete record of `kind` in a ledger, read from the end; None if none or absent.

    Only lines that name the kind are parsed, so a long ledger of events is
    skipped at the speed of a byte search. The file is never modified.
    """
    needle = orjson.dumps({"kind": kind})[1:-1]  # '"kind":"<kind>"', as dumps_line spells it
    try:
        fd = open_nofollow(Path(path))
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "rb") as fh:
        segments = _reverse_lines(fh, fh.seek(0, os.SEEK_END))
        next(segments, None)  # what follows the last newline: empty, or a torn line
        for raw in segments:
            if needle not in raw:
                continue
            try:
                record = loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("kind") == kind:
                return record
    return None
