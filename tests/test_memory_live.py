"""A person's `aether memory` change while a run is live: the run's checkpoint never undoes it,
and an agent's facts are committed at the checkpoint with their source and episode."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import filelock

from aether_cli import protocol as P
from aether_cli.budget import Budget
from aether_cli.episode_log import EpisodeLog
from aether_cli.facts import add_fact, pin_fact
from aether_cli.settings import Settings
from aether_cli.store import MemoryStore
from aether_cli.supervisor.checkpointing import Checkpointer
from aether_cli.tokens import load_counter


class RacingStore(MemoryStore):
    """A run's store that lets a person's `aether memory add` land mid-checkpoint.

    `_learn` lists the tasks between reading project memory and writing it. Here
    another process's store adds a fact at that moment: at once if the write
    lock is free (the race a read-then-write loses), else in a thread that waits
    for the lock like a real `aether memory add` would."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.person: threading.Thread | None = None

    def list_tasks(self) -> list[dict[str, Any]]:
        if self.person is None:
            other = MemoryStore(self.root)
            self.person = threading.Thread(target=add_fact, args=(other, "the API is v2 only"),
                                           kwargs={"key": "api"})
            probe = filelock.FileLock(str(self._layout.write_lock_path), timeout=0)
            try:
                probe.acquire()
            except filelock.Timeout:
                self.person.start()  # the lock is held: the person waits for the checkpoint
            else:
                probe.release()
                add_fact(other, "the API is v2 only", key="api")  # nothing holds the lock: it lands now
        return super().list_tasks()


def checkpointer(store: MemoryStore, tmp_path: Path) -> Checkpointer:
    settings = Settings(command=("agent",), objective="Migrate the API", context_window=20_000)
    return Checkpointer(settings, store, load_counter(prefer_exact=False), cwd=tmp_path, fmt="aether",
                        record=lambda *a, **k: None, notice=lambda *a: None)


def episode_log() -> EpisodeLog:
    log = EpisodeLog(objective="Migrate the API", prior_tasks={})
    log.add(P.MemoryOp(op="add", key="db", text="the database is Postgres 16", pinned=False, raw={}))
    return log


def test_a_checkpoint_does_not_undo_a_persons_fact_added_while_it_writes(tmp_path: Path) -> None:
    store = RacingStore(tmp_path / ".memory")
    store.init()
    store.write_task({"id": "t1", "title": "port", "status": "done"})
    budget = Budget(window=20_000, soft_at=1, checkpoint_at=1, emergency_at=1)
    checkpointer(store, tmp_path).write("budget", episode_log(), budget, session_id="ses_1", episode=3,
                                        window=20_000)
    assert store.person is not None
    if store.person.ident is not None:
        store.person.join(timeout=60)
    facts = {f["key"]: f for f in MemoryStore(tmp_path / ".memory").read_project_memory()["facts"]}
    assert set(facts) == {"api", "db"}, "the checkpoint overwrote the person's fact"
    assert facts["api"]["source"] == "user"
    assert (facts["db"]["source"], facts["db"]["episode"]) == ("agent", 3)


def test_a_persons_pin_survives_the_agent_re_adding_the_fact(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    store.apply_memory_ops([{"op": "add", "key": "db", "text": "Postgres"}], seq=1, episode=1)
    pin_fact(store, "db")
    store.apply_memory_ops([{"op": "add", "key": "db", "text": "Postgres 16", "pinned": False}],
                           seq=2, episode=2)
    (fact,) = store.read_project_memory()["facts"]
    assert (fact["text"], fact["pinned"], fact["episode"]) == ("Postgres 16", True, 2)
