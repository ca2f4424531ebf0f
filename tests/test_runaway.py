"""An agent that loops must not make aether relaunch it forever or fill the disk:
the stall guard stops the run (exit 4, memory intact) and the ledger has a cap."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest
from helpers import aether

from aether_cli import constants as C
from aether_cli.store import MemoryStore, read_ledger
from aether_cli.supervisor.run_state import RunRecords

# Every launch: the same three tool calls, then a nearly full context; it never
# answers a checkpoint request and exits when told to stop.
LOOPER = """
import json, sys
def say(**ev): print(json.dumps(ev), flush=True)
sys.stdin.readline()
say(type='hello', agent='looper')
for i in range(3):
    say(type='tool_call', id=f'c{i}', name='Bash', input={'command': f'ls dir{i}'})
    say(type='tool_result', id=f'c{i}', output='a b c')
say(type='usage', context_tokens=900)
for line in sys.stdin:
    if json.loads(line)['type'] == 'stop':
        break
"""


def run_looper(*extra: str) -> tuple[int, str]:
    res = aether(
        "run",
        "--objective",
        "loop",
        "--context-window",
        "1000",
        "--checkpoint-timeout",
        "0.2",
        "--max-episodes",
        "30",  # a safety net: without the guard the run would never end
        *extra,
        "--",
        sys.executable,
        "-c",
        LOOPER,
        env={"AETHER_STOP_GRACE": "1", "AETHER_TERM_GRACE": "1"},
    )
    return res.returncode, res.stdout + res.stderr


def launches(project: Path) -> int:
    ledger = next((project / ".memory" / "runs").glob("ses_*.jsonl"))
    return sum(1 for r in read_ledger(ledger) if r.get("kind") == "launch")


@pytest.mark.slow
def test_an_agent_that_repeats_itself_at_the_threshold_is_stopped_after_5_stalled_episodes(
    project: Path,
) -> None:
    code, out = run_looper()
    assert code == C.EXIT_CRASH_LOOP == 4, out
    assert "no progress in 5 episodes in a row" in out
    # Episode 1's calls were new; episodes 2-6 repeated them.
    assert launches(project) == 6
    cont = orjson.loads((project / ".memory" / "session_continuity.json").read_bytes())
    assert cont["status"] == "stopped" and cont["last_checkpoint"]
    assert len(list((project / ".memory" / "checkpoints").glob("chk_*.json"))) == 6


@pytest.mark.slow
def test_the_stall_limit_is_a_setting(project: Path) -> None:
    code, out = run_looper("--max-stalled-episodes", "2")
    assert code == 4, out
    assert launches(project) == 3


def test_the_ledger_stops_recording_the_agents_events_at_its_cap(project: Path) -> None:
    store = MemoryStore(project / ".memory")
    store.init()
    notices: list[str] = []
    records = RunRecords(store, lambda text, kind: notices.append(text), max_bytes=20_000)
    records.open("ses_cap")
    for i in range(2_000):
        records.record("event", event={"type": "message", "text": "x" * 100, "i": i})
    records.record("checkpoint", id="chk_000001_00000000")
    records.close()
    path = store.ledger_path("ses_cap")
    assert path.stat().st_size < 20_000 + 1_000
    kinds = [r["kind"] for r in read_ledger(path)]
    assert kinds.count("ledger_capped") == 1 and kinds[-1] == "checkpoint"
    assert records.dropped > 1_500
    assert len(notices) == 1 and "20,000 bytes" in notices[0]


GARBAGE = """
import os, sys, time
sys.stdout.buffer.write(bytes(range(256)) * 800 + b"\\n")  # 200 KB of binary garbage
sys.stdout.flush()
time.sleep(60)
"""


@pytest.mark.slow
def test_a_text_agent_printing_binary_garbage_is_stopped_too(project: Path) -> None:
    res = aether(
        "run",
        "--format",
        "text",
        "--objective",
        "garbage",
        "--context-window",
        "20000",
        "--max-episodes",
        "30",
        "--",
        sys.executable,
        "-c",
        GARBAGE,
        env={"AETHER_STOP_GRACE": "0.5", "AETHER_TERM_GRACE": "0.5"},
    )
    assert res.returncode == 4, res.stdout + res.stderr
    assert launches(project) == 5, "no episode made progress, the first one included"
    ledger = next((project / ".memory" / "runs").glob("ses_*.jsonl"))
    assert ledger.stat().st_size < 5 << 20
