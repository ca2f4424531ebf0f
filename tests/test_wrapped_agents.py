"""End-to-end: aether wrapping agents that do not speak its protocol.

`tests/agents/fake_claude.py` is installed as `claude` on PATH and prints Claude
Code's stream-json as the recorded samples show; its reported context grows
every turn, so a threshold is crossed deterministically. (The real CLIs run
against fake model servers in `make e2e-real`.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import orjson
import pytest
from helpers import AGENTS, aether, read_json

from aether_cli.constants import EXIT_AGENT_CRASHED

pytestmark = pytest.mark.slow

FAST = {"AETHER_STOP_GRACE": "1", "AETHER_TERM_GRACE": "1", "AETHER_BACKOFF_BASE": "0.05"}
CLAUDE = ["claude", "-p", "Do the numbered steps", "--output-format", "stream-json", "--verbose"]
# A plain-text agent at a 3,000-token window, for two episodes at most.
TEXT_RUN = (
    "run", "--objective", "print lines", "--context-window", "3000",
    "--format", "text", "--max-episodes", "2",
)  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """PATH with `claude` (the fake) first."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "claude"
    # Run by its own path, so that it imports its sibling module (claude_stdin.py).
    script = AGENTS / "fake_claude.py"
    fake.write_text(
        f"#!{sys.executable}\nimport os, sys\n"
        f"os.execv(sys.executable, [sys.executable, {str(script)!r}, *sys.argv[1:]])\n"
    )
    fake.chmod(0o755)
    return {**FAST, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def steps(project: Path) -> list[int]:
    path = project / "steps.txt"
    return [int(line.split()[1]) for line in path.read_text().splitlines()] if path.exists() else []


def checkpoints(project: Path) -> list[dict]:
    return [read_json(p) for p in sorted((project / ".memory" / "checkpoints").glob("chk_*.json"))]


def jsonl(path: Path) -> list:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_claude_is_relaunched_with_a_rehydrated_prompt_and_nothing_lost(project: Path, env: dict) -> None:
    res = aether(
        "run",
        "--context-window",
        "24000",
        "--",
        *CLAUDE,
        "--steps",
        "30",
        "--todos",
        "--tool-seconds",
        "0.1",
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    done = steps(project)
    assert sorted(set(done)) == list(range(1, 31)), done
    cks = checkpoints(project)
    relaunches = len(cks) - 1
    assert relaunches >= 1
    # A tool call the stop cut short is redone once at most, per relaunch.
    assert len(done) - 30 <= relaunches
    assert all(ck["tokenizer"] == "reported" for ck in cks)
    assert cks[0]["agent"]["format"] == "claude" and cks[0]["agent"]["session_id"]
    assert cks[0]["objective"] == "Do the numbered steps", "the prompt argument is the objective"
    prompts = jsonl(project / "prompts.jsonl")
    assert prompts[0] == "Do the numbered steps"
    assert len(prompts) == len(cks)
    for ck, prompt in zip(cks, prompts[1:], strict=False):
        assert prompt.startswith("# Resuming"), prompt[:200]
        assert ck["id"] in prompt and "Do the numbered steps" in prompt
    # The relaunch keeps the user's other flags; with the agent handoff (the default) Claude
    # reads its messages on stdin, so the prompt argument is gone and the prompt was sent.
    argvs = jsonl(project / "argv.jsonl")
    assert argvs[1][:5] == ["-p", "--output-format", "stream-json", "--verbose", "--steps"]
    assert argvs[1][-3:] == ["--input-format", "stream-json", "--replay-user-messages"]
    sent = [m for m in jsonl(project / "stdin.jsonl") if m["type"] == "user"]
    assert sent[0]["message"]["content"] == prompts[0]
    # TodoWrite became task files.
    tasks = sorted((project / ".memory" / "task_states").glob("task_todo-*_state.json"))
    assert len(tasks) == 5
    assert read_json(tasks[0])["title"] == "Do step 1"
    status = orjson.loads(aether("status", "--json").stdout)
    assert status["agent_format"] == "claude" and status["state"] == "done"


def handoff_run(project: Path, env: dict, *flags: str) -> tuple[list[dict], list[int], str]:
    """A 12-step Claude run relaunched at a 24,000-token window; its checkpoints, steps and output."""
    res = aether(
        "run", "--context-window", "24000", *[f for f in flags if f.startswith("--handoff=")],
        "--", *CLAUDE, "--steps", "12", *[f for f in flags if not f.startswith("--handoff=")],
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return checkpoints(project), steps(project), res.stdout + res.stderr


def test_claude_writes_its_own_handoff_and_rules_fill_in(project: Path, env: dict) -> None:
    cks, done, out = handoff_run(project, env)
    assert done == list(range(1, 13)), done  # nothing lost, nothing redone
    relaunch = [c for c in cks if c["trigger"] == "budget"]
    assert relaunch, out
    for ck in relaunch:
        assert (ck["distiller"], ck["sources"]) == ("agent", ["agent", "rules"]), ck["distiller_note"]
        assert ck["metrics"]["handoff_seconds"] is not None and ck["metrics"]["handoff_tokens"]
        # The agent's own next step, and what aether saw merged in.
        assert ck["next_actions"][0].startswith("append step"), ck["next_actions"]
        assert "steps.txt" in ck["state"]["files_modified"]
    # The handoff request went on Claude's stdin after an interrupt (or between turns).
    sent = jsonl(project / "stdin.jsonl")
    assert any(m["type"] == "user" and "handoff" in m["message"]["content"].lower() for m in sent)
    listed = aether("checkpoints", env={"COLUMNS": "200"}).stdout
    assert listed.count("agent+rules") == len(relaunch), listed


@pytest.mark.parametrize(
    ("answer", "reason"), [("garbage", "answer is not JSON"), ("ignore", "answer is not JSON")]
)
def test_a_handoff_that_fails_falls_back_to_rules_and_loses_nothing(
    project: Path, env: dict, answer: str, reason: str
) -> None:
    cks, done, out = handoff_run(project, env, "--handoff-answer", answer)
    assert sorted(set(done)) == list(range(1, 13)), done
    relaunch = [c for c in cks if c["trigger"] == "budget"]
    assert relaunch, out
    for ck in relaunch:
        assert (ck["distiller"], ck["sources"]) == ("rules", ["rules"])
        assert f"agent handoff: {reason}" in ck["distiller_note"]
    assert len(done) - 12 <= len(relaunch), "at most one step redone per relaunch"


def test_with_handoff_rules_claude_gets_its_prompt_as_an_argument(project: Path, env: dict) -> None:
    cks, done, _out = handoff_run(project, env, "--handoff=rules")
    assert sorted(set(done)) == list(range(1, 13)), done
    assert all(c["distiller"] == "rules" and "handoff_seconds" not in c["metrics"] for c in cks)
    argvs = jsonl(project / "argv.jsonl")
    assert "--input-format" not in argvs[0] and argvs[1][1].startswith("# Resuming")
    assert not (project / "stdin.jsonl").exists() or not jsonl(project / "stdin.jsonl")


def test_a_tool_call_in_flight_finishes_before_the_stop(project: Path, env: dict) -> None:
    # Each step's tool runs 1 s, and the threshold fires on its tool_use line, while it
    # runs. With the safe point it completes and is not redone; nothing is interrupted.
    res = aether(
        "run",
        "--context-window",
        "12000",
        "--",
        *CLAUDE,
        "--steps",
        "8",
        "--tool-seconds",
        "1",
        "--per-turn",
        "2000",
        "--no-text",
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert steps(project) == list(range(1, 9))
    cks = checkpoints(project)
    assert len(cks) >= 2
    budget = [ck for ck in cks if ck["trigger"] == "budget"]
    assert budget and all(not ck["state"].get("interrupted_calls") for ck in budget)


def test_claude_is_stopped_on_a_step_boundary_not_after_a_turns_text(project: Path, env: dict) -> None:
    # The real CLI prints a turn's text and its tool_use as separate lines, the usage that
    # crosses the threshold with the text. Stopping there would kill the step before its
    # command ran; aether must wait until the step's tool_result (the next safe point).
    res = aether(
        "run",
        "--context-window",
        "12000",
        "--",
        *CLAUDE,
        "--steps",
        "10",
        "--per-turn",
        "2000",
        "--block-seconds",
        "0.3",
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert steps(project) == list(range(1, 11)), "no step lost or redone"
    records = [r for p in (project / ".memory" / "runs").glob("*.jsonl") for r in jsonl(p)]
    # The decision to stop is the handoff command (the agent's handoff, the default: the stop
    # command follows the handoff turn) or, without a handoff, the stop command itself.
    stops, handing_off = 0, False
    last_event: dict = {}
    for r in records:
        if r.get("kind") == "event":
            last_event = r["event"]
        elif r.get("kind") == "command" and r.get("command") in ("handoff", "stop"):
            if r["command"] == "stop" and (handing_off or r.get("reason") != "budget"):
                handing_off = False
                continue
            handing_off = r["command"] == "handoff"
            stops += 1
            assert last_event.get("type") == "tool_result", f"stopped right after {last_event}"
    assert stops >= 2
    budget = [ck for ck in checkpoints(project) if ck["trigger"] == "budget"]
    assert budget and all(not ck["state"].get("interrupted_calls") for ck in budget)
    # aether's own measure agrees: every relaunch continued, nothing was redone.
    status = orjson.loads(aether("status", "--json").stdout)
    assert status["continuity"]["relaunches"] == len(budget)
    assert status["continuity"]["steps_redone"] == 0 and status["continuity"]["redo_rate"] == 0
    shown = aether("status").stdout
    assert f"0 step(s) redone in {len(budget)} relaunch(es)" in shown, shown


def test_a_tool_call_that_outlives_the_grace_is_marked_interrupted(project: Path, env: dict) -> None:
    res = aether(
        "run",
        "--context-window",
        "12000",
        "--tool-grace",
        "0.2",
        "--",
        *CLAUDE,
        "--steps",
        "6",
        "--tool-seconds",
        "1.5",
        "--per-turn",
        "2000",
        "--no-text",
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    budget = [ck for ck in checkpoints(project) if ck["trigger"] == "budget"]
    assert budget and budget[0]["state"]["interrupted_calls"], budget[0]["state"]
    assert "tool call(s) still running" in budget[0]["distiller_note"]
    # The next episode is told, on the call's own line, that it was interrupted, and redoes it.
    relaunch_prompt = jsonl(project / "prompts.jsonl")[1]
    assert any("interrupted" in line and "Bash" in line for line in relaunch_prompt.splitlines())
    done = steps(project)
    assert sorted(set(done)) == list(range(1, 7)) and len(done) - 6 <= len(budget)


@pytest.mark.parametrize(
    ("fail", "trigger"), [("prompt_too_long", "emergency"), ("error_max_turns", "steps")]
)
def test_claudes_own_limits_relaunch_rather_than_crash(
    project: Path, env: dict, fail: str, trigger: str
) -> None:
    res = aether(
        "run",
        "--context-window",
        "200000",
        "--max-restarts",
        "0",
        "--",
        *CLAUDE,
        "--steps",
        "6",
        "--fail",
        fail,
        env=env,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert steps(project) == list(range(1, 7))
    cks = checkpoints(project)
    assert cks[0]["trigger"] == trigger
    key = fail.removeprefix("error_")
    assert any(key in e for e in cks[0]["errors"]), cks[0]["errors"]


def test_an_error_result_is_a_crash_even_with_exit_code_zero(project: Path, env: dict) -> None:
    res = aether("run", "--max-restarts", "0", "--", *CLAUDE, "--steps", "6", "--fail", "api_error", env=env)
    assert res.returncode == EXIT_AGENT_CRASHED, res.stdout + res.stderr
    ck = checkpoints(project)[0]
    assert ck["trigger"] == "crash" and "api_error" in ck["distiller_note"]


def test_claude_compacting_itself_is_recorded_and_shown(project: Path, env: dict) -> None:
    res = aether("run", "--", *CLAUDE, "--steps", "6", "--compact-at", "3", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "compacted its own context" in res.stdout
    ledger = next((project / ".memory" / "runs").glob("ses_*.jsonl"))
    assert any(r.get("kind") == "event" and r["event"].get("type") == "compaction" for r in jsonl(ledger))
    status = orjson.loads(aether("status", "--json").stdout)
    assert status["agent_compactions"] == 1
    assert "compacted its own context 1 time" in aether("status").stdout


def test_native_resume_relaunches_through_claudes_own_resume(project: Path, env: dict) -> None:
    res = aether(
        "run", "--native-resume", "--context-window", "24000", "--", *CLAUDE, "--steps", "20", env=env
    )
    assert res.returncode == 0, res.stdout + res.stderr
    argvs = jsonl(project / "argv.jsonl")
    session = checkpoints(project)[0]["agent"]["session_id"]
    assert "--resume" not in argvs[0]
    assert argvs[1][:2] == ["--resume", session]
    # Input mode (the agent handoff): the resume prompt is the relaunch's first stdin message.
    assert "--input-format" in argvs[1] and jsonl(project / "prompts.jsonl")[1].startswith("# Resuming")


@pytest.mark.parametrize(
    "command",
    [
        ["claude", "-p", "x"],
        ["claude", "-p", "x", "--output-format", "json"],
        ["codex", "exec", "x"],
    ],
)
def test_a_known_cli_without_its_json_flag_is_refused(project: Path, env: dict, command: list[str]) -> None:
    res = aether("run", "--", *command, env=env)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "--format text" in res.stderr
    assert not (project / ".memory").exists(), "nothing written for a refused command"


def test_a_bad_format_is_a_usage_error(project: Path) -> None:
    res = aether("run", "--format", "yaml", "--", "true")
    assert res.returncode == 2 and "--format must be one of" in res.stderr


def test_a_text_agent_gets_its_prompt_through_a_placeholder(project: Path) -> None:
    agent = (
        "import sys, pathlib\n"
        "prompt = pathlib.Path(sys.argv[1]).read_text()\n"
        "with open('seen.txt', 'a') as fh: fh.write(prompt.splitlines()[0] + '\\n')\n"
        "for i in range(300): print(f'line {i} ' + 'x' * 40, flush=True)\n"
    )
    script = project / "agent.py"
    script.write_text(agent)
    res = aether(*TEXT_RUN, "--", sys.executable, str(script), "{prompt_file}", env=FAST)
    assert res.returncode == 0, res.stdout + res.stderr
    seen = (project / "seen.txt").read_text().splitlines()
    assert len(seen) == 2 and seen[1].startswith("# Resuming: episode 2")
    cks = checkpoints(project)
    assert cks[0]["tokenizer"] != "reported" and cks[0]["agent"]["format"] == "text"


def _lines_agent(project: Path) -> Path:
    script = project / "agent.py"
    script.write_text("for i in range(40): print(f'line {i} of the output, with a few words', flush=True)\n")
    return script


def _text_run(project: Path, *extra: str) -> list[dict]:
    """Run the 40-line text agent at a 3,000-token window; the ledger's launch records."""
    res = aether(*TEXT_RUN, *extra, "--", sys.executable, str(_lines_agent(project)), env=FAST, cwd=project)
    assert res.returncode == 0, res.stdout + res.stderr
    records = [r for p in (project / ".memory" / "runs").glob("*.jsonl") for r in jsonl(p)]
    return [r for r in records if r.get("kind") == "launch"]


def test_the_agents_own_context_overhead_counts_from_the_start(tmp_path: Path) -> None:
    plain, heavy = tmp_path / "plain", tmp_path / "heavy"
    plain.mkdir()
    heavy.mkdir()
    # 40 short lines stay far below the checkpoint threshold (2,400 tokens) on their own...
    launches = _text_run(plain)
    assert len(launches) == 1 and launches[0]["context_overhead"] == 0
    assert checkpoints(plain)[-1]["metrics"]["episode_tokens"] < 1000
    # ...but not on top of 2,000 tokens of instructions the agent holds and never prints.
    other = heavy
    launches = _text_run(other, "--context-overhead", "2000")
    assert len(launches) == 2 and {r["context_overhead"] for r in launches} == {2000}
    assert checkpoints(other)[0]["metrics"]["episode_tokens"] >= 2400


def test_codex_gets_a_measured_overhead_by_default() -> None:
    from aether_cli.adapters import context_overhead

    assert context_overhead("codex", None) > 5000
    assert context_overhead("codex", 0) == 0
    assert context_overhead("claude", None) == 0  # Claude reports its real context size
    assert context_overhead("text", 123) == 123


@pytest.mark.parametrize(
    ("args", "env_extra", "message"),
    [
        (["--context-window", "1000", "--context-overhead", "900"], {}, "leaves no room"),
        (["--context-overhead", "-1"], {}, "-1"),
        ([], {"AETHER_CONTEXT_OVERHEAD": "-5"}, "must not be negative"),
        ([], {"AETHER_CONTEXT_OVERHEAD": "lots"}, "bad value for context_overhead"),
    ],
)
def test_a_bad_context_overhead_is_refused_before_anything_is_written(
    project: Path, args: list[str], env_extra: dict, message: str
) -> None:
    res = aether("run", *args, "--", sys.executable, "-c", "pass", env={**FAST, **env_extra})
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert not (project / ".memory").exists()
