"""`context_index.json`: every checkpoint and task, with its size in bytes and tokens.

Promises:

- derived only: rebuilt from the files on disk, under the `WriteLock`; it
  holds nothing that is not also elsewhere, so a stale or lost index costs a
  rebuild, never data;
- deterministic: no timestamps, and the file is rewritten only when its
  bytes change;
- redacted: each entry passes through `redact_obj` as it is built;
- `pruned` lists the checkpoints `aether gc` removed (read from pruned.json,
  which survives a rebuild), only while their files are gone;
- one broken file is listed as `"error": "unreadable"` rather than blocking
  the index (and with it every new checkpoint).

A checkpoint entry and a task entry are built by the same loop; `_Section`
says what differs between them. Entries are cached by file, keyed by
(size, mtime, inode), so a checkpoint written beside 1,000 others does not
re-read them all. It knows nothing of how checkpoints or tasks are written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from aether_cli.errors import AetherError
from aether_cli.redact import redact_obj
from aether_cli.store.files import atomic_write, dumps, loads, read_bytes, read_object
from aether_cli.store.layout import Layout
from aether_cli.store.lock import WriteLock
from aether_cli.store.pruned import Pruned

_Stamp = tuple[int, int, int]  # (size, mtime_ns, inode) of a file when its entry was built


class _Section(NamedTuple):
    """What a section of the index takes from each file, and where its token figure comes from."""

    name: str
    # The fields copied from the file into its entry.
    fields: Callable[[dict[str, Any]], dict[str, Any]]
    # A figure the file records about itself (preferred to any other), or None.
    own_tokens: Callable[[dict[str, Any]], Any]
    # Checkpoints list `"tokens": null` when no figure is known; tasks leave the key out.
    always_tokens: bool
    # A task given a fresh figure is re-read; a cached checkpoint entry is always kept.
    counts_bypass_cache: bool


def _checkpoint_tokens(data: dict[str, Any]) -> Any:
    metrics = data.get("metrics")
    return metrics.get("checkpoint_tokens") if isinstance(metrics, dict) else None


_CHECKPOINTS = _Section(
    name="checkpoints",
    fields=lambda data: {"episode": data.get("episode"), "trigger": data.get("trigger")},
    own_tokens=_checkpoint_tokens,
    always_tokens=True,
    counts_bypass_cache=False,
)
_TASKS = _Section(
    name="tasks",
    fields=lambda data: {"status": data.get("status")},
    own_tokens=lambda data: None,
    always_tokens=False,
    counts_bypass_cache=True,
)


class _TokenFigures:
    """Where an entry's token count comes from: the file, the caller, or the previous index."""

    def __init__(self, counts: dict[str, int], previous: dict[str, tuple[Any, Any]]) -> None:
        self._counts = counts
        self._previous = previous

    def given(self, rel: str, ident: str) -> bool:
        """Whether the caller passed a (non-zero) figure for this file."""
        return bool(self._counts.get(rel) or self._counts.get(ident))

    def figure(self, rel: str, ident: str, size: int, own: Any) -> int | None:
        for value in (own, self._counts.get(rel), self._counts.get(ident)):
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        old_size, old_tokens = self._previous.get(rel, (None, None))
        if old_size == size and isinstance(old_tokens, int):
            return old_tokens
        return None


