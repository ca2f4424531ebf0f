"""Rebuilding `session_continuity.json` from what else the folder holds.

The continuity record is one small committed file; a bad merge, a hand edit or
a teammate's tampering can leave it unusable (not JSON, an array, a field of
the wrong type, huge), or it can be deleted while intact checkpoints remain.
None of that may block the folder. This module:

- tells what is wrong without changing anything (`Recovery.diagnose`, for
  `aether status`), including what a rebuild would give;
- rebuilds the record (`Recovery.repair`, for `aether resume` and later
  `aether doctor --repair`; a new run only moves a bad one aside, as it
  writes its own) from the newest intact checkpoint
  (session id, episode, objective, tasks, agent format) and that session's
  local ledger under `runs/` (the agent command and settings of its last
  start), as far as they hold them;
- never destroys a damaged file: it is moved to
  `runs/session_continuity.json.bad-<time>` first, and the one-line note
  returned says what was done. A damaged file with nothing to rebuild from is
  left in place (unless a new session starts anyway), and the error says
  how to recover.

Nothing happens while another process runs the session (its run lock is
held): that run owns the record. The move and the write are done under the
write lock, so two recoveries cannot both act. It knows the files, not what a
session does with them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

from aether_cli import constants as C
from aether_cli import ids
from aether_cli.errors import AetherError, CorruptMemoryError, LockedError
from aether_cli.store.checkpoints import Checkpoints
from aether_cli.store.clock import Clock
from aether_cli.store.continuity import MAX_BYTES, Continuity, problem
from aether_cli.store.files import read_bytes
from aether_cli.store.layout import Layout
from aether_cli.store.lock import RunLock, WriteLock
from aether_cli.store.tasks import Tasks

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CONFLICT_SOURCE = f"{C.CONTINUITY_FILE} (both sides of its git merge conflict)"


@dataclass
class Diagnosis:
    """What is wrong with the continuity record, and what a rebuild would give."""

    # Why the file cannot be used ("invalid JSON at line 1..."), None if it can or is absent.
    damage: str | None
    present: bool
    # The record as read, when it is usable.
    record: dict[str, Any] | None = None
    # The rebuilt record, None if no intact checkpoint holds a session to rebuild it from.
    rebuilt: dict[str, Any] | None = None
    sources: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        """One of "damaged", "missing" (gone, with checkpoints left), or "" (usable, or no session)."""
        if self.damage:
            return "damaged"
        return "missing" if not self.present and self.rebuilt is not None else ""

    def note(self) -> str:
        """One line: what is wrong and what to do ("" if nothing is)."""
        if not self.state:
            return ""
        name = C.CONTINUITY_FILE
        what = f"{name} is damaged ({self.damage})" if self.damage else f"no {name}"
        return f"{what}: {self.hint()}"

    def hint(self) -> str:
        """What to do, in words, for a damaged or missing record (empty if neither)."""
        name = C.CONTINUITY_FILE
        if self.rebuilt is not None:
            what = f"`aether resume` rebuilds it from {self.sources[0]} and continues"
            kept = " (the damaged file is kept under runs/)" if self.damage else ""
            return f"{what}{kept}, or `aether run` starts a new session"
        if self.damage:
            return (
                f"no intact checkpoint to rebuild it from: restore it (`git checkout -- "
                f".memory/{name}`) or start a new session with `aether run` (which keeps it under runs/)"
            )
        return ""


class Recovery:
    """Diagnoses and repairs the continuity record of one `.memory` folder."""

    def __init__(
        self,
        layout: Layout,
        clock: Clock,
        *,
        continuity: Continuity,
        checkpoints: Checkpoints,
        tasks: Tasks,
        run_lock: RunLock,
        write_lock: WriteLock,
    ) -> None:
        self._layout = layout
        self._clock = clock
        self._continuity = continuity
        self._checkpoints = checkpoints
        self._tasks = tasks
        self._run_lock = run_lock
        self._write_lock = write_lock

    def diagnose(self, *, rebuild: bool = True) -> Diagnosis:
        """The record's state and (with `rebuild`) what a rebuild would give; reads only."""
        present = os.path.lexists(self._layout.continuity_path)
        try:
            record = self._continuity.read()
        except CorruptMemoryError as exc:
            diagnosis = Diagnosis(damage=self._reason(exc), present=True)
        else:
            diagnosis = Diagnosis(damage=None, present=present, record=record)
        if rebuild and (diagnosis.damage or not present):
            diagnosis.rebuilt, diagnosis.sources = self._rebuild()
        elif diagnosis.damage and (merged := self._from_conflict()) is not None:
            # Even a new session keeps the sessions a merge left in conflict: they are records,
            # not guesses, and the new record carries them on in `other_sessions`.
            diagnosis.rebuilt, diagnosis.sources = merged, [_CONFLICT_SOURCE]
        return diagnosis

    def repair(self, *, missing: bool = True, rebuild: bool = True) -> str:
        """Make the record usable again; return one line saying what was done ("" if nothing was).

        A damaged record is moved to runs/ and, with `rebuild`, rebuilt; a
        missing one is rebuilt if `missing`. With nothing to rebuild from, a
        damaged record raises `CorruptMemoryError` with the way out, and stays.
        Without `rebuild` (a new session starts and writes its own record) a
        damaged one is only moved. `LockedError` if another process runs the
        session now.
        """
        if not self._run_lock.locked and (holder := self._run_lock.holder()) is not None:
            raise LockedError(
                f"a run is live on this folder (aether pid {holder.get('pid')}); it owns "
                f"{C.CONTINUITY_FILE}: stop it first"
            )
        with self._write_lock.held():
            found = self.diagnose(rebuild=rebuild)
            if found.damage is None and (found.present or not missing or found.rebuilt is None):
                return ""
            if rebuild and found.rebuilt is None:
                raise CorruptMemoryError(f"{self._layout.continuity_path}: {found.damage}; {found.hint()}")
            said = f"{C.CONTINUITY_FILE} was missing"
            if found.damage is not None:
                kept = self._layout.rel(self._continuity.set_aside(_stamp(self._clock)))
                said = f"{C.CONTINUITY_FILE} was damaged ({found.damage}); kept it as {kept}"
            if found.rebuilt is None:
                return said
            self._continuity.write(found.rebuilt)
            record = found.rebuilt
            return (
                f"{said}; rebuilt it from {' and '.join(found.sources)} "
                f"(session {record.get('session_id')}, episode {record.get('episode', 0)})"
            )

    def _reason(self, exc: CorruptMemoryError) -> str:
        """The error without the file's path in front (the note names the file itself); for a
        file with git conflict markers (the commonest way to get a broken one), just that."""
        text = str(exc)
        prefix = f"{self._layout.continuity_path}: "
        text = text[len(prefix) :] if text.startswith(prefix) else text
        line = self._conflict_line()
        return f"git merge-conflict markers from line {line}" if line else text

    def _conflict_line(self) -> int | None:
        """The line of a `<<<<<<< ` conflict marker in the file's first 64 KiB, if there is one."""
        try:
            fd = os.open(self._layout.continuity_path, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            head = os.read(fd, 1 << 16)
        except OSError:
            return None
        finally:
            os.close(fd)
        if head.startswith(b"<<<<<<< "):
            return 1
        at = head.find(b"\n<<<<<<< ")
        return None if at < 0 else head.count(b"\n", 0, at) + 2

    def _rebuild(self) -> tuple[dict[str, Any] | None, list[str]]:
        """The record the two sides of a git conflict in the file give, else the newest intact
        checkpoint and its session's ledger; and those sources."""
        merged = self._from_conflict()
        if merged is not None:
            return merged, [_CONFLICT_SOURCE]
        found, _ = self._checkpoints.newest_intact()
        if found is None:
            return None, []
        checkpoint = self._checkpoints.read(found)
        session_id = checkpoint.get("session_id")
        if not isinstance(session_id, str) or not ids.valid_task_id(session_id):
            return None, []
        sources = [f"{C.CHECKPOINTS_DIR}/{found}.json"]
        start = self._last_start(session_id)
        if start:
            sources.append(f"{C.RUNS_DIR}/{session_id}.jsonl")
        return _record(checkpoint, start, self._active_tasks(), sources), sources

    def _from_conflict(self) -> dict[str, Any] | None:
        """Both sessions' records, merged as the merge driver would, when a merge without the
        driver left the file with conflict markers and both sides are sound records."""
        from aether_cli.store.merge import resolve_conflicted

        try:
            raw = read_bytes(self._layout.continuity_path, limit=MAX_BYTES)
        except (AetherError, OSError):
            return None
        merged = resolve_conflicted("continuity", raw)
        if merged is None or problem(merged) is not None:
            return None
        merged.pop("_update_seq", None)
        return merged

    def _last_start(self, session_id: str) -> dict[str, Any]:
        """The session's last `session` record in its local ledger ({} if there is none)."""
        from aether_cli.store.ledger import last_record  # only a recovery reads a ledger backwards

        path = self._layout.runs_dir / f"{session_id}.jsonl"
        try:
            return last_record(path, "session") or {}
        except (AetherError, OSError):
            return {}

    def _active_tasks(self) -> list[dict[str, Any]]:
        try:
            tasks = self._tasks.read_all()
        except (AetherError, OSError):
            return []  # a broken task file is another problem; the record can do without
        return [
            {
                "id": t["id"],
                "status": t.get("status", "pending"),
                "state_file": f"{C.TASKS_DIR}/{ids.task_file_name(t['id'])}",
                "progress": t.get("progress", 0.0),
                "next_action": t.get("next_action", ""),
            }
            for t in tasks
            if t.get("status") != "done"
        ]


def _record(
    checkpoint: dict[str, Any], start: dict[str, Any], tasks: list[dict[str, Any]], sources: list[str]
) -> dict[str, Any]:
    """The continuity record a checkpoint and its session's last start in the ledger give."""
    ckpt_id = checkpoint["id"]
    episode = checkpoint.get("episode")
    episode = episode if type(episode) is int and episode >= 0 else 0
    settings: dict[str, Any] = start["settings"] if isinstance(start.get("settings"), dict) else {}
    command = settings.get("command")
    command = command if isinstance(command, list) and all(isinstance(a, str) for a in command) else []
    agent: dict[str, Any] = checkpoint["agent"] if isinstance(checkpoint.get("agent"), dict) else {}
    record: dict[str, Any] = {
        "session_id": checkpoint["session_id"],
        "status": "done" if checkpoint.get("trigger") == "done" else "stopped",
        "episode": episode,
        "context_usage_percent": 0.0,
        "last_checkpoint": ckpt_id,
        "active_tasks": tasks,
        "memory_locations": [
            C.CONTINUITY_FILE,
            C.PROJECT_MEMORY_FILE,
            C.CONTEXT_INDEX_FILE,
            C.TASKS_DIR + "/",
            C.CHECKPOINTS_DIR + "/",
            f"{C.CHECKPOINTS_DIR}/{ckpt_id}.json",
        ],
        "resume_instructions": (
            f"Rebuilt from {' and '.join(sources)}. Run `aether resume` to continue from "
            f"checkpoint {ckpt_id} (episode {episode + 1})."
        ),
        "command": command,
        "objective": _text(checkpoint.get("objective")) or _text(settings.get("objective")),
        "restarts": 0,
        "settings": {k: v for k, v in settings.items() if k != "quiet"},
        "recovered_from": sources,
    }
    for key, value in (
        ("agent_format", start.get("format") or agent.get("format")),
        ("tokenizer", start.get("tokenizer") or checkpoint.get("tokenizer")),
        ("window", settings.get("context_window")),
    ):
        if isinstance(value, str) or (type(value) is int and value > 0):
            record[key] = value
    return record


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _stamp(clock: Clock) -> str:
    """A time for a file name: `20260102T030405Z` (no colons, sortable)."""
    return clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
