"""What a run tells the world about itself: the continuity record and the heartbeat.

Also the run-wide facts its episodes share: the user's signals (`Signals`) and
what the agent's stream taught the run (`AgentFacts`).

`continuity_record` is the body of `session_continuity.json` (committed: what
a teammate or a relaunched agent reads to pick the work up); `heartbeat_record`
is the body of the local heartbeat `aether status` reads while a run is live.
Both are plain dicts built from the figures passed in. `RunRecords` writes
them through the store, with the run ledger, and keeps a failing disk under
these advisory files from stopping the agent. Also the session id and
timestamp formats.

Knows nothing of processes, threads, episodes' stop logic or the terminal.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aether_cli import constants as C
from aether_cli.errors import AetherError, StorageError
from aether_cli.store import Ledger, MemoryStore
from aether_cli.store.ledger import last_record

# Ledger records of the agent's own output: dropped once the ledger reaches its cap,
# so a flooding agent cannot fill the disk through it.
CAPPED_KINDS = frozenset({"event", "stderr"})
# Why the context figure is aether's own count for formats whose usage is not the context size.
USAGE_NOTES = {
    "codex": "codex reports usage summed over the whole thread, not the context it holds: "
    "aether counts the stream itself",
    "gemini": "gemini reports token totals, not the context it holds: aether counts the stream itself",
}


def new_session_id(now: datetime | None = None) -> str:
    """A sortable, unique session id: ses_YYYYMMDDTHHMMSS_<6 hex>."""
    now = now or datetime.now(UTC)
    return f"ses_{now:%Y%m%dT%H%M%S}_{secrets.token_hex(3)}"


def utc_now() -> str:
    """ISO 8601 UTC timestamp with a Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def usage_note(fmt: str, overhead: int) -> str:
    """Why the context figure of format `fmt` is aether's own count, and what was added to it."""
    note = USAGE_NOTES.get(fmt, "")
    if overhead:
        note = (note + ", " if note else "") + (
            f"plus {overhead:,} tokens for the agent's own instructions and tools (--context-overhead)"
        )
    return note


@dataclass
class Signals:
    """The user's signals, set by the supervisor's handler: the first one, and a second (force)."""

    signum: int = 0
    force: bool = False


@dataclass
class AgentFacts:
    """What the agent's stream taught the run, kept across episodes."""

    stream_session: str | None = None  # its own session id, for --native-resume
    window: int = 0  # from its hello
    compactions: int = 0  # times it compacted its own context
    hello_child: Any = None  # the process that said hello (survives an in-place rehydrate)
    hello_rehydrate: bool = False


@dataclass
class RunFacts:
    """What the continuity record and heartbeat say about the run as a whole."""

    session_id: str
    episode: int
    restarts: int
    window: int
    fmt: str
    tokenizer: str
    tokenizer_note: str
    compactions: int
    command: list[str]
    objective: str
    settings: dict[str, Any]
    # Steps redone after relaunches and first steps that followed the handoff (redo.RedoMeter).
    continuity: dict[str, int] = field(default_factory=dict)
    # The agent's own last exit code when it kept crashing (aether exits EXIT_AGENT_CRASHED).
    agent_exit_code: int | None = None


def _resume_instructions(status: str, last: str | None, episode: int) -> str:
    if status == "done":
        return "The objective is done. Start a new objective with `aether run`."
    if last:
        return (
            f"Run `aether resume` to continue from checkpoint {last} (episode {episode + 1}). "
            f"Read {C.CHECKPOINTS_DIR}/{last}.json for progress and next actions, and "
            f"{C.TASKS_DIR}/ for each unfinished task."
        )
    return "No checkpoint yet: run `aether run` to start."


def continuity_record(
    run: RunFacts,
    *,
    status: str,
    fraction: float,
    last_checkpoint: str | None,
    tasks: list[dict[str, Any]],
    task_file: Any,
) -> dict[str, Any]:
    """The body of session_continuity.json; `task_file(id)` names a task's state file."""
    active = [
        {
            "id": t["id"],
            "status": t.get("status", "pending"),
            "state_file": task_file(t["id"]),
            "progress": t.get("progress", 0.0),
            "next_action": t.get("next_action", ""),
        }
        for t in tasks
        if t.get("status") != "done"
    ]
    locations = [
        C.CONTINUITY_FILE,
        C.PROJECT_MEMORY_FILE,
        C.CONTEXT_INDEX_FILE,
        C.TASKS_DIR + "/",
        C.CHECKPOINTS_DIR + "/",
    ]
    if last_checkpoint:
        locations.append(f"{C.CHECKPOINTS_DIR}/{last_checkpoint}.json")
    return {
        "session_id": run.session_id,
        "status": status,
        "episode": run.episode,
        "context_usage_percent": round(fraction * 100, 1),
        "last_checkpoint": last_checkpoint,
        "active_tasks": active,
        "memory_locations": locations,
        "resume_instructions": _resume_instructions(status, last_checkpoint, run.episode),
        "command": run.command,
        "objective": run.objective,
        "restarts": run.restarts,
        "window": run.window,
        "tokenizer": run.tokenizer,
        "tokenizer_note": run.tokenizer_note,
        "agent_format": run.fmt,
        "agent_compactions": run.compactions,
        "continuity": run.continuity,
        "settings": run.settings,
        # Only after the agent kept crashing: an optional field, absent otherwise.
        **({"agent_exit_code": run.agent_exit_code} if run.agent_exit_code is not None else {}),
    }