def totals(checkpoints: list[dict[str, Any]], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    listed = checkpoints + tasks
    return {
        "checkpoints": len(checkpoints),
        "tasks": len(tasks),
        "open_tasks": sum(1 for t in tasks if t.get("status") not in ("done", None)),
        "bytes": sum(e.get("bytes", 0) for e in listed),
        "tokens": sum(e.get("tokens") or 0 for e in listed),
        "latest_checkpoint": checkpoints[-1]["id"] if checkpoints else None,
    }


class ContextIndex:
    """Builds and reads context_index.json for one `.memory` folder."""

    def __init__(self, layout: Layout, write_lock: WriteLock) -> None:
        self._layout = layout
        self._write_lock = write_lock
        # Entries by relative path, with the stamp of the file they were built from.
        # (A stale entry could only mislabel a derived summary until the next update.)
        self._cache: dict[str, tuple[_Stamp, dict[str, Any]]] = {}

    def read(self) -> dict[str, Any] | None:
        """context_index.json, None if absent; CorruptMemoryError if broken."""
        return read_object(self._layout.context_index_path)

    def update(self, *, token_counts: dict[str, int] | None = None) -> dict[str, Any]:
        """Rebuild context_index.json from the files; return it (see `MemoryStore.update_context_index`)."""
        counts = dict(token_counts or {})
        layout = self._layout
        with self._write_lock.held():
            figures = _TokenFigures(counts, self._previous_figures())
            checkpoint_files = [
                (cid, os.path.join(layout.checkpoints_dir, f"{cid}.json"))
                for _, cid in layout.checkpoint_entries()
            ]
            checkpoints = self._entries(_CHECKPOINTS, checkpoint_files, figures)
            tasks = self._entries(_TASKS, layout.task_paths(), figures)
            index = {"checkpoints": checkpoints, "tasks": tasks, "totals": totals(checkpoints, tasks)}
            # What gc removed, from the committed record (this index is derived and may be
            # rebuilt any time); a pruned id whose file is back (a merge) is not listed.
            on_disk = {cid for cid, _ in checkpoint_files}
            pruned = sorted(Pruned(layout).read() - on_disk, key=lambda cid: (len(cid), cid))
            if pruned:
                index["pruned"] = pruned
            # Entries were redacted as they were built (and cached so); the rest are
            # counts and checkpoint ids.
            self._write_if_changed(dumps(index))
            return index

    def _previous_figures(self) -> dict[str, tuple[Any, Any]]:
        """(bytes, tokens) of each file in the index on disk, if it can be read."""
        previous: dict[str, tuple[Any, Any]] = {}
        with contextlib.suppress(AetherError, OSError):
            old = self.read()
            for section in (_CHECKPOINTS.name, _TASKS.name):
                # The file is untrusted (a hand edit, a merge): a section of another type is none.
                items = old.get(section) if isinstance(old, dict) else None
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and isinstance(item.get("file"), str):
                        previous[item["file"]] = (item.get("bytes"), item.get("tokens"))
        return previous

    def _entries(
        self, section: _Section, files: list[tuple[str, str]], figures: _TokenFigures
    ) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for ident, path in files:
            rel = self._layout.rel(path)
            if not (section.counts_bypass_cache and figures.given(rel, ident)):
                cached = self._cached(rel, path)
                if cached is not None:
                    entries.append(cached)
                    continue
            entry = self._build(section, ident, rel, path, figures)
            if entry is not None:
                entries.append(entry)
        return entries

    def _build(
        self, section: _Section, ident: str, rel: str, path: str, figures: _TokenFigures
    ) -> dict[str, Any] | None:
        """The entry of one file; None if it is gone, an "unreadable" entry if it does not parse."""
        try:
            raw = read_bytes(path)
            data = loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except FileNotFoundError:
            return None
        except (AetherError, ValueError):
            # Listed but flagged: one broken file must not block new checkpoints.
            return {"id": ident, "file": rel, "error": "unreadable"}
        entry: dict[str, Any] = {"id": ident, "file": rel, **section.fields(data), "bytes": len(raw)}
        tokens = figures.figure(rel, ident, len(raw), section.own_tokens(data))
        if tokens is not None or section.always_tokens:
            entry["tokens"] = tokens
        entry = redact_obj(entry)
        self._remember(rel, path, entry)
        return entry

    def _cached(self, rel: str, path: str) -> dict[str, Any] | None:
        hit = self._cache.get(rel)
        if hit is None:
            return None
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return dict(hit[1]) if hit[0] == (st.st_size, st.st_mtime_ns, st.st_ino) else None

    def _remember(self, rel: str, path: str, entry: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if st.st_size == entry.get("bytes"):
                self._cache[rel] = ((st.st_size, st.st_mtime_ns, st.st_ino), dict(entry))

    def _write_if_changed(self, data: bytes) -> None:
        path: Path = self._layout.context_index_path
        try:
            unchanged = read_bytes(path) == data
        except (FileNotFoundError, AetherError):
            unchanged = False
        if not unchanged:
            self._layout.ensure_dir(self._layout.root)
            atomic_write(path, data)
