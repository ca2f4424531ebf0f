"""aether supervising the real Codex CLI against the fake Responses API server.

`codex exec --json` reports usage only once, cumulative, at the end of its turn, so a context
threshold alone may never fire; `--max-steps` makes aether checkpoint after a few tool calls
whatever it counts, which forces the relaunches this check is about.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
from helpers import aether
from realcli import (
    Fake,
    assert_steps_once_each,
    checkpoints,
    codex_args,
    codex_env,
    explain,
    fake_server,
    ledger,
)

STEPS, BASE, PER_TURN, WINDOW, MAX_STEPS = 12, 12_000, 600, 24_000, 5
OBJECTIVE = f'Append "step K" to steps.txt for K = 1..{STEPS}, one shell command per step.'


def run_codex(project: Path, tmp_path: Path, *flags: str, step_output: int = 0) -> tuple[Fake, str]:
    """`aether run FLAGS -- codex exec --json ...` against the fake server; the fake and the run's story."""
    with fake_server(
        "fake_openai.py",
        project,
        tmp_path,
        steps=STEPS,
        base_tokens=BASE,
        tokens_per_turn=PER_TURN,
        step_output=step_output,
    ) as fake:
        proc = aether(
            "run",
            "--objective",
            OBJECTIVE,
            *flags,
            "--",
            *codex_args(fake.port, OBJECTIVE),
            env=codex_env(tmp_path / "codex-home"),
            timeout=400,
        )
    why = explain(proc, fake, project)
    assert proc.returncode == 0, why
    return fake, why


def test_aether_relaunches_codex_until_every_step_is_done(project: Path, tmp_path: Path) -> None:
    fake, why = run_codex(project, tmp_path, "--context-window", str(WINDOW), "--max-steps", str(MAX_STEPS))

    launches = [r for r in ledger(project) if r.get("kind") == "launch"]
    assert len({r["episode"] for r in launches}) >= 2, why
    assert_steps_once_each(project, STEPS, relaunches=len(launches) - 1)

    status = orjson.loads(aether("status", "--json").stdout)
    assert status["episode"] >= 2 and status["checkpoints"] >= 1, status
    assert checkpoints(project), why

    turns = fake.turns()
    assert len({r["first_user"] for r in turns}) >= 2, why
    assert any(b["messages"] < a["messages"] for a, b in itertools.pairwise(turns)), why



def test_codex_is_relaunched_by_its_context_budget_alone(project: Path, tmp_path: Path) -> None:
    # No --max-steps: the context figure alone must cross the threshold. Each step prints
    # 300 lines (about 600 tokens), so at a 20,000-token window (checkpoint at 16,000) the
    # twelve steps fit in one episode unless Codex's own instructions and tools are counted:
    # its rollout file's figure holds them (the 8,500-token overhead is the fallback).
    _fake, why = run_codex(project, tmp_path, "--context-window", "20000", step_output=300)
    launches = [r for r in ledger(project) if r.get("kind") == "launch"]
    assert len(launches) >= 2, why
    assert {r["context_overhead"] for r in launches} == {8_500}, why
    assert_steps_once_each(project, STEPS, relaunches=len(launches) - 1)
    triggers = [c["trigger"] for c in checkpoints(project)]
    # Each step adds ~1,800 tokens; a figure read a step late may already be past the
    # emergency line (95%): either way the context figure alone triggered the relaunch.
    assert set(triggers[:-1]) <= {"budget", "emergency"} and triggers[-1] == "done", why
    assert len(triggers) == len(launches), why
    # Codex's own figure from its rollout file replaced the estimate (issue 11, point 5).
    rollout = [r for r in ledger(project) if r.get("kind") == "usage" and r.get("source") == "rollout"]
    assert rollout, why
    cks = checkpoints(project)
    assert all(c["tokenizer"] == "reported" for c in cks if c["trigger"] != "done"), why
    # Codex was asked for its handoff in its own thread after each budget stop.
    assert all(c["distiller"] == "agent" for c in cks if c["trigger"] == "budget"), why
    figures = [r["context_tokens"] for r in rollout]
    print(f"\ncodex under aether: {len(launches)} launches; rollout figures {figures}")
