"""Starting and stopping the agent process.

Owns the child's lifetime: a new session (so the child and everything it
starts form one process group aether can signal as a whole), separate pipes
for stdin, stdout (the protocol channel) and stderr (diagnostics), a writer
thread so a child that never reads stdin cannot block aether, the stop
escalation (SIGTERM to the group, then SIGKILL), the clean-up after an episode,
ending what a dead supervisor left running (found through /proc), and the
back-off between crash restarts. It knows nothing of what the agent says.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aether_cli.errors import AetherError


class SpawnError(AetherError):
    """The agent command could not be started."""


# prctl(2) options (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


# Resolved once in the parent: between fork and exec the child must do as little as possible.
_PRCTL = _load_prctl()


def _die_with_parent_of(parent: int) -> Callable[[], None]:
    def arm() -> None:
        # Runs in the child between fork and exec. If aether is SIGKILLed it cannot stop
        # the agent; the kernel then sends SIGTERM on its behalf (the agent may clean up).
        # If aether died before this line ran, the signal will never come: exit now.
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != parent:
                os._exit(143)

    return arm


def die_with_parent() -> Callable[[], None] | None:
    """The `preexec_fn` that has a child of this process get SIGTERM when it dies (Linux),
    or None where that cannot be arranged."""
    return _die_with_parent_of(os.getpid()) if _PRCTL is not None else None


def become_subreaper() -> bool:
    """Make this process adopt its orphaned descendants (Linux), so none is left a zombie
    under an init that does not reap (as in many containers). True if it worked."""
    return _PRCTL is not None and _PRCTL(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def reap_orphans(keep: int | None) -> list[int]:
    """Reap exited adopted descendants (zombies) of this process, except `keep` (the agent,
    whose status Popen collects). Returns the reaped pids. Cheap; safe to call often."""
    reaped: list[int] = []
    for pid in _zombie_children():
        if pid == keep:
            continue
        with contextlib.suppress(ChildProcessError, OSError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped.append(pid)
    return reaped


def _zombie_children() -> list[int]:
    me = os.getpid()
    pids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{me}/task")
    except OSError:
        return pids
    for tid in tasks:
        try:
            with open(f"/proc/{me}/task/{tid}/children", encoding="ascii") as fh:
                pids.extend(int(p) for p in fh.read().split())
        except (OSError, ValueError):
            continue
    zombies = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The state follows the command name, which is in parentheses and may hold spaces.
        if stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "Z":
            zombies.append(pid)
    return zombies


@dataclass
class Child:
    """A running agent process and its pipes."""

    proc: subprocess.Popen[bytes]
    argv: tuple[str, ...]
    started: float
    _outbox: queue.SimpleQueue[bytes | None] = field(default_factory=queue.SimpleQueue)
    _writer: threading.Thread | None = None
    stdin_closed: bool = False

    @property
    def pid(self) -> int:
        """The child's pid, which is also its process group id."""
        return self.proc.pid

    def start_writer(self) -> None:
        """Start the thread that feeds stdin, so sends never block the caller."""
        self._writer = threading.Thread(target=self._write_loop, name="aether-stdin", daemon=True)
        self._writer.start()

    def _write_loop(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        while True:
            data = self._outbox.get()
            if data is None:
                break
            try:
                stdin.write(data)
                stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                # The child closed stdin or exited: commands are advisory, the
                # stop escalation does not depend on them being read.
                self.stdin_closed = True
                break
        with contextlib.suppress(OSError, ValueError):
            stdin.close()

    def send(self, data: bytes) -> None:
        """Queue one command line for the child's stdin; never blocks."""
        if not self.stdin_closed:
            self._outbox.put(data)

    def close_stdin(self) -> None:
        """Close stdin after what is queued (the child sees EOF)."""
        self._outbox.put(None)

    def signal_group(self, sig: int) -> bool:
        """Send a signal to the child's whole process group; False if it is gone."""
        try:
            os.killpg(self.proc.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def poll(self) -> int | None:
        """The exit status (negative signal number if killed), or None while running."""
        return self.proc.poll()

    def wait(self, timeout: float) -> int | None:
        """Wait up to `timeout` seconds for exit; the status, or None if still running."""
        try:
            return self.proc.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, *, term_grace: float, on_escalate: Callable[[str], None] | None = None) -> int:
        """SIGTERM the group, then SIGKILL after `term_grace`; returns the exit status.

        The group is killed even after the leader exits, so grandchildren that
        ignore the leader's death do not outlive the episode.
        """
        status = self.poll()
        if status is None:
            if on_escalate:
                on_escalate("SIGTERM")
            self.signal_group(signal.SIGTERM)
            status = self.wait(term_grace)
        if status is None:
            if on_escalate:
                on_escalate("SIGKILL")
            self.signal_group(signal.SIGKILL)
            status = self.proc.wait()
        self.signal_group(signal.SIGKILL)
        return status

    def finish(self) -> None:
        """End the episode's process: stdin closed, the whole group killed, the pipes closed."""
        self.close_stdin()
        # Leftover group members (a backgrounded grandchild) must not outlive the episode.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=1)
        for pipe in (self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                if pipe is not None:
                    pipe.close()


def exit_code_of(status: int) -> int:
    """Shell-style exit code: the code itself, or 128+n for death by signal n."""
    return 128 - status if status < 0 else status


def signal_name(status: int) -> str | None:
    """The name of the signal an exit status says killed the process ('SIGKILL'), else None."""
    if status >= 0:
        return None
    try:
        return signal.Signals(-status).name
    except ValueError:
        return f"signal {-status}"


def describe_status(status: int) -> str:
    """A short phrase for an exit status: 'exit 3' or 'killed by SIGKILL'."""
    name = signal_name(status)
    return f"killed by {name}" if name else f"exit {status}"


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None = None, stdin_pipe: bool = True
) -> Child:
    """Start the agent in its own session; SpawnError if it cannot start.

    stdout and stderr are pipes. stdin is a pipe for protocol agents; with
    `stdin_pipe=False` it is /dev/null, because CLIs that take their prompt as
    an argument (claude -p, codex exec) otherwise wait for stdin to close.
    On Linux the child gets SIGTERM if aether dies without stopping it.
    """
    if not argv:
        raise SpawnError("no agent command given (put it after `--`)")
    exe = argv[0]
    if os.sep not in exe and shutil.which(exe, path=env.get("PATH")) is None:
        raise SpawnError(f"agent command not found: {exe}")
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            preexec_fn=die_with_parent(),
        )
    except FileNotFoundError:
        raise SpawnError(f"agent command not found: {exe}") from None
    except PermissionError:
        raise SpawnError(f"agent command is not executable: {exe}") from None
    except OSError as exc:
        raise SpawnError(f"cannot start agent {exe}: {exc.strerror or exc}") from None
    child = Child(proc=proc, argv=tuple(argv), started=time.monotonic())
    if stdin_pipe:
        child.start_writer()
    else:
        child.stdin_closed = True
    return child


def session_processes(session_id: str) -> list[int]:
    """Pids of live processes launched for `session_id`: those whose environment holds
    its AETHER_SESSION (inherited by the agent's own children). Matching the environment,
    not a stored pid, means a recycled pid is never taken for the agent."""
    marker = f"AETHER_SESSION={session_id}".encode()
    me = os.getpid()
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for name in entries:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            env = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            found.append(int(name))
    return found


def end_session_processes(session_id: str) -> list[int]:
    """SIGKILL whatever a dead supervisor of `session_id` left running; the pids signalled."""
    killed = []
    for pid in session_processes(session_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def backoff_delay(restarts: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before crash restart number `restarts` (1, 2, …): `base` doubling per
    restart up to `cap`, with ±20% jitter so many supervisors do not retry in step."""
    raw = min(cap, base * (2 ** min(restarts - 1, 62)))
    return min(cap, raw * rng.uniform(0.8, 1.2))
