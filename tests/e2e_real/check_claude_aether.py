"""aether supervising the real Claude Code against the fake Anthropic server.

The fake's reported context grows with the conversation, so with a 24000-token window aether must
checkpoint and relaunch Claude Code with a rehydrated prompt before the 12 steps are done; the
steps continue from steps.txt, so the work must end complete, with no step lost.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
from helpers import aether
from realcli import (
    assert_steps_once_each,
    checkpoints,
    claude_args,
    claude_env,
    explain,
    fake_server,
    ledger,
    steps_done,
)

STEPS, BASE, PER_TURN, WINDOW = 12, 12_000, 600, 24_000
OBJECTIVE = f'Append "step K" to steps.txt for K = 1..{STEPS}, one Bash command per step.'


def test_aether_relaunches_claude_until_every_step_is_done(project: Path, tmp_path: Path) -> None:
    with fake_server(
        "fake_anthropic.py", project, tmp_path, steps=STEPS, base_tokens=BASE, tokens_per_turn=PER_TURN
    ) as fake:
        proc = aether(
            "run",
            "--objective",
            OBJECTIVE,
            "--context-window",
            str(WINDOW),
            "--",
            *claude_args(OBJECTIVE),
            env=claude_env(fake.port),
            timeout=400,
        )
    why = explain(proc, fake, project)
    assert proc.returncode == 0, why

    launches = [r for r in ledger(project) if r.get("kind") == "launch"]
    assert len({r["episode"] for r in launches}) >= 2, why
    assert_steps_once_each(project, STEPS, relaunches=len(launches) - 1)

    status = orjson.loads(aether("status", "--json").stdout)
    assert status["episode"] >= 2 and status["checkpoints"] >= 1, status
    cks = checkpoints(project)
    assert cks and all(ck["tokenizer"] == "reported" for ck in cks), [ck.get("tokenizer") for ck in cks]
    # The figures a closing note quotes (shown with `pytest -s`).
    figures = [(c["trigger"], c["metrics"]["episode_tokens"], c["metrics"]["checkpoint_tokens"]) for c in cks]
    handoffs = [
        (c["distiller"], c["metrics"].get("handoff_seconds"), c["metrics"].get("handoff_tokens"))
        for c in cks if c["trigger"] == "budget"
    ]
    print(
        f"\nclaude under aether: {len(launches)} launches; checkpoints "
        f"(trigger, episode tokens, checkpoint tokens): {figures}; steps {steps_done(project)}; "
        f"handoffs (distiller, seconds, tokens): {handoffs}"
    )
    # Claude was asked for its own handoff at each budget stop, and the fake model answered it.
    assert handoffs and all(h[0] == "agent" and h[1] is not None for h in handoffs), (handoffs, why)
    assert all(c["sources"] == ["agent", "rules"] for c in cks if c["trigger"] == "budget"), why

    turns = fake.turns()
    # A relaunch starts a fresh conversation whose prompt is the rehydrated one, not the first.
    assert len({r["first_user"] for r in turns}) >= 2, why
    assert any(b["messages"] < a["messages"] for a, b in itertools.pairwise(turns)), why
    # aether relaunched before the context outgrew the window.
    assert max(r["tokens"] for r in turns) < WINDOW, why
