"""A refused task id is reported without the secret it may be (issue 12, point 4).

A task id becomes a file name, so one shaped like a secret is refused; the
warning that says so goes to the terminal and to the run ledger, and must not
print the token it refused. Driven through a real Episode with a fake child,
a recording reporter and the ledger record callback, as in
test_episode_machine.py.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from aether_cli import protocol as P
from aether_cli.budget import Budget
from aether_cli.episode_log import EpisodeLog
from aether_cli.reporter import NullReporter
from aether_cli.settings import Settings
from aether_cli.store import MemoryStore
from aether_cli.supervisor.episode import Episode
from aether_cli.supervisor.run_state import AgentFacts, Signals

RNG = random.Random(12)
TOKEN = "ghp_" + "".join(RNG.choice(string.ascii_letters + string.digits) for _ in range(36))


@dataclass
class Child:
    pid: int = 4242
    sent: list[dict[str, Any]] = field(default_factory=list)

    def send(self, data: bytes) -> None:
        self.sent.append(orjson.loads(data))

    def signal_group(self, sig: int) -> bool:
        return True

    def poll(self) -> int | None:
        return None

    def wait(self, timeout: float) -> int | None:
        return None


class Notices(NullReporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def notice(self, text: str, kind: str = "info") -> None:
        self.lines.append(text)


def episode(tmp_path: Path, ui: Notices, records: list[tuple[str, dict[str, Any]]]) -> Episode:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    return Episode(
        settings=Settings(command=("agent",), objective="o", context_window=1000),
        child=Child(),
        gen=1,
        number=1,
        log=EpisodeLog(objective="o"),
        budget=Budget(window=1000, soft_at=0.6, checkpoint_at=0.8, emergency_at=0.95),
        store=store,
        ui=ui,
        record=lambda kind, **f: records.append((kind, f)),
        agent=AgentFacts(),
        signals=Signals(),
        window=lambda: 1000,
        protocol_format=True,
        safe_point="calls",
    )


def test_a_task_id_that_is_a_token_is_refused_without_printing_or_recording_it(tmp_path: Path) -> None:
    ui = Notices()
    records: list[tuple[str, dict[str, Any]]] = []
    ep = episode(tmp_path, ui, records)
    for task_id in (TOKEN, f"../{TOKEN}", "PGPASSWORD=hunter2hunter2"):
        wire = {"type": "task", "id": task_id, "status": "in_progress"}
        ep.take("events", ([P.decode_obj(wire, orjson.dumps(wire).decode())], [0], 0))
    warnings = [f["text"] for kind, f in records if kind == "warning"]
    assert len(ui.lines) == len(warnings) == 3, (ui.lines, warnings)
    for text in [*ui.lines, *warnings]:
        assert text.startswith("refused task id '")
        assert TOKEN not in text and TOKEN[:20] not in text and "hunter2" not in text, text
        assert "[REDACTED:" in text
    assert not list((tmp_path / ".memory" / "task_states").glob("*"))
