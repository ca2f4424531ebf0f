"""`checkpoints/`: one immutable JSON file per checkpoint, `chk_<seq>_<hash>.json`.

Promises:

- a checkpoint is never rewritten: it is created exclusively (a file of the
  same name is never replaced) and read-only, with `seq` one past the highest
  on disk, chosen under the `WriteLock` so two writers cannot take the same;
- it is redacted, and sealed: `sha256` covers its content (all but `id` and
  `sha256`), and the id carries the first 8 hex digits of it too;
- numbers may repeat after a git merge of two branches (each wrote its own
  `chk_000003_…`; the hashes differ, so the files never collide): the latest
  is then the one created last, and the next number is still one past the
  highest;
- a read checks the seal: content that no longer matches it raises
  `ChecksumMismatchError`, unless the user accepted that checkpoint
  (`trust`); a ref never becomes an arbitrary path ("/", "\\", NUL and ".."
  are refused).

A write or a drop calls the `refresh` it is given before it lets go of the
write lock (the store rebuilds its context index there, so no writer sees
the index lag). It knows nothing of tasks, the index itself or the meaning
of a checkpoint's fields beyond their defaults.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aether_cli import ids
from aether_cli.errors import (
    AetherError,
    ChecksumMismatchError,
    CorruptMemoryError,
    NotFoundError,
    UsageError,
)
from aether_cli.redact import redact_obj
from aether_cli.store.clock import Clock, iso_utc
from aether_cli.store.files import atomic_write, dumps, read_object
from aether_cli.store.layout import Layout
from aether_cli.store.lock import WriteLock

# Reading a tied checkpoint's `created_at`: a checkpoint is a few KB; a bigger file is not trusted.
_PEEK_LIMIT = 16 << 20


def checkpoint_digest(checkpoint: dict[str, Any]) -> str:
    """The sha256 (hex) of a checkpoint's content: everything but `id` and `sha256`."""
    content = {k: v for k, v in checkpoint.items() if k not in ("id", "sha256")}
    return hashlib.sha256(dumps(content)).hexdigest()


def _check_ref(ref: str) -> str:
    """`ref` stripped of blanks and ".json"; UsageError if empty or shaped like a path."""
    if not isinstance(ref, str) or not ref.strip():
        raise UsageError("empty checkpoint reference")
    if any(bad in ref for bad in ("/", "\\", "\0", "..")):
        raise UsageError(f"invalid checkpoint reference {ref!r}")
    return ref.strip().removesuffix(".json")


