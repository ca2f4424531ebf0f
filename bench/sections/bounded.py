"""3 and 4. Bounded context and compression, from one long cooperative run.

A worker agent does `sizes.bounded_steps` steps under a `sizes.bounded_window`-token
window, proposing memory facts and finishing tasks as it goes, so what a rehydrated
prompt could carry keeps growing. The ledger's `launch` records give each
episode's prompt tokens (episode 1 is the fresh start prompt; every later one is
rehydrated from a checkpoint); its `checkpoint` records give episode tokens and
checkpoint tokens, whose quotient is the compression (the context the relaunched
agent did not have to carry).

Broken if the run does not end done, or a step of the objective was never done.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench.common import BenchError, Sizes, aether_argv, agent_argv, ledger, percentile, run_proc, workdir

PAYLOAD = 200  # characters of tool output per step
TASK_STEPS = 50
FACT_EVERY = 100
STEP_DELAY = 0.001


def run(sizes: Sizes) -> dict[str, Any]:
    """One run to the end of the objective; prompt sizes per episode and compression per checkpoint."""
    n = sizes.bounded_steps
    with workdir("bounded") as project:
        agent = agent_argv(
            "worker.py",
            "--steps",
            str(n),
            "--payload",
            str(PAYLOAD),
            "--task-steps",
            str(TASK_STEPS),
            "--fact-every",
            str(FACT_EVERY),
            "--delay",
            str(STEP_DELAY),
        )
        argv = [
            *aether_argv(),
            "run",
            "--quiet",
            "--objective",
            "do the steps",
            "--context-window",
            str(sizes.bounded_window),
            "--max-episodes",
            str(n),
            "--",
            *agent,
        ]
        proc = run_proc(argv, cwd=project, timeout=1800).check("aether run (bounded context)")
        records = ledger(project)
        done = [int(x) for x in (project / "steps.log").read_text().split()]
    end: dict[str, Any] = next((r for r in reversed(records) if r.get("kind") == "end"), {})
    if end.get("status") != "done":
        raise BenchError(f"bounded run ended {end.get('status')!r}, not done")
    missing = set(range(1, n + 1)) - set(done)
    if missing:
        raise BenchError(f"bounded run: {len(missing)} steps never done (first: {min(missing)})")

    prompts = {r["episode"]: r for r in records if r.get("kind") == "launch"}
    last = max(prompts)
    window = sizes.bounded_window
    tokens = {ep: r.get("prompt_tokens") or 0 for ep, r in prompts.items()}
    rehydrated = [tokens[ep] for ep in sorted(tokens) if ep > 1]
    tenth = max(1, len(rehydrated) // 10)
    checkpoints = [r for r in records if r.get("kind") == "checkpoint" and r.get("trigger") != "done"]
    ratios = [r["episode_tokens"] / r["tokens"] for r in checkpoints if r.get("tokens")]
    evicting = sum(1 for r in prompts.values() if r.get("evicted"))
    return {
        "steps": n,
        "window": window,
        "episodes": last,
        "seconds": round(proc.seconds, 1),
        "steps_redone": len(done) - n,
        "prompt_budget": prompts[last].get("prompt_budget"),
        "prompt_tokens": {f"episode_{ep}": tokens.get(ep) for ep in (1, 10, 100)} | {"last": tokens[last]},
        "prompt_tokens_rehydrated": {
            "first_tenth_median": _med(rehydrated[:tenth]),
            "last_tenth_median": _med(rehydrated[-tenth:]),
            "max": max(rehydrated, default=None),
        },
        "max_share_of_window": round(max(rehydrated, default=0) / window, 4),
        "start_prompt_share_of_window": round(tokens[1] / window, 4) if 1 in tokens else None,
        "episodes_with_evictions": evicting,
        "compression": {
            "checkpoints": len(ratios),
            "median": _round(statistics.median(ratios)) if ratios else None,
            "p10": _round(percentile(ratios, 10)),
            "p90": _round(percentile(ratios, 90)),
            "min": _round(min(ratios, default=None)),
            "max": _round(max(ratios, default=None)),
        },
    }


def _med(values: list[int]) -> float | None:
    return statistics.median(values) if values else None


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 2)
