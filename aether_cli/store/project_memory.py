"""`project_memory.json`: the project's long-term state (objective, facts, finished tasks, learned figures).

Promises:

- a read always has every field (defaults fill what is missing) and facts
  that are objects with a string key, else `CorruptMemoryError`;
- a write is redacted, atomic, with facts sorted by key (stable diffs);
- `apply_ops` validates every op before touching anything, then reads,
  changes and writes under the `WriteLock`, so concurrent ops are not lost;
  `update` does the same for any change (a person's `aether memory` command
  and a live run's checkpoint never overwrite each other);
- a fact records who proposed it (`source`: "agent" or "user") and the
  episode it came from; a person's pin survives the agent re-adding the fact.

It knows nothing of checkpoints or tasks beyond the sequence number an op is
stamped with.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from aether_cli.errors import CorruptMemoryError
from aether_cli.redact import redact_obj
from aether_cli.store.files import atomic_write, dumps
from aether_cli.store.layout import Layout
from aether_cli.store.lock import WriteLock
from aether_cli.store.merge import read_resolving

_PROJECT_MEMORY_DEFAULTS: dict[str, Any] = {
    "objective": "",
    "facts": [],
    "finished_tasks": [],
    "learned": {},
}


def _with_defaults(pm: dict[str, Any]) -> dict[str, Any]:
    for key, default in _PROJECT_MEMORY_DEFAULTS.items():
        if key not in pm:
            pm[key] = copy.deepcopy(default)
    return pm


def _check_op(op: Any) -> dict[str, Any]:
    """A memory op with every field present and typed; ValueError naming what is wrong."""
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


def _apply(
    facts: dict[str, dict[str, Any]], op: dict[str, Any], seq: int, source: str, episode: int | None
) -> None:
    key = op["key"]
    if op["op"] == "remove":
        facts.pop(key, None)
        return
    old = facts.get(key)
    # A person pinned it (`aether memory pin`): the agent re-adding the fact keeps the pin.
    user_pin = bool(old and old.get("pinned_by") == "user" and old.get("pinned") is True)
    fact = {
        "key": key,
        "text": op["text"],
        "pinned": op["pinned"] or user_pin,
        "priority": op["priority"],
        "added_seq": old.get("added_seq", seq) if old else seq,
        "updated_seq": seq,
        "source": source,
        "episode": episode,
    }
    if user_pin:
        fact["pinned_by"] = "user"
    facts[key] = fact


class ProjectMemory:
    """Reads, writes and updates project_memory.json."""

    def __init__(self, layout: Layout, write_lock: WriteLock) -> None:
        self._layout = layout
        self._write_lock = write_lock

    def read(self) -> dict[str, Any]:
        """project_memory.json with defaults for anything missing (all defaults if absent)."""
        path = self._layout.project_memory_path
        pm = _with_defaults(read_resolving(path, "project_memory") or {})
        facts = pm["facts"]
        if not isinstance(facts, list) or not all(
            isinstance(f, dict) and isinstance(f.get("key"), str) for f in facts
        ):
            raise CorruptMemoryError(f"{path}: facts must be a list of objects with a key")
        return pm

    def write(self, pm: dict[str, Any]) -> None:
        """Write project_memory.json (redacted, defaults filled, facts sorted by key)."""
        record = _with_defaults(redact_obj(dict(pm)))
        if isinstance(record["facts"], list):
            record["facts"] = sorted(
                record["facts"], key=lambda f: str(f.get("key", "")) if isinstance(f, dict) else ""
            )
        with self._write_lock.held():
            self._layout.ensure_dir(self._layout.root)
            atomic_write(self._layout.project_memory_path, dumps(record))

    def update(self, change: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
        """Read, `change` (in place, or return a new one), write, all under the write lock; return it.

        A corrupt file raises `CorruptMemoryError` before `change` runs, so it is
        never overwritten; `change` may raise to write nothing. Nothing changed, nothing is written."""
        with self._write_lock.held():
            pm = self.read()
            before = copy.deepcopy(pm)
            changed = change(pm)
            after = pm if changed is None else changed
            if after == before:
                return before
            self.write(after)
            return self.read()

    def apply_ops(
        self, ops: list[dict[str, Any]], *, seq: int, source: str = "agent", episode: int | None = None
    ) -> dict[str, Any]:
        """Apply `memory` ops to the facts, write, and return the new project memory."""
        checked = [op for op in map(_check_op, ops) if op["key"].strip()]

        def change(pm: dict[str, Any]) -> None:
            facts = {f["key"]: f for f in pm["facts"]}
            for op in checked:
                _apply(facts, op, seq, source, episode)
            pm["facts"] = [facts[k] for k in sorted(facts)]

        return self.update(change)
