"""End-to-end: the real `aether` CLI supervising real agent processes in tmp projects."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from helpers import aether, agent_cmd, read_json

from aether_cli import checkpoint
from aether_cli import constants as C

pytestmark = pytest.mark.slow

WINDOW = "4000"
CONTINUITY_FIELDS = {
    "session_id",
    "status",
    "episode",
    "context_usage_percent",
    "last_checkpoint",
    "active_tasks",
    "memory_locations",
    "resume_instructions",
    "command",
    "updated_at",
    "_update_seq",
}
CHECKPOINT_FIELDS = set(checkpoint.FIELDS)
TASK_FIELDS = {"id", "title", "status", "progress", "next_action", "notes", "files", "updated_at"}
FAST_ENV = {"AETHER_BACKOFF_BASE": "0.05", "AETHER_STOP_GRACE": "1", "AETHER_TERM_GRACE": "1"}


def steps_done(project: Path) -> list[int]:
    log = project / "steps.log"
    if not log.exists():
        return []
    return [int(m) for m in re.findall(r"^step (\d+) ", log.read_text(), flags=re.M)]


def episodes_launched(project: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in project.glob("env_*.json"))


def checkpoints(project: Path) -> list[dict]:
    return [read_json(p) for p in sorted((project / ".memory" / "checkpoints").glob("chk_*.json"))]


def assert_memory_contract(project: Path) -> None:
    mem = project / ".memory"
    cont = read_json(mem / "session_continuity.json")
    assert cont.keys() >= CONTINUITY_FIELDS
    for t in cont["active_tasks"]:
        assert {"id", "status", "state_file", "progress", "next_action"} <= t.keys()
        assert (mem / t["state_file"]).is_file()
    for ck in checkpoints(project):
        assert ck.keys() >= CHECKPOINT_FIELDS, CHECKPOINT_FIELDS - ck.keys()
        assert {"episode_tokens", "checkpoint_tokens", "tool_calls", "events"} <= ck["metrics"].keys()
        assert {"git_head", "dirty_hash"} <= ck["workspace"].keys()
        assert re.fullmatch(r"chk_\d{6}_[0-9a-f]{8}", ck["id"])
    for p in (mem / "task_states").glob("*.json"):
        assert read_json(p).keys() >= TASK_FIELDS
    for name in (
        "project_memory.json",
        "context_index.json",
        "README.md",
        ".gitignore",
    ):
        assert (mem / name).is_file(), name
    assert "runs/" in (mem / ".gitignore").read_text()
    assert not (mem / "config.toml").exists()  # only `aether init` and the user write it
    # every JSON file is deterministic, sorted, 2-space, newline-terminated
    for p in mem.rglob("*.json"):
        if "runs" in p.parts:
            continue
        data = p.read_bytes()
        assert (
            data
            == orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
        )


def test_cooperative_agent_relaunches_without_losing_or_repeating_steps(project: Path) -> None:
    res = aether(
        "run",
        "--objective",
        "do the steps",
        "--context-window",
        WINDOW,
        "--",
        *agent_cmd("stepper.py", "--steps", "60", "--payload", "800", "--delay", "0.02"),
    )
    assert res.returncode == 0, res.stderr + res.stdout
    assert steps_done(project) == list(range(1, 61))  # nothing lost, nothing repeated
    eps = episodes_launched(project)
    assert eps == list(range(1, len(eps) + 1)) and len(eps) >= 3
    cks = checkpoints(project)
    assert {c["session_id"] for c in cks} == {cks[0]["session_id"]}
    assert [c["trigger"] for c in cks[:-1]] == ["budget"] * (len(cks) - 1)
    assert cks[-1]["trigger"] == "done"
    assert all(c["distiller"] == "agent" for c in cks[:-1])
    for ep in eps:
        env = read_json(project / f"env_{ep}.json")
        start = read_json(project / f"start_{ep}.json")
        assert env["AETHER_PROTOCOL"] == "1"
        assert env["AETHER_EPISODE"] == str(ep)
        assert env["AETHER_SESSION"] == cks[0]["session_id"] == start["session"]
        assert Path(env["AETHER_MEMORY_DIR"]) == project / ".memory"
        assert env["prompt_file_text"] == start["prompt"]
        assert start["type"] == "start" and start["episode"] == ep
        if ep > 1:
            prompt = start["prompt"]
            assert env["AETHER_CHECKPOINT"] == start["checkpoint"]
            assert "do the steps" in prompt
            assert "Never touch prod.db" in prompt  # pinned fact
            assert re.search(r"do next step #\d+", prompt)  # next action verbatim
            assert env["AETHER_CHECKPOINT"] in prompt
        else:
            assert env["AETHER_CHECKPOINT"] == ""
    ledger = next((project / ".memory" / "runs").glob("*.jsonl"))
    launches = [r for r in map(orjson.loads, ledger.read_bytes().splitlines()) if r["kind"] == "launch"]
    assert all(r["prompt_tokens"] < 0.25 * int(WINDOW) for r in launches)
    cont = read_json(project / ".memory" / "session_continuity.json")
    assert cont["status"] == "done"
    pm = read_json(project / ".memory" / "project_memory.json")
    assert any(f["key"] == "rule" and f["pinned"] for f in pm["facts"])
    assert_memory_contract(project)
    st = aether("status", "--json")
    assert st.returncode == 0 and orjson.loads(st.stdout)["state"] == "done"
    ck = aether("checkpoints", "--json")
    assert ck.returncode == 0 and len(orjson.loads(ck.stdout)) == len(cks)


def test_silent_agent_is_stopped_and_distilled_by_rules(project: Path) -> None:
    res = aether(
        "run",
        "--objective",
        "do the steps",
        "--context-window",
        WINDOW,
        "--checkpoint-timeout",
        "1",
        "--",
        *agent_cmd("stepper.py", "--steps", "60", "--payload", "800", "--silent", "--delay", "0.1"),
        env=FAST_ENV,
    )
    assert res.returncode == 0, res.stderr + res.stdout
    done = steps_done(project)
    assert set(done) == set(range(1, 61))  # nothing lost
    # A silent agent may redo the step it was in when it was killed: at most one per relaunch.
    relaunches = len(episodes_launched(project)) - 1
    assert relaunches >= 1
    assert len(done) - 60 <= relaunches
    cks = checkpoints(project)
    budget = [c for c in cks if c["trigger"] in ("budget", "emergency")]
    assert budget and all(c["distiller"] == "rules" for c in budget)
    assert all("did not answer" in c["distiller_note"] for c in budget)
    assert_memory_contract(project)


def test_agent_that_crashes_once_is_restarted(project: Path) -> None:
    res = aether(
        "run",
        "--objective",
        "do the steps",
        "--context-window",
        "20000",
        "--",
        *agent_cmd("stepper.py", "--steps", "8", "--crash-at", "5"),
        env=FAST_ENV,
    )
    assert res.returncode == 0, res.stderr + res.stdout
    assert set(steps_done(project)) == set(range(1, 9))
    cks = checkpoints(project)
    crash = [c for c in cks if c["trigger"] == "crash"]
    assert len(crash) == 1
    assert "simulated crash" in " ".join(crash[0]["errors"])
    assert any("do next step #5" in a for a in crash[0]["next_actions"])
    assert "restart 1/5" in res.stdout


def test_crash_loop_stops_with_memory_intact(project: Path) -> None:
    res = aether(
        "run",
        "--objective",
        "x",
        "--max-restarts",
        "2",
        "--",
        sys.executable,
        "-c",
        "import sys; print('boom'); sys.exit(7)",
        env=FAST_ENV,
    )
    assert res.returncode == C.EXIT_AGENT_CRASHED and "the agent's own exit code was 7" in res.stdout
    assert "max-restarts" in res.stdout
    cont = read_json(project / ".memory" / "session_continuity.json")
    assert cont["status"] == "crashed"
    assert len(checkpoints(project)) == 3


def _start_background(project: Path, *agent_args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aether_cli",
            "run",
            "--objective",
            "do the steps",
            "--context-window",
            WINDOW,
            "--",
            *agent_cmd("stepper.py", *agent_args),
        ],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _wait_for_steps(project: Path, n: int, proc: subprocess.Popen[bytes], limit: float = 60) -> None:
    end = time.monotonic() + limit
    while len(steps_done(project)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < end, "agent made no progress"
        time.sleep(0.05)


def test_sigkill_of_aether_then_resume_finishes_the_same_session(project: Path) -> None:
    proc = _start_background(project, "--steps", "30", "--payload", "400", "--delay", "0.05")
    _wait_for_steps(project, 12, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    st = orjson.loads(aether("status", "--json").stdout)
    assert st["state"] == "stale"
    res = aether("resume", "--events", "events.jsonl", env=FAST_ENV)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "recovered" in res.stdout
    done = steps_done(project)
    assert set(done) == set(range(1, 31))
    # Only the step in flight when aether died (and one the orphan finished) may be redone.
    assert len(done) - 30 <= 2, done
    recovered = [c for c in checkpoints(project) if "recovered" in c["distiller_note"]]
    assert len(recovered) == 1 and recovered[0]["trigger"] == "crash"
    # The recovered checkpoint is an event too (and so runs an on-checkpoint hook), after the
    # start and before the first launch.
    events = [orjson.loads(line) for line in (project / "events.jsonl").read_bytes().splitlines()]
    kinds = [e["event"] for e in events if e["event"] in ("start", "checkpoint", "launch")]
    assert kinds[:3] == ["start", "checkpoint", "launch"], kinds
    first = next(e for e in events if e["event"] == "checkpoint")
    assert first["id"] == recovered[0]["id"] and first["trigger"] == "crash"
    assert first["episode"] == recovered[0]["episode"]
    eps = episodes_launched(project)
    assert eps == list(range(1, len(eps) + 1))
    sessions = {c["session_id"] for c in checkpoints(project)}
    assert len(sessions) == 1
    assert read_json(project / ".memory" / "session_continuity.json")["status"] == "done"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_writes_an_interrupt_checkpoint(project: Path, signum: int, code: int) -> None:
    proc = _start_background(project, "--steps", "200", "--payload", "50", "--delay", "0.05")
    _wait_for_steps(project, 3, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err.decode()
    cks = checkpoints(project)
    assert cks[-1]["trigger"] == "interrupt"
    assert read_json(project / ".memory" / "session_continuity.json")["status"] == "stopped"
    assert b"aether resume" in out


def test_agent_command_not_found(project: Path) -> None:
    res = aether("run", "--objective", "x", "--", "no-such-agent-xyz")
    assert res.returncode == 1
    assert res.stderr.strip() == "aether: error: agent command not found: no-such-agent-xyz"
    assert "Traceback" not in res.stderr


def test_agent_that_exits_at_once_with_success_ends_the_run(project: Path) -> None:
    res = aether("run", "--objective", "x", "--", sys.executable, "-c", "pass")
    assert res.returncode == 0, res.stderr
    assert read_json(project / ".memory" / "session_continuity.json")["status"] == "stopped"


def test_garbage_output_is_warned_about_and_never_fatal(project: Path) -> None:
    res = aether(
        "run",
        "--objective",
        "do the steps",
        "--context-window",
        "50000",
        "--",
        *agent_cmd("stepper.py", "--steps", "3", "--junk"),
    )
    assert res.returncode == 0, res.stderr + res.stdout
    assert "refused task id '../../x'" in res.stdout
    assert "malformed usage event" in res.stdout
    assert not (project / "x").exists() and not (project.parent / "x").exists()
    assert not list((project / ".memory").rglob("*x_state.json"))
    ledger = next((project / ".memory" / "runs").glob("*.jsonl"))
    recs = [orjson.loads(line) for line in ledger.read_bytes().splitlines()]
    dropped = [r for r in recs if r.get("dropped_bytes")]
    assert dropped and dropped[0]["dropped_bytes"] > 1_000_000
    assert any("\ufffd" in str(r.get("event", {}).get("text", "")) for r in recs)
    assert steps_done(project) == [1, 2, 3]


def test_second_run_on_the_same_memory_is_refused(project: Path) -> None:
    proc = _start_background(project, "--steps", "200", "--payload", "50", "--delay", "0.05")
    try:
        _wait_for_steps(project, 1, proc)
        res = aether("run", "--objective", "x", "--", sys.executable, "-c", "pass")
        assert res.returncode == 75
        assert f"pid {proc.pid}" in res.stderr
        res = aether("resume")
        assert res.returncode == 75 and "is running now" in res.stderr
        st = aether("status", "--json")
        assert st.returncode == 0 and orjson.loads(st.stdout)["state"] == "running"
        req = aether("checkpoint")
        assert req.returncode == 0, req.stderr
        end = time.monotonic() + 30
        while not any(c["trigger"] == "manual" for c in checkpoints(project)):
            assert time.monotonic() < end, "manual checkpoint never written"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def test_truncated_memory_file_is_reported_not_a_traceback(project: Path) -> None:
    assert aether("run", "--objective", "x", "--", sys.executable, "-c", "pass").returncode == 0
    cont = project / ".memory" / "session_continuity.json"
    cont.write_bytes(cont.read_bytes()[:20])
    # Issue 12.8: status used to exit 5 here; it now reports the damage and the way out.
    res = aether("status")
    assert res.returncode == 0 and res.stderr == ""
    assert "session_continuity.json is damaged" in res.stdout and "aether resume" in res.stdout
    project_memory = project / ".memory" / "project_memory.json"
    project_memory.write_bytes(project_memory.read_bytes()[:20])
    # The record rebuilt from a "done" checkpoint says done: --force goes on to the damaged file.
    res = aether("resume", "--force")
    assert res.returncode == 5
    assert "project_memory.json" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_unknown_checkpoint_and_resume_without_session(project: Path) -> None:
    res = aether("resume")
    assert res.returncode == 1 and "no session to resume" in res.stderr
    assert aether("run", "--objective", "x", "--", sys.executable, "-c", "pass").returncode == 0
    res = aether("show", "chk_999")
    assert res.returncode == 1 and "chk_999" in res.stderr
    res = aether("resume", "../../etc/passwd")
    assert res.returncode == 2 and "Traceback" not in res.stderr


OVERFLOW_AGENT = """
import json, sys
print(json.dumps({"type": "hello", "agent": "flood"}), flush=True)
print(json.dumps({"type": "tool_call", "id": "1", "name": "cat", "input": {"path": "big.log"}}), flush=True)
print(json.dumps({"type": "tool_result", "id": "1", "output": "word " * 5000}), flush=True)
for line in sys.stdin:
    if json.loads(line).get("type") == "stop":
        break
