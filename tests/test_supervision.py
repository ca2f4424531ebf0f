"""Supervision guarantees with real processes and real signals (issue 4, items 1-7).

Each test would fail if its guarantee broke: a grandchild that outlives the
stop, a signal forwarded twice, an orphan left after aether is SIGKILLed, a
zombie, a crash count that never resets, an exit code swallowed, a pipe that
deadlocks aether.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import random
import select
import signal
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path

import orjson
import pytest
from helpers import aether, agent_cmd, read_json

from aether_cli import constants as C
from aether_cli.launcher import backoff_delay, session_processes
from aether_cli.settings import Settings
from aether_cli.store import MemoryStore, files, read_ledger
from aether_cli.supervisor import Supervisor
from aether_cli.supervisor.streams import Streams

pytestmark = pytest.mark.slow

FAST_ENV = {"AETHER_BACKOFF_BASE": "0.05", "AETHER_STOP_GRACE": "1", "AETHER_TERM_GRACE": "1"}
KILLS = int(os.environ.get("AETHER_STRESS_KILLS", "0")) or (100 if os.environ.get("AETHER_STRESS") else 8)

# A protocol agent that counts the signals it gets (and survives them), so the test can
# see exactly what reached it; it stays alive until SIGKILL.
SIGNAL_COUNTER = r"""
import json, os, signal, sys, time
def note(signum, frame):
    with open("signals.txt", "a") as fh:
        fh.write(f"{signum}\n")
signal.signal(signal.SIGINT, note)
signal.signal(signal.SIGTERM, note)
print(json.dumps({"type": "hello", "agent": "counter"}), flush=True)
print(json.dumps({"type": "message", "role": "assistant", "text": "working"}), flush=True)
open("ready", "w").close()
while True:
    time.sleep(0.05)
"""

# A protocol agent with a grandchild that ignores SIGTERM; it prints the grandchild's pid.
TERM_TRAPPING_GRANDCHILD = r"""
import json, subprocess, sys, time
g = subprocess.Popen(["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"])
with open("grandchild.pid", "w") as fh:
    fh.write(str(g.pid))
print(json.dumps({"type": "hello", "agent": "trapper"}), flush=True)
for i in range(100000):
    print(json.dumps({"type": "message", "role": "assistant", "text": f"tick {i}"}), flush=True)
    time.sleep(0.05)
