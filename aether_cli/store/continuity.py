"""`session_continuity.json`: the pickup note, and the rule that no update of it is lost.

Promises:

- redacted and atomic: the record passes through `redact_obj` and is written
  by `atomic_write`, stamped with `updated_at`;
- no lost updates: the file carries `_update_seq`. This object remembers the
  sequence it last read or wrote; finding another one on disk means another
  writer got there first, and the write is refused (`StaleWriteError`)
  instead of overwriting its update. The check and the write happen under the
  `WriteLock`, so two processes cannot both pass the check.

- a damaged record is refused, never half-used: besides a file that does
  not parse, one larger than `MAX_BYTES`, or a known field of the wrong type
  (`problem`), raises `CorruptMemoryError` naming the file; `set_aside` moves
  such a file into `runs/` (kept, never overwritten) for `recovery` to rebuild.

- no session is dropped: a write keeps the other sessions the file held (the
  one it replaces at the top level too) in `other_sessions`, newest first, at
  most `MAX_OTHER_SESSIONS` (two branches merged leave two sessions, each
  resumable).

It knows the fields' types (a committed, untrusted file must not reach the
code that reads them with another one), not their meaning (the caller's).
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import Any

from aether_cli import ids
from aether_cli.errors import AetherError, CorruptMemoryError, StorageError
from aether_cli.redact import redact_obj
from aether_cli.store.clock import Clock, iso_utc
from aether_cli.store.files import atomic_write, dumps, read_object
from aether_cli.store.layout import Layout
from aether_cli.store.lock import WriteLock

# A record is a few KB (a line per unfinished task): anything this big is not one.
MAX_BYTES = 16 << 20
_COUNT_LIMIT = 1 << 53

# The known fields and what each must be; others are kept and not looked at.
_STRINGS = (
    "status",
    "objective",
    "resume_instructions",
    "tokenizer",
    "tokenizer_note",
    "agent_format",
    "updated_at",
)
_COUNTS = ("episode", "restarts", "window", "agent_compactions", "agent_exit_code", "_update_seq")
_LISTS = ("active_tasks", "memory_locations")
_OBJECTS = ("settings", "continuity")
# Other sessions' records, kept whole so each stays resumable (a merge of two branches).
OTHER_SESSIONS = "other_sessions"
MAX_OTHER_SESSIONS = 20


def _is_count(value: Any) -> bool:
    return type(value) is int and 0 <= value < _COUNT_LIMIT


def problem(data: Any) -> str | None:
    """Why a parsed record cannot be used (a field of the wrong type), or None if it can.

    A missing field is no problem (older records lack some); a present one
    must have its type, and `session_id`, which names the ledger file, must be
    a valid id.
    """
    if not isinstance(data, dict):
        return f"expected a JSON object, found {type(data).__name__}"
    if "session_id" in data and not ids.valid_task_id(data["session_id"]):
        return "session_id is not a session id"
    if not isinstance(data.get("last_checkpoint", ""), str | None):
        return "last_checkpoint is not a checkpoint id"
    command = data.get("command", [])
    if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
        return "command is not a list of strings"
    percent = data.get("context_usage_percent", 0)
    if type(percent) not in (int, float) or not math.isfinite(percent):
        return "context_usage_percent is not a number"
    checks = (
        (_STRINGS, lambda v: isinstance(v, str), "a string"),
        (_COUNTS, _is_count, "a non-negative integer"),
        (_LISTS, lambda v: isinstance(v, list), "a list"),
        (_OBJECTS, lambda v: isinstance(v, dict), "an object"),
    )
    for names, ok, what in checks:
        for name in names:
            if name in data and not ok(data[name]):
                return f"{name} is not {what}"
    return _others_problem(data.get(OTHER_SESSIONS, []))


def _others_problem(others: Any) -> str | None:
    if not isinstance(others, list) or len(others) > MAX_OTHER_SESSIONS:
        return f"{OTHER_SESSIONS} is not a list of at most {MAX_OTHER_SESSIONS} records"
    for item in others:
        if (
            not isinstance(item, dict)
            or OTHER_SESSIONS in item
            or not isinstance(item.get("session_id"), str)
        ):
            return f"{OTHER_SESSIONS} holds something that is not a session's record"
        if (why := problem(item)) is not None:
            return f"{OTHER_SESSIONS}: session {item['session_id']!r}: {why}"
    return None


def stamp(record: dict[str, Any]) -> str:
    """A record's `updated_at` ("" if it has none): ISO 8601 in one format, so it sorts as text."""
    value = record.get("updated_at")
    return value if isinstance(value, str) else ""


