"""`MemoryStore`: the one object callers use to read and write a `.memory/` folder.

A facade. It owns the root, the clock and the two locks, builds one part per
file kind (layout, run lock, continuity, tasks, checkpoints, project memory,
context index, runs/) and hands each what it needs in its constructor; no
part holds a reference back to it. Its own promise is the order of things
across parts: a checkpoint write or drop refreshes the context index before
the write lock is let go, through `update_context_index` (so a subclass can
defer the rebuild).

It knows nothing of how any file is laid out or checked: each part does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aether_cli import ids
from aether_cli.store.checkpoints import Checkpoints
from aether_cli.store.clock import Clock, iso_utc, utc_now
from aether_cli.store.continuity import Continuity
from aether_cli.store.layout import Layout
from aether_cli.store.lock import RunLock, WriteLock
from aether_cli.store.pruned import Pruned
from aether_cli.store.runs import RunFiles
from aether_cli.store.tasks import Tasks, relative_task_file

if TYPE_CHECKING:  # imported where first used: `aether status` needs none of them
    from aether_cli.store.index import ContextIndex
    from aether_cli.store.ledger import Ledger
    from aether_cli.store.project_memory import ProjectMemory
    from aether_cli.store.recovery import Diagnosis, Recovery


class MemoryStore:
    """All reads and writes of one `.memory` directory.

    `clock` returns the current time (a seam for deterministic tests). One
    instance is meant to live as long as the process that owns a run; it
    remembers the `_update_seq` it last saw and whether it holds the lock.
    """

    def __init__(self, root: Path, *, clock: Clock | None = None) -> None:
        layout = Layout(root)
        self._layout = layout
        self.root = layout.root
        self.runs_dir = layout.runs_dir
        self.tasks_dir = layout.tasks_dir
        self.checkpoints_dir = layout.checkpoints_dir
        self.templates_dir = layout.templates_dir
        self._clock = clock or utc_now
        write_lock = WriteLock(layout)
        self._run_lock = RunLock(layout, self._clock)
        self._continuity = Continuity(layout, self._clock, write_lock)
        self._tasks = Tasks(layout, self._clock)
        self._checkpoints = Checkpoints(layout, self._clock, write_lock)
        self._write_lock = write_lock
        self._index_part: ContextIndex | None = None
        self._project_memory_part: ProjectMemory | None = None
        self._runs = RunFiles(layout, self._clock, self._run_lock)
        self._pruned = Pruned(layout)

    @property
    def _index(self) -> ContextIndex:
        if self._index_part is None:
            from aether_cli.store.index import ContextIndex

            self._index_part = ContextIndex(self._layout, self._write_lock)
        return self._index_part

    @property
    def _project_memory(self) -> ProjectMemory:
        if self._project_memory_part is None:
            from aether_cli.store.project_memory import ProjectMemory

            self._project_memory_part = ProjectMemory(self._layout, self._write_lock)
        return self._project_memory_part

    def __repr__(self) -> str:
        return f"MemoryStore({str(self.root)!r})"

    def now(self) -> str:
        """The store clock's current time as an ISO 8601 UTC string."""
        return iso_utc(self._clock())

    # --------------------------------------------------------- folders

    def exists(self) -> bool:
        """Whether the `.memory` directory exists."""
        return self._layout.exists()

    def init(self, *, config: bool = True) -> list[str]:
        """Create whatever part of the layout is missing; return what was created (relative paths).

        Never overwrites an existing file, so it is safe to run again. Folders
        are listed with a trailing "/". With `config` (`aether init`), the
        commented default config.toml too; a run passes False: config.toml
        holds only what the user wrote. Leftover temp files of killed writers
        are swept.
        """
        return self._layout.init(config=config)

    def sweep(self) -> int:
        """Remove temp files left by killed writers in every folder of the layout."""
        return self._layout.sweep()

    # --------------------------------------------------------- the run lock

    @property
    def lock_path(self) -> Path:
        """runs/aether.lock (absolute)."""
        return self._layout.lock_path

    @property
    def lock_info_path(self) -> Path:
        """runs/lock.json (absolute)."""
        return self._layout.lock_info_path

    def acquire(self, command: list[str]) -> None:
        """Become the one writer of this `.memory`, or raise `LockedError` at once.

        Takes a non-blocking lock on runs/aether.lock and records
        {pid, command, started_at, proc_start, host} in runs/lock.json. The
        kernel drops the lock when this process dies, however it dies.
        """
        self._run_lock.acquire(command)

    def ensure_unlocked(self) -> None:
        """Raise `LockedError` (naming the holder) at once if another process holds the run lock.

        A cheap early check, so a second `aether run` fails before it loads
        anything heavy; `acquire()` stays the real test (the lock may be taken
        between the two).
        """
        self._run_lock.ensure_unlocked()

    def release(self) -> None:
        """Give up the lock (if this store holds it) and remove runs/lock.json."""
        self._run_lock.release()

    @property
    def locked(self) -> bool:
        """Whether this store currently holds the run lock."""
        return self._run_lock.locked

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
        return self._run_lock.holder()

    # --------------------------------------------------------- session_continuity.json

    @property
    def continuity_path(self) -> Path:
        """session_continuity.json (absolute)."""
        return self._layout.continuity_path

    def read_continuity(self) -> dict[str, Any] | None:
        """session_continuity.json, None if absent; CorruptMemoryError if unreadable.

        Remembers its `_update_seq`, so a later write can tell whether someone
        else wrote in between.
        """
        return self._continuity.read()

    def _recovery(self) -> Recovery:
        from aether_cli.store.recovery import Recovery

        return Recovery(
            self._layout,
            self._clock,
            continuity=self._continuity,
            checkpoints=self._checkpoints,
            tasks=self._tasks,
            run_lock=self._run_lock,
            write_lock=self._write_lock,
        )

    def diagnose_continuity(self) -> Diagnosis:
        """session_continuity.json as read, or why it is damaged or missing and what a rebuild
        would give. Reads only (for `aether status`); see `store.recovery`."""
        return self._recovery().diagnose()

    def repair_continuity(self, *, missing: bool = True, rebuild: bool = True) -> str:
        """Rebuild a damaged (or, with `missing`, absent) session_continuity.json from the newest
        intact checkpoint and its ledger, the bad file kept under runs/; one line on what was
        done, "" if nothing was. See `recovery.Recovery.repair` for the refusals."""
        return self._recovery().repair(missing=missing, rebuild=rebuild)

    def write_continuity(self, data: dict[str, Any]) -> dict[str, Any]:
        """Write session_continuity.json with `updated_at` and `_update_seq` set; return what was written.

        `_update_seq` becomes the sequence on disk plus one. If this store has
        read or written sequence N before and the disk now holds another one,
        another writer won a race: `StaleWriteError`, and nothing is written.
        The contract fields are the caller's business.
        """
        return self._continuity.write(data)

    # --------------------------------------------------------- task_states/

    @staticmethod
    def valid_task_id(task_id: str) -> bool:
        """Whether `task_id` may become part of a file name (see `ids.valid_task_id`)."""
        return ids.valid_task_id(task_id)

    def task_file(self, task_id: str) -> str:
        """`task_states/task_<id>_state.json` (relative to root); InvalidTaskIdError if not allowed.

        InvalidTaskIdError is a ValueError (and an AetherError).
        """
        return relative_task_file(task_id)

    def write_task(self, task: dict[str, Any]) -> str:
        """Write one task's state file, filling missing contract fields; return its relative path.

        Defaults: title "", status "pending", progress 0.0, next_action "",
        notes "", files [], updated_at now (a given `updated_at` is kept).
        A bad id raises InvalidTaskIdError and writes nothing; a bad status,
        progress or files value raises ValueError.
        """
        return self._tasks.write(task)

    def read_task(self, task_id: str) -> dict[str, Any] | None:
        """One task's state, None if it has no file; CorruptMemoryError if the file is broken."""
        return self._tasks.read(task_id)

    def list_tasks(self) -> list[dict[str, Any]]:
        """Every task state, sorted by id; a broken file raises CorruptMemoryError naming it."""
        return self._tasks.read_all()

    # --------------------------------------------------------- checkpoints/

    def checkpoint_ids(self) -> list[str]:
        """Checkpoint ids in sequence order (other names and temp files are ignored)."""
        return self._checkpoints.all_ids()

    def latest_checkpoint_id(self) -> str | None:
        """The id with the highest sequence number, or None if there is no checkpoint."""
        return self._checkpoints.latest_id()

    def checkpoint_path(self, checkpoint_id: str) -> Path:
        """The absolute path of an existing checkpoint (resolved like `resolve_checkpoint`)."""
        return self._checkpoints.path(checkpoint_id)

    def write_checkpoint(self, draft: dict[str, Any]) -> dict[str, Any]:
        """Write a new immutable checkpoint from `draft`; return it as written.

        Adds `seq` (1 + the highest existing), `parent` (the latest id, unless
        the draft names one), `created_at` (now, unless given), defaults for
        missing contract fields, `sha256` of the content without `id` and
        `sha256`, and `id` = `chk_<seq:06d>_<first 8 hex of sha256>`. The
        file is created exclusively (never replacing one) read-only, and
        context_index.json is brought up to date.
        """
        # The index is refreshed through this store's method, not the part's: a
        # subclass may defer the rebuild (bench/ bulk-writes thousands so).
        return self._checkpoints.write(draft, refresh=self.update_context_index)

    def resolve_checkpoint(self, ref: str) -> str:
        """The full id `ref` names: an exact id, a unique prefix, a sequence number, or "latest".

        NotFoundError if nothing matches; UsageError listing the candidates if
        several do. A ref with "/", "\\", NUL or ".." is refused (UsageError),
        so a ref never becomes an arbitrary path.
        """
        return self._checkpoints.resolve(ref)

    def read_checkpoint(self, ref: str) -> dict[str, Any]:
        """The checkpoint `ref` names, checked.

        CorruptMemoryError (naming the file, and the line for a parse error) if
        it does not parse, is not an object, holds another id, or cannot be
        hashed; ChecksumMismatchError (a CorruptMemoryError) if its content no
        longer matches its `sha256` or the hash in its id, unless the id was
        accepted with `trust_checkpoint`.
        """
        return self._checkpoints.read(ref)

    def trust_checkpoint(self, checkpoint_id: str) -> None:
        """Let this store read `checkpoint_id` although its hash no longer matches (`resume --force`)."""
        self._checkpoints.trust(checkpoint_id)

    def accepted_modified(self, checkpoint_id: str) -> bool:
        """Whether this store was told to read `checkpoint_id` despite a hash mismatch."""
        return self._checkpoints.accepted_modified(checkpoint_id)

    def newest_intact_checkpoint(
        self, start: str | None = None, *, accept_modified: bool = False
    ) -> tuple[str | None, list[str]]:
        """The newest checkpoint at or before `start` (default: the latest) that reads back intact.

        Returns (its id or None, one line per newer checkpoint that was skipped
        and why). A missing `start` (deleted since it was recorded) counts as
        skipped. With `accept_modified`, a checkpoint that parses but fails its
        hash is taken (and trusted) rather than skipped.
        """
        return self._checkpoints.newest_intact(start, accept_modified=accept_modified)

    def drop_checkpoint(self, ref: str, *, force: bool = False) -> str:
        """Delete one checkpoint and return its id. The latest one needs `force` (else UsageError)."""
        return self._checkpoints.drop(ref, refresh=self.update_context_index, force=force)

    def prune_checkpoints(self, doomed: list[str]) -> list[tuple[str, int]]:
        """Delete these checkpoints (never the latest), recording their ids in pruned.json first.

        Returns (id, bytes) of each file removed; one write lock, one index rebuild."""
        return self._checkpoints.prune(doomed, record=self._pruned.add, refresh=self.update_context_index)

    def record_pruned(self, pruned: list[str]) -> None:
        """Add ids to pruned.json (a union; `aether unpack` brings a pack's record)."""
        with self._write_lock.held():
            self._pruned.add(pruned)

    def pruned_ids(self) -> set[str]:
        """The ids pruned.json records as removed by `aether gc` (empty if it is absent or unreadable)."""
        return self._pruned.read()

    # --------------------------------------------------------- project_memory.json

    @property
    def project_memory_path(self) -> Path:
        """project_memory.json (absolute)."""
        return self._layout.project_memory_path

    def read_project_memory(self) -> dict[str, Any]:
        """project_memory.json with defaults for anything missing (all defaults if absent)."""
        return self._project_memory.read()

    def write_project_memory(self, pm: dict[str, Any]) -> None:
        """Write project_memory.json (redacted, defaults filled, facts sorted by key)."""
        self._project_memory.write(pm)

    def apply_memory_ops(
        self, ops: list[dict[str, Any]], *, seq: int, source: str = "agent", episode: int | None = None
    ) -> dict[str, Any]:
        """Apply `memory` ops to the project's facts, write, and return the new project memory.

        `add` replaces the fact with the same key (keeping its `added_seq`),
        `remove` deletes it. Each fact is {key, text, pinned, priority,
        added_seq, updated_seq, source, episode}, `seq` being the checkpoint
        sequence (recency), `source` who proposed it ("agent" or "user").
        An op with an empty key (the protocol lets an agent send one) is
        skipped; a malformed op raises ValueError before anything is written.
        """
        return self._project_memory.apply_ops(ops, seq=seq, source=source, episode=episode)

    def update_project_memory(
        self, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """Read project_memory.json, `change` it, write it, all under the write lock; return it.

        The only safe way to change it while a run may be live: a read, then a
        later write, would undo whatever another process wrote in between."""
        return self._project_memory.update(change)

    # --------------------------------------------------------- context_index.json

    @property
    def context_index_path(self) -> Path:
        """context_index.json (absolute)."""
        return self._layout.context_index_path

    def read_context_index(self) -> dict[str, Any] | None:
        """context_index.json, None if absent; CorruptMemoryError if broken."""
        return self._index.read()

    def update_context_index(self, *, token_counts: dict[str, int] | None = None) -> dict[str, Any]:
        """Rebuild context_index.json from the files; return it.

        Checkpoint tokens come from `metrics.checkpoint_tokens`; other token
        figures from `token_counts` (keyed by relative path or by id), else from
        the previous index for a file whose size has not changed. Deterministic:
        no timestamps, and the file is rewritten only when its bytes change.
        """
        return self._index.update(token_counts=token_counts)

    # --------------------------------------------------------- runs/

    def open_ledger(self, session_id: str) -> Ledger:
        """The run ledger runs/<session_id>.jsonl, opened for appending.

        Only a store that holds the run lock repairs a torn tail (truncates it
        and records a `ledger_repair` record); see `Ledger`.
        """
        return self._runs.open_ledger(session_id)

    def ledger_path(self, session_id: str) -> Path:
        """runs/<session_id>.jsonl (absolute; may not exist)."""
        return self._runs.ledger_path(session_id)

    @property
    def heartbeat_path(self) -> Path:
        """runs/heartbeat.json (absolute)."""
        return self._layout.heartbeat_path

    def write_heartbeat(self, data: dict[str, Any]) -> None:
        """runs/heartbeat.json: atomic, but not fsynced (it is rewritten often and only advisory)."""
        self._runs.write_heartbeat(data)

    def read_heartbeat(self) -> dict[str, Any] | None:
        """runs/heartbeat.json, or None if it is absent or unreadable (it is advisory)."""
        return self._runs.read_heartbeat()

    def prompt_file(self) -> Path:
        """runs/start.prompt (absolute): the prompt file handed to each launch."""
        return self._layout.prompt_path

    def write_prompt(self, text: str) -> Path:
        """Write the launch prompt verbatim and return its path.

        Not redacted: it is built from redacted memory and must reach the agent as is.
        """
        return self._runs.write_prompt(text)

    @property
    def checkpoint_request_path(self) -> Path:
        """runs/checkpoint.request (absolute)."""
        return self._layout.checkpoint_request_path

    def request_checkpoint(self) -> None:
        """Ask a live run for a manual checkpoint (creates runs/checkpoint.request)."""
        self._runs.request_checkpoint()

    def take_checkpoint_request(self) -> bool:
        """True exactly once per request: removes runs/checkpoint.request if it existed."""
        return self._runs.take_checkpoint_request()

    def trust_record(self, limit: int) -> tuple[bytes | None, tuple[int, int] | None]:
        """runs/trusted.json's bytes if it is a regular file of at most `limit` bytes (else None),
        and the (device, inode) of runs/ (None if it is not a real folder). Never raises."""
        return self._runs.trust_record(limit)

    def write_trust_record(self, make: Callable[[tuple[int, int]], bytes]) -> None:
        """Write runs/trusted.json as `make((device, inode) of runs/)` returns it (atomic, 0600)."""
        self._runs.write_trust_record(make)
