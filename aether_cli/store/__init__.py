"""The `.memory/` folder on disk: layout, lock, atomic JSON files, ledger.

Every byte aether writes under `.memory/` goes through this package, so the
promises of the memory layout (docs: shared/memory-layout.md) are kept in one
place and no caller can forget one of them:

- atomic and deterministic: JSON goes through `files.dumps` (sorted keys,
  2-space indent) and `files.atomic_write` (temp file, fsync, rename);
- redacted: every value passes through `redact.redact_obj` before it is
  written (task files, checkpoints, continuity, project memory, the ledger,
  the heartbeat); only `runs/start.prompt` is written as given, because it is
  built from already-redacted memory and must reach the agent verbatim;
- safe against a hostile checkout: a symlink planted inside `.memory` is
  never followed (writes and reads refuse it, naming the file), and ids that
  become file names are checked first, so nothing lands outside the folder;
- one writer: `acquire()` takes a non-blocking file lock on
  `runs/aether.lock` (released by the kernel if the holder dies, even by
  SIGKILL) and records who holds it in `runs/lock.json`;
- no lost updates: `session_continuity.json` carries `_update_seq`, and a
  store that finds a sequence number it did not expect refuses to overwrite
  (`StaleWriteError`); read-modify-write steps are serialised across
  processes by a short-lived lock on `runs/write.lock`;
- checkpoints are created read-only and exclusively, and never rewritten.

Who keeps which promise (each module states its own):

- `files`: deterministic JSON bytes, atomic and no-follow reads and writes,
  the filesystem seam for fault injection;
- `layout`: the paths, safe folder creation, `init` and the temp-file sweep;
- `lock`: the run lock and its holder's liveness, the write lock;
- `continuity`, `tasks`, `checkpoints`, `project_memory`: one file kind each;
- `index`: context_index.json, derived from the checkpoint and task files;
- `runs`, `ledger`: the local files of a live run;
- `texts`, `clock`: default file texts, and how time is spelt.

`memory.MemoryStore` is the facade callers use: it owns the root, the clock
and the locks, and hands each part what it needs in its constructor; no part
reaches back into it. The import graph runs one way: `files`, `texts` and
`clock` at the bottom, then `layout`, `lock`, the file kinds, and `memory`.

The package knows nothing about tokens, processes or what an agent said:
callers hand it plain dicts and get plain dicts back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aether_cli.store.clock import iso_utc
from aether_cli.store.continuity import StaleWriteError
from aether_cli.store.lock import proc_start
from aether_cli.store.memory import MemoryStore
from aether_cli.store.tasks import InvalidTaskIdError
from aether_cli.store.texts import DEFAULT_CONFIG_TOML

if TYPE_CHECKING:
    from aether_cli.store.ledger import Ledger, read_ledger


def __getattr__(name: str) -> Any:
    # The ledger is loaded on first use: `aether status` never needs it.
    if name in ("Ledger", "read_ledger"):
        from aether_cli.store import ledger

        return getattr(ledger, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "DEFAULT_CONFIG_TOML",
    "InvalidTaskIdError",
    "Ledger",
    "MemoryStore",
    "StaleWriteError",
    "iso_utc",
    "proc_start",
    "read_ledger",
]
