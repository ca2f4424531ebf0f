"""Retention: which checkpoints `aether gc` removes, and when a run prunes on its own.

The rules, in the order they protect a checkpoint:

- the latest checkpoint of every session is never removed (nor the folder's
  latest, whatever session it names), nor the one `session_continuity.json`
  records as the session's last (a live run started from it and resumes from
  it), nor one that cannot be read (gc never deletes what it cannot classify);
- `keep` N: the N newest checkpoints (by sequence number) stay;
- `older_than_days` D: only a checkpoint created more than D days ago may go
  (one whose `created_at` does not parse counts as new);
- both given: a checkpoint must be outside the N newest *and* older than D.

A kept checkpoint may name a removed one as its `parent`: the removed ids are
recorded in `pruned.json` (store), and `parent_note` turns that into "parent
pruned" for `status`, `show` and `resume`.

Automatic gc: only when config.toml has a `[retention]` table, after a
checkpoint, and cheaply: with `keep`, only once the folder holds more than
`keep` plus a slack (so one run of gc pays for many checkpoints, and the
check itself is a listing of file names); with `older_than_days`, at a run's
first checkpoint and every `AGE_EVERY`-th after (age changes slowly).

It knows nothing of the CLI, of git, or of how a checkpoint is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aether_cli import ids
from aether_cli.errors import AetherError, NotFoundError, UsageError
from aether_cli.store import MemoryStore

RETENTION_TABLE = "retention"
AGE_EVERY = 50
MIN_SLACK = 5


@dataclass(frozen=True)
class Policy:
    """What gc keeps: the `keep` newest, and everything younger than `older_than_days`."""

    keep: int | None = None
    older_than_days: float | None = None

    @property
    def empty(self) -> bool:
        """Whether the policy says nothing (gc would have no rule to apply)."""
        return self.keep is None and self.older_than_days is None

    def slack(self) -> int:
        """How far past `keep` the folder may grow before an automatic gc runs."""
        return max(MIN_SLACK, (self.keep or 0) // 10)


@dataclass
class GcReport:
    """What one gc removed (or, with `dry_run`, would remove), and what it kept."""

    removed: list[dict[str, Any]] = field(default_factory=list)
    kept: int = 0
    dry_run: bool = False
    policy: Policy = field(default_factory=Policy)

    @property
    def bytes_freed(self) -> int:
        """The bytes of the removed checkpoint files."""
        return sum(int(r["bytes"]) for r in self.removed)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (for `aether gc --json`)."""
        return {
            "dry_run": self.dry_run,
            "keep": self.policy.keep,
            "older_than_days": self.policy.older_than_days,
            "removed": self.removed,
            "kept": self.kept,
            "bytes_freed": self.bytes_freed,
        }


def _number(table: dict[str, Any], key: str, source: str, *, integer: bool) -> Any:
    value = table.get(key)
    if value is None:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
        want = "a whole number" if integer else "a number"
        raise UsageError(f"{source}: [retention] {key} must be {want} >= 0, got {value!r}")
    return value


def read_policy(config_path: Path) -> Policy | None:
    """The `[retention]` table of config.toml as a Policy, None when there is none.

    A table that is there but malformed is a UsageError naming the file."""
    import tomllib  # here: `aether status` imports this module for `parent_note` only

    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{config_path}: cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{config_path}: not valid TOML: {exc}") from None
    table = data.get(RETENTION_TABLE)
    if table is None:
        return None
    if not isinstance(table, dict):
        raise UsageError(f"{config_path}: retention must be a table ([retention])")
    unknown = sorted(set(table) - {"keep", "older_than_days"})
    if unknown:
        raise UsageError(f"{config_path}: unknown [retention] setting: {', '.join(unknown)}")
    return Policy(
        keep=_number(table, "keep", str(config_path), integer=True),
        older_than_days=_number(table, "older_than_days", str(config_path), integer=False),
    )


def policy_for(store: MemoryStore, keep: int | None, older_than: float | None) -> Policy:
    """The policy of one `aether gc`: its flags, else config.toml's `[retention]`."""
    if (keep is not None and keep < 0) or (older_than is not None and older_than < 0):
        raise UsageError("--keep and --older-than must not be negative")
    configured = read_policy(store.root / "config.toml") or Policy()
    policy = Policy(
        keep=keep if keep is not None else configured.keep,
        older_than_days=older_than if older_than is not None else configured.older_than_days,
    )
    if policy.empty:
        raise UsageError(
            "gc needs a rule: --keep N or --older-than DAYS "
            "(or a [retention] table with keep / older_than_days in .memory/config.toml)"
        )
    return policy


