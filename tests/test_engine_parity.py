"""The same agent loop, once as a process under `aether run` and once in process with
`aether_cli.Engine`, leaves the same `.memory/` files: checkpoints, task states, project
memory, continuity and context index, ids, timestamps and hashes aside."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import AGENTS, aether, agent_cmd

from aether_cli import Engine, resume_run, run

sys.path.insert(0, str(AGENTS))
from parity_agent import script

pytestmark = pytest.mark.slow

STEPS, MAX_STEPS, WINDOW = 10, 4, 200_000
OBJECTIVE = "do the steps"
# Run-made values that differ between any two runs: ids, hashes, times, the agent's command;
# and how many times the continuity record was written (a CLI run writes it once more, before
# it launches the agent, so a record it cannot write stops the run first).
VOLATILE_KEYS = {"created_at", "updated_at", "sha256", "command", "started_at", "_update_seq"}
# Figures that include the session id's or a checkpoint id's tokens (the prompt names them),
# or the heartbeat's timing: equal within a few tokens or a rounding, not exactly.
NEAR_KEYS = {"episode_tokens": 12, "context_usage_percent": 0.1, "tokens": 12}
IDS = [
    (re.compile(r"chk_(\d{6})_[0-9a-f]{8}"), r"chk_\1_HASH"),
    (re.compile(r"ses_\d{8}T\d{6}_[0-9a-f]{6}"), "ses_ID"),
]


def engine_loop(project: Path) -> None:
    """The parity agent's work, in process: the same events, checkpoints where aether says."""
    eng = Engine.open(OBJECTIVE, window=WINDOW, max_steps=MAX_STEPS, cwd=project)
    step = script.first_step(eng.context())
    for ev in script.fresh(STEPS):
        eng.event(ev)
    while step <= STEPS:
        for ev in script.step(step, STEPS):
            eng.event(ev)
        step += 1
        if step <= STEPS and eng.should_checkpoint():
            assert eng.wanted == "steps"
            eng.checkpoint(script.state(step, STEPS))
            step = script.first_step(eng.context())
            for ev in script.resumed(step):
                eng.event(ev)
    eng.done(f"did {STEPS} steps")


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "X" if k in VOLATILE_KEYS else scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        for pattern, repl in IDS:
            value = pattern.sub(repl, value)
    return value


def near(a: Any, b: Any, path: str = "") -> list[str]:
    """Where `a` and `b` differ, with NEAR_KEYS compared within their tolerance."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}/{k}: only in one" for k in a.keys() ^ b.keys()]
        for k in a.keys() & b.keys():
            tol = NEAR_KEYS.get(k)
            if tol is not None and isinstance(a[k], int | float) and isinstance(b[k], int | float):
                if abs(a[k] - b[k]) > tol:
                    out.append(f"{path}/{k}: {a[k]} vs {b[k]}")
            else:
                out += near(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in near(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def memory_files(mem: Path) -> dict[str, Any]:
    """Every JSON file of `.memory/` but the local runs/, by scrubbed name, scrubbed."""
    out = {}
    for p in sorted(mem.rglob("*.json")):
        rel = p.relative_to(mem).as_posix()
        if not rel.startswith("runs/"):
            out[scrub(rel)] = scrub(orjson.loads(p.read_bytes()))
    return out


def test_an_engine_loop_leaves_the_files_an_aether_run_of_the_same_loop_leaves(tmp_path: Path) -> None:
    cli_dir, eng_dir = tmp_path / "cli", tmp_path / "engine"
    cli_dir.mkdir()
    eng_dir.mkdir()
    flags = ["--objective", OBJECTIVE, "--context-window", str(WINDOW), "--max-steps", str(MAX_STEPS)]
    r = aether("run", *flags, "--", *agent_cmd("parity_agent.py", str(STEPS), str(MAX_STEPS)), cwd=cli_dir)
    assert r.returncode == 0, r.stderr + r.stdout
    engine_loop(eng_dir)

    cli, eng = memory_files(cli_dir / ".memory"), memory_files(eng_dir / ".memory")
    assert sorted(cli) == sorted(eng)
    checkpoints = [k for k in cli if k.startswith("checkpoints/")]
    assert len(checkpoints) == 3  # steps 1-4, 5-8, then 9-10 and done
    assert [cli[k]["trigger"] for k in checkpoints] == ["steps", "steps", "done"]
    assert [eng[k]["distiller"] for k in checkpoints] == ["agent", "agent", "rules"]
    assert eng["project_memory.json"]["facts"], "the facts reached project memory"
    assert eng["session_continuity.json"]["status"] == "done"
    diffs = [d for name in cli for d in near(cli[name], eng[name], name)]
    assert diffs == []
    # The tokens of each episode but its prompt (which names the random session and checkpoint
    # ids) are exactly equal: the same events counted by the same rules.
    assert event_tokens(cli_dir) == event_tokens(eng_dir)


def event_tokens(project: Path) -> list[int]:
    """Per checkpoint: its episode's tokens less the prompt the episode began with."""
    mem = project / ".memory"
    lines = [line for p in (mem / "runs").glob("ses_*.jsonl") for line in p.read_bytes().splitlines()]
    ledger = [orjson.loads(line) for line in lines]
    prompts = {r["episode"]: r["prompt_tokens"] for r in ledger if r["kind"] == "launch"}
    cks = [orjson.loads(p.read_bytes()) for p in sorted((mem / "checkpoints").glob("chk_*.json"))]
    return [ck["metrics"]["episode_tokens"] - prompts[ck["episode"]] for ck in cks]


def test_run_from_python_is_aether_run(tmp_path: Path) -> None:
    """`aether_cli.run` supervises the same agent to the same files as the `aether run` CLI."""
    cli_dir, api_dir = tmp_path / "cli", tmp_path / "api"
    cli_dir.mkdir()
    api_dir.mkdir()
    argv = agent_cmd("parity_agent.py", str(STEPS), str(MAX_STEPS))
    flags = ["--objective", OBJECTIVE, "--context-window", str(WINDOW), "--max-steps", str(MAX_STEPS)]
    assert aether("run", *flags, "--", *argv, cwd=cli_dir).returncode == 0
    result = run(argv, objective=OBJECTIVE, context_window=WINDOW, max_steps=MAX_STEPS, cwd=api_dir)
    assert (result.exit_code, result.status, result.episode) == (0, "done", 3)
    assert result.last_checkpoint is not None and result.last_checkpoint.startswith("chk_000003_")
    cli, api = memory_files(cli_dir / ".memory"), memory_files(api_dir / ".memory")
    assert sorted(cli) == sorted(api)
    assert [d for name in cli for d in near(cli[name], api[name], name)] == []


def test_resume_run_continues_a_stopped_session_as_aether_resume_does(project: Path) -> None:
    argv = agent_cmd("parity_agent.py", str(STEPS), str(MAX_STEPS))
    first = run(argv, objective=OBJECTIVE, context_window=WINDOW, max_steps=MAX_STEPS, max_episodes=1)
    assert (first.exit_code, first.status, first.episode) == (0, "stopped", 1)
    rest = resume_run(max_episodes=5)  # the stored limit of 1 would stop it again
    assert (rest.exit_code, rest.status, rest.session_id) == (0, "done", first.session_id)
    assert rest.episode == 3 and rest.last_checkpoint is not None