def sessions_of(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every session a record holds (the top level and `other_sessions`), by id, each without
    `other_sessions`; for a session found twice, the newer record."""
    found: dict[str, dict[str, Any]] = {}
    others = record.get(OTHER_SESSIONS)
    for item in [record, *(others if isinstance(others, list) else [])]:
        if not isinstance(item, dict):
            continue
        sid = item.get("session_id")
        if not isinstance(sid, str) or not ids.valid_task_id(sid):
            continue
        flat = {k: v for k, v in item.items() if k != OTHER_SESSIONS}
        if sid not in found or stamp(flat) > stamp(found[sid]):
            found[sid] = flat
    return found


def others_list(sessions: dict[str, dict[str, Any]], top: Any) -> list[dict[str, Any]]:
    """The records of `sessions` but `top`'s, newest first, at most `MAX_OTHER_SESSIONS`."""
    rest = [r for sid, r in sessions.items() if sid != top]
    rest.sort(key=lambda r: (stamp(r), str(r.get("session_id"))), reverse=True)
    return rest[:MAX_OTHER_SESSIONS]


def union_sessions(preferred: dict[str, Any], other: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every session the two records hold, by id; for one in both, the newer record
    (`preferred`'s on a tie)."""
    sessions = sessions_of(other) if other is not None else {}
    for sid, rec in sessions_of(preferred).items():
        if sid not in sessions or stamp(rec) >= stamp(sessions[sid]):
            sessions[sid] = rec
    return sessions


def carry_sessions(new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """`new` (one session's record about to be written) with every other session it or `old`
    held kept in `other_sessions`: a write never drops another session's record."""
    sessions = union_sessions(new, old if old is not None and problem(old) is None else None)
    record = {k: v for k, v in new.items() if k != OTHER_SESSIONS}
    others = others_list(sessions, record.get("session_id"))
    if others:
        record[OTHER_SESSIONS] = others
    return record


class StaleWriteError(AetherError):
    """`session_continuity.json` changed on disk since this process last read or wrote it.

    Another writer got there first; overwriting would lose its update.
    """


class Continuity:
    """Reads and writes session_continuity.json, tracking the `_update_seq` last seen."""

    def __init__(self, layout: Layout, clock: Clock, write_lock: WriteLock) -> None:
        self._layout = layout
        self._clock = clock
        self._write_lock = write_lock
        self._seq_seen: int | None = None

    def _seq_of(self, data: dict[str, Any] | None) -> int:
        if data is None:
            return 0
        seq = data.get("_update_seq", 0)
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise CorruptMemoryError(
                f"{self._layout.continuity_path}: _update_seq is not a non-negative integer"
            )
        return seq

    def _seq_on_disk(self) -> int:
        return self._on_disk()[1]

    def _on_disk(self) -> tuple[dict[str, Any] | None, int]:
        data = read_object(self._layout.continuity_path, limit=MAX_BYTES)
        return data, self._seq_of(data)

    def read(self) -> dict[str, Any] | None:
        """The file, None if absent; CorruptMemoryError if damaged. Remembers its `_update_seq`."""
        path = self._layout.continuity_path
        data = read_object(path, limit=MAX_BYTES)
        if data is not None and (why := problem(data)) is not None:
            raise CorruptMemoryError(f"{path}: {why}")
        seq = self._seq_of(data)
        if data is not None:
            self._seq_seen = seq
        return data

    def set_aside(self, stamp: str) -> Path:
        """Move the (damaged) file to `runs/session_continuity.json.bad-<stamp>[-N]`; return where.

        Moved, not copied: a huge file costs nothing, and a symlink or a folder
        in its place moves as itself. The caller holds the write lock. A name
        already taken is never replaced.
        """
        path, runs = self._layout.continuity_path, self._layout.runs_dir
        self._layout.ensure_dir(runs)
        base = runs / f"{path.name}.bad-{stamp}"
        target, n = base, 1
        while os.path.lexists(target):
            n += 1
            target = base.with_name(f"{base.name}-{n}")
        try:
            os.rename(path, target)
        except OSError as exc:
            raise StorageError(path, f"moving it aside to {target}", exc) from exc
        # The record this object knew is gone by its own hand: the next write starts afresh.
        self._seq_seen = None
        return target

    def write(self, data: dict[str, Any]) -> dict[str, Any]:
        """Write `data` with `updated_at` and the next `_update_seq`; return what was written.

        StaleWriteError, writing nothing, if the sequence on disk is not the one last seen.
        """
        path = self._layout.continuity_path
        with self._write_lock.held():
            current, on_disk = self._on_disk()
            if self._seq_seen is not None and on_disk != self._seq_seen:
                raise StaleWriteError(
                    f"{path}: changed by another writer (expected _update_seq "
                    f"{self._seq_seen}, found {on_disk}); not overwriting it"
                )
            record = redact_obj(carry_sessions(data, current))
            record["updated_at"] = iso_utc(self._clock())
            record["_update_seq"] = on_disk + 1
            self._layout.ensure_dir(self._layout.root)
            try:
                atomic_write(path, dumps(record))
            except StorageError:
                # A failed folder fsync leaves our record in place: remember it, or the
                # next write would take its own update for another writer's.
                with contextlib.suppress(AetherError, OSError):
                    if self._seq_on_disk() == on_disk + 1:
                        self._seq_seen = on_disk + 1
                raise
            self._seq_seen = on_disk + 1
            return record