def heartbeat_record(run: RunFacts, episode: dict[str, Any], *, overhead: int) -> dict[str, Any]:
    """The body of the live heartbeat: the run's facts plus the episode's figures
    (child_pid, state, used, window, reported, steps, events, protocol_warnings, compactions)."""
    return {
        "pid": os.getpid(),
        "child_pid": episode["child_pid"],
        "session_id": run.session_id,
        "episode": run.episode,
        "state": episode["state"],
        "used": episode["used"],
        "window": episode["window"],
        "reported": episode["reported"],
        "steps": episode["steps"],
        "events": episode["events"],
        "protocol_warnings": episode["protocol_warnings"],
        "format": run.fmt,
        "usage_note": "" if episode["reported"] else usage_note(run.fmt, overhead),
        "context_overhead": overhead,
        "compactions": episode["compactions"],
        "continuity": run.continuity,
        "restarts": run.restarts,
        "tokenizer": run.tokenizer,
        "tokenizer_note": run.tokenizer_note,
        "updated_at": utc_now(),
    }


class RunRecords:
    """The run's own files: the ledger, the continuity record and the heartbeat.

    The ledger and the heartbeat are local and advisory: a full or failing disk
    under them warns once per kind of file and the agent keeps running.
    Checkpoints, which resume needs, are not written here and still fail loudly.
    """

    def __init__(
        self, store: MemoryStore, notice: Callable[[str, str], None], *, max_bytes: int = 256 << 20
    ) -> None:
        self.store = store
        self.notice = notice
        self.max_bytes = max_bytes
        self.dropped = 0
        self.ledger: Ledger | None = None
        self._path: Path | None = None
        self.episode = 0
        self.last_fraction = 0.0
        self._warned: set[str] = set()

    def open(self, session_id: str) -> None:
        """Open (or continue) the session's ledger."""
        self.ledger = self.store.open_ledger(session_id)
        self._path = self.store.ledger_path(session_id)

    def last(self, kind: str) -> dict[str, Any] | None:
        """The ledger's last record of `kind` (read from its end), None if none or unreadable."""
        if self._path is None:
            return None
        try:
            return last_record(self._path, kind)
        except (AetherError, OSError, ValueError):
            return None  # advisory: a figure to compare with, never a reason to stop a run

    def close(self) -> None:
        """Close the ledger."""
        if self.ledger is not None:
            self.ledger.close()

    def record(self, kind: str, **fields: Any) -> None:
        """Append a record of the current episode to the ledger."""
        if self.ledger is not None:
            if kind in CAPPED_KINDS and self.ledger.size >= self.max_bytes:
                self._capped()
                return
            try:
                self.ledger.append({"kind": kind, "episode": self.episode, **fields})
            except StorageError as exc:
                self._trouble("the run ledger", exc)

    def _capped(self) -> None:
        """Past the cap the agent's own output is no longer kept; say so once, in the ledger too."""
        self.dropped += 1
        if self.dropped > 1:
            return
        text = (
            f"the run ledger reached {self.max_bytes:,} bytes: the agent's events are no longer "
            "recorded in it (checkpoints, launches and the run's own records still are)"
        )
        self.notice(text, "warn")
        assert self.ledger is not None
        try:
            self.ledger.append(
                {"kind": "ledger_capped", "episode": self.episode, "max_bytes": self.max_bytes}
            )
        except StorageError as exc:
            self._trouble("the run ledger", exc)

    def continuity(self, run: RunFacts, status: str, last: str | None, fraction: float | None = None) -> None:
        """Write session_continuity.json; without `fraction`, the last heartbeat's figure."""
        data = continuity_record(
            run,
            status=status,
            fraction=self.last_fraction if fraction is None else fraction,
            last_checkpoint=last,
            tasks=self.store.list_tasks(),
            task_file=self.store.task_file,
        )
        self.store.write_continuity(data)

    def heartbeat(
        self,
        run: RunFacts,
        episode: dict[str, Any],
        *,
        fraction: float,
        overhead: int,
        flush: Callable[[], None],
    ) -> None:
        """Flush changed task files (`flush`) and write the live heartbeat."""
        try:
            flush()
            self.last_fraction = fraction
            self.store.write_heartbeat(heartbeat_record(run, episode, overhead=overhead))
        except StorageError as exc:
            # Task files are written again at the checkpoint; the heartbeat is advisory.
            self._trouble("the heartbeat or task files", exc)

    def _trouble(self, what: str, exc: StorageError) -> None:
        """Warn once per kind of file that a write failed, and go on."""
        if what not in self._warned:
            self._warned.add(what)
            self.notice(f"could not write {what} ({exc}); the agent keeps running", "warn")
