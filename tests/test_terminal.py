"""What a person sees: a live context line and colour in a terminal, plain lines in a pipe."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import aether, agent_cmd

pytestmark = pytest.mark.slow

RUN = ["run", "--objective", "do the steps", "--context-window", "4000", "--"]


def run_in_pty(args: list[str], cwd: Path, timeout: float = 60) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdout/stderr; return (exit code, all output)."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    env.update({"TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "aether_cli", *args],
        cwd=cwd,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
        close_fds=True,
    )
    os.close(follower)
    chunks: list[bytes] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the terminal closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    code = proc.wait(timeout=10)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_terminal_gets_a_live_context_line_and_colour(project: Path) -> None:
    code, out = run_in_pty(
        [*RUN, *agent_cmd("stepper.py", "--steps", "30", "--payload", "800", "--delay", "0.05")], project
    )
    assert code == 0, out
    assert "\x1b[" in out  # styled output
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert re.search(r"episode \d+ [█░│]{24} +\d+% +[\d,]+/4,000 tokens", plain)
    # The agent's lines are folded into one live line (which line a frame catches depends on
    # timing), and each stretch leaves its count in the scrollback.
    assert "agent ▸ " in plain and re.search(r"┆ \d+ agent lines, \d+ tool calls", plain)
    assert "→ run_step" not in re.sub(r"agent ▸ [^\n]*", "", plain), "no agent line on its own"


def test_pipe_gets_plain_lines_without_escape_codes(project: Path) -> None:
    res = aether(*RUN, *agent_cmd("stepper.py", "--steps", "30", "--payload", "800", "--delay", "0.02"))
    assert res.returncode == 0, res.stderr
    assert "\x1b[" not in res.stdout
    assert "context [" not in res.stdout  # no live line in a pipe
    assert "aether checkpoint chk_000001_" in res.stdout
    assert "→ run_step" in res.stdout


def test_quiet_hides_the_agent_but_not_aether(project: Path) -> None:
    res = aether(
        "run",
        "--quiet",
        *RUN[1:],
        *agent_cmd("stepper.py", "--steps", "30", "--payload", "800", "--delay", "0.02"),
    )
    assert res.returncode == 0, res.stderr
    assert "→ run_step" not in res.stdout
    assert "aether checkpoint" in res.stdout and "aether episode 2" in res.stdout


def read_until(leader: int, done: Callable[[bytes], bool], out: bytes = b"", limit: float = 60) -> bytes:
    """Read the terminal until `done(output)` holds or it closes; `limit` only stops a hang."""
    end = time.monotonic() + limit
    while not done(out) and time.monotonic() < end:
        if not select.select([leader], [], [], 0.2)[0]:
            continue
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: every process holding the terminal has closed it
            break
        if not data:
            break
        out += data
    return out


def test_status_watch_refreshes_until_ctrl_c(project: Path) -> None:
    assert aether("run", "--objective", "x", "--", sys.executable, "-c", "pass").returncode == 0
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aether_cli", "status", "--watch"],
        cwd=project,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    os.close(follower)
    # "checkpoints" is the last row of a frame: seen twice, the view was drawn whole and then
    # redrawn, so the refresh loop (where Ctrl-C is expected) is running.
    out = read_until(leader, lambda o: o.count(b"checkpoints") >= 2)
    assert out.count(b"checkpoints") >= 2, out
    proc.send_signal(signal.SIGINT)
    out = read_until(leader, lambda o: False, out)  # to the end: the process has exited
    code = proc.wait(timeout=60)
    os.close(leader)
    assert b"session" in out and b"stopped" in out
    assert b"interrupted" not in out
    assert code == 0
