"""5. Memory: aether's resident memory after 10k, 100k, ... events, and under a flood.

Paced: the generator stays at most a few thousand events ahead of what aether has
taken in (it reads aether's heartbeat), as an agent slower than aether does, and at
each milestone waits until aether has taken in every event so far; this driver then
reads aether's VmRSS and VmHWM from /proc. So the figures show what aether keeps,
not a backlog.

Flood: the generator writes as fast as it can; aether's peak RSS then also holds
what waits in its reader queue. It is aether's VmHWM, polled from /proc until it
exits (VmHWM only grows, so the last reading is the peak). Not wait4's ru_maxrss:
Linux carries the parent's high-water mark across a vfork and exec, so that figure
was the bench driver's own size (156 MB after the throughput section) rather than
aether's. The generator's own peak is reported beside it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson

from bench.common import BenchError, Sizes, aether_argv, agent_argv, last_checkpoint, workdir

HUGE_WINDOW = 2_000_000_000
AHEAD = 5000  # events the paced agent may be ahead of aether


def run(sizes: Sizes) -> dict[str, Any]:
    """The paced run with its milestones, then the flood run."""
    return {"paced": _paced(sizes), "flood": _flood(sizes), "paced_ahead_events": AHEAD}


def _argv(events: int, *extra: str) -> list[str]:
    agent = agent_argv("stream.py", "--small", str(events), "--hwm", "agent_hwm.txt", *extra)
    return [
        *aether_argv(),
        "run",
        "--quiet",
        "--objective",
        "memory benchmark",
        "--context-window",
        str(HUGE_WINDOW),
        "--",
        *agent,
    ]


def _status_kb(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1])
    return out


def _heartbeat_events(project: Path) -> int:
    try:
        return int(orjson.loads((project / ".memory" / "runs" / "heartbeat.json").read_bytes())["events"])
    except (OSError, ValueError, KeyError, TypeError):
        return -1


def _paced(sizes: Sizes) -> list[dict[str, Any]]:
    milestones = sorted(sizes.memory_milestones)
    pause_at = ",".join(str(m) for m in milestones)
    samples: list[dict[str, Any]] = []
    with workdir("memory") as project:
        with (project / "aether.log").open("wb") as log:
            argv = _argv(milestones[-1], "--paced", str(AHEAD), "--pause-at", pause_at)
            proc = subprocess.Popen(argv, cwd=project, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 1800
            status = None
            while status is None:
                pid, raw, _ = os.wait4(proc.pid, os.WNOHANG)
                if pid == proc.pid:
                    status = proc.returncode = os.waitstatus_to_exitcode(raw)
                    break
                if (
                    len(samples) < len(milestones)
                    and (project / f"paused-{milestones[len(samples)]}").exists()
                ):
                    # The agent waits: aether has taken in every event so far and nothing is queued.
                    m = milestones[len(samples)]
                    kb = _status_kb(proc.pid)
                    samples.append(
                        {
                            "events": m,
                            "events_seen": _heartbeat_events(project),
                            "rss_mb": round(kb.get("VmRSS", 0) / 1024, 1),
                            "hwm_mb": round(kb.get("VmHWM", 0) / 1024, 1),
                        }
                    )
                    (project / f"resume-{m}").touch()
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    raise BenchError("memory run: no exit after 1800s")
                time.sleep(0.01)
        if status != 0:
            tail = (project / "aether.log").read_text(errors="replace")[-300:]
            raise BenchError(f"memory run (paced): aether exit {status}: {tail}")
        _check_events(project, milestones[-1])
    if len(samples) != len(milestones):
        raise BenchError(f"memory run: sampled {len(samples)} of {len(milestones)} milestones")
    return samples


def _flood(sizes: Sizes) -> dict[str, Any]:
    with workdir("flood") as project:
        with (project / "aether.log").open("wb") as log:
            start = time.perf_counter()
            proc = subprocess.Popen(
                _argv(sizes.flood_events), cwd=project, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
            hwm_kb = 0
            deadline = time.monotonic() + 1800
            while True:
                hwm_kb = max(hwm_kb, _status_kb(proc.pid).get("VmHWM", 0))
                pid, raw, _ = os.wait4(proc.pid, os.WNOHANG)
                if pid == proc.pid:
                    proc.returncode = os.waitstatus_to_exitcode(raw)
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    raise BenchError("memory run (flood): no exit after 1800s")
                time.sleep(0.01)
            seconds = time.perf_counter() - start
        if proc.returncode != 0:
            tail = (project / "aether.log").read_text(errors="replace")[-300:]
            raise BenchError(f"memory run (flood): aether exit {proc.returncode}: {tail}")
        _check_events(project, sizes.flood_events)
        agent_kb = int((project / "agent_hwm.txt").read_text().strip() or 0)
    return {
        "events": sizes.flood_events,
        "peak_rss_mb": round(hwm_kb / 1024, 1),
        "agent_peak_rss_mb": round(agent_kb / 1024, 1),
        "seconds": round(seconds, 1),
    }


def _check_events(project: Path, events: int) -> None:
    seen = last_checkpoint(project)["metrics"].get("events")
    if seen != events + 2:  # hello and done
        raise BenchError(f"memory run: aether counted {seen} events, the agent sent {events + 2}")
