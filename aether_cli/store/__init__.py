"""The `.memory/` folder on disk: layout, lock, atomic JSON files, ledger.

Every byte aether writes under `.memory/` goes through this module, so the
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
  processes by a short-lived lock on `runs/write.lock`.

It knows nothing about tokens, processes or what an agent said: callers hand
it plain dicts and get plain dicts back.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import os
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from aether_cli import constants as C
from aether_cli import ids
from aether_cli.constants import TASK_STATUSES
from aether_cli.errors import (
    AetherError,
    ChecksumMismatchError,
    CorruptMemoryError,
    LockedError,
    NotFoundError,
    StorageError,
    UsageError,
)
from aether_cli.redact import redact_obj, redact_text
from aether_cli.store import files
from aether_cli.store.files import (
    atomic_write,
    decode_error_text,
    dumps,
    dumps_line,
    loads,
    pid_alive,
    read_bytes,
    read_json,
    sweep_temp_files,
    write_all,
)

if TYPE_CHECKING:
    import filelock

# filelock, socket, shlex and tomllib are imported where they are used: only a
# writer takes a lock, and `aether status` must start fast.

WRITE_LOCK_FILE = "write.lock"
WRITE_LOCK_TIMEOUT = 30.0

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class StaleWriteError(AetherError):
    """`session_continuity.json` changed on disk since this process last read or wrote it.

    Another writer got there first; overwriting would lose its update.
    """


class InvalidTaskIdError(AetherError, ValueError):
    """A task id that may not become a file name (see constants.TASK_ID_PATTERN)."""


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z` suffix, e.g. `2025-01-02T03:04:05.678Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc_now() -> datetime:
    return datetime.now(UTC)


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


# ------------------------------------------------------------- default files

DEFAULT_CONFIG_TOML = f"""\
# aether settings for this project (user-editable).
# Precedence: command-line flags, then AETHER_* environment variables, then
# this file, then built-in defaults. Uncomment what you want to change.

# command = ["my-agent", "--flag"]   # the agent's argv
# objective = "Migrate the API to v2"
# model = "claude-sonnet-4"          # used to look up the window when context_window is not set
# context_window = {C.DEFAULT_WINDOW}       # tokens
# soft_at = {C.DEFAULT_SOFT_AT}                   # fraction: send a budget advisory
# checkpoint_at = {C.DEFAULT_CHECKPOINT_AT}             # fraction: checkpoint and relaunch
# emergency_at = {C.DEFAULT_EMERGENCY_AT}              # fraction: checkpoint at once and relaunch
# checkpoint_timeout = {C.DEFAULT_CHECKPOINT_TIMEOUT}       # seconds to wait for the agent's own checkpoint
# max_restarts = {C.DEFAULT_MAX_RESTARTS}
"""

README_TEXT = f"""\
# .memory — aether's memory for this project

aether runs an LLM agent with a bounded context. When the agent's context
fills up, aether distils its state into this folder, stops the agent and
relaunches it with a short prompt rebuilt from what is here. Everything in
this folder except `runs/` is small, readable JSON (sorted keys, 2-space
indent) meant to be committed, reviewed in diffs and carried between machines.
Secrets the agent printed are redacted before anything is written here.

## What each file is

- `{C.CONFIG_FILE}` — this project's settings (agent command, model, window,
  thresholds). Edit freely.
- `{C.CONTINUITY_FILE}` — pickup instructions: the session, its status,
  the last checkpoint, the open tasks and how to resume. Read first.
- `{C.PROJECT_MEMORY_FILE}` — long-term state: the objective, committed facts,
  finished tasks, learned figures.
- `{C.CONTEXT_INDEX_FILE}` — every checkpoint and task with its size in bytes
  and tokens.
- `{C.TASKS_DIR}/task_<id>_state.json` — one small file per task.
- `{C.CHECKPOINTS_DIR}/chk_<seq>_<hash>.json` — one file per checkpoint, never
  rewritten; the number is the sequence, the suffix a content hash.
- `{C.TEMPLATES_DIR}/` — optional overrides of aether's prompt templates.
- `{C.RUNS_DIR}/` — local only and git-ignored: run ledgers (JSONL), the live
  heartbeat, the start prompt and the lock of a running `aether run`.

## How to resume

    aether status    # what is in here, and whether a run is live
    aether resume    # continue from the last checkpoint

Do not edit checkpoints by hand; drop one with `aether` instead.
"""

GITIGNORE_TEXT = f"""\
# Local run state (ledgers, heartbeat, lock): never committed.
{C.RUNS_DIR}/
# Leftovers of interrupted atomic writes.
*.tmp
"""

TEMPLATES_README_TEXT = """\
# Prompt template overrides

