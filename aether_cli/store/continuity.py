"""`session_continuity.json`: the pickup note, and the rule that no update of it is lost.

Promises:

- redacted and atomic: the record passes through `redact_obj` and is written
  by `atomic_write`, stamped with `updated_at`;
- no lost updates: the file carries `_update_seq`. This object remembers the
  sequence it last read or wrote; finding another one on disk means another
  writer got there first, and the write is refused (`StaleWriteError`)
  instead of overwriting its update. The check and the write happen under the
  `WriteLock`, so two processes cannot both pass the check.

It knows nothing of the fields' meaning (the contract is the caller's).
"""

from __future__ import annotations

import contextlib
from typing import Any

from aether_cli.errors import AetherError, CorruptMemoryError, StorageError
from aether_cli.redact import redact_obj
from aether_cli.store.clock import Clock, iso_utc
from aether_cli.store.files import atomic_write, dumps, read_object
from aether_cli.store.layout import Layout
from aether_cli.store.lock import WriteLock


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
        return self._seq_of(read_object(self._layout.continuity_path))

    def read(self) -> dict[str, Any] | None:
        """The file, None if absent; CorruptMemoryError if unreadable. Remembers its `_update_seq`."""
        data = read_object(self._layout.continuity_path)
        seq = self._seq_of(data)
        if data is not None:
            self._seq_seen = seq
        return data

    def write(self, data: dict[str, Any]) -> dict[str, Any]:
        """Write `data` with `updated_at` and the next `_update_seq`; return what was written.

        StaleWriteError, writing nothing, if the sequence on disk is not the one last seen.
        """
        path = self._layout.continuity_path
        with self._write_lock.held():
            on_disk = self._seq_on_disk()
            if self._seq_seen is not None and on_disk != self._seq_seen:
                raise StaleWriteError(
                    f"{path}: changed by another writer (expected _update_seq "
                    f"{self._seq_seen}, found {on_disk}); not overwriting it"
                )
            record = redact_obj(dict(data))
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
