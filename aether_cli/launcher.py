"""Starting and stopping the agent process.

Owns the child's lifetime: a new session (so the child and everything it
starts form one process group aether can signal as a whole), separate pipes
for stdin, stdout (the protocol channel) and stderr (diagnostics), a writer
thread so a child that never reads stdin cannot block aether, and the stop
escalation: `stop` command, then SIGTERM to the group, then SIGKILL.
It knows nothing of what the agent says.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aether_cli.errors import AetherError


class SpawnError(AetherError):
    """The agent command could not be started."""


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

    def terminate(
        self, *, term_grace: float, on_escalate: Callable[[str], None] | None = None
    ) -> int:
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


def exit_code_of(status: int) -> int:
    """Shell-style exit code: the code itself, or 128+n for death by signal n."""
    return 128 - status if status < 0 else status


def describe_status(status: int) -> str:
    """A short phrase for an exit status: 'exit 3' or 'killed by SIGKILL'."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"killed by {name}"
    return f"exit {status}"


def spawn(argv: Sequence[str], *, env: Mapping[str, str], cwd: str | None = None) -> Child:
    """Start the agent in its own session with three pipes; SpawnError if it cannot start."""
    if not argv:
        raise SpawnError("no agent command given (put it after `--`)")
    exe = argv[0]
    if os.sep not in exe and shutil.which(exe, path=env.get("PATH")) is None:
        raise SpawnError(f"agent command not found: {exe}")
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    except FileNotFoundError:
        raise SpawnError(f"agent command not found: {exe}") from None
    except PermissionError:
        raise SpawnError(f"agent command is not executable: {exe}") from None
    except OSError as exc:
        raise SpawnError(f"cannot start agent {exe}: {exc.strerror or exc}") from None
    child = Child(proc=proc, argv=tuple(argv), started=time.monotonic())
    child.start_writer()
    return child
