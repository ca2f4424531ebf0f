"""The real Claude Code, without aether, against the fake Anthropic server: 3 scripted steps."""

from __future__ import annotations

from pathlib import Path

from realcli import claude_args, claude_env, explain, fake_server, json_lines, run_cli, steps_done

STEPS, BASE, PER_TURN = 3, 12_000, 100
PROMPT = 'Append "step K" to steps.txt for K = 1..3, one Bash command each.'


def test_claude_runs_the_scenario_and_streams_json_lines(project: Path, tmp_path: Path) -> None:
    with fake_server(
        "fake_anthropic.py", project, tmp_path, steps=STEPS, base_tokens=BASE, tokens_per_turn=PER_TURN
    ) as fake:
        proc = run_cli(claude_args(PROMPT), claude_env(fake.port), project)
    why = explain(proc, fake, project)
    assert proc.returncode == 0, why
    assert steps_done(project) == [1, 2, 3], why

    lines = json_lines(proc.stdout)
    init, result = lines[0], lines[-1]
    assert (init["type"], init["subtype"]) == ("system", "init") and "Bash" in init["tools"]
    assert result["type"] == "result" and result["subtype"] == "success" and result["is_error"] is False
    assert result["result"] == f"All {STEPS} steps done."

    assistant = [ln["message"] for ln in lines if ln["type"] == "assistant"]
    tool_uses = [b for m in assistant for b in m["content"] if b["type"] == "tool_use"]
    assert [t["input"]["command"] for t in tool_uses] == [f'echo "step {k}" >> steps.txt' for k in (1, 2, 3)]
    results = [b for ln in lines if ln["type"] == "user" for b in ln["message"]["content"]]
    assert [r["type"] for r in results] == ["tool_result"] * 3 and not any(r.get("is_error") for r in results)

    # The context size Claude Code reports is the fake's, input plus cache read, one per API call.
    sizes: dict[str, int] = {}
    for m in assistant:
        u = m["usage"]
        sizes.setdefault(
            m["id"], u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
        )
    assert list(sizes.values()) == [r["tokens"] for r in fake.turns()], why
    assert list(sizes.values()) == sorted(sizes.values()) and len(sizes) == STEPS + 1
