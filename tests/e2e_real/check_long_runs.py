"""Long runs: the real Claude Code and Codex under aether, 100+ steps through 10+ relaunches.

Continuity is measured from the workspace, never from aether's records: each step's command
appends "step K" to steps.txt, so a step number never appended is lost and one appended more
than once is redone. The fake models decide each step from the prompt text alone
(tests/fakes/reading.py), so a prompt that misstates the progress shows up here.
Relaunches are counted from the conversations the fake model saw opened. The prompt tokens are
those of the relaunch prompts, from the ledger's launch records (aether's cl100k count of the
prompt it sent); the characters the fake received are given beside them as a cross-check.

Each run prints one line of figures and writes them, with the excerpt of every relaunch prompt
that preceded a redo, to `long_run.json` under the test's tmp path (its path is printed too).
Goal: 0 lost, at most 1 redone per relaunch.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import aether
from realcli import (
    checkpoints,
    claude_args,
    claude_env,
    codex_args,
    codex_env,
    explain,
    fake_server,
    ledger,
    steps_done,
)

STEPS = 120
# Add "agent" here to measure the agent-written handoff with the same figures.
HANDOFFS = ["rules", "agent"]


@dataclass(frozen=True)
class Setup:
    """One CLI's run: its fake, its context figures (tuned for ~8 steps an episode), its command line."""

    script: str
    base_tokens: int
    tokens_per_turn: int
    window: int
    argv: Callable[[int, str], list[str]]
    env: Callable[[int, Path], dict[str, str]]


CLIS = {
    # Claude: 2 messages a step, 1,000 tokens; the 80% line (19,200) is crossed after ~7 steps.
    "claude": Setup(
        "fake_anthropic.py", 12_000, 500, 24_000,
        lambda _port, prompt: claude_args(prompt), lambda port, _tmp: claude_env(port),
    ),
    # Codex: 3 input items a step, 1,800 tokens; the 80% line (24,000) after ~8 steps.
    "codex": Setup(
        "fake_openai.py", 12_000, 600, 30_000,
        codex_args, lambda _port, tmp: codex_env(tmp / "codex-home"),
    ),
}
OBJECTIVE = (
    f'Append the line "step K" to steps.txt for each K from 1 to {STEPS}, in order, '
    "one shell command per step."
)


def attribute(appended: list[int], asked: list[list[int]]) -> list[list[int]]:
    """The appends of steps.txt, in file order, split by the conversation that ran them.

    A conversation ran only steps it asked for, and conversations ran one after another, so each
    append goes to the current conversation if it asked for that step (and has an ask left),
    else to the next one that did. A call asked for and never run (the stop came first) costs
    nothing: its ask is simply not used.
    """
    runs: list[list[int]] = [[] for _ in asked]
    left = [Counter(a) for a in asked]
    at = 0
    for step in appended:
        while at < len(asked) - 1 and left[at][step] == 0:
            at += 1
        left[at][step] -= 1
        runs[at].append(step)
    return runs


def figures(project: Path, requests: list[dict[str, Any]], cli: str, handoff: str) -> dict[str, Any]:
    """The run's continuity figures, from steps.txt and the requests the fake model got."""
    appended = steps_done(project)
    counts = Counter(appended)
    # Each opening request carries the conversation's whole prompt; the turns after it, its steps.
    prompts: list[str] = []
    asked: list[list[int]] = []
    for r in requests:
        if "prompt" in r and r.get("kind") in ("tool", "final"):
            prompts.append(r["prompt"])
            asked.append([])
        if r.get("kind") == "tool" and asked:
            asked[-1].append(r["step"])
    runs = attribute(appended, asked)
    seen: set[int] = set()
    redone_by_run = []
    for steps in runs:
        redone_by_run.append(sum(1 for s in steps if s in seen))
        seen.update(steps)
    launches = [r for r in ledger(project) if r.get("kind") == "launch"]
    relaunch_tokens = sorted(r["prompt_tokens"] for r in launches if r.get("checkpoint"))
    relaunch_chars = sorted(len(p) for p in prompts[1:])
    redo_prompts = [
        {"relaunch": i, "redone": [s for s in runs[i] if s in set().union(*runs[:i])], "prompt": prompts[i]}
        for i in range(1, len(runs))
        if redone_by_run[i]
    ]

    stops = [c for c in checkpoints(project) if c["trigger"] != "done"]
    asked_agent = [c for c in stops if c["metrics"].get("handoff_tokens") is not None]
    seconds = [c["metrics"]["handoff_seconds"] for c in asked_agent]

    def spread(values: list[int]) -> list[int]:
        return [min(values), int(statistics.median(values)), max(values)] if values else []

    return {
        "cli": cli,
        "handoff": handoff,
        "steps": STEPS,
        "relaunches": len(prompts) - 1,
        "relaunches_in_ledger": len(launches) - 1,
        "lost": sorted(set(range(1, STEPS + 1)) - set(counts)),
        "redone_total": sum(redone_by_run),
        "redone_max_per_relaunch": max(redone_by_run[1:], default=0),
        "redone_steps": sorted(s for s, n in counts.items() if n > 1),
        "in_order": appended == sorted(appended),
        "prompt_tokens_min_median_max": spread(relaunch_tokens),
        "prompt_chars_received_min_median_max": spread(relaunch_chars),
        # Who wrote each relaunch's handoff (aether's record: it says the mode took effect), and
        # what an agent handoff cost.
        "handoff_by": dict(Counter(c["distiller"] for c in stops)),
        "handoff_seconds_min_median_max": spread([round(s) for s in seconds]) if seconds else [],
        "handoff_seconds_total": round(sum(seconds), 1),
        "handoff_tokens_min_median_max": spread([c["metrics"]["handoff_tokens"] for c in asked_agent]),
        "redo_prompts": redo_prompts,
    }


@pytest.mark.parametrize("handoff", HANDOFFS)
@pytest.mark.parametrize("cli", sorted(CLIS))
def test_a_long_run_loses_nothing_and_redoes_at_most_one_step_per_relaunch(
    cli: str, handoff: str, project: Path, tmp_path: Path
) -> None:
    setup = CLIS[cli]
    with fake_server(
        setup.script,
        project,
        tmp_path,
        steps=STEPS,
        base_tokens=setup.base_tokens,
        tokens_per_turn=setup.tokens_per_turn,
    ) as fake:
        proc = aether(
            "run",
            "--objective",
            OBJECTIVE,
            "--context-window",
            str(setup.window),
            "--handoff",
            handoff,
            "--max-episodes",
            "60",
            "--",
            *setup.argv(fake.port, OBJECTIVE),
            env=setup.env(fake.port, tmp_path),
            timeout=900,
        )
        requests = fake.records()
    result = figures(project, requests, cli, handoff)
    out = tmp_path / "long_run.json"
    out.write_text(json.dumps(result, indent=2))
    summary = {k: v for k, v in result.items() if k not in ("redo_prompts",)}
    print(f"\nlong run {json.dumps(summary)}\nfigures and redo prompts: {out}")
    why = explain(proc, fake, project)[-4000:]
    assert proc.returncode == 0, why
    assert result["relaunches"] >= 10, result
    assert result["relaunches"] == result["relaunches_in_ledger"], result
    assert result["lost"] == [], result
    assert result["redone_max_per_relaunch"] <= 1, result
    assert result["in_order"] or result["redone_total"], result
