"""Merging aether's own JSON files: the three-way merge git asks of a merge driver, and the
two sides of a file a merge without the driver left with conflict markers.

One rule per file, chosen by its name (`kind_of`):

- `session_continuity.json`: one record per session. The newest session (by
  `updated_at`) is the top level; every other session's record is kept, whole,
  in `other_sessions` (newest first, at most `continuity.MAX_OTHER_SESSIONS`), so each
  stays resumable. `_update_seq` becomes one past the larger of the two.
- `project_memory.json`: facts are a union by key (on both sides, the higher
  `updated_seq` wins; removed on one side and unchanged on the other: removed);
  `finished_tasks` a union; any other field: the side that changed it, ours if
  both did.
- `pruned.json`: the union of the ids.
- `context_index.json`: derived (rebuilt from the files on the next write);
  the union of its entries, so it is never wrong about what exists.
- `task_states/task_<id>_state.json`: the side with the newer `updated_at`.

Every input is untrusted: bytes that are not a JSON object of the expected
shape, or larger than `MAX_BYTES`, raise `MergeError` (the driver then lets git
report an ordinary conflict). Pure functions over bytes and dicts, but for
`read_resolving`, the readers' way through a conflicted file (it reads, never
writes). It knows nothing of git itself or of the driver's registration.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aether_cli import constants as C
from aether_cli import ids
from aether_cli.errors import AetherError, CorruptMemoryError
from aether_cli.store.continuity import MAX_BYTES as CONTINUITY_MAX_BYTES
from aether_cli.store.continuity import OTHER_SESSIONS, others_list, stamp, union_sessions
from aether_cli.store.continuity import problem as continuity_problem
from aether_cli.store.files import dumps, loads, read_bytes, read_object
from aether_cli.store.pruned import PRUNED_FILE

MAX_BYTES = CONTINUITY_MAX_BYTES
_MARKER = re.compile(rb"^(<{7}|\|{7}|={7}|>{7})(?: .*)?\r?$")


class MergeError(ValueError):
    """The inputs cannot be merged by rule (not JSON, the wrong shape, too big)."""


def kind_of(name: str) -> str | None:
    """Which rule merges the file `name` (a path or a base name), None if aether does not own it."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    named = {
        C.CONTINUITY_FILE: "continuity",
        C.PROJECT_MEMORY_FILE: "project_memory",
        PRUNED_FILE: "pruned",
        C.CONTEXT_INDEX_FILE: "index",
    }
    if base in named:
        return named[base]
    m = ids.TASK_FILE.match(base)
    return "task" if m is not None and ids.valid_task_id(m.group(1)) else None


# ------------------------------------------------------------------ conflict markers


def has_markers(raw: bytes) -> bool:
    """Whether `raw` holds a line that starts a git conflict (`<<<<<<< `)."""
    return raw.startswith(b"<<<<<<<") or b"\n<<<<<<<" in raw


def conflict_sides(raw: bytes) -> tuple[bytes, bytes] | None:
    """(ours, theirs) rebuilt from a file git left with conflict markers; None if it has none
    or they do not nest as git writes them (`<<<<<<<`, optional `|||||||`, `=======`, `>>>>>>>`)."""
    if not has_markers(raw):
        return None
    ours: list[bytes] = []
    theirs: list[bytes] = []
    state = "both"  # both | ours | base | theirs
    for line in raw.splitlines(keepends=True):
        m = _MARKER.match(line.rstrip(b"\n"))
        mark = m.group(1)[:1] if m else b""
        if mark == b"<" and state == "both":
            state = "ours"
        elif mark == b"|" and state == "ours":
            state = "base"
        elif mark == b"=" and state in ("ours", "base"):
            state = "theirs"
        elif mark == b">" and state == "theirs":
            state = "both"
        elif (mark and state != "both") or mark == b"<":
            return None
        else:
            if state in ("both", "ours"):
                ours.append(line)
            if state in ("both", "theirs"):
                theirs.append(line)
    return (b"".join(ours), b"".join(theirs)) if state == "both" else None


