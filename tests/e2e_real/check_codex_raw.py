"""The real Codex CLI, without aether, against the fake Responses API server: 3 scripted steps."""

from __future__ import annotations

from pathlib import Path

from realcli import codex_args, codex_env, explain, fake_server, json_lines, run_cli, steps_done

STEPS, BASE, PER_TURN = 3, 12_000, 100
PROMPT = 'Append "step K" to steps.txt for K = 1..3, one shell command each.'


def test_codex_runs_the_scenario_and_streams_json_lines(project: Path, tmp_path: Path) -> None:
    with fake_server(
        "fake_openai.py", project, tmp_path, steps=STEPS, base_tokens=BASE, tokens_per_turn=PER_TURN
    ) as fake:
        proc = run_cli(codex_args(fake.port, PROMPT), codex_env(tmp_path / "codex-home"), project)
    why = explain(proc, fake, project)
    assert proc.returncode == 0, why
    assert steps_done(project) == [1, 2, 3], why

    lines = json_lines(proc.stdout)
    types = [ln["type"] for ln in lines]
    assert types[:2] == ["thread.started", "turn.started"] and types[-1] == "turn.completed", types
    items = [ln["item"] for ln in lines if ln["type"] == "item.completed"]
    commands = [i for i in items if i["type"] == "command_execution"]
    assert len(commands) == STEPS and all(c["exit_code"] == 0 for c in commands), commands
    assert all(f"step {k}" in c["command"] for k, c in zip((1, 2, 3), commands, strict=True))
    messages = [i["text"] for i in items if i["type"] == "agent_message"]
    assert messages[-1] == f"All {STEPS} steps done."

    # turn.completed usage is the sum over the turn's API calls, not the current context.
    usage = lines[-1]["usage"]
    assert usage["input_tokens"] == sum(r["tokens"] for r in fake.turns()), why
    assert 0 < usage["cached_input_tokens"] < usage["input_tokens"]
