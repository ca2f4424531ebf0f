"""`runs/`: the local, git-ignored files of a live run (ledgers, heartbeat, prompt, requests).

Promises:

- a ledger is named by a session id that `ids.valid_task_id` accepts, so it
  stays inside `runs/`; only the holder of the run lock repairs a torn tail;
- the heartbeat is redacted and atomic but not fsynced: it is rewritten
  often and only advisory, and a reader that cannot read it gets None;
- the launch prompt is written verbatim (it is built from already-redacted
  memory and must reach the agent as is), readable by its owner only;
- a checkpoint request is taken exactly once;
- the trust record (what this machine last ran, `trust.py`'s bytes) is read
  only if it is a small regular file, never through a symlink or a FIFO, and
  never raises: anything else is no record; it is written atomically, 0600.

It knows nothing of what a ledger record, a heartbeat or a prompt says.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aether_cli import ids
from aether_cli.errors import AetherError, UsageError
from aether_cli.redact import redact_obj
from aether_cli.store.clock import Clock, iso_utc
from aether_cli.store.files import atomic_write, dumps, read_json
from aether_cli.store.layout import Layout
from aether_cli.store.lock import RunLock

# A FIFO or symlink planted at the record must neither block nor be followed.
_RECORD_READ = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
)

if TYPE_CHECKING:  # the ledger is loaded by the run that opens one, not by `aether status`
    from aether_cli.store.ledger import Ledger


class RunFiles:
    """The files of runs/ other than the locks."""

    def __init__(self, layout: Layout, clock: Clock, run_lock: RunLock) -> None:
        self._layout = layout
        self._clock = clock
        self._run_lock = run_lock

    def ledger_path(self, session_id: str) -> Path:
        """runs/<session_id>.jsonl (absolute; may not exist); UsageError for a bad session id."""
        if not ids.valid_task_id(session_id):
            raise UsageError(f"invalid session id {session_id!r}")
        return self._layout.runs_dir / f"{session_id}.jsonl"

    def open_ledger(self, session_id: str) -> Ledger:
        """The run ledger of `session_id`, opened for appending (repairing only under the run lock)."""
        path = self.ledger_path(session_id)
        self._layout.ensure_dir(self._layout.runs_dir)
        from aether_cli.store.ledger import Ledger

        return Ledger(path, clock=self._clock, repair=self._run_lock.locked)

    def write_heartbeat(self, data: dict[str, Any]) -> None:
        """runs/heartbeat.json: atomic, but not fsynced (it is rewritten often and only advisory)."""
        self._layout.ensure_dir(self._layout.runs_dir)
        atomic_write(self._layout.heartbeat_path, dumps(redact_obj(data)), durable=False)

    def read_heartbeat(self) -> dict[str, Any] | None:
        """runs/heartbeat.json, or None if it is absent or unreadable (it is advisory)."""
        try:
            data = read_json(self._layout.heartbeat_path)
        except (OSError, AetherError):
            return None
        return data if isinstance(data, dict) else None

    def write_prompt(self, text: str) -> Path:
        """Write the launch prompt verbatim (not redacted) and return its path."""
        self._layout.ensure_dir(self._layout.runs_dir)
        path = self._layout.prompt_path
        atomic_write(path, text.encode("utf-8", "replace"), mode=0o600)
        return path

    def request_checkpoint(self) -> None:
        """Ask a live run for a manual checkpoint (creates runs/checkpoint.request)."""
        self._layout.ensure_dir(self._layout.runs_dir)
        requested_at = iso_utc(self._clock())
        atomic_write(self._layout.checkpoint_request_path, dumps({"requested_at": requested_at}))

    def take_checkpoint_request(self) -> bool:
        """True exactly once per request: removes runs/checkpoint.request if it existed."""
        try:
            os.unlink(self._layout.checkpoint_request_path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True

    def trust_record(self, limit: int) -> tuple[bytes | None, tuple[int, int] | None]:
        """runs/trusted.json's bytes (None unless a regular file of at most `limit` bytes) and the
        (device, inode) of runs/ (None unless a real folder). Never raises: runs/ is only local state."""
        try:
            st = os.lstat(self._layout.runs_dir)
        except OSError:
            return None, None
        if not stat.S_ISDIR(st.st_mode):
            return None, None
        folder = (st.st_dev, st.st_ino)
        try:
            fd = os.open(self._layout.trust_path, _RECORD_READ)
        except OSError:
            return None, folder
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
                return None, folder
            data = os.read(fd, limit + 1)
        except OSError:
            return None, folder
        finally:
            os.close(fd)
        return (data if len(data) <= limit else None), folder

    def write_trust_record(self, make: Callable[[tuple[int, int]], bytes]) -> None:
        """Write runs/trusted.json as `make((device, inode) of runs/)` returns it (atomic, 0600)."""
        self._layout.ensure_dir(self._layout.runs_dir)
        st = os.lstat(self._layout.runs_dir)
        atomic_write(self._layout.trust_path, make((st.st_dev, st.st_ino)), mode=0o600)
