"""`pruned.json`: the ids of the checkpoints `aether gc` removed from `checkpoints/`.

Promises:

- the record survives a rebuild: `context_index.json` is derived and may be
  rebuilt at any time, so the ids gc removed live in this small committed
  file and the index copies them in (`pruned`) on every rebuild;
- a set, so it merges: ids are sorted and unique, one per line; a copy that
  does not parse (a git merge left conflict markers, a hand edit) is read as
  the set of well-formed checkpoint ids found in its text, which is exactly
  the union a merge of two sets should give; the next write tidies it;
- untrusted input: only strings shaped like checkpoint ids count, the file is
  read without following a symlink and only up to `MAX_BYTES`; a file that
  cannot be read at all counts as empty (a parent is then called "missing"
  rather than "pruned": a message, never a failure).

It knows nothing of why a checkpoint was removed or of the files themselves.
"""

from __future__ import annotations

import os
import re

from aether_cli import ids
from aether_cli.errors import AetherError
from aether_cli.store.files import atomic_write, dumps, loads, read_bytes
from aether_cli.store.layout import Layout

PRUNED_FILE = "pruned.json"
# 40 bytes an id: room for a quarter of a million pruned checkpoints.
MAX_BYTES = 10 << 20
_ID_IN_TEXT = re.compile(r"chk_\d{6,}_[0-9a-f]{8}")


def _well_formed(value: object) -> bool:
    return isinstance(value, str) and ids.checkpoint_seq(value) is not None


def parse(raw: bytes) -> set[str]:
    """The pruned ids in the bytes of a pruned.json (tolerant; see the module docstring)."""
    try:
        data = loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("pruned"), list):
        return {v for v in data["pruned"] if _well_formed(v)}
    return set(_ID_IN_TEXT.findall(raw.decode("utf-8", "replace")))


class Pruned:
    """Reads and extends pruned.json for one `.memory` folder (callers hold the write lock to extend it)."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self.path = layout.root / PRUNED_FILE

    def read(self) -> set[str]:
        """The recorded ids; an absent, oversized or unreadable file counts as empty."""
        try:
            if os.lstat(self.path).st_size > MAX_BYTES:
                return set()
            return parse(read_bytes(self.path))
        except (OSError, AetherError):
            return set()

    def add(self, new_ids: list[str]) -> None:
        """Record `new_ids` as pruned (a union with what is recorded), before their files go.

        Rewrites the file only when its bytes change (a merged copy is tidied here)."""
        merged = sorted(self.read() | {i for i in new_ids if _well_formed(i)}, key=_order)
        data = dumps({"pruned": merged})
        try:
            current: bytes | None = read_bytes(self.path)
        except (OSError, AetherError):
            current = None
        if current != data and (merged or current is not None):
            self._layout.ensure_dir(self._layout.root)
            atomic_write(self.path, data)


def _order(checkpoint_id: str) -> tuple[int, str]:
    return (ids.checkpoint_seq(checkpoint_id) or 0, checkpoint_id)
