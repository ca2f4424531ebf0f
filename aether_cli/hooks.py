"""Running one hook: a person's shell command, told about one of aether's events.

A hook is the user's own command, like a git hook or a CI step: it runs through
`/bin/sh -c`, so pipes, `&&` and variables work as they would in a terminal.
It gets the event as one JSON object on stdin (from a temporary file, so a hook
that never reads stdin cannot block aether) and as `AETHER_*` variables
(`hook_env`). Its promises:

- it runs in its own session and process group; after `timeout` seconds the
  group gets SIGTERM, then SIGKILL; when the hook exits, whatever it left in its
  group is killed too (a job meant to outlive it must detach: `setsid`);
- its stdout and stderr go into one pipe read in chunks: the first and last
  `OUTPUT_HEAD`/`OUTPUT_TAIL` bytes are kept, the rest only counted, so a hook
  that prints 100 MB costs no memory;
- it never raises for what the hook does: a command that cannot start, fails or
  hangs is a `HookResult` saying so.

On Linux the hook gets SIGTERM if aether dies without stopping it (as the agent
does). This module knows nothing of the supervisor, the store or the terminal.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aether_cli.launcher import die_with_parent, exit_code_of

# The events a hook can be given (`--on-<event>`), in the order a run meets them.
HOOK_EVENTS = ("checkpoint", "relaunch", "crash", "done")
OUTPUT_HEAD = 4096
OUTPUT_TAIL = 4096
READ_CHUNK = 1 << 16
# After the hook exits, how long a descendant still holding its output pipe is waited for.
DRAIN_GRACE = 0.5
TERM_GRACE = 1.0
SHELL = "/bin/sh"
# The event's fields a hook also gets as variables: AETHER_<NAME>.
ENV_FIELDS = {
    "event": "AETHER_EVENT",
    "session": "AETHER_SESSION",
    "episode": "AETHER_EPISODE",
    "checkpoint": "AETHER_CHECKPOINT",
    "trigger": "AETHER_TRIGGER",
    "exit_code": "AETHER_EXIT_CODE",
    "status": "AETHER_STATUS",
}


@dataclass(frozen=True)
class HookResult:
    """What one hook did."""

    event: str
    # The hook's exit code (128+n for death by signal n); None if it never started.
    exit_code: int | None
    timed_out: bool
    seconds: float
    # The head and tail of its output (decoded, invalid UTF-8 replaced), with a marker between
    # them when the middle was dropped.
    output: str
    output_bytes: int
    # Why it did not start, if it did not.
    error: str | None = None

    @property
    def ok(self) -> bool:
        """It ran, ended in time and exited 0."""
        return self.exit_code == 0 and not self.timed_out and self.error is None

    def verdict(self) -> str:
        """A few words: 'ok', 'exit 3', 'timed out after 30s (killed)', 'could not start: …'."""
        if self.error is not None:
            return f"could not start: {self.error}"
        if self.timed_out:
            return f"timed out after {self.seconds:.0f}s (killed)"
        return "ok" if self.exit_code == 0 else f"exit {self.exit_code}"

    def record(self) -> dict[str, Any]:
        """The result as the run ledger keeps it."""
        return {
            "event": self.event, "exit_code": self.exit_code, "timed_out": self.timed_out,
            "seconds": round(self.seconds, 3), "output": self.output, "output_bytes": self.output_bytes,
            "error": self.error,
        }  # fmt: skip


class Capture:
    """The head and tail of a stream of bytes of any length, and its length."""

    def __init__(self, head: int = OUTPUT_HEAD, tail: int = OUTPUT_TAIL) -> None:
        self._head_max, self._tail_max = head, tail
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        """Take one chunk; memory stays within head + 2 x tail bytes."""
        self.total += len(data)
        room = self._head_max - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data[-self._tail_max :]
            if len(self.tail) > self._tail_max:
                del self.tail[: len(self.tail) - self._tail_max]

    def text(self) -> str:
        """The head, a marker naming the bytes left out (if any), the tail."""
        dropped = self.total - len(self.head) - len(self.tail)
        middle = f"\n[... {dropped:,} bytes left out ...]\n".encode() if dropped else b""
        return bytes(self.head + middle + self.tail).decode("utf-8", "replace")


def hook_env(base: Mapping[str, str], event: Mapping[str, Any], memory_dir: Path) -> dict[str, str]:
    """The hook's environment: `base` plus the event's fields as AETHER_* variables (an
    absent field is an absent variable, never a stale one from `base`)."""
    env = {k: v for k, v in base.items() if k not in ENV_FIELDS.values()}
    for name, var in ENV_FIELDS.items():
        value = event.get(name)
        if name == "checkpoint" and event.get("event") == "checkpoint":
            value = event.get("id")  # the checkpoint just written is the event's own id
        if value is not None:
            env[var] = str(value)
    env["AETHER_MEMORY_DIR"] = str(memory_dir)
    return env


def run_hook(
    event: str, command: str, payload: bytes, *, env: Mapping[str, str], timeout: float,
    cwd: Path | None = None, clock: Callable[[], float] = time.monotonic,
    cancelled: Callable[[], bool] = lambda: False,
) -> HookResult:
    """Run `command` through the shell with `payload` on stdin; wait at most `timeout` seconds,
    or until `cancelled()` says stop (the hook is then killed as at its timeout)."""
    start = clock()
    with tempfile.TemporaryFile() as stdin:
        stdin.write(payload)
        stdin.seek(0)
        try:
            proc = subprocess.Popen(
                [SHELL, "-c", command], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=dict(env), cwd=cwd, start_new_session=True, close_fds=True, preexec_fn=die_with_parent(),
            )  # fmt: skip
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            return HookResult(event, None, False, clock() - start, "", 0, error=reason)
    capture = Capture()
    deadline = start + timeout
    timed_out = not _read_until_done(proc, capture, deadline=deadline, clock=clock, cancelled=cancelled)
    if timed_out:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(TERM_GRACE)
    # The leader is a zombie or still running, so its group id is not reused yet: what it
    # left behind in its group goes now.
    _signal_group(proc.pid, signal.SIGKILL)
    status = proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    code = exit_code_of(status)
    return HookResult(event, code, timed_out, clock() - start, capture.text(), capture.total)


def _exited(pid: int) -> bool:
    """Whether `pid` has exited, without reaping it (so its group id stays taken)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _read_until_done(
    proc: subprocess.Popen[bytes], capture: Capture, *, deadline: float, clock: Callable[[], float],
    cancelled: Callable[[], bool],
) -> bool:
    """Read the hook's output until it exits and its pipe ends; False at the deadline."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            now = clock()
            if exited_at is None and _exited(proc.pid):
                exited_at = now
            if exited_at is not None and now - exited_at >= DRAIN_GRACE:
                return True  # a descendant holds the pipe: it is killed with the group
            if now >= deadline or cancelled():
                return exited_at is not None
            if not sel.select(min(0.05, deadline - now)):
                continue
            try:
                data = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                continue
            if not data:
                # End of output: now only the exit is waited for.
                sel.unregister(fd)
                return _wait_exit(proc, deadline, clock)
            capture.add(data)


def _wait_exit(proc: subprocess.Popen[bytes], deadline: float, clock: Callable[[], float]) -> bool:
    while not _exited(proc.pid):
        now = clock()
        if now >= deadline:
            return False
        time.sleep(min(0.01, deadline - now))
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
