"""Retention (`aether gc`): what is kept, the pruned record, and reading a checkpoint whose parent went."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from aether_cli import commands, retention
from aether_cli.errors import UsageError
from aether_cli.retention import Policy
from aether_cli.store import MemoryStore
from aether_cli.supervisor.checkpointing import _RunRetention
from tests.helpers import aether

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def draft(session: str, days_ago: float, **fields: Any) -> dict[str, Any]:
    created = (NOW - timedelta(days=days_ago)).isoformat().replace("+00:00", "Z")
    return {
        "session_id": session,
        "episode": 1,
        "trigger": "budget",
        "objective": "o",
        "created_at": created,
        **fields,
    }


def tree(root: Path) -> dict[str, bytes | None]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def store(project: Path) -> MemoryStore:
    s = MemoryStore(project / ".memory")
    s.init()
    return s


def two_sessions(store: MemoryStore) -> list[str]:
    """s1 writes 4 checkpoints (a chain), then s2 writes 3: returns the 7 ids in order."""
    out: list[str] = []
    parent = None
    for i in range(4):
        parent = store.write_checkpoint(draft("s1", 40 - i, parent=parent))["id"]
        out.append(parent)
    parent = None
    for i in range(3):
        parent = store.write_checkpoint(draft("s2", 10 - i, parent=parent))["id"]
        out.append(parent)
    store.write_continuity(
        {"session_id": "s2", "status": "stopped", "last_checkpoint": out[-1], "command": ["true"]}
    )
    return out


def test_gc_keeps_each_sessions_latest_and_records_what_it_pruned(store: MemoryStore) -> None:
    ids = two_sessions(store)
    sizes = {cid: store.checkpoint_path(cid).stat().st_size for cid in ids}
    report = retention.gc(store, Policy(keep=1))
    gone = [r["id"] for r in report.removed]
    # s1's latest (ids[3]) stays although it is outside the newest 1; s2's chain loses its parents.
    assert gone == [ids[0], ids[1], ids[2], ids[4], ids[5]]
    assert store.checkpoint_ids() == [ids[3], ids[6]]
    assert report.bytes_freed == sum(sizes[c] for c in gone) and report.kept == 2
    assert store.pruned_ids() == set(gone)
    assert orjson.loads((store.root / "pruned.json").read_bytes()) == {"pruned": gone}
    assert store.read_context_index()["pruned"] == gone
    # The index is derived: a rebuild from nothing still lists what gc removed.
    store.context_index_path.unlink()
    assert MemoryStore(store.root).update_context_index()["pruned"] == gone


def test_dry_run_changes_nothing(store: MemoryStore) -> None:
    ids = two_sessions(store)
    before = tree(store.root)
    report = retention.gc(store, Policy(keep=2), dry_run=True)
    assert [r["id"] for r in report.removed] == [ids[0], ids[1], ids[2], ids[4]]
    assert report.dry_run and report.bytes_freed > 0
    assert tree(store.root) == before


def test_older_than_removes_only_old_ones_and_a_bad_date_counts_as_new(store: MemoryStore) -> None:
    ids = two_sessions(store)
    odd = store.write_checkpoint(draft("s2", 0, created_at="yesterday-ish"))["id"]
    store.write_checkpoint(draft("s2", 0))
    report = retention.gc(store, Policy(older_than_days=20), now=NOW)
    assert [r["id"] for r in report.removed] == ids[:3]
    assert odd in store.checkpoint_ids()


def test_the_checkpoint_continuity_records_is_kept(store: MemoryStore) -> None:
    """A session resumed from an older checkpoint (continuity names it) keeps it through gc."""
    ids = two_sessions(store)
    cont = store.read_continuity()
    assert cont is not None
    store.write_continuity({**cont, "last_checkpoint": ids[4]})
    retention.gc(store, Policy(keep=0))
    assert store.checkpoint_ids() == [ids[3], ids[4], ids[6]]


def test_status_show_and_resume_say_parent_pruned(store: MemoryStore, project: Path) -> None:
    ids = two_sessions(store)
    aether("gc", "--keep", "1", cwd=project)
    st = aether("status", "--json", cwd=project)
    assert st.returncode == 0, st.stderr
    last = orjson.loads(st.stdout)["last_checkpoint"]
    assert last["id"] == ids[6] and last["parent"] == ids[5]
    assert "pruned" in last["parent_note"]
    shown = aether("show", ids[6], cwd=project)
    assert shown.returncode == 0 and f"parent {ids[5]} pruned" in shown.stdout.replace("\n", " ")
    plan, _settings, note = commands.resume_plan(MemoryStore(store.root), None, {})
    assert plan.checkpoint_id == ids[6]
    assert f"its parent {ids[5]} pruned" in note


def test_a_parent_that_was_never_pruned_is_called_missing(store: MemoryStore) -> None:
    ids = two_sessions(store)
    store.drop_checkpoint(ids[5])
    note = retention.parent_note(store, store.read_checkpoint(ids[6]))
    assert note.startswith(f"parent {ids[5]} missing")


def test_gc_cli_prints_what_it_removed_and_the_bytes(store: MemoryStore, project: Path) -> None:
    ids = two_sessions(store)
    dry = aether("gc", "--keep", "1", "--dry-run", cwd=project)
    assert dry.returncode == 0, dry.stderr
    assert f"would remove {ids[0]}" in dry.stdout and "would free" in dry.stdout
    assert len(store.checkpoint_ids()) == 7
    out = aether("gc", "--keep", "1", "--json", cwd=project)
    data = orjson.loads(out.stdout)
    assert [r["id"] for r in data["removed"]] == [ids[0], ids[1], ids[2], ids[4], ids[5]]
    assert data["bytes_freed"] == sum(r["bytes"] for r in data["removed"]) > 0


def test_gc_without_a_rule_or_with_a_bad_table_is_a_one_line_error(store: MemoryStore, project: Path) -> None:
    two_sessions(store)
    out = aether("gc", cwd=project)
    assert out.returncode == 2 and out.stderr.startswith("aether: error: gc needs a rule")
    (store.root / "config.toml").write_text("[retention]\nkeep = -3\n")
    out = aether("gc", cwd=project)
    assert out.returncode == 2 and "keep must be a whole number" in out.stderr
    assert out.stderr.count("\n") == 1
    (store.root / "config.toml").write_text("[retention]\nkeep = 1\n")
    assert aether("gc", "--dry-run", cwd=project).returncode == 0


def test_pruned_record_is_untrusted_and_merges_as_a_union(store: MemoryStore) -> None:
    ids = two_sessions(store)
    merged = (
        '{\n  "pruned": [\n<<<<<<< HEAD\n    "chk_000001_aaaaaaaa",\n=======\n'
        '    "chk_000002_bbbbbbbb",\n>>>>>>> other\n    "../../etc/passwd"\n  ]\n}\n'
    )
    (store.root / "pruned.json").write_text(merged)
    assert store.pruned_ids() == {"chk_000001_aaaaaaaa", "chk_000002_bbbbbbbb"}
    (store.root / "pruned.json").write_text('{"pruned": ["x/../y", 3, "chk_000009_cccccccc"]}')
    assert store.pruned_ids() == {"chk_000009_cccccccc"}
    retention.gc(store, Policy(keep=6))  # removes ids[0]; the record is tidied into canonical JSON
    assert orjson.loads((store.root / "pruned.json").read_bytes()) == {
        "pruned": [ids[0], "chk_000009_cccccccc"]
    }


def test_policy_from_config_and_flags(store: MemoryStore) -> None:
    (store.root / "config.toml").write_text(
        "[run]\nmax_restarts = 2\n\n[retention]\nkeep = 50\nolder_than_days = 30\n"
    )
    assert retention.read_policy(store.root / "config.toml") == Policy(keep=50, older_than_days=30)
    assert retention.policy_for(store, 3, None) == Policy(keep=3, older_than_days=30)
    (store.root / "config.toml").write_text("[retention]\nkeep_all = true\n")
    with pytest.raises(UsageError, match="unknown"):
        retention.read_policy(store.root / "config.toml")


def test_a_run_prunes_on_its_own_only_with_a_retention_table(store: MemoryStore) -> None:
    notices: list[tuple[str, str]] = []

    def notice(text: str, level: str) -> None:
        notices.append((text, level))

    auto = _RunRetention(store)
    for _ in range(12):
        store.write_checkpoint(draft("s1", 0))
        auto.after(notice)
    assert len(store.checkpoint_ids()) == 12 and not notices  # no [retention]: never
    (store.root / "config.toml").write_text("[retention]\nkeep = 2\n")
    auto = _RunRetention(store)
    store.write_checkpoint(draft("s1", 0))
    auto.after(notice)
    assert len(store.checkpoint_ids()) == 2
    assert notices and notices[-1][0].startswith("gc: removed 11 old checkpoints")
    for _ in range(5):  # within the slack: no gc, not even a read of the checkpoints
        store.write_checkpoint(draft("s1", 0))
        auto.after(notice)
    assert len(store.checkpoint_ids()) == 7
    store.write_checkpoint(draft("s1", 0))
    auto.after(notice)
    assert len(store.checkpoint_ids()) == 2


def test_auto_gc_due() -> None:
    assert not retention.auto_gc_due(None, 1000, 1)
    assert retention.auto_gc_due(Policy(keep=50), 56, 7) and not retention.auto_gc_due(Policy(keep=50), 55, 7)
    age = Policy(older_than_days=3)
    assert retention.auto_gc_due(age, 1, 1) and not retention.auto_gc_due(age, 9, 2)
    both = Policy(keep=1, older_than_days=3)
    assert retention.auto_gc_due(both, 100, 50) and not retention.auto_gc_due(both, 100, 51)