"""


def test_an_agent_that_overflows_at_once_is_stopped_after_three_episodes(project: Path) -> None:
    res = aether(
        "run",
        "--objective",
        "x",
        "--context-window",
        "2000",
        "--checkpoint-timeout",
        "0.5",
        "--",
        sys.executable,
        "-c",
        OVERFLOW_AGENT,
        env=FAST_ENV,
    )
    assert res.returncode == 4, res.stdout + res.stderr
    assert "overflowed" in res.stdout and "--context-window" in res.stdout
    cks = checkpoints(project)
    assert len(cks) == 3
    budgets = [
        orjson.loads(line)["prompt_budget"]
        for line in next((project / ".memory" / "runs").glob("*.jsonl")).read_bytes().splitlines()
        if orjson.loads(line)["kind"] == "launch"
    ]
    assert budgets[0] > budgets[1] > budgets[2]  # the prompt budget shrinks after each overflow
    assert read_json(project / ".memory" / "session_continuity.json")["status"] == "stopped"


def test_max_episodes_stops_resumably(project: Path) -> None:
    res = aether(
        "run",
        "--objective",
        "do the steps",
        "--context-window",
        WINDOW,
        "--max-episodes",
        "1",
        "--",
        *agent_cmd("stepper.py", "--steps", "60", "--payload", "800", "--delay", "0.02"),
    )
    assert res.returncode == 0, res.stderr
    assert "--max-episodes" in res.stdout
    assert episodes_launched(project) == [1]
    assert read_json(project / ".memory" / "session_continuity.json")["status"] == "stopped"
    # The cap holds for each invocation: every resume runs one more episode.
    for _ in range(6):
        res = aether("resume")
        assert res.returncode == 0, res.stderr
        if read_json(project / ".memory" / "session_continuity.json")["status"] == "done":
            break
    assert steps_done(project) == list(range(1, 61))
    assert len(episodes_launched(project)) >= 3


def test_init_show_drop(project: Path) -> None:
    res = aether("init")
    assert res.returncode == 0 and "created" in res.stdout
    assert aether("init").stdout.strip().endswith("already set up")
    res = aether(
        "run",
        "--objective",
        "do the steps",
        "--context-window",
        WINDOW,
        "--",
        *agent_cmd("stepper.py", "--steps", "60", "--payload", "800", "--delay", "0.02"),
    )
    assert res.returncode == 0
    ids = [c["id"] for c in checkpoints(project)]
    assert len(ids) >= 2
    shown = aether("show", ids[0][:10], "--json")
    assert shown.returncode == 0 and orjson.loads(shown.stdout)["id"] == ids[0]
    assert "next actions" in aether("show", ids[0]).stdout
    refused = aether("drop", ids[-1])
    assert refused.returncode != 0 and "--force" in refused.stderr
    assert aether("drop", ids[0]).returncode == 0
    assert not (project / ".memory" / "checkpoints" / f"{ids[0]}.json").exists()
    ambiguous = aether("show", "chk_")
    assert ambiguous.returncode == 2


def test_templates_ship_inside_the_wheel(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(repo)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next(dist.glob("aether_cli-*.whl"))
    unpacked = tmp_path / "site"
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "aether_cli/templates/rehydrate.md" in names and "aether_cli/templates/start.md" in names
        assert "aether_cli/schemas/start.schema.json" in names
        zf.extractall(unpacked)
    code = (
        "import aether_cli, sys; from aether_cli.prompt_template import load_template;"
        "assert aether_cli.__file__.startswith(sys.argv[1]), aether_cli.__file__;"
        "print(load_template('rehydrate.md', None)[:40])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(unpacked)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(unpacked)},
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


def test_usage_events_are_authoritative_and_mark_the_tokenizer_reported(project: Path) -> None:
    # Tiny payloads: aether's own count stays low, only the agent's usage figure crosses 80%.
    res = aether(
        "run",
        "--objective",
        "do the steps",
        "--context-window",
        WINDOW,
        "--",
        *agent_cmd("stepper.py", "--steps", "30", "--payload", "12", "--usage", "300", "--delay", "0.02"),
    )
    assert res.returncode == 0, res.stderr
    assert steps_done(project) == list(range(1, 31))
    budget = [c for c in checkpoints(project) if c["trigger"] == "budget"]
    assert budget and all(c["tokenizer"] == "reported" for c in budget)
    assert all(c["metrics"]["episode_tokens"] >= 0.8 * int(WINDOW) for c in budget)


def test_an_agent_with_the_rehydrate_capability_resets_in_place(project: Path) -> None:
    res = aether(
        "run",
        "--objective",
        "do the steps",
        "--context-window",
        WINDOW,
        "--",
        *agent_cmd("stepper.py", "--steps", "60", "--payload", "800", "--delay", "0.05", "--rehydrate"),
    )
    assert res.returncode == 0, res.stderr
    assert steps_done(project) == list(range(1, 61))
    assert episodes_launched(project) == [1]  # one process for the whole run
    rehydrated = (project / "rehydrated.log").read_text().split("\n")[:-1]
    ids = [c["id"] for c in checkpoints(project) if c["trigger"] == "budget"]
    assert [line.split()[1] for line in rehydrated] == ids
    assert [int(line.split()[0]) for line in rehydrated] == list(range(2, len(ids) + 2))


def test_step_and_error_triggers(project: Path) -> None:
    res = aether(
        "run",
        "--objective",
        "do the steps",
        "--max-steps",
        "4",
        "--checkpoint-on-error",
        "--",
        *agent_cmd("stepper.py", "--steps", "10", "--error-at", "6", "--delay", "0.02"),
    )
    assert res.returncode == 0, res.stderr
    assert set(steps_done(project)) == set(range(1, 11))
    triggers = [c["trigger"] for c in checkpoints(project)]
    assert "steps" in triggers and "error" in triggers
    err = next(c for c in checkpoints(project) if c["trigger"] == "error")
    assert "E: disk full at /tmp/x" in err["errors"]


def test_secrets_never_reach_memory(project: Path) -> None:
    res = aether(
        "run", "--objective", "do the steps", "--", *agent_cmd("stepper.py", "--steps", "2", "--secret")
    )
    assert res.returncode == 0, res.stderr
    for path in (project / ".memory").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"AKIAQWERTYUIOPASDFGH" not in data, path
            assert b"ghp_a1B2c3D4" not in data, path
    ledger = next((project / ".memory" / "runs").glob("*.jsonl")).read_text()
    assert "REDACTED" in ledger


def test_without_the_encoding_counts_are_estimated_and_status_says_so(project: Path) -> None:
    env = {"AETHER_TOKENIZER": "estimate"}
    res = aether(
        "run",
        "--objective",
        "do the steps",
        "--context-window",
        WINDOW,
        "--",
        *agent_cmd("stepper.py", "--steps", "30", "--payload", "800", "--delay", "0.02"),
        env=env,
    )
    assert res.returncode == 0, res.stderr
    assert "token counts are estimates" in res.stdout
    assert steps_done(project) == list(range(1, 31))
    assert {c["tokenizer"] for c in checkpoints(project)} == {"estimate"}
    st = aether("status")
    assert st.returncode == 0 and "estimate" in st.stdout
    data = orjson.loads(aether("status", "--json").stdout)
    assert data["tokenizer"] == "estimate" and "AETHER_TOKENIZER" in data["tokenizer_note"]


def test_max_duration_stops_resumably(project: Path) -> None:
    res = aether(
        "run",
        "--objective",
        "do the steps",
        "--max-duration",
        "1",
        "--",
        *agent_cmd("stepper.py", "--steps", "500", "--payload", "50", "--delay", "0.05"),
    )
    assert res.returncode == 0, res.stderr
    assert "--max-duration 1s" in res.stdout
    cks = checkpoints(project)
    assert cks[-1]["trigger"] == "interrupt" and cks[-1]["distiller"] == "agent"
    assert read_json(project / ".memory" / "session_continuity.json")["status"] == "stopped"
    assert 0 < len(steps_done(project)) < 500


HELLO_WINDOW_AGENT = """
import json, sys
start = json.loads(sys.stdin.readline())
print(json.dumps({"type": "hello", "agent": "w", "context_window": 3000}), flush=True)
msg = "limit " + str(start["budget"]["limit"])
print(json.dumps({"type": "message", "role": "assistant", "text": msg}), flush=True)
print(json.dumps({"type": "done"}), flush=True)
"""


def test_the_agents_hello_window_is_used_when_the_user_gave_none(project: Path) -> None:
    res = aether("run", "--objective", "x", "--", sys.executable, "-c", HELLO_WINDOW_AGENT)
    assert res.returncode == 0, res.stderr
    assert read_json(project / ".memory" / "session_continuity.json")["window"] == 3000
    res = aether(
        "run", "--objective", "x", "--context-window", "9000", "--", sys.executable, "-c", HELLO_WINDOW_AGENT
    )
    assert read_json(project / ".memory" / "session_continuity.json")["window"] == 9000


TEXT_AGENT = """
import os
episode = int(os.environ["AETHER_EPISODE"])
for i in range(300):
    print(f"episode {episode} working on line {i} of the plain text log output", flush=True)
