"""A hard link where aether writes in place (the ledger, the lock files) is refused:
O_NOFOLLOW stops symlinks, not hard links, and the outside file must stay untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aether_cli.errors import CorruptMemoryError
from aether_cli.store import Ledger, MemoryStore


def outside_file(tmp_path: Path) -> Path:
    victim = tmp_path / "outside.txt"
    victim.write_text("precious\n")
    return victim


def test_a_hard_linked_ledger_is_refused_and_the_other_file_untouched(project: Path, tmp_path: Path) -> None:
    store = MemoryStore(project / ".memory")
    store.init()
    victim = outside_file(tmp_path)
    os.link(victim, store.ledger_path("ses_x"))
    with pytest.raises(CorruptMemoryError, match="hard links"):
        store.open_ledger("ses_x")
    with pytest.raises(CorruptMemoryError, match="hard links"):
        Ledger(store.ledger_path("ses_x"), repair=True)
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("name", ["aether.lock", "write.lock"])
def test_a_hard_linked_lock_file_is_refused_and_not_truncated(
    project: Path, tmp_path: Path, name: str
) -> None:
    store = MemoryStore(project / ".memory")
    store.init()
    victim = outside_file(tmp_path)
    os.link(victim, store.runs_dir / name)
    with pytest.raises(CorruptMemoryError, match="hard links"):
        store.acquire(["agent"]) if name == "aether.lock" else store.write_continuity({"session_id": "s"})
    assert victim.read_text() == "precious\n"


def test_the_cli_says_what_to_do_in_one_line(project: Path, tmp_path: Path) -> None:
    from helpers import aether

    store = MemoryStore(project / ".memory")
    store.init()
    os.link(outside_file(tmp_path), store.runs_dir / "aether.lock")
    res = aether("run", "--", "true")
    assert res.returncode != 0 and "hard links" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
