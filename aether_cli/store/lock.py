"""Who may write a `.memory/` folder: the run lock, and the short lock around each update.

Promises:

- one writer: `RunLock.acquire` takes a non-blocking file lock on
  `runs/aether.lock` and fails at once with `LockedError` naming the holder.
  The kernel drops the lock when the holder dies, however it dies (SIGKILL
  included), so a crash never leaves the folder locked;
- `runs/lock.json` records the holder {pid, command, started_at, proc_start,
  host}, redacted; on release it is removed while the lock is still held, and
  only if this process wrote it, so a new holder's record is never deleted;
- a holder is reported live only if its pid exists, is not a zombie and (on
  Linux) started at the recorded time, so a recycled pid is not the holder;
- `WriteLock` serialises read-modify-write steps across threads and
  processes (`runs/write.lock`, given up after 30 s); it is re-entrant, so a
  step may run another inside it.

It knows nothing of what the folder's files hold. filelock, socket and shlex
are imported where they are used: only a writer takes a lock, and
`aether status` must start fast.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aether_cli.errors import AetherError, CorruptMemoryError, LockedError
from aether_cli.redact import redact_obj
from aether_cli.store.clock import Clock, iso_utc
from aether_cli.store.files import atomic_write, dumps, pid_alive, read_json, refuse_hard_linked_path
from aether_cli.store.layout import Layout, check_dir

if TYPE_CHECKING:
    import filelock

WRITE_LOCK_TIMEOUT = 30.0


# ------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, starttime) of a Linux process from /proc, or None where there is no /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after
    # the last ")". Then field 3 (state) is index 0 and field 22 (starttime) 19.
    try:
        fields = raw[raw.rindex(b")") + 2 :].split()
        return fields[0].decode("ascii", "replace"), int(fields[19])
    except (ValueError, IndexError):
        return None


def proc_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux), for pid-reuse checks."""
    info = _proc_stat(pid)
    return None if info is None else info[1]


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _holder_alive(info: dict[str, Any], pid: int) -> bool:
    """Whether the process recorded in lock.json (on this host) still runs."""
    if not pid_alive(pid):
        return False
    current = _proc_stat(pid)
    if current is None:
        return True
    state, started = current
    if state == "Z":
        return False
    recorded = info.get("proc_start")
    return not (isinstance(recorded, int) and recorded != started)


# ------------------------------------------------------------- file locks


def _lock_timeout() -> type[Exception]:
    import filelock

    return filelock.Timeout


def _new_lock(path: Path, timeout: float) -> filelock.BaseFileLock:
    if os.path.islink(path):
        raise CorruptMemoryError(f"{path}: is a symlink; refusing to follow it")
    # filelock opens the file with O_TRUNC: through a hard link it would empty a file elsewhere.
    refuse_hard_linked_path(path)
    import filelock

    # thread_local=False: the supervisor may release from another thread
    # than the one that acquired.
    return filelock.FileLock(str(path), timeout=timeout, thread_local=False)


class RunLock:
    """The one-writer lock of a `.memory` folder (runs/aether.lock) and its record (runs/lock.json)."""

    def __init__(self, layout: Layout, clock: Clock) -> None:
        self._layout = layout
        self._clock = clock
        self._lock: filelock.BaseFileLock | None = None
        self._info_written = False

    @property
    def locked(self) -> bool:
        """Whether this process holds the lock through this object."""
        return self._lock is not None

    def acquire(self, command: list[str]) -> None:
        """Become the one writer, or raise `LockedError` at once; then sweep dead writers' temp files."""
        layout = self._layout
        if self._lock is not None:
            raise AetherError(f"{layout.root}: this process already holds the lock")
        layout.ensure_dir(layout.runs_dir)
        lock = _new_lock(layout.lock_path, timeout=0)
        try:
            lock.acquire()
        except _lock_timeout():
            raise LockedError(self._locked_message()) from None
        self._lock = lock
        try:
            pid = os.getpid()
            info = {
                "pid": pid,
                "command": [str(a) for a in command],
                "started_at": iso_utc(self._clock()),
                "proc_start": proc_start(pid),
                "host": _hostname(),
            }
            atomic_write(layout.lock_info_path, dumps(redact_obj(info)))
            self._info_written = True
            # Sole writer now: any temp file left is a dead writer's.
            layout.sweep()
        except BaseException:
            self.release()
            raise

    def ensure_unlocked(self) -> None:
        """Raise `LockedError` (naming the holder) at once if another process holds the lock."""
        layout = self._layout
        if self._lock is not None or not check_dir(layout.runs_dir):
            return
        if not os.path.lexists(layout.lock_path):
            return
        probe = _new_lock(layout.lock_path, timeout=0)
        try:
            probe.acquire()
        except _lock_timeout():
            raise LockedError(self._locked_message()) from None
        probe.release()

    def _locked_message(self) -> str:
        root = self._layout.root
        try:
            info = read_json(self._layout.lock_info_path)
        except (OSError, AetherError):
            info = None
        if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
            return f"{root} is locked by another aether process (it has not said which yet)"
        cmd = info.get("command")
        import shlex

        cmd_text = shlex.join(str(a) for a in cmd) if isinstance(cmd, list) else str(cmd)
        host = info.get("host")
        where = f" on {host}" if isinstance(host, str) and host != _hostname() else ""
        since = info.get("started_at", "?")
        # The pid is aether's own; the command is the agent's it supervises: say which is which.
        return (
            f"{root} is locked by aether (pid {info['pid']}{where}, since {since}), "
            f"supervising the agent command: {cmd_text}"
        )

    def release(self) -> None:
        """Give up the lock (if held here) and remove runs/lock.json."""
        lock, self._lock = self._lock, None
        if lock is None:
            return
        written, self._info_written = self._info_written, False
        try:
            # Removed while still locked, so a new holder's lock.json is never ours to delete;
            # and only if we wrote it (a planted symlink there is not ours either).
            if written:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._layout.lock_info_path)
        finally:
            lock.release()

    def holder(self) -> dict[str, Any] | None:
        """runs/lock.json of a live holder, else None. Never takes the lock; only reads.

        A holder on another host cannot be checked and is reported as recorded.
        """
        try:
            info = read_json(self._layout.lock_info_path)
        except (OSError, AetherError):
            return None
        if not isinstance(info, dict):
            return None
        pid = info.get("pid")
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            return None
        host = info.get("host")
        if isinstance(host, str) and host != _hostname():
            return info
        return info if _holder_alive(info, pid) else None


class WriteLock:
    """Serialises read-modify-write steps across threads and processes (runs/write.lock)."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._thread_lock = threading.RLock()
        self._file_lock: filelock.BaseFileLock | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the block; AetherError if another process keeps it past the timeout."""
        with self._thread_lock:
            path = self._layout.write_lock_path
            self._layout.ensure_dir(self._layout.runs_dir)
            if self._file_lock is None:
                self._file_lock = _new_lock(path, WRITE_LOCK_TIMEOUT)
            try:
                self._file_lock.acquire()
            except _lock_timeout():
                raise AetherError(
                    f"{path}: another aether process kept it for {WRITE_LOCK_TIMEOUT:.0f}s"
                ) from None
            try:
                yield
            finally:
                self._file_lock.release()