"""


def alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def marked_processes(mark: str) -> list[int]:
    """Live processes whose environment holds AETHER_TEST_MARK=<mark>."""
    needle = f"AETHER_TEST_MARK={mark}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            env = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0") and alive(int(name)):
            found.append(int(name))
    return found


def start_aether(
    args: list[str], project: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.Popen(
        [sys.executable, "-m", "aether_cli", *args],
        cwd=project,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=full,
        start_new_session=True,
    )


def signals_seen(project: Path) -> list[int]:
    path = project / "signals.txt"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


# ------------------------------------------------------------------ 1. stop reaches the group


def test_a_grandchild_that_traps_term_is_gone_within_the_grace(project: Path) -> None:
    proc = start_aether(
        [
            "run",
            "--objective",
            "x",
            "--checkpoint-timeout",
            "0.3",
            "--max-duration",
            "1.5",
            "--",
            sys.executable,
            "-c",
            TERM_TRAPPING_GRANDCHILD,
        ],
        project,
        env=FAST_ENV,
    )
    assert wait_for(lambda: (project / "grandchild.pid").exists(), 20)
    gpid = int((project / "grandchild.pid").read_text())
    assert wait_for(lambda: not alive(gpid), 30), "the TERM-trapping grandchild outlived the stop"
    gone_at = time.time()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    ledger = next((project / ".memory" / "runs").glob("ses_*.jsonl"))
    terms = [r for r in read_ledger(ledger) if r.get("kind") == "escalate" and r.get("signal") == "SIGTERM"]
    assert terms, "aether never sent SIGTERM to the group"
    from datetime import datetime

    term_at = datetime.fromisoformat(terms[0]["ts"].replace("Z", "+00:00")).timestamp()
    # term grace (1 s) + 1 s, as the guarantee says, plus the 50 ms polling of this test.
    assert gone_at - term_at <= 2.2, f"grandchild gone {gone_at - term_at:.2f}s after SIGTERM"


# ------------------------------------------------------------------ 2. signals forwarded once


def test_ctrl_c_in_a_terminal_reaches_the_agent_exactly_once(project: Path) -> None:
    leader, follower = pty.openpty()

    def take_terminal() -> None:
        # After setsid (start_new_session), make the pty aether's controlling terminal, so
        # a typed ^C becomes SIGINT to aether's foreground group, as in a real shell.
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = dict(os.environ, **FAST_ENV)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aether_cli",
            "run",
            "--objective",
            "x",
            "--",
            sys.executable,
            "-c",
            SIGNAL_COUNTER,
        ],
        cwd=project,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        start_new_session=True,
        preexec_fn=take_terminal,
    )
    os.close(follower)
    output = bytearray()

    def pump() -> None:
        while select.select([leader], [], [], 0)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                return
            if not chunk:
                return
            output.extend(chunk)

    try:
        assert wait_for(lambda: (pump(), (project / "ready").exists())[1], 20)
        os.write(leader, b"\x03")  # the terminal's interrupt character: ^C
        end = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < end:
            pump()
            time.sleep(0.05)
        pump()
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert proc.wait(timeout=10) == 130, output.decode("utf-8", "replace")
    seen = signals_seen(project)
    assert seen.count(signal.SIGINT) == 1, seen
    cks = sorted((project / ".memory" / "checkpoints").glob("chk_*.json"))
    assert read_json(cks[-1])["trigger"] == "interrupt"


def test_sigterm_to_aether_reaches_the_agent_exactly_once(project: Path) -> None:
    proc = start_aether(
        ["run", "--objective", "x", "--", sys.executable, "-c", SIGNAL_COUNTER], project, env=FAST_ENV
    )
    assert wait_for(lambda: (project / "ready").exists(), 20)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143, out.decode()
    assert signals_seen(project).count(signal.SIGTERM) == 1, signals_seen(project)


# ------------------------------------------------------------------ 3. no orphans


def test_random_sigkills_of_aether_leave_no_process_of_the_run(project: Path) -> None:
    rng = random.Random(4)
    survivors: list[str] = []
    for i in range(KILLS):
        mark = uuid.uuid4().hex
        where = project / f"kill_{i}"
        where.mkdir()
        proc = start_aether(
            [
                "run",
                "--objective",
                "x",
                "--context-window",
                "4000",
                "--",
                *agent_cmd("stepper.py", "--steps", "400", "--payload", "200", "--delay", "0.01"),
            ],
            where,
            env={**FAST_ENV, "AETHER_TEST_MARK": mark},
        )
        time.sleep(rng.uniform(0.05, 1.5))
        proc.kill()
        proc.communicate(timeout=10)
        if not wait_for(lambda m=mark: not marked_processes(m), 5):  # type: ignore[misc]
            survivors.append(f"kill {i}: {marked_processes(mark)}")
            for pid in marked_processes(mark):
                os.kill(pid, signal.SIGKILL)
    assert not survivors, survivors


def test_resume_ends_a_grandchild_the_killed_run_left_behind(project: Path) -> None:
    proc = start_aether(
        ["run", "--objective", "x", "--", sys.executable, "-c", TERM_TRAPPING_GRANDCHILD],
        project,
        env=FAST_ENV,
    )
    assert wait_for(lambda: (project / "grandchild.pid").exists(), 20)
    gpid = int((project / "grandchild.pid").read_text())
    time.sleep(0.7)  # a heartbeat with the session is on disk
    proc.kill()
    proc.communicate(timeout=10)
    time.sleep(0.3)
    assert alive(gpid), "the grandchild ignores SIGTERM, so it survives aether's death"
    session = read_json(project / ".memory" / "session_continuity.json")["session_id"]
    assert gpid in session_processes(session)
    # The resumed run ends the leftover at once, then runs (and is stopped by) its own cap.
    res = aether("resume", env={**FAST_ENV, "AETHER_MAX_DURATION": "1", "AETHER_CHECKPOINT_TIMEOUT": "0.3"})
    assert not alive(gpid), res.stdout
    assert "left running by the dead run" in res.stdout


# ------------------------------------------------------------------ 4. zombies


def test_an_agent_that_double_forks_leaves_no_zombie(project: Path) -> None:
    agent = r"""
