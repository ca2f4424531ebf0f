"""`task_states/`: one small JSON file per task, `task_<id>_state.json`.

Promises:

- an id becomes a file name only if `ids.valid_task_id` accepts it (no path
  separators, no leading dot, nothing shaped like a secret); any other id is
  refused with `InvalidTaskIdError` before anything is written, so no task
  file lands outside the folder;
- a task is written whole: missing contract fields get their defaults, a bad
  status, progress or file list raises `ValueError`, and the record is
  redacted and written atomically;
- a listing reads every task file and names the one that is broken, or that
  holds another task's id.

It knows nothing of checkpoints, the index or the run lock.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from aether_cli import constants as C
from aether_cli import ids
from aether_cli.constants import TASK_STATUSES
from aether_cli.errors import AetherError, CorruptMemoryError
from aether_cli.redact import redact_obj
from aether_cli.store.clock import Clock, iso_utc
from aether_cli.store.files import atomic_write, dumps
from aether_cli.store.layout import Layout
from aether_cli.store.merge import read_resolving


class InvalidTaskIdError(AetherError, ValueError):
    """A task id that may not become a file name (see constants.TASK_ID_PATTERN)."""


_TASK_DEFAULTS: dict[str, Any] = {
    "title": "",
    "status": "pending",
    "progress": 0.0,
    "next_action": "",
    "notes": "",
    "files": [],
}


def relative_task_file(task_id: str) -> str:
    """`task_states/task_<id>_state.json` (relative to the root); InvalidTaskIdError if not allowed."""
    if not ids.valid_task_id(task_id):
        raise InvalidTaskIdError(
            f"invalid task id {task_id!r}: use 1-64 letters, digits, '_', '-' or '.' "
            "(not a leading '.', not a secret)"
        )
    return f"{C.TASKS_DIR}/{ids.task_file_name(task_id)}"


def _checked(task: dict[str, Any]) -> dict[str, Any]:
    """`task` over the defaults, its progress clamped to [0, 1]; ValueError for a bad field."""
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
    return record


class Tasks:
    """Reads and writes the task files of one `.memory` folder."""

    def __init__(self, layout: Layout, clock: Clock) -> None:
        self._layout = layout
        self._clock = clock

    def write(self, task: dict[str, Any]) -> str:
        """Write one task's file (see `MemoryStore.write_task`); return its relative path."""
        if not isinstance(task, dict):
            raise TypeError("a task must be a dict")
        rel = relative_task_file(task.get("id"))  # type: ignore[arg-type]
        record = _checked(task)
        if not record.get("updated_at"):
            record["updated_at"] = iso_utc(self._clock())
        record = redact_obj(record)
        # The id was checked to be no secret; it must stay the file's own name.
        record["id"] = task["id"]
        self._layout.ensure_dir(self._layout.tasks_dir)
        atomic_write(self._layout.root / rel, dumps(record))
        return rel

    def read(self, task_id: str) -> dict[str, Any] | None:
        """One task's state, None if it has no file; CorruptMemoryError if the file is broken."""
        return read_resolving(self._layout.root / relative_task_file(task_id), "task")

    def read_all(self) -> list[dict[str, Any]]:
        """Every task state, sorted by id; a broken file raises CorruptMemoryError naming it."""
        tasks: list[dict[str, Any]] = []
        for task_id, path in self._layout.task_paths():
            task = read_resolving(path, "task")
            if task is None:  # removed since the listing
                continue
            if task.get("id", task_id) != task_id:
                raise CorruptMemoryError(f"{path}: holds task {task.get('id')!r}, not {task_id!r}")
            task.setdefault("id", task_id)
            tasks.append(task)
        return tasks
