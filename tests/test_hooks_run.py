"""Hooks and --events in real runs (issue 14.2): the real `aether` (or `aether_cli.run`)
supervises the test agents, and each hook is a small script in the test's tmp folder."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import orjson
import pytest
from helpers import aether, agent_cmd
from test_hooks import gone, script_hook, wait_for

import aether_cli
from aether_cli import constants as C
from aether_cli.errors import UsageError

FAST_ENV = {"AETHER_BACKOFF_BASE": "0.05", "AETHER_STOP_GRACE": "1", "AETHER_TERM_GRACE": "1"}
pytestmark = pytest.mark.slow


def lines(path: Path) -> list[dict]:
    """A JSON-lines file, every line parsed (a line that is not JSON fails the test)."""
    return [orjson.loads(line) for line in path.read_text().splitlines()]


def hook_runs(path: Path) -> list[dict]:
    return lines(path) if path.exists() else []


def ledger(project: Path) -> list[dict]:
    return lines(next((project / ".memory" / "runs").glob("ses_*.jsonl")))


def test_hooks_and_events_through_checkpoints_relaunches_and_the_end(project: Path, tmp_path: Path) -> None:
    got = tmp_path / "hooks.jsonl"
    hook = script_hook(tmp_path, got)
    events = tmp_path / "events.jsonl"
    res = aether(
        "run", "-o", "do the steps", "--max-steps", "3", "--events", str(events),
        "--on-checkpoint", hook, "--on-relaunch", hook, "--on-done", hook,
        "--", *agent_cmd("stepper.py", "--steps", "7", "--delay", "0.02"),
        env=FAST_ENV,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    runs = hook_runs(got)
    kinds = [r["stdin"]["event"] for r in runs]
    # Three episodes of at most 3 steps: checkpoint, relaunch, checkpoint, relaunch, checkpoint, done.
    assert kinds == ["checkpoint", "relaunch", "checkpoint", "relaunch", "checkpoint", "done"], kinds
    session = runs[0]["stdin"]["session"]
    ck = runs[0]
    assert ck["stdin"]["trigger"] == "steps" and ck["stdin"]["episode"] == 1
    assert ck["stdin"]["id"].startswith("chk_") and ck["stdin"]["checkpoint_tokens"] > 0
    assert ck["env"]["AETHER_EVENT"] == "checkpoint" and ck["env"]["AETHER_SESSION"] == session
    assert ck["env"]["AETHER_CHECKPOINT"] == ck["stdin"]["id"] and ck["env"]["AETHER_TRIGGER"] == "steps"
    assert ck["env"]["AETHER_EPISODE"] == "1"
    assert ck["env"]["AETHER_MEMORY_DIR"] == str(project / ".memory") and ck["cwd"] == str(project)
    relaunch = runs[1]["stdin"]
    assert relaunch["episode"] == 2 and relaunch["checkpoint"] == ck["stdin"]["id"]
    assert relaunch["in_place"] is False and relaunch["trigger"] == "steps"
    done = runs[-1]
    assert done["stdin"]["status"] == "done" and done["stdin"]["exit_code"] == 0
    assert (done["stdin"]["checkpoints"], done["stdin"]["episodes"]) == (3, 3)
    assert done["env"]["AETHER_EXIT_CODE"] == "0" and done["env"]["AETHER_STATUS"] == "done"
    # The event stream: every line JSON, each with ts, event and the session.
    stream = lines(events)
    assert all({"ts", "event", "session"} <= set(e) for e in stream)
    assert {e["session"] for e in stream} == {session}
    names = [e["event"] for e in stream]
    assert names[0] == "start" and names.count("launch") == 3 and names.count("checkpoint") == 3
    assert names.count("relaunch") == 2 and "notice" in names and "usage" in names
    assert names.index("done") > names.index("checkpoint")
    assert [e["hook"] for e in stream if e["event"] == "hook"] == kinds
    # Each hook's result is in the ledger, before its end.
    records = ledger(project)
    assert [r["event"] for r in records if r["kind"] == "hook"] == kinds
    assert records[-1]["kind"] == "end"


def test_a_failing_hook_warns_and_the_run_goes_on(project: Path) -> None:
    res = aether(
        "run", "--max-steps", "2", "--on-checkpoint", "echo it broke >&2; exit 7",
        "--", *agent_cmd("stepper.py", "--steps", "4", "--delay", "0.02"), env=FAST_ENV,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    warnings = [ln for ln in res.stdout.splitlines() if "on-checkpoint hook exit 7" in ln]
    assert len(warnings) == 2 and "the run goes on" in warnings[0]
    assert "| it broke" in res.stdout
    hooks = [r for r in ledger(project) if r["kind"] == "hook"]
    assert [(h["exit_code"], h["output"]) for h in hooks] == [(7, "it broke\n")] * 2


def test_a_hanging_hook_is_killed_and_the_run_ends(project: Path, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hang = f"sleep 300 & echo $! >> {shlex.quote(str(pids))}; sleep 300"
    res = aether(
        "run", "--hook-timeout", "1", "--on-done", hang, "--on-checkpoint", hang,
        "--", *agent_cmd("stepper.py", "--steps", "2"), timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    assert res.stdout.count("hook timed out after 1s (killed)") == 2, res.stdout
    left = [int(p) for p in pids.read_text().split()]
    assert len(left) == 2
    assert wait_for(lambda: all(gone(p) for p in left)), "a hook's process outlived the run"


def test_a_hook_that_prints_a_lot_is_capped(project: Path) -> None:
    res = aether(
        "run", "--on-done", "head -c 30000000 /dev/urandom | base64",
        "--", *agent_cmd("stepper.py", "--steps", "1"), timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    (hook,) = [r for r in ledger(project) if r["kind"] == "hook"]
    assert hook["output_bytes"] > 30_000_000 and len(hook["output"]) < 10_000
    assert "bytes left out" in hook["output"]
    assert len(res.stdout) < 20_000


def test_on_crash_with_a_crashing_agent(project: Path, tmp_path: Path) -> None:
    got = tmp_path / "hooks.jsonl"
    hook = script_hook(tmp_path, got)
    res = aether(
        "run", "--max-restarts", "1", "--on-crash", hook, "--on-done", hook,
        "--", sys.executable, "-c", "import sys; sys.exit(9)", env=FAST_ENV,
    )  # fmt: skip
    assert res.returncode == C.EXIT_AGENT_CRASHED, res.stderr + res.stdout
    runs = hook_runs(got)
    assert [r["stdin"]["event"] for r in runs] == ["crash", "crash", "done"]
    first, last, done = (r["stdin"] for r in runs)
    assert (first["exit_code"], first["signal"], first["restarts"], first["gave_up"]) == (9, None, 1, False)
    assert (last["restarts"], last["max_restarts"], last["gave_up"]) == (2, 1, True)
    assert runs[0]["env"]["AETHER_EXIT_CODE"] == "9" and runs[0]["env"]["AETHER_EVENT"] == "crash"
    assert first["checkpoint"].startswith("chk_")
    assert (done["status"], done["exit_code"]) == ("crashed", C.EXIT_AGENT_CRASHED)


def test_events_to_stderr(project: Path) -> None:
    res = aether("run", "--events", "-", "--", *agent_cmd("stepper.py", "--steps", "1"))
    assert res.returncode == 0, res.stderr
    stream = [orjson.loads(ln) for ln in res.stderr.splitlines() if ln.startswith("{")]
    assert [e["event"] for e in stream if e["event"] in ("start", "launch", "checkpoint", "done")] == [
        "start", "launch", "checkpoint", "done",
    ]  # fmt: skip
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("where", ["no/such/folder/events.jsonl", "."])
def test_events_to_a_path_that_cannot_be_opened_stops_before_the_agent(project: Path, where: str) -> None:
    marker = project / "agent-ran"
    res = aether(
        "run", "--events", where, "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')",
    )  # fmt: skip
    assert res.returncode == C.EXIT_USAGE, res.stderr
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("aether: error: --events: cannot open"), res.stderr
    assert not marker.exists()


def config_hook(project: Path, command: str) -> None:
    memory = project / ".memory"
    memory.mkdir(exist_ok=True)
    (memory / C.CONFIG_FILE).write_text(f"[hooks]\non_done = {orjson.dumps(command).decode()}\n")


def test_hooks_from_config_toml_are_confirmed_before_they_ever_run(project: Path) -> None:
    config_hook(project, "echo ran >> hook-ran")
    agent = ("--format", "text", "--", sys.executable, "-c", "print('hi')")
    res = aether("run", "-q", *agent)
    assert res.returncode == C.EXIT_USAGE, res.stderr
    assert "hook on_done:     echo ran >> hook-ran" in res.stderr
    assert not (project / "hook-ran").exists() and not (project / ".memory" / "checkpoints").exists()
    res = aether("run", "-q", "--yes", *agent)
    assert res.returncode == 0, res.stderr
    assert (project / "hook-ran").read_text() == "ran\n"
    # Confirmed: the next run does not ask.
    res = aether("run", "-q", *agent)
    assert res.returncode == 0, res.stderr
    assert (project / "hook-ran").read_text() == "ran\nran\n"
    # Changed (by a pull, say): asked again, and nothing runs without the answer.
    config_hook(project, "echo changed >> hook-ran")
    res = aether("run", "-q", *agent)
    assert res.returncode == C.EXIT_USAGE and "echo changed >> hook-ran" in res.stderr
    assert (project / "hook-ran").read_text() == "ran\nran\n"
    # One given as a flag is the person's own: it replaces config.toml's, and needs no answer.
    res = aether("run", "-q", "--on-done", "echo mine >> hook-ran", *agent)
    assert res.returncode == 0, res.stderr
    assert (project / "hook-ran").read_text() == "ran\nran\nmine\n"


def test_the_python_run_takes_hooks_and_events(project: Path, tmp_path: Path) -> None:
    got = tmp_path / "hooks.jsonl"
    events = tmp_path / "events.jsonl"
    result = aether_cli.run(
        agent_cmd("stepper.py", "--steps", "2"), on_checkpoint=script_hook(tmp_path, got),
        on_done="echo $AETHER_EXIT_CODE > done-code", events=str(events), hook_timeout=20,
    )  # fmt: skip
    assert result.exit_code == 0
    assert [r["stdin"]["event"] for r in hook_runs(got)] == ["checkpoint"]
    assert (project / "done-code").read_text() == "0\n"
    assert lines(events)[-1]["event"] == "hook"
    with pytest.raises(aether_cli.SettingError, match="--hook-timeout: expected float"):
        aether_cli.run(["true"], hook_timeout="soon")
    # A hook from config.toml that no person confirmed on this machine is refused: no one to ask.
    config_hook(project, "echo ran >> hook-ran")
    with pytest.raises(UsageError, match="sets hooks this machine has not confirmed"):
        aether_cli.run(agent_cmd("stepper.py", "--steps", "1"))
    assert not (project / "hook-ran").exists()
    # ...unless the caller's own replaces it.
    assert aether_cli.run(agent_cmd("stepper.py", "--steps", "1"), on_done="").exit_code == 0


def test_an_in_place_rehydration_is_a_relaunch_and_thresholds_are_streamed(tmp_path: Path) -> None:
    got = tmp_path / "hooks.jsonl"
    events = tmp_path / "events.jsonl"
    res = aether(
        "run", "--context-window", "4000", "--events", str(events),
        "--on-relaunch", script_hook(tmp_path, got),
        "--", *agent_cmd("stepper.py", "--steps", "30", "--payload", "800", "--delay", "0.02", "--rehydrate"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr + res.stdout
    relaunches = [r["stdin"] for r in hook_runs(got)]
    assert relaunches and all(r["in_place"] is True for r in relaunches)
    assert [r["episode"] for r in relaunches] == list(range(2, len(relaunches) + 2))
    stream = lines(events)
    assert sum(e["event"] == "launch" for e in stream) == 1  # one process for the whole run
    thresholds = [e for e in stream if e["event"] == "threshold"]
    assert {"soft", "checkpoint"} <= {e["level"] for e in thresholds}
    assert all(e["fraction"] > 0 and e["window"] == 4000 for e in thresholds)