import json, os, subprocess, time
# The subshell exits at once; its child (sleep) is orphaned, adopted by aether, and exits.
out = subprocess.run(["sh", "-c", "sleep 0.3 & echo $!"], capture_output=True, text=True).stdout
with open("orphan.pid", "w") as fh:
    fh.write(out.strip())
for i in range(40):
    print(json.dumps({"type": "message", "role": "assistant", "text": f"tick {i}"}), flush=True)
    time.sleep(0.1)
print(json.dumps({"type": "done", "summary": "ok"}), flush=True)
"""
    proc = start_aether(["run", "--objective", "x", "--", sys.executable, "-c", agent], project, env=FAST_ENV)
    assert wait_for(lambda: (project / "orphan.pid").exists(), 20)
    orphan = int((project / "orphan.pid").read_text())
    time.sleep(2.5)  # the orphan ended after 0.3 s; aether reaps once a second
    assert proc.poll() is None, "the run should still be going"
    stat = Path(f"/proc/{orphan}/stat")
    state = stat.read_text().rsplit(")", 1)[1].split()[0] if stat.exists() else "gone"
    assert state == "gone", f"orphan {orphan} is in state {state} (Z = a zombie nobody reaped)"
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()


# ------------------------------------------------------------------ 5. back-off, injectable clock


def test_backoff_doubles_from_one_second_to_a_cap_with_jitter() -> None:
    rng = random.Random(7)
    for n in range(1, 12):
        nominal = min(60.0, 2.0 ** (n - 1))
        for _ in range(50):
            d = backoff_delay(n, 1.0, 60.0, rng)
            assert 0.8 * nominal <= d <= min(60.0, 1.2 * nominal)
    assert backoff_delay(1000, 1.0, 60.0, rng) <= 60.0
    delays = {round(backoff_delay(3, 1.0, 60.0, rng), 6) for _ in range(20)}
    assert len(delays) > 1, "no jitter"


class FakeClock:
    """A clock that only moves when the back-off sleeps (and by `per_call` on every read)."""

    def __init__(self, per_call: float = 0.0) -> None:
        self.now = 1000.0
        self.per_call = per_call
        self.slept: list[float] = []

    def __call__(self) -> float:
        self.now += self.per_call
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.slept.append(seconds)
        self.now += seconds
        return False


def crash_agent(project: Path, crashes: int) -> tuple[str, ...]:
    """An agent that exits 9 for its first `crashes` launches, then says done."""
    code = (
        "import json, pathlib, sys\n"
        "p = pathlib.Path('launches.txt')\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        f"if n <= {crashes}: sys.exit(9)\n"
        "print(json.dumps({'type': 'done', 'summary': 'ok'}), flush=True)\n"
    )
    return (sys.executable, "-c", code)


def supervise(project: Path, command: tuple[str, ...], clock: FakeClock, **kw: object) -> int:
    settings = Settings(command=command, objective="x", stop_grace=1, term_grace=1, **kw)  # type: ignore[arg-type]
    store = MemoryStore(project / ".memory")
    sup = Supervisor(settings, store, clock=clock, sleep=clock.sleep, rng=random.Random(1), cwd=project)
    return sup.run().exit_code


def test_crashes_back_off_and_stop_after_max_restarts_with_the_agents_code(project: Path) -> None:
    clock = FakeClock()
    code = supervise(project, crash_agent(project, 99), clock, max_restarts=3, min_uptime=10.0)
    assert code == C.EXIT_AGENT_CRASHED, "one fixed code; the agent's own is in the record"
    assert len(clock.slept) == 3
    for n, d in enumerate(clock.slept, start=1):
        assert 0.8 * 2 ** (n - 1) <= d <= 1.2 * 2 ** (n - 1)
    assert (project / "launches.txt").read_text() == "4"
    cont = read_json(project / ".memory" / "session_continuity.json")
    assert cont["status"] == "crashed" and cont["last_checkpoint"] and cont["agent_exit_code"] == 9


def test_a_crash_after_the_minimum_uptime_starts_the_count_again(project: Path) -> None:
    # Each read of the clock moves it 1 s, so every episode "runs" far longer than 2 s:
    # five crashes with --max-restarts 1 never stop the run, and the sixth launch is done.
    clock = FakeClock(per_call=1.0)
    code = supervise(project, crash_agent(project, 5), clock, max_restarts=1, min_uptime=2.0)
    assert code == 0
    assert (project / "launches.txt").read_text() == "6"
    assert all(d <= 1.2 for d in clock.slept), "the count restarted, so the delay stays at the first step"


def test_a_short_run_counts_as_a_failure(project: Path) -> None:
    # The same agent with a clock that stands still: every crash is within the minimum uptime.
    clock = FakeClock()
    code = supervise(project, crash_agent(project, 5), clock, max_restarts=1, min_uptime=2.0)
    assert code == C.EXIT_AGENT_CRASHED
    assert (project / "launches.txt").read_text() == "2"


# ------------------------------------------------------------------ 6. exit codes


@pytest.mark.parametrize(
    ("script", "code"),
    [
        ("import sys; sys.exit(3)", 3),
        ("import sys; sys.exit(255)", 255),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", 128 + signal.SIGSEGV),
    ],
)
def test_the_agents_exit_code_is_told_not_passed_through(project: Path, script: str, code: int) -> None:
    res = aether(
        "run", "--objective", "x", "--max-restarts", "0", "--", sys.executable, "-c", script, env=FAST_ENV
    )
    assert res.returncode == C.EXIT_AGENT_CRASHED, res.stdout + res.stderr
    assert f"the agent's own exit code was {code}" in res.stdout
    assert orjson.loads(aether("status", "--json").stdout)["agent_exit_code"] == code


# ------------------------------------------------------------------ 7. pipes


def test_ten_megabytes_on_stderr_only_does_not_deadlock(project: Path) -> None:
    agent = (
        "import sys\n"
        "line = 'e' * 99 + '\\n'\n"
        "for _ in range(100_000): sys.stderr.write(line)\n"
        "sys.stderr.flush()\n"
    )
    res = aether(
        "run", "--quiet", "--objective", "x", "--", sys.executable, "-c", agent, env=FAST_ENV, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("how", ["never-reads", "closes"])
def test_an_agent_that_ignores_or_closes_stdin_is_supervised(project: Path, how: str) -> None:
    pre = "import os; os.close(0)\n" if how == "closes" else ""
    agent = pre + (
        "import json, time\n"
        "for i in range(60):\n"
        "    call = {'type': 'tool_call', 'id': str(i), 'name': 'work', 'input': {'x': 'y' * 400}}\n"
        "    print(json.dumps(call), flush=True)\n"
        "    print(json.dumps({'type': 'tool_result', 'id': str(i), 'output': 'z' * 400}), flush=True)\n"
        "    time.sleep(0.01)\n"
    )
    res = aether(
        "run",
        "--objective",
        "x",
        "--context-window",
        "4000",
        "--checkpoint-timeout",
        "0.3",
        "--max-episodes",
        "2",
        "--",
        sys.executable,
        "-c",
        agent,
        env=FAST_ENV,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    ledger = next((project / ".memory" / "runs").glob("ses_*.jsonl"))
    kinds = [orjson.loads(line).get("kind") for line in ledger.read_bytes().splitlines() if line.strip()]
    assert kinds.count("checkpoint") >= 1 and kinds.count("launch") == 2


# ------------------------------------------------------------------ 17. a huge line


def test_a_100_mb_line_without_newline_keeps_aether_bounded_and_later_lines_count(project: Path) -> None:
    agent = (
        "import json, sys\n"
        "out = sys.stdout.buffer\n"
        "block = b'A' * 65536\n"
        "for _ in range(1600): out.write(block)\n"  # 100 MiB, no newline
        "out.write(b'\\n')\n"
        "for i in range(3):\n"
        "    line = {'type': 'message', 'role': 'assistant', 'text': f'after {i}'}\n"
        "    out.write(json.dumps(line).encode() + b'\\n')\n"
        "out.write(json.dumps({'type': 'done', 'summary': 'ok'}).encode() + b'\\n')\n"
        "out.flush()\n"
    )
    # A fresh process runs aether and reports the peak RSS of what it waited for: aether
    # (the agent under it streams in 64 KiB blocks), untouched by earlier tests' children.
    measure = (
        "import resource, subprocess, sys\n"
        "rc = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
        "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    env = dict(os.environ, **FAST_ENV)
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            measure,
            sys.executable,
            "-m",
            "aether_cli",
            "run",
            "--quiet",
            "--objective",
            "x",
            "--",
            sys.executable,
            "-c",
            agent,
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.split()
    rc, peak_mb = int(out[0]), int(out[1]) / 1024
    assert rc == 0
    assert peak_mb < 150, f"aether's peak RSS {peak_mb:.0f} MB for a 100 MiB line"
    ledger = next((project / ".memory" / "runs").glob("ses_*.jsonl"))
    records = [orjson.loads(line) for line in ledger.read_bytes().splitlines() if line.strip()]
    dropped = sum(r.get("dropped_bytes", 0) for r in records if r.get("kind") == "event")
    assert dropped >= 100 * 1024 * 1024 - (1 << 20), dropped
    texts = [r["event"].get("text") for r in records if r.get("kind") == "event"]
    assert [t for t in texts if t and t.startswith("after")] == ["after 0", "after 1", "after 2"]
    ck = read_json(sorted((project / ".memory" / "checkpoints").glob("chk_*.json"))[-1])
    assert ck["metrics"]["episode_tokens"] > 1_000_000, "the dropped bytes still count as context"


def test_a_reader_still_counting_at_the_exit_is_waited_for(project: Path) -> None:
    # After the agent exits, aether stops waiting for its stdout to close once the
    # reader has been idle for a second (a stray grandchild may hold the pipe), but
    # never while the reader is still working on a line: that line, and the ones
    # after it, would be lost. (Under load a 1 MiB line can take seconds to count.)
    streams = Streams("aether", len)
    exited_at = 100.0
    streams.active[1] = float("inf")  # busy with a line
    assert not streams.gave_up_on_eof(1, exited_at, exited_at + 30)
    streams.active[1] = time.monotonic()  # just finished a line
    assert not streams.gave_up_on_eof(1, exited_at, exited_at + 30)
    streams.active[1] = time.monotonic() - 2  # idle for 2 s: a held pipe
    assert streams.gave_up_on_eof(1, exited_at, exited_at + 30)
    assert not streams.gave_up_on_eof(1, exited_at, exited_at + 0.5), "too soon after the exit"
    assert not streams.gave_up_on_eof(1, None, exited_at + 30), "not exited"


# ------------------------------------------------------------------ 12. a failing disk, live


class HeartbeatDiskFull(files.OsFS):
    """A disk that refuses (ENOSPC) every write of the heartbeat and every ledger append."""

    def replace(self, src: Path, dst: Path) -> None:
        if Path(dst).name == "heartbeat.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().replace(src, dst)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".jsonl"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(fd, data)


class Notes:
    """A reporter that keeps aether's notices."""

    def __init__(self) -> None:
        self.notices: list[str] = []

    def event(self, ev: object) -> None: ...
    def stderr(self, text: str) -> None: ...
    def usage(self, **kw: object) -> None: ...
    def close(self) -> None: ...

    def notice(self, text: str, kind: str = "info") -> None:
        self.notices.append(text)


def test_a_failing_heartbeat_or_ledger_write_warns_once_and_the_agent_keeps_running(project: Path) -> None:
    settings = Settings(
        command=tuple(agent_cmd("stepper.py", "--steps", "30", "--payload", "800", "--delay", "0.02")),
        objective="x",
        context_window=4000,
        stop_grace=1,
        term_grace=1,
    )
    notes = Notes()
    with files.use_fs(HeartbeatDiskFull()):
        result = Supervisor(settings, MemoryStore(project / ".memory"), reporter=notes, cwd=project).run()
    assert result.exit_code == 0, notes.notices
    warned = [n for n in notes.notices if "keeps running" in n]
    assert len(warned) == 2, warned  # one for the heartbeat, one for the ledger: not one per write
    cks = sorted((project / ".memory" / "checkpoints").glob("chk_*.json"))
    assert len(cks) >= 2, "it relaunched and finished, checkpoints intact"
    assert read_json(project / ".memory" / "session_continuity.json")["status"] == "done"
