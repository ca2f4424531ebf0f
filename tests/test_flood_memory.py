"""aether's memory is bounded by the window, not by how many lines an episode prints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

LINES = 600_000
FLOOD = f"""
import sys
sys.stdin.readline()
w = sys.stdout.write
for i in range({LINES}):
    w('{{"type":"message","role":"assistant","text":"line %d"}}\\n' % i)
sys.stdout.flush()
sys.stdin.read()  # until aether stops us
"""


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def heartbeat_events(project: Path) -> int:
    try:
        return int(orjson.loads((project / ".memory" / "runs" / "heartbeat.json").read_bytes())["events"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_a_flood_of_short_lines_keeps_aethers_memory_bounded(project: Path) -> None:
    with (project / "stderr.txt").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aether_cli", "run", "-q", "--objective", "flood",
             "--context-window", "100000000", "--", sys.executable, "-c", FLOOD],
            stdout=subprocess.DEVNULL, stderr=err, cwd=project,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while heartbeat_events(project) < LINES:
                assert proc.poll() is None, (project / "stderr.txt").read_text()
                assert time.monotonic() < deadline, f"only {heartbeat_events(project)} events after 300 s"
                time.sleep(0.2)  # polling a condition: the heartbeat's event count
            peak = vm_hwm_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    # 600,000 lines took aether to 128 MB (1,000,000 to 285 MB) when the reader queue
    # was bounded by text bytes only.
    print(f"\naether peaked at {peak:.0f} MB after {LINES:,} lines")
    assert peak < 100, f"aether peaked at {peak:.0f} MB"
    assert os.path.getsize(next((project / ".memory" / "runs").glob("ses_*.jsonl"))) > 0