A file placed here with the same name as one of aether's bundled prompt
templates replaces it for this project. Leave the folder empty to use the
defaults.
"""

_TASK_DEFAULTS: dict[str, Any] = {
    "title": "",
    "status": "pending",
    "progress": 0.0,
    "next_action": "",
    "notes": "",
    "files": [],
}

_CHECKPOINT_DEFAULTS: dict[str, Any] = {
    "session_id": "",
    "episode": 0,
    "trigger": "manual",
    "objective": "",
    "progress": [],
    "state": {},
    "next_actions": [],
    "errors": [],
    "tasks": [],
    "distiller": "rules",
    "distiller_note": "",
    "metrics": {"episode_tokens": None, "checkpoint_tokens": None, "tool_calls": 0, "events": 0},
    "workspace": {"git_head": None, "dirty_hash": None},
    "tokenizer": "",
}

_PROJECT_MEMORY_DEFAULTS: dict[str, Any] = {
    "objective": "",
    "facts": [],
    "finished_tasks": [],
    "learned": {},
}


def _checkpoint_digest(checkpoint: dict[str, Any]) -> str:
    content = {k: v for k, v in checkpoint.items() if k not in ("id", "sha256")}
    return hashlib.sha256(dumps(content)).hexdigest()


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _lock_timeout() -> type[Exception]:
    import filelock

    return filelock.Timeout


class MemoryStore:
    """All reads and writes of one `.memory` directory.

    `clock` returns the current time (a seam for deterministic tests). One
    instance is meant to live as long as the process that owns a run; it
    remembers the `_update_seq` it last saw and whether it holds the lock.
    """

    def __init__(self, root: Path, *, clock: Callable[[], datetime] | None = None) -> None:
        # abspath, not resolve(): the folder is addressed as the user named it.
        self.root = Path(os.path.abspath(root))
        self.runs_dir = self.root / C.RUNS_DIR
        self.tasks_dir = self.root / C.TASKS_DIR
        self.checkpoints_dir = self.root / C.CHECKPOINTS_DIR
        self.templates_dir = self.root / C.TEMPLATES_DIR
        self._clock = clock or _utc_now
        self._lock: filelock.BaseFileLock | None = None
        self._seq_seen: int | None = None
        self._thread_lock = threading.RLock()
        self._write_lock: filelock.BaseFileLock | None = None
        self._lock_info_written = False
        # Checkpoints whose sha256 mismatch the user accepted (`resume --force`).
        self._trusted: set[str] = set()
        # Context-index entries by file, with the (size, mtime) they were read at: a
        # checkpoint with 1,000 others beside it must not re-read them all.
        # (A stale entry could only mislabel a derived summary until the next update.)
        self._index_cache: dict[str, tuple[tuple[int, int, int], dict[str, Any]]] = {}

    def __repr__(self) -> str:
        return f"MemoryStore({str(self.root)!r})"

    def now(self) -> str:
        """The store clock's current time as an ISO 8601 UTC string."""
        return iso_utc(self._clock())

    # --------------------------------------------------------- folders

    def exists(self) -> bool:
        """Whether the `.memory` directory exists."""
        return self.root.is_dir()

    def _check_dir(self, path: Path) -> bool:
        """True if `path` is a real directory, False if absent; a symlink or a file is refused."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(st.st_mode):
            raise CorruptMemoryError(f"{path}: is a symlink; refusing to follow it")
        if not stat.S_ISDIR(st.st_mode):
            raise CorruptMemoryError(f"{path}: not a directory")
        return True

    def _ensure_dir(self, path: Path) -> bool:
        """Make `path` (and the root) if missing; True if it was created."""
        if path == self.root:
            # The root itself may be a symlink the user made; only what is inside must not be.
            if path.is_dir():
                return False
            if os.path.lexists(path):
                raise CorruptMemoryError(f"{path}: not a directory")
            os.makedirs(path, exist_ok=True)
            return True
        self._ensure_dir(self.root)
        if self._check_dir(path):
            return False
        try:
            os.mkdir(path)
        except FileExistsError:
            self._check_dir(path)
            return False
        return True

    def _rel(self, path: Path | str) -> str:
        # String slicing: Path.relative_to costs ~15 µs, and the context index asks
        # for thousands of these on every checkpoint.
        text, prefix = str(path), str(self.root) + os.sep
        if text.startswith(prefix) and os.sep == "/":
            return text[len(prefix) :]
        return Path(path).relative_to(self.root).as_posix()

    # --------------------------------------------------------- init

    def init(self, config_toml: str | None = None) -> list[str]:
        """Create whatever part of the layout is missing; return what was created (relative paths).

        Never overwrites an existing file, so it is safe to run again. Folders
        are listed with a trailing "/". `config_toml` (redacted, and checked
        to be valid TOML) replaces the commented default config. Leftover
        temp files of killed writers are swept.
        """
        if config_toml is not None:
            # Settings can carry an agent argv with a key in it; config.toml is committed.
            config_toml = redact_text(config_toml)
            import tomllib

            try:
                tomllib.loads(config_toml)
            except tomllib.TOMLDecodeError as exc:
                raise UsageError(f"config is not valid TOML: {exc}") from exc
        created: list[str] = []
        self._ensure_dir(self.root)
        for folder in (self.tasks_dir, self.checkpoints_dir, self.templates_dir, self.runs_dir):
            if self._ensure_dir(folder):
                created.append(self._rel(folder) + "/")
        files = (
            (self.root / C.README_FILE, README_TEXT),
            (self.root / ".gitignore", GITIGNORE_TEXT),
            (self.root / C.CONFIG_FILE, DEFAULT_CONFIG_TOML if config_toml is None else config_toml),
            (self.templates_dir / C.README_FILE, TEMPLATES_README_TEXT),
        )
        for path, text in files:
            try:
                atomic_write(path, text.encode("utf-8"), exclusive=True)
            except FileExistsError:
                continue
            created.append(self._rel(path))
        self.sweep()
        return created

    def sweep(self) -> int:
        """Remove temp files left by killed writers in every folder of the layout."""
        count = 0
        for folder in (self.root, self.tasks_dir, self.checkpoints_dir, self.templates_dir, self.runs_dir):
            if self._check_dir(folder):
                count += sweep_temp_files(folder)
        return count

    # --------------------------------------------------------- the run lock

    @property
    def lock_path(self) -> Path:
        """runs/aether.lock (absolute)."""
        return self.runs_dir / C.LOCK_FILE

    @property
    def lock_info_path(self) -> Path:
        """runs/lock.json (absolute)."""
        return self.runs_dir / C.LOCK_INFO_FILE

    def _new_lock(self, path: Path, timeout: float) -> filelock.BaseFileLock:
        if os.path.islink(path):
            raise CorruptMemoryError(f"{path}: is a symlink; refusing to follow it")
        import filelock

        # thread_local=False: the supervisor may release from another thread
        # than the one that acquired.
        return filelock.FileLock(str(path), timeout=timeout, thread_local=False)

    def acquire(self, command: list[str]) -> None:
        """Become the one writer of this `.memory`, or raise `LockedError` at once.

        Takes a non-blocking lock on runs/aether.lock and records
        {pid, command, started_at, proc_start, host} in runs/lock.json. The
        kernel drops the lock when this process dies, however it dies.
        """
        if self._lock is not None:
            raise AetherError(f"{self.root}: this process already holds the lock")
        self._ensure_dir(self.runs_dir)
        lock = self._new_lock(self.lock_path, timeout=0)
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
                "started_at": self.now(),
                "proc_start": proc_start(pid),
                "host": _hostname(),
            }
            atomic_write(self.lock_info_path, dumps(redact_obj(info)))
            self._lock_info_written = True
            # Sole writer now: any temp file left is a dead writer's.
            self.sweep()
        except BaseException:
            self.release()
            raise

    def ensure_unlocked(self) -> None:
        """Raise `LockedError` (naming the holder) at once if another process holds the run lock.

        A cheap early check, so a second `aether run` fails before it loads
        anything heavy; `acquire()` stays the real test (the lock may be taken
        between the two).
        """
        if self._lock is not None or not self._check_dir(self.runs_dir):
            return
        if not os.path.lexists(self.lock_path):
            return
        probe = self._new_lock(self.lock_path, timeout=0)
        try:
            probe.acquire()
        except _lock_timeout():
            raise LockedError(self._locked_message()) from None
        probe.release()

    def _locked_message(self) -> str:
        try:
            info = read_json(self.lock_info_path)
        except (OSError, AetherError):
            info = None
        if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
            return f"{self.root} is locked by another aether process (it has not said which yet)"
        cmd = info.get("command")
        import shlex

        cmd_text = shlex.join(str(a) for a in cmd) if isinstance(cmd, list) else str(cmd)
        host = info.get("host")
        where = f" on {host}" if isinstance(host, str) and host != _hostname() else ""
        return (
            f"{self.root} is locked by pid {info['pid']}{where} ({cmd_text}) "
            f"since {info.get('started_at', '?')}"
        )

    def release(self) -> None:
        """Give up the lock (if this store holds it) and remove runs/lock.json."""
        lock, self._lock = self._lock, None
        if lock is None:
            return
        written, self._lock_info_written = self._lock_info_written, False
        try:
            # Removed while still locked, so a new holder's lock.json is never ours to delete;
            # and only if we wrote it (a planted symlink there is not ours either).
            if written:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.lock_info_path)
        finally:
            lock.release()

    @property
    def locked(self) -> bool:
        """Whether this store currently holds the run lock."""
        return self._lock is not None

    @contextlib.contextmanager
    def holding(self, command: list[str]) -> Iterator[MemoryStore]:
        """`with store.holding(argv): ...` — acquire, then release however the block ends."""
        self.acquire(command)
        try:
            yield self
        finally:
            self.release()

    def holder(self) -> dict[str, Any] | None:
        """runs/lock.json of a live holder, else None. Never takes the lock; only reads.

        Live means the pid exists, is not a zombie, and (on Linux) started at the
        recorded time, so a recycled pid is not mistaken for the holder. A holder
        on another host cannot be checked and is reported as recorded.
        """
        try:
            info = read_json(self.lock_info_path)
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
        if not pid_alive(pid):
            return None
        current = _proc_stat(pid)
        if current is not None:
            state, started = current
            if state == "Z":
                return None
            recorded = info.get("proc_start")
            if isinstance(recorded, int) and recorded != started:
                return None
        return info

    # --------------------------------------------------------- serialised updates

    @contextlib.contextmanager
    def _mutating(self) -> Iterator[None]:
        """Serialise a read-modify-write across threads and processes (runs/write.lock)."""
        with self._thread_lock:
            self._ensure_dir(self.runs_dir)
            if self._write_lock is None:
                self._write_lock = self._new_lock(self.runs_dir / WRITE_LOCK_FILE, WRITE_LOCK_TIMEOUT)
            try:
                self._write_lock.acquire()
            except _lock_timeout():
                raise AetherError(
                    f"{self.runs_dir / WRITE_LOCK_FILE}: another aether process kept it for "
                    f"{WRITE_LOCK_TIMEOUT:.0f}s"
                ) from None
            try:
                yield
            finally:
                self._write_lock.release()

    def _write_json(self, path: Path, value: Any, *, mode: int = 0o644, exclusive: bool = False) -> bytes:
        data = dumps(value)
        atomic_write(path, data, mode=mode, exclusive=exclusive)
        return data

    def _read_object(self, path: Path | str) -> dict[str, Any] | None:
        """The JSON object at `path`, None if absent, CorruptMemoryError if anything else."""
        try:
            value = read_json(path)
        except FileNotFoundError:
            return None
        if not isinstance(value, dict):
            raise CorruptMemoryError(f"{path}: expected a JSON object, found {type(value).__name__}")
        return value

    # --------------------------------------------------------- session_continuity.json

    @property
    def continuity_path(self) -> Path:
        """session_continuity.json (absolute)."""
        return self.root / C.CONTINUITY_FILE

    def _seq_of(self, data: dict[str, Any] | None) -> int:
        if data is None:
            return 0
        seq = data.get("_update_seq", 0)
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise CorruptMemoryError(f"{self.continuity_path}: _update_seq is not a non-negative integer")
        return seq

    def read_continuity(self) -> dict[str, Any] | None:
        """session_continuity.json, None if absent; CorruptMemoryError if unreadable.

        Remembers its `_update_seq`, so a later write can tell whether someone
        else wrote in between.
        """
        data = self._read_object(self.continuity_path)
        seq = self._seq_of(data)
        if data is not None:
            self._seq_seen = seq
        return data

    def write_continuity(self, data: dict[str, Any]) -> dict[str, Any]:
        """Write session_continuity.json with `updated_at` and `_update_seq` set; return what was written.

        `_update_seq` becomes the sequence on disk plus one. If this store has
        read or written sequence N before and the disk now holds another one,
        another writer won a race: `StaleWriteError`, and nothing is written.
        The contract fields are the caller's business.
        """
        with self._mutating():
            on_disk = self._seq_of(self._read_object(self.continuity_path))
            if self._seq_seen is not None and on_disk != self._seq_seen:
                raise StaleWriteError(
                    f"{self.continuity_path}: changed by another writer (expected _update_seq "
                    f"{self._seq_seen}, found {on_disk}); not overwriting it"
                )
            record = redact_obj(dict(data))
            record["updated_at"] = self.now()
            record["_update_seq"] = on_disk + 1
            self._ensure_dir(self.root)
            try:
                self._write_json(self.continuity_path, record)
            except StorageError:
                # A failed folder fsync leaves our record in place: remember it, or the
                # next write would take its own update for another writer's.
                with contextlib.suppress(AetherError, OSError):
                    if self._seq_of(self._read_object(self.continuity_path)) == on_disk + 1:
                        self._seq_seen = on_disk + 1
                raise
            self._seq_seen = on_disk + 1
            return record

    # --------------------------------------------------------- task_states/

    @staticmethod
    def valid_task_id(task_id: str) -> bool:
        """Whether `task_id` may become part of a file name.

        1-64 letters, digits, `_`, `-` or `.` (not a leading `.`), and not
        shaped like a secret (a file name cannot be redacted).
        """
        return ids.valid_task_id(task_id)

    def task_file(self, task_id: str) -> str:
        """`task_states/task_<id>_state.json` (relative to root); InvalidTaskIdError if not allowed.

        InvalidTaskIdError is a ValueError (and an AetherError).
        """
        if not self.valid_task_id(task_id):
            raise InvalidTaskIdError(
                f"invalid task id {task_id!r}: use 1-64 letters, digits, '_', '-' or '.' "
                "(not a leading '.', not a secret)"
            )
        return f"{C.TASKS_DIR}/{ids.task_file_name(task_id)}"

    def write_task(self, task: dict[str, Any]) -> str:
        """Write one task's state file, filling missing contract fields; return its relative path.

        Defaults: title "", status "pending", progress 0.0, next_action "",
        notes "", files [], updated_at now (a given `updated_at` is kept).
        A bad id raises InvalidTaskIdError and writes nothing; a bad status,
        progress or files value raises ValueError.
        """
        if not isinstance(task, dict):
            raise TypeError("a task must be a dict")
        rel = self.task_file(task.get("id"))  # type: ignore[arg-type]
        record = copy.deepcopy(_TASK_DEFAULTS)
        record.update(task)
        if record["status"] not in TASK_STATUSES:
            raise ValueError(f"task {task['id']}: unknown status {record['status']!r}")
        progress = record["progress"]
        if isinstance(progress, bool) or not isinstance(progress, int | float) or not math.isfinite(progress):
            raise ValueError(f"task {task['id']}: progress must be a number between 0 and 1")
        record["progress"] = min(1.0, max(0.0, float(progress)))
        files = record["files"]
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise ValueError(f"task {task['id']}: files must be a list of strings")
        if not record.get("updated_at"):
            record["updated_at"] = self.now()
        record = redact_obj(record)
        record["id"] = task["id"]
        self._ensure_dir(self.tasks_dir)
        self._write_json(self.root / rel, record)
        return rel

    def read_task(self, task_id: str) -> dict[str, Any] | None:
        """One task's state, None if it has no file; CorruptMemoryError if the file is broken."""
        return self._read_object(self.root / self.task_file(task_id))

    def _task_paths(self) -> list[tuple[str, str]]:
        # Paths as strings (scandir's, absolute and normalised: they print as a Path
        # would): a Path per file was a third of listing 1,000 tasks.
        if not self._check_dir(self.tasks_dir):
            return []
        found: list[tuple[str, str]] = []
        match = ids.TASK_FILE.match
        with os.scandir(self.tasks_dir) as entries:
            for entry in entries:
                m = match(entry.name)
                if m is not None and self.valid_task_id(m.group(1)):
                    found.append((m.group(1), entry.path))
        return sorted(found)

    def list_tasks(self) -> list[dict[str, Any]]:
        """Every task state, sorted by id; a broken file raises CorruptMemoryError naming it."""
        tasks: list[dict[str, Any]] = []
        for task_id, path in self._task_paths():
            task = self._read_object(path)
            if task is None:  # removed since the listing
                continue
            if task.get("id", task_id) != task_id:
                raise CorruptMemoryError(f"{path}: holds task {task.get('id')!r}, not {task_id!r}")
            task.setdefault("id", task_id)
            tasks.append(task)
        return tasks

    # --------------------------------------------------------- checkpoints/

    def _checkpoint_entries(self) -> list[tuple[int, str]]:
        if not self._check_dir(self.checkpoints_dir):
            return []
        found: list[tuple[int, str]] = []
        for entry in os.scandir(self.checkpoints_dir):
            parsed = ids.parse_checkpoint_file(entry.name)
            if parsed is not None:
                found.append(parsed)
        return sorted(found)

    def checkpoint_ids(self) -> list[str]:
        """Checkpoint ids in sequence order (other names and temp files are ignored)."""
        return [cid for _, cid in self._checkpoint_entries()]

    def latest_checkpoint_id(self) -> str | None:
        """The id with the highest sequence number, or None if there is no checkpoint."""
        entries = self._checkpoint_entries()
        return entries[-1][1] if entries else None

    def checkpoint_path(self, checkpoint_id: str) -> Path:
        """The absolute path of an existing checkpoint (resolved like `resolve_checkpoint`)."""
        return self.checkpoints_dir / f"{self.resolve_checkpoint(checkpoint_id)}.json"

    def write_checkpoint(self, draft: dict[str, Any]) -> dict[str, Any]:
        """Write a new immutable checkpoint from `draft`; return it as written.

        Adds `seq` (1 + the highest existing), `parent` (the latest id, unless
        the draft names one), `created_at` (now, unless given), defaults for
        missing contract fields, `sha256` of the content without `id` and
        `sha256`, and `id` = `chk_<seq:06d>_<first 8 hex of sha256>`. The
        file is created exclusively (never replacing one) read-only, and
        context_index.json is brought up to date.
        """
        if not isinstance(draft, dict):
            raise TypeError("a checkpoint draft must be a dict")
        with self._mutating():
            entries = self._checkpoint_entries()
            seq = entries[-1][0] + 1 if entries else 1
            checkpoint = redact_obj({k: v for k, v in draft.items() if k not in ("id", "sha256")})
            for key, default in _CHECKPOINT_DEFAULTS.items():
                if key not in checkpoint:
                    checkpoint[key] = copy.deepcopy(default)
            checkpoint["seq"] = seq
            if "parent" not in draft:
                checkpoint["parent"] = entries[-1][1] if entries else None
            if not checkpoint.get("created_at"):
                checkpoint["created_at"] = self.now()
            digest = _checkpoint_digest(checkpoint)
            checkpoint["sha256"] = digest
            checkpoint["id"] = ids.format_checkpoint_id(seq, digest)
            self._ensure_dir(self.checkpoints_dir)
            path = self.checkpoints_dir / f"{checkpoint['id']}.json"
            try:
                # Born read-only: the open descriptor may still write it once.
                self._write_json(path, checkpoint, mode=0o444, exclusive=True)
            except FileExistsError:
                raise AetherError(f"{path}: already exists; checkpoints are never rewritten") from None
            self.update_context_index()
            return checkpoint

    def resolve_checkpoint(self, ref: str) -> str:
        """The full id `ref` names: an exact id, a unique prefix, a sequence number, or "latest".

        NotFoundError if nothing matches; UsageError listing the candidates if
        several do. A ref with "/", "\\", NUL or ".." is refused (UsageError),
        so a ref never becomes an arbitrary path.
        """
        if not isinstance(ref, str) or not ref.strip():
            raise UsageError("empty checkpoint reference")
        if any(bad in ref for bad in ("/", "\\", "\0", "..")):
            raise UsageError(f"invalid checkpoint reference {ref!r}")
        ref = ref.strip().removesuffix(".json")
        entries = self._checkpoint_entries()
        ids = [cid for _, cid in entries]
        if ref == "latest":
            if not ids:
                raise NotFoundError(f"no checkpoints in {self.checkpoints_dir}")
            return ids[-1]
        if ref in ids:
            return ref
        if ref.isascii() and ref.isdigit():
            matches = [cid for seq, cid in entries if seq == int(ref)]
        else:
            matches = [cid for cid in ids if cid.startswith(ref)]
        if not matches:
            raise NotFoundError(f"no checkpoint matches {ref!r}")
        if len(matches) > 1:
            raise UsageError(f"checkpoint {ref!r} is ambiguous: {', '.join(matches)}")
        return matches[0]

    def read_checkpoint(self, ref: str) -> dict[str, Any]:
        """The checkpoint `ref` names, checked.

        CorruptMemoryError (naming the file, and the line for a parse error) if
        it does not parse, is not an object, holds another id, or cannot be
        hashed; ChecksumMismatchError (a CorruptMemoryError) if its content no
        longer matches its `sha256` or the hash in its id, unless the id was
        accepted with `trust_checkpoint`.
        """
        checkpoint_id = self.resolve_checkpoint(ref)
        path = self.checkpoints_dir / f"{checkpoint_id}.json"
        checkpoint = self._read_object(path)
        if checkpoint is None:
            raise NotFoundError(f"checkpoint {checkpoint_id} was removed")
        if checkpoint.get("id") != checkpoint_id:
            raise CorruptMemoryError(f"{path}: its id field is {checkpoint.get('id')!r}")
        try:
            digest = _checkpoint_digest(checkpoint)
        except (TypeError, ValueError) as exc:  # nested deeper than a checkpoint can be written
            raise CorruptMemoryError(f"{path}: cannot be hashed ({exc})") from None
        recorded = checkpoint.get("sha256")
        # The id carries the hash too, so removing the sha256 field does not switch the check off.
        intact = recorded in (None, digest) and ids.checkpoint_suffix(checkpoint_id) == digest[:8]
        if not intact and checkpoint_id not in self._trusted:
            raise ChecksumMismatchError(f"{path}: content does not match its sha256 (edited after writing?)")
        return checkpoint

    def trust_checkpoint(self, checkpoint_id: str) -> None:
        """Let this store read `checkpoint_id` although its hash no longer matches (`resume --force`)."""
        self._trusted.add(self.resolve_checkpoint(checkpoint_id))

    def accepted_modified(self, checkpoint_id: str) -> bool:
        """Whether this store was told to read `checkpoint_id` despite a hash mismatch."""
        return checkpoint_id in self._trusted

    def newest_intact_checkpoint(
        self, start: str | None = None, *, accept_modified: bool = False
    ) -> tuple[str | None, list[str]]:
        """The newest checkpoint at or before `start` (default: the latest) that reads back intact.

        Returns (its id or None, one line per newer checkpoint that was skipped
        and why). A missing `start` (deleted since it was recorded) counts as
        skipped. With `accept_modified`, a checkpoint that parses but fails its
        hash is taken (and trusted) rather than skipped.
        """
        entries = self._checkpoint_entries()
        skipped: list[str] = []
        limit: int | None = None
        if start is not None:
            limit = ids.checkpoint_seq(start)
            if limit is None:
                skipped.append(f"{start}: not a checkpoint id")
            else:
                if start not in {cid for _, cid in entries}:
                    skipped.append(f"{self.checkpoints_dir / (start + '.json')}: missing")
        for seq, checkpoint_id in reversed(entries):
            if limit is not None and seq > limit:
                continue
            try:
                self.read_checkpoint(checkpoint_id)
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

    def drop_checkpoint(self, ref: str, *, force: bool = False) -> str:
        """Delete one checkpoint and return its id. The latest one needs `force` (else UsageError)."""
        with self._mutating():
            checkpoint_id = self.resolve_checkpoint(ref)
            if checkpoint_id == self.latest_checkpoint_id() and not force:
                raise UsageError(
                    f"{checkpoint_id} is the latest checkpoint (the one a resume starts from); "
                    "use --force to drop it anyway"
                )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.checkpoints_dir / f"{checkpoint_id}.json")
            self.update_context_index()
            return checkpoint_id

    # --------------------------------------------------------- project_memory.json

    @property
    def project_memory_path(self) -> Path:
        """project_memory.json (absolute)."""
        return self.root / C.PROJECT_MEMORY_FILE

    def read_project_memory(self) -> dict[str, Any]:
        """project_memory.json with defaults for anything missing (all defaults if absent)."""
        pm = self._read_object(self.project_memory_path) or {}
        for key, default in _PROJECT_MEMORY_DEFAULTS.items():
            if key not in pm:
                pm[key] = copy.deepcopy(default)
        facts = pm["facts"]
        if not isinstance(facts, list) or not all(
            isinstance(f, dict) and isinstance(f.get("key"), str) for f in facts
        ):
            raise CorruptMemoryError(
                f"{self.project_memory_path}: facts must be a list of objects with a key"
            )
        return pm

    def write_project_memory(self, pm: dict[str, Any]) -> None:
        """Write project_memory.json (redacted, defaults filled, facts sorted by key)."""
        record = redact_obj(dict(pm))
        for key, default in _PROJECT_MEMORY_DEFAULTS.items():
            if key not in record:
                record[key] = copy.deepcopy(default)
        if isinstance(record["facts"], list):
            record["facts"] = sorted(
                record["facts"], key=lambda f: str(f.get("key", "")) if isinstance(f, dict) else ""
            )
        with self._mutating():
            self._ensure_dir(self.root)
            self._write_json(self.project_memory_path, record)

    def apply_memory_ops(self, ops: list[dict[str, Any]], *, seq: int) -> dict[str, Any]:
        """Apply `memory` ops to the project's facts, write, and return the new project memory.

        `add` replaces the fact with the same key (keeping its `added_seq`),
        `remove` deletes it. Each fact is {key, text, pinned, priority,
        added_seq, updated_seq}, `seq` being the checkpoint sequence (recency).
        An op with an empty key (the protocol lets an agent send one) is
        skipped; a malformed op raises ValueError before anything is written.
        """
        checked = [op for op in map(_check_op, ops) if op["key"].strip()]
        with self._mutating():
            pm = self.read_project_memory()
            facts = {f["key"]: f for f in pm["facts"]}
            for op in checked:
                key = op["key"]
                if op["op"] == "remove":
                    facts.pop(key, None)
                    continue
                old = facts.get(key)
                facts[key] = {
                    "key": key,
                    "text": op["text"],
                    "pinned": op["pinned"],
                    "priority": op["priority"],
                    "added_seq": old.get("added_seq", seq) if old else seq,
                    "updated_seq": seq,
                }
            pm["facts"] = [facts[k] for k in sorted(facts)]
            self.write_project_memory(pm)
            return self.read_project_memory()

    # --------------------------------------------------------- context_index.json

    @property
    def context_index_path(self) -> Path:
        """context_index.json (absolute)."""
        return self.root / C.CONTEXT_INDEX_FILE

    def read_context_index(self) -> dict[str, Any] | None:
        """context_index.json, None if absent; CorruptMemoryError if broken."""
        return self._read_object(self.context_index_path)

    def _cached_entry(self, rel: str, path: Path) -> dict[str, Any] | None:
        hit = self._index_cache.get(rel)
        if hit is None:
            return None
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return dict(hit[1]) if hit[0] == (st.st_size, st.st_mtime_ns, st.st_ino) else None

    def _cache_entry(self, rel: str, path: Path, entry: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            st = os.lstat(path)
            if st.st_size == entry.get("bytes"):
                self._index_cache[rel] = ((st.st_size, st.st_mtime_ns, st.st_ino), dict(entry))

    def update_context_index(self, *, token_counts: dict[str, int] | None = None) -> dict[str, Any]:
        """Rebuild context_index.json from the files; return it.

        Checkpoint tokens come from `metrics.checkpoint_tokens`; other token
        figures from `token_counts` (keyed by relative path or by id), else from
        the previous index for a file whose size has not changed. Deterministic:
        no timestamps, and the file is rewritten only when its bytes change.
        """
        counts = dict(token_counts or {})
        with self._mutating():
            previous: dict[str, tuple[Any, Any]] = {}
            with contextlib.suppress(AetherError, OSError):
                old = self.read_context_index() or {}
                for section in ("checkpoints", "tasks"):
                    for item in old.get(section) or []:
                        if isinstance(item, dict) and isinstance(item.get("file"), str):
                            previous[item["file"]] = (item.get("bytes"), item.get("tokens"))

            def tokens_for(rel: str, ident: str, size: int, own: Any = None) -> int | None:
                for value in (own, counts.get(rel), counts.get(ident)):
                    if isinstance(value, int) and not isinstance(value, bool):
                        return value
                old_size, old_tokens = previous.get(rel, (None, None))
                if old_size == size and isinstance(old_tokens, int):
                    return old_tokens
                return None

            checkpoints: list[dict[str, Any]] = []
            for checkpoint_id in self.checkpoint_ids():
                path = self.checkpoints_dir / f"{checkpoint_id}.json"
                rel = self._rel(path)
                cached = self._cached_entry(rel, path)
                if cached is not None:
                    checkpoints.append(cached)
                    continue
                try:
                    raw = read_bytes(path)
                    data = loads(raw)
                    if not isinstance(data, dict):
                        raise ValueError("not an object")
                except FileNotFoundError:
                    continue
                except (AetherError, ValueError):
                    # Listed but flagged: one broken file must not block new checkpoints.
                    checkpoints.append({"id": checkpoint_id, "file": rel, "error": "unreadable"})
                    continue
                raw_metrics = data.get("metrics")
                metrics: dict[str, Any] = raw_metrics if isinstance(raw_metrics, dict) else {}
                entry = {
                    "id": checkpoint_id,
                    "file": rel,
                    "episode": data.get("episode"),
                    "trigger": data.get("trigger"),
                    "bytes": len(raw),
                    "tokens": tokens_for(rel, checkpoint_id, len(raw), metrics.get("checkpoint_tokens")),
                }
                entry = redact_obj(entry)
                self._cache_entry(rel, path, entry)
                checkpoints.append(entry)
            tasks: list[dict[str, Any]] = []
            for task_id, path in self._task_paths():
                rel = self._rel(path)
                cached = self._cached_entry(rel, path)
                if cached is not None and not (counts.get(rel) or counts.get(task_id)):
                    tasks.append(cached)
                    continue
                try:
                    raw = read_bytes(path)
                    data = loads(raw)
                    if not isinstance(data, dict):
                        raise ValueError("not an object")
                except FileNotFoundError:
                    continue
                except (AetherError, ValueError):
                    tasks.append({"id": task_id, "file": rel, "error": "unreadable"})
                    continue
                entry: dict[str, Any] = {
                    "id": task_id,
                    "file": rel,
                    "status": data.get("status"),
                    "bytes": len(raw),
                }
                tokens = tokens_for(rel, task_id, len(raw))
                if tokens is not None:
                    entry["tokens"] = tokens
                entry = redact_obj(entry)
                self._cache_entry(rel, path, entry)
                tasks.append(entry)
            listed = checkpoints + tasks
            index = {
                "checkpoints": checkpoints,
                "tasks": tasks,
                "totals": {
                    "checkpoints": len(checkpoints),
                    "tasks": len(tasks),
                    "open_tasks": sum(1 for t in tasks if t.get("status") not in ("done", None)),
                    "bytes": sum(e.get("bytes", 0) for e in listed),
                    "tokens": sum(e.get("tokens") or 0 for e in listed),
                    "latest_checkpoint": checkpoints[-1]["id"] if checkpoints else None,
                },
            }
            # Entries were redacted as they were built (and cached so); the rest are
            # counts and checkpoint ids.
            data = dumps(index)
            try:
                unchanged = read_bytes(self.context_index_path) == data
            except (FileNotFoundError, AetherError):
                unchanged = False
            if not unchanged:
                self._ensure_dir(self.root)
                atomic_write(self.context_index_path, data)
            return index

    # --------------------------------------------------------- runs/

    def open_ledger(self, session_id: str) -> Ledger:
        """The run ledger runs/<session_id>.jsonl, opened for appending.

        Only a store that holds the run lock repairs a torn tail (truncates it
        and records a `ledger_repair` record); see `Ledger`.
        """
        if not self.valid_task_id(session_id):
            raise UsageError(f"invalid session id {session_id!r}")
        self._ensure_dir(self.runs_dir)
        return Ledger(self.runs_dir / f"{session_id}.jsonl", clock=self._clock, repair=self.locked)

    def ledger_path(self, session_id: str) -> Path:
        """runs/<session_id>.jsonl (absolute; may not exist)."""
        if not self.valid_task_id(session_id):
            raise UsageError(f"invalid session id {session_id!r}")
        return self.runs_dir / f"{session_id}.jsonl"

    @property
    def heartbeat_path(self) -> Path:
        """runs/heartbeat.json (absolute)."""
        return self.runs_dir / C.HEARTBEAT_FILE

    def write_heartbeat(self, data: dict[str, Any]) -> None:
        """runs/heartbeat.json: atomic, but not fsynced (it is rewritten often and only advisory)."""
        self._ensure_dir(self.runs_dir)
        atomic_write(self.heartbeat_path, dumps(redact_obj(data)), durable=False)

    def read_heartbeat(self) -> dict[str, Any] | None:
        """runs/heartbeat.json, or None if it is absent or unreadable (it is advisory)."""
        try:
            data = read_json(self.heartbeat_path)
        except (OSError, AetherError):
            return None
        return data if isinstance(data, dict) else None

    def prompt_file(self) -> Path:
        """runs/start.prompt (absolute): the prompt file handed to each launch."""
        return self.runs_dir / C.START_PROMPT_FILE

    def write_prompt(self, text: str) -> Path:
        """Write the launch prompt verbatim and return its path.

        Not redacted: it is built from redacted memory and must reach the agent as is.
        """
        self._ensure_dir(self.runs_dir)
        path = self.prompt_file()
        atomic_write(path, text.encode("utf-8", "replace"), mode=0o600)
        return path

    @property
    def checkpoint_request_path(self) -> Path:
        """runs/checkpoint.request (absolute)."""
        return self.runs_dir / C.CHECKPOINT_REQUEST_FILE

    def request_checkpoint(self) -> None:
        """Ask a live run for a manual checkpoint (creates runs/checkpoint.request)."""
        self._ensure_dir(self.runs_dir)
        atomic_write(self.checkpoint_request_path, dumps({"requested_at": self.now()}))

    def take_checkpoint_request(self) -> bool:
        """True exactly once per request: removes runs/checkpoint.request if it existed."""
        try:
            os.unlink(self.checkpoint_request_path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        return True


def _check_op(op: Any) -> dict[str, Any]:
    if not isinstance(op, dict):
        raise ValueError(f"memory op must be an object, not {type(op).__name__}")
    kind = op.get("op", "add")
    if kind not in ("add", "remove"):
        raise ValueError(f"unknown memory op {kind!r}")
    key = op.get("key")
    if not isinstance(key, str):
        raise ValueError(f"memory op needs a string key, got {key!r}")
    text = op.get("text", "")
    pinned = op.get("pinned", False)
    priority = op.get("priority", 0)
    if not isinstance(text, str):
        raise ValueError(f"memory op {key!r}: text must be a string")
    if not isinstance(pinned, bool):
        raise ValueError(f"memory op {key!r}: pinned must be a boolean")
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"memory op {key!r}: priority must be an integer")
    return {"op": kind, "key": key, "text": text, "pinned": pinned, "priority": priority}


# ------------------------------------------------------------- the run ledger


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

    def __init__(
        self, path: Path, *, clock: Callable[[], datetime] | None = None, repair: bool = False
    ) -> None:
        self.path = Path(path)
        self._clock = clock or _utc_now
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


def _open_nofollow(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise CorruptMemoryError(f"{path}: is a symlink; refusing to follow it") from exc
        raise


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
    with os.fdopen(_open_nofollow(path), "rb") as fh:
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
    with os.fdopen(_open_nofollow(path), "rb") as fh:
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