def resolve_conflicted(kind: str, raw: bytes) -> dict[str, Any] | None:
    """The merge of the two sides of a conflicted file; None if it has no markers or its sides
    cannot be merged (then it stays a damaged file)."""
    sides = conflict_sides(raw)
    if sides is None:
        return None
    try:
        return merge(kind, None, parse(sides[0]), parse(sides[1]))
    except MergeError:
        return None


def read_resolving(path: Path | str, kind: str) -> dict[str, Any] | None:
    """`read_object(path)`, except that a file a merge left with conflict markers is read as the
    merge of its two sides (nothing is written: `aether doctor --repair` or the next write does
    that); a damage no merge explains raises as `read_object` does."""
    try:
        return read_object(path, limit=MAX_BYTES)
    except CorruptMemoryError:
        try:
            raw = read_bytes(path, limit=MAX_BYTES)
        except (AetherError, OSError):
            raw = b""
        merged = resolve_conflicted(kind, raw)
        if merged is None:
            raise
        return merged


# ------------------------------------------------------------------ the merge


def parse(raw: bytes) -> dict[str, Any]:
    """`raw` as a JSON object; MergeError if it is too big, not JSON or not an object."""
    if len(raw) > MAX_BYTES:
        raise MergeError(f"larger than {MAX_BYTES} bytes")
    try:
        data = loads(raw)
    except ValueError as exc:
        raise MergeError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MergeError(f"not a JSON object but {type(data).__name__}")
    return data


def merge_bytes(kind: str, base: bytes | None, ours: bytes, theirs: bytes) -> bytes:
    """The merged file, in the store's deterministic form; MergeError if it cannot be merged."""
    parsed_base: dict[str, Any] | None = None
    if base:
        try:
            parsed_base = parse(base)
        except MergeError:
            parsed_base = None  # a broken ancestor only costs the three-way detail
    return dumps(merge(kind, parsed_base, parse(ours), parse(theirs)))


def merge(
    kind: str, base: dict[str, Any] | None, ours: dict[str, Any], theirs: dict[str, Any]
) -> dict[str, Any]:
    """The merge of `ours` and `theirs` (from `base`, if known) by the rule of `kind`."""
    try:
        return _merge(kind, base, ours, theirs)
    except (TypeError, KeyError, RecursionError) as exc:  # a field of a shape no rule expects
        raise MergeError(f"unexpected content ({type(exc).__name__})") from None


def _merge(
    kind: str, base: dict[str, Any] | None, ours: dict[str, Any], theirs: dict[str, Any]
) -> dict[str, Any]:
    if kind == "continuity":
        return merge_continuity(ours, theirs)
    if kind == "project_memory":
        return _merge_project_memory(base or {}, ours, theirs)
    if kind == "pruned":
        return {"pruned": sorted(_ids(ours) | _ids(theirs), key=_id_order)}
    if kind == "index":
        return _merge_index(ours, theirs)
    if kind == "task":
        return _merge_task(ours, theirs)
    raise MergeError(f"no merge rule for {kind!r}")


# ------------------------------------------------------------------ continuity


