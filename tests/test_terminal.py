"""What a person sees: a live context line and colour in a terminal, plain lines in a pipe."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
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
    assert re.search(r"context \[#+\.*\] +\d+\.\d% +[\d,]+/4,000 tokens \(counted\)", plain)
    assert "→ run_step" in plain  # one line per tool call


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
    out = b""
    end = time.monotonic() + 20
    while b"session" not in out and time.monotonic() < end:
        if select.select([leader], [], [], 0.2)[0]:
            out += os.read(leader, 65536)
    time.sleep(1.5)  # at least one refresh
    proc.send_signal(2)
    code = proc.wait(timeout=10)
    os.close(leader)
    assert b"session" in out and b"stopped" in out
    assert code == 0
