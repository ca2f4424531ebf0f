"""2. Relaunch turnaround: from the threshold crossing to the relaunched child, net of its start-up.

A worker agent with a small window is relaunched `sizes.relaunches` times
(`--max-episodes` one more than that). For each relaunch the ledger gives when the
checkpoint threshold was crossed (the `budget` command record, millisecond
timestamps) and when the old agent exited, the checkpoint was written and the new
one launched; the new agent itself reports when its process was created (from
/proc, 10 ms ticks) and when it wrote its first line. Turnaround is process start
minus crossing, which is first line minus crossing minus the child's own start-up.

Cooperative agents answer the checkpoint request and exit on `stop`. Silent ones
ignore both, so aether waits `--checkpoint-timeout` (or the emergency threshold),
then `stop_grace`, then sends SIGTERM: those waits are set short here and reported.
"""

from __future__ import annotations

from typing import Any

import orjson

from bench.common import (
    BenchError,
    Sizes,
    aether_argv,
    agent_argv,
    ledger,
    percentile,
    run_proc,
    ts,
    workdir,
)

PAYLOAD = 400  # characters of tool output per step: about 12 steps per episode at 2000 tokens
STEP_DELAY = 0.01  # seconds per step, so aether is never behind the agent when it crosses
SILENT_WAITS = {"checkpoint_timeout": 0.3, "stop_grace": 0.3, "term_grace": 0.3}


def run(sizes: Sizes) -> dict[str, Any]:
    """Both agent kinds, one run each of `sizes.relaunches` relaunches."""
    return {
        "cooperative": _one(sizes, silent=False),
        "silent": _one(sizes, silent=True),
        "silent_settings": SILENT_WAITS,
        "window": sizes.relaunch_window,
    }


def _one(sizes: Sizes, *, silent: bool) -> dict[str, Any]:
    with workdir("relaunch") as project:
        agent = agent_argv(
            "worker.py",
            "--steps",
            "1000000",
            "--payload",
            str(PAYLOAD),
            "--delay",
            str(STEP_DELAY),
            "--times",
            "times.jsonl",
            *(["--silent"] if silent else []),
        )
        argv = [
            *aether_argv(),
            "run",
            "--quiet",
            "--objective",
            "do the steps",
            "--context-window",
            str(sizes.relaunch_window),
            "--max-episodes",
            str(sizes.relaunches + 1),
        ]
        env = {}
        if silent:
            argv += ["--checkpoint-timeout", str(SILENT_WAITS["checkpoint_timeout"])]
            env = {
                "AETHER_STOP_GRACE": str(SILENT_WAITS["stop_grace"]),
                "AETHER_TERM_GRACE": str(SILENT_WAITS["term_grace"]),
            }
        kind = "silent" if silent else "cooperative"
        run_proc([*argv, "--", *agent], cwd=project, env=env).check(f"aether run ({kind} relaunches)")
        times = [orjson.loads(line) for line in (project / "times.jsonl").read_bytes().splitlines()]
        return analyse(ledger(project), times, sizes.relaunches, kind)


def analyse(
    records: list[dict[str, Any]], times: list[dict[str, Any]], expected: int, kind: str
) -> dict[str, Any]:
    """Per-relaunch phases from the ledger and the agents' own timings; percentiles over relaunches."""
    by_episode: dict[int, dict[str, float]] = {}
    for rec in records:
        ep = rec.get("episode")
        if not isinstance(ep, int):
            continue
        marks = by_episode.setdefault(ep, {})
        k = rec.get("kind")
        if (
            k == "command"
            and rec.get("command") == "budget"
            and rec.get("level") in ("checkpoint", "emergency")
        ):
            marks.setdefault("cross", ts(rec))
        elif k in ("exit", "checkpoint", "launch"):
            marks.setdefault(k, ts(rec))
    agent = {t["episode"]: t for t in times}
    rows = []
    for ep in sorted(by_episode):
        old, new, child = by_episode[ep], by_episode.get(ep + 1, {}), agent.get(ep + 1)
        if "cross" not in old or "launch" not in new or child is None:
            continue
        start = child.get("process_start") or child["script_start"]
        rows.append(
            {
                "turnaround": start - old["cross"],
                "gross": child["first_line"] - old["cross"],
                "child_startup": child["first_line"] - start,
                "agent_exit": old["exit"] - old["cross"],
                "checkpoint": old["checkpoint"] - old["exit"],
                "launch": start - old["checkpoint"],
            }
        )
    if len(rows) != expected:
        raise BenchError(f"{kind} relaunches: expected {expected}, the ledger shows {len(rows)}")
    out: dict[str, Any] = {"relaunches": len(rows)}
    for key in rows[0]:
        values = [r[key] * 1000 for r in rows]
        out[key + "_ms"] = {
            "p50": _r(percentile(values, 50)),
            "p95": _r(percentile(values, 95)),
            "min": _r(min(values)),
            "max": _r(max(values)),
        }
    out["process_start_source"] = "/proc" if times and times[0].get("process_start") else "script start"
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 1)