def merge_continuity(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Both continuity records in one: the newest session on top, the others kept."""
    for side in (ours, theirs):
        if (why := continuity_problem(side)) is not None:
            raise MergeError(why)
        if not isinstance(side.get("session_id"), str):
            raise MergeError("a side names no session")  # nothing to key it by: not ours to drop
    sessions = union_sessions(ours, theirs)  # ours wins a tie
    top_id = max(sessions, key=lambda sid: (stamp(sessions[sid]), sid == ours.get("session_id")))
    result = dict(sessions[top_id])
    others = others_list(sessions, top_id)
    if others:
        result[OTHER_SESSIONS] = others
    seqs = [s.get("_update_seq") for s in (ours, theirs)]
    result["_update_seq"] = max(s if type(s) is int else 0 for s in seqs) + 1
    return result


# ------------------------------------------------------------------ the others


def _ids(data: dict[str, Any]) -> set[str]:
    values = data.get("pruned")
    if not isinstance(values, list):
        raise MergeError("pruned is not a list")
    return {v for v in values if isinstance(v, str) and ids.checkpoint_seq(v) is not None}


def _id_order(checkpoint_id: str) -> tuple[int, str]:
    return (ids.checkpoint_seq(checkpoint_id) or 0, checkpoint_id)


def _facts(pm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    facts = pm.get("facts", [])
    if not isinstance(facts, list) or not all(
        isinstance(f, dict) and isinstance(f.get("key"), str) for f in facts
    ):
        raise MergeError("facts must be a list of objects with a key")
    return {f["key"]: f for f in facts}


def _seq(fact: dict[str, Any]) -> int:
    value = fact.get("updated_seq")
    return value if type(value) is int else -1


def _merge_project_memory(
    base: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any]
) -> dict[str, Any]:
    try:
        old = _facts(base)
    except MergeError:
        old = {}
    mine, yours = _facts(ours), _facts(theirs)
    facts: dict[str, dict[str, Any]] = {}
    for key in sorted(set(mine) | set(yours)):
        a, b = mine.get(key), yours.get(key)
        if a is not None and b is not None:
            facts[key] = b if _seq(b) > _seq(a) else a
        elif (only := a if a is not None else b) is not None and old.get(key) != only:
            facts[key] = only  # added on one side, or changed there since the other removed it
    result: dict[str, Any] = {}
    for key in sorted(set(ours) | set(theirs)):
        if key == "facts":
            result[key] = [facts[k] for k in sorted(facts)]
        elif (
            key == "finished_tasks" and isinstance(ours.get(key), list) and isinstance(theirs.get(key), list)
        ):
            result[key] = _union_list(ours[key], theirs[key])
        elif key not in ours:
            result[key] = theirs[key]
        elif key not in theirs or theirs[key] == base.get(key):
            result[key] = ours[key]
        else:
            result[key] = theirs[key] if ours[key] == base.get(key) else ours[key]
    return result


def _union_list(ours: list[Any], theirs: list[Any]) -> list[Any]:
    seen = {dumps(item) for item in ours}
    out = list(ours)
    for item in theirs:
        if (key := dumps(item)) not in seen:
            seen.add(key)
            out.append(item)
    return out


def _by_id(entries: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(entries, list):
        raise MergeError("an index section is not a list")
    return {e["id"]: e for e in entries if isinstance(e, dict) and isinstance(e.get("id"), str)}


def _merge_index(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    checkpoints = {**_by_id(theirs.get("checkpoints", [])), **_by_id(ours.get("checkpoints", []))}
    tasks = {**_by_id(theirs.get("tasks", [])), **_by_id(ours.get("tasks", []))}
    listed_ck = [checkpoints[k] for k in sorted(checkpoints, key=_id_order)]
    listed_tasks = [tasks[k] for k in sorted(tasks)]
    from aether_cli.store.index import totals

    index: dict[str, Any] = {
        "checkpoints": listed_ck,
        "tasks": listed_tasks,
        "totals": totals(listed_ck, listed_tasks),
    }
    pruned: set[str] = set()
    for side in (ours, theirs):
        if isinstance(side.get("pruned"), list):
            pruned |= _ids(side)
    pruned -= set(checkpoints)  # a pruned id whose file one side still has is not gone
    if pruned:
        index["pruned"] = sorted(pruned, key=_id_order)
    return index


def _merge_task(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    if ours.get("id") != theirs.get("id"):
        raise MergeError(f"the two sides hold different tasks ({ours.get('id')!r}, {theirs.get('id')!r})")
    return theirs if stamp(theirs) > stamp(ours) else ours