"""


def test_a_text_agent_is_relaunched_without_a_false_overflow(project: Path) -> None:
    # Each episode prints plenty of lines and no tool calls; it exits 0 on its own in the end.
    res = aether(
        "run",
        "--objective",
        "x",
        "--context-window",
        "1500",
        "--max-episodes",
        "4",
        "--",
        sys.executable,
        "-c",
        TEXT_AGENT,
        env=FAST_ENV,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "overflowed" not in res.stdout
    assert "--max-episodes" in res.stdout
    assert [c["trigger"] for c in checkpoints(project)] == ["budget"] * 4
    assert all(c["distiller"] == "rules" for c in checkpoints(project))


EXIT_AFTER_CROSSING = """
import json
print(json.dumps({"type": "hello", "agent": "quitter"}), flush=True)
print(json.dumps({"type": "tool_result", "id": "1", "output": "word " * 3300}), flush=True)
print(json.dumps({"type": "message", "role": "assistant", "text": "all finished"}), flush=True)
"""


def test_an_exit_0_before_any_stop_ends_the_run(project: Path) -> None:
    res = aether(
        "run", "--objective", "x", "--context-window", "4000", "--", sys.executable, "-c", EXIT_AFTER_CROSSING
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert [c["trigger"] for c in checkpoints(project)] == ["done"]
    assert read_json(project / ".memory" / "session_continuity.json")["status"] == "stopped"


def test_max_duration_stops_an_agent_that_rehydrates_in_place(project: Path) -> None:
    res = aether(
        "run",
        "--objective",
        "do the steps",
        "--context-window",
        WINDOW,
        "--max-duration",
        "2",
        "--",
        *agent_cmd("stepper.py", "--steps", "500", "--payload", "800", "--delay", "0.02", "--rehydrate"),
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "--max-duration 2s" in res.stdout
    cks = checkpoints(project)
    assert cks[-1]["trigger"] == "interrupt" and len(cks) < 20


GRANDCHILD_AGENT = """
import json, os, subprocess, sys
if os.environ["AETHER_EPISODE"] == "1":
    # A grandchild in its own session escapes the group kill and keeps our pipes open.
    # It keeps writing, so a reader left on a reused fd number would steal lines.
    code = "import time; [print('g', flush=True) or time.sleep(0.2) for i in range(15)]"
    subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    sys.exit(1)