class Checkpoints:
    """Writes, finds, reads and drops the checkpoints of one `.memory` folder."""

    def __init__(self, layout: Layout, clock: Clock, write_lock: WriteLock) -> None:
        self._layout = layout
        self._clock = clock
        self._write_lock = write_lock
        # Checkpoints whose sha256 mismatch the user accepted (`resume --force`).
        self._trusted: set[str] = set()

    def all_ids(self) -> list[str]:
        """Checkpoint ids in sequence order (other names and temp files are ignored)."""
        return [cid for _, cid in self._layout.checkpoint_entries()]

    def latest_id(self) -> str | None:
        """The id with the highest sequence number, or None if there is no checkpoint."""
        return self._newest(self._layout.checkpoint_entries())

    def _newest(self, entries: list[tuple[int, str]]) -> str | None:
        """The last of `entries`; of several with the top number (two merged branches each wrote
        one), the one created last, then the greater id, so every clone picks the same."""
        if not entries:
            return None
        tied = [cid for seq, cid in entries if seq == entries[-1][0]]
        if len(tied) == 1:
            return tied[0]
        return max(tied, key=lambda cid: (self._created_at(cid), cid))

    def _created_at(self, checkpoint_id: str) -> str:
        try:
            value = (read_object(self._layout.checkpoint_file(checkpoint_id), limit=_PEEK_LIMIT) or {}).get(
                "created_at"
            )
        except (AetherError, OSError):
            return ""
        return value if isinstance(value, str) else ""

    def path(self, ref: str) -> Path:
        """The absolute path of an existing checkpoint (resolved like `resolve`)."""
        return self._layout.checkpoint_file(self.resolve(ref))

    def _sealed(self, draft: dict[str, Any], seq: int, latest: str | None) -> dict[str, Any]:
        """The checkpoint `draft` becomes as number `seq`: redacted, defaults filled, hashed, named."""
        checkpoint = redact_obj({k: v for k, v in draft.items() if k not in ("id", "sha256")})
        from aether_cli.checkpoint import with_defaults  # not needed by readers

        with_defaults(checkpoint)
        checkpoint["seq"] = seq
        if "parent" not in draft:
            checkpoint["parent"] = latest
        if not checkpoint.get("created_at"):
            checkpoint["created_at"] = iso_utc(self._clock())
        digest = checkpoint_digest(checkpoint)
        checkpoint["sha256"] = digest
        checkpoint["id"] = ids.format_checkpoint_id(seq, digest)
        return checkpoint

    def write(self, draft: dict[str, Any], *, refresh: Callable[[], object]) -> dict[str, Any]:
        """Write a new immutable checkpoint from `draft` (see `MemoryStore.write_checkpoint`)."""
        if not isinstance(draft, dict):
            raise TypeError("a checkpoint draft must be a dict")
        with self._write_lock.held():
            entries = self._layout.checkpoint_entries()
            seq = entries[-1][0] + 1 if entries else 1
            checkpoint = self._sealed(draft, seq, self._newest(entries))
            self._layout.ensure_dir(self._layout.checkpoints_dir)
            path = self._layout.checkpoint_file(checkpoint["id"])
            try:
                # Born read-only: the open descriptor may still write it once.
                atomic_write(path, dumps(checkpoint), mode=0o444, exclusive=True)
            except FileExistsError:
                raise AetherError(f"{path}: already exists; checkpoints are never rewritten") from None
            refresh()
            return checkpoint

    def resolve(self, ref: str) -> str:
        """The full id `ref` names: an exact id, a unique prefix, a sequence number, or "latest"."""
        ref = _check_ref(ref)
        entries = self._layout.checkpoint_entries()
        known = [cid for _, cid in entries]
        if ref == "latest":
            if not known:
                raise NotFoundError(f"no checkpoints in {self._layout.checkpoints_dir}")
            return self._newest(entries) or known[-1]
        if ref in known:
            return ref
        if ref.isascii() and ref.isdigit():
            matches = [cid for seq, cid in entries if seq == int(ref)]
        else:
            matches = [cid for cid in known if cid.startswith(ref)]
        if not matches:
            raise NotFoundError(f"no checkpoint matches {ref!r}")
        if len(matches) > 1:
            raise UsageError(f"checkpoint {ref!r} is ambiguous: {', '.join(matches)}")
        return matches[0]

    def read(self, ref: str) -> dict[str, Any]:
        """The checkpoint `ref` names, its seal checked (see `MemoryStore.read_checkpoint`)."""
        checkpoint_id = self.resolve(ref)
        path = self._layout.checkpoint_file(checkpoint_id)
        checkpoint = read_object(path)
        if checkpoint is None:
            raise NotFoundError(f"checkpoint {checkpoint_id} was removed")
        if checkpoint.get("id") != checkpoint_id:
            raise CorruptMemoryError(f"{path}: its id field is {checkpoint.get('id')!r}")
        try:
            digest = checkpoint_digest(checkpoint)
        except (TypeError, ValueError) as exc:  # nested deeper than a checkpoint can be written
            raise CorruptMemoryError(f"{path}: cannot be hashed ({exc})") from None
        recorded = checkpoint.get("sha256")
        # The id carries the hash too, so removing the sha256 field does not switch the check off.
        intact = recorded in (None, digest) and ids.checkpoint_suffix(checkpoint_id) == digest[:8]
        if not intact and checkpoint_id not in self._trusted:
            raise ChecksumMismatchError(f"{path}: content does not match its sha256 (edited after writing?)")
        return checkpoint

    def trust(self, checkpoint_id: str) -> None:
        """Read `checkpoint_id` from now on although its hash no longer matches."""
        self._trusted.add(self.resolve(checkpoint_id))

    def accepted_modified(self, checkpoint_id: str) -> bool:
        """Whether `checkpoint_id` is read despite a hash mismatch."""
        return checkpoint_id in self._trusted

    def _start_limit(self, start: str, known: set[str], skipped: list[str]) -> int | None:
        """The sequence number of `start`; notes in `skipped` if it is no id or is missing."""
        limit = ids.checkpoint_seq(start)
        if limit is None:
            skipped.append(f"{start}: not a checkpoint id")
        elif start not in known:
            skipped.append(f"{self._layout.checkpoint_file(start)}: missing")
        return limit

    def newest_intact(
        self, start: str | None = None, *, accept_modified: bool = False
    ) -> tuple[str | None, list[str]]:
        """The newest checkpoint at or before `start` that reads back intact, and what was skipped."""
        entries = self._layout.checkpoint_entries()
        skipped: list[str] = []
        limit: int | None = None
        if start is not None:
            limit = self._start_limit(start, {cid for _, cid in entries}, skipped)
        for seq, checkpoint_id in reversed(entries):
            # At `start`'s own number only `start` itself: another file with that number was
            # written on another branch (a merge), not before it.
            if limit is not None and (seq > limit or (seq == limit and checkpoint_id != start)):
                continue
            try:
                self.read(checkpoint_id)
            except ChecksumMismatchError as exc:
                if accept_modified:
                    self._trusted.add(checkpoint_id)
                    return checkpoint_id, skipped
                skipped.append(str(exc))
                continue
            except (AetherError, OSError) as exc:
                skipped.append(str(exc))
                continue
            return checkpoint_id, skipped
        return None, skipped

    def drop(self, ref: str, *, refresh: Callable[[], object], force: bool = False) -> str:
        """Delete one checkpoint and return its id. The latest one needs `force` (else UsageError)."""
        with self._write_lock.held():
            checkpoint_id = self.resolve(ref)
            if checkpoint_id == self.latest_id() and not force:
                raise UsageError(
                    f"{checkpoint_id} is the latest checkpoint (the one a resume starts from); "
                    "use --force to drop it anyway"
                )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._layout.checkpoint_file(checkpoint_id))
            refresh()
            return checkpoint_id

    def prune(
        self, doomed: list[str], *, record: Callable[[list[str]], None], refresh: Callable[[], object]
    ) -> list[tuple[str, int]]:
        """Delete the checkpoints `doomed` names (never the latest); return (id, bytes) of each removed.

        All under one write lock and one index rebuild. The ids are recorded
        (`record`) before any file goes, so a crash halfway leaves a record
        naming a file that is still there (harmless: the index lists as pruned
        only what is gone), never a removed file nobody recorded.
        """
        with self._write_lock.held():
            latest = self.latest_id()
            known = set(self.all_ids())
            targets = [cid for cid in doomed if cid in known and cid != latest]
            if not targets:
                return []
            record(targets)
            removed: list[tuple[str, int]] = []
            for cid in targets:
                path = self._layout.checkpoint_file(cid)
                try:
                    size = os.lstat(path).st_size
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                removed.append((cid, size))
            refresh()
            return removed