def _created(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _describe(store: MemoryStore, checkpoint_id: str) -> dict[str, Any] | None:
    """The id, session, creation time and size of one checkpoint; None if it cannot be read."""
    from aether_cli.store.files import loads, read_bytes

    path = store.checkpoints_dir / f"{checkpoint_id}.json"
    try:
        raw = read_bytes(path)
        data = loads(raw)
    except (OSError, AetherError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    session = data.get("session_id")
    return {
        "id": checkpoint_id,
        "session_id": session if isinstance(session, str) else None,
        "created_at": data.get("created_at") if isinstance(data.get("created_at"), str) else None,
        "bytes": len(raw),
    }


def _protected(store: MemoryStore) -> set[str]:
    """What continuity records as the session's last checkpoint (a live run holds it)."""
    try:
        cont = store.read_continuity() or {}
    except AetherError:
        return set()
    last = cont.get("last_checkpoint")
    return {last} if isinstance(last, str) else set()


def plan(
    store: MemoryStore, policy: Policy, *, now: datetime | None = None
) -> tuple[list[dict[str, Any]], int]:
    """(the checkpoints gc would remove, oldest first; how many it keeps)."""
    all_ids = store.checkpoint_ids()
    if not all_ids:
        return [], 0
    keep = set(_protected(store)) | {all_ids[-1]}
    if policy.keep is not None:
        keep.update(all_ids[max(0, len(all_ids) - policy.keep) :])
    cutoff = None
    if policy.older_than_days is not None:
        cutoff = (now or datetime.now(UTC)) - timedelta(days=policy.older_than_days)
    latest_of: dict[str | None, str] = {}
    candidates: list[dict[str, Any]] = []
    for checkpoint_id in all_ids:
        info = _describe(store, checkpoint_id)
        if info is None:
            keep.add(checkpoint_id)
            continue
        latest_of[info["session_id"]] = checkpoint_id  # ids come in sequence order
        candidates.append(info)
    keep.update(latest_of.values())
    removed = []
    for info in candidates:
        if info["id"] in keep:
            continue
        created = _created(info["created_at"])
        if cutoff is not None and (created is None or created >= cutoff):
            continue
        removed.append(info)
    return removed, len(all_ids) - len(removed)


def gc(store: MemoryStore, policy: Policy, *, dry_run: bool = False, now: datetime | None = None) -> GcReport:
    """Remove (or with `dry_run` only list) what `policy` lets go; see the module docstring."""
    if not store.exists():
        raise NotFoundError(f"no {store.root} here: nothing to gc")
    doomed, kept = plan(store, policy, now=now)
    if not dry_run and doomed:
        gone = dict(store.prune_checkpoints([d["id"] for d in doomed]))
        doomed = [{**d, "bytes": gone[d["id"]]} for d in doomed if d["id"] in gone]
        kept = len(store.checkpoint_ids())
    return GcReport(removed=doomed, kept=kept, dry_run=dry_run, policy=policy)


def auto_gc_due(policy: Policy | None, count: int, written: int) -> bool:
    """Whether a run should gc after its `written`-th checkpoint, the folder holding `count`."""
    if policy is None or policy.empty:
        return False
    age_turn = written == 1 or written % AGE_EVERY == 0
    if policy.keep is None:
        return age_turn
    # With an age rule too, a full folder may hold nothing old enough: then gc must
    # not read every checkpoint again after each new one.
    return count > policy.keep + policy.slack() and (policy.older_than_days is None or age_turn)


def after_checkpoint(store: MemoryStore, policy: Policy | None, written: int) -> GcReport | None:
    """The automatic gc of a run, if one is due (see the module docstring); None if not."""
    if not auto_gc_due(policy, len(store.checkpoint_ids()), written):
        return None
    assert policy is not None
    return gc(store, policy)


def parent_note(store: MemoryStore, checkpoint: dict[str, Any]) -> str:
    """ "" when the checkpoint's parent is there (or it has none), else what happened to it."""
    parent = checkpoint.get("parent")
    if not isinstance(parent, str) or not parent or ids.checkpoint_seq(parent) is None:
        return ""
    if (store.checkpoints_dir / f"{parent}.json").exists():
        return ""
    if parent in store.pruned_ids():
        return f"parent {parent} pruned by `aether gc` (git history keeps it)"
    return f"parent {parent} missing (dropped or never copied here)"