import time
for i in range(40):
    print(json.dumps({"type": "message", "role": "assistant", "text": f"line {i}"}), flush=True)
    print(f"err {i}", file=sys.stderr, flush=True)
    time.sleep(0.05)
print(json.dumps({"type": "done"}), flush=True)
"""


def test_a_grandchild_holding_the_pipes_cannot_swallow_the_next_episodes_output(project: Path) -> None:
    res = aether("run", "--objective", "x", "--", sys.executable, "-c", GRANDCHILD_AGENT, env=FAST_ENV)
    assert res.returncode == 0, res.stdout + res.stderr
    ledger = next((project / ".memory" / "runs").glob("*.jsonl"))
    recs = [orjson.loads(line) for line in ledger.read_bytes().splitlines()]
    lines = [r["event"]["text"] for r in recs if r["kind"] == "event" and r["event"].get("type") == "message"]
    errs = [r["text"] for r in recs if r["kind"] == "stderr" and r["text"].startswith("err ")]
    assert lines == [f"line {i}" for i in range(40)]
    assert errs == [f"err {i}" for i in range(40)]


STALE_CHECKPOINT_AGENT = """
import json, os, sys
def emit(o):
    print(json.dumps(o), flush=True)
if os.environ["AETHER_EPISODE"] != "1":
    emit({"type": "done"})
    sys.exit(0)
emit({"type": "checkpoint", "state": {"objective": "x", "progress": [], "next_actions": ["start over"]}})
for i in range(10):
    emit({"type": "tool_call", "id": str(i), "name": "step", "input": {"n": i}})
    emit({"type": "tool_result", "id": str(i), "output": "ok"})
emit({"type": "task", "id": "t", "status": "in_progress", "next_action": "continue at step 10"})
sys.exit(3)
"""


def test_an_agent_checkpoint_followed_by_more_work_is_not_used(project: Path) -> None:
    res = aether("run", "--objective", "x", "--", sys.executable, "-c", STALE_CHECKPOINT_AGENT, env=FAST_ENV)
    assert res.returncode == 0, res.stdout + res.stderr
    crash = next(c for c in checkpoints(project) if c["trigger"] == "crash")
    assert crash["distiller"] == "rules" and "kept working" in crash["distiller_note"]
    assert "continue at step 10" in crash["next_actions"]
