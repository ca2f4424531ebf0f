"""The run's own events as they happen: each one to the `--events` stream and to its hook.

The session and the cycle call `RunEvents.emit` at each of aether's moments
(start, launch, relaunch, checkpoint, threshold, crash, done; docs/hooks.md
lists their fields). The event goes to the stream, if there is one; for the
four hook events (`hooks.HOOK_EVENTS`) the user's hook then runs, in this
thread: the run waits for it, at most `hook_timeout` seconds (a second Ctrl-C
cuts it short), so hooks run one at a time, in the order of the events, and
none outlives the run. What it did goes to the run ledger (a "hook" record,
its output capped and redacted) and to a notice: a dim one when it worked, one
warning when it did not; the run goes on either way.

Knows nothing of Typer or Rich, nor of how the agent runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from aether_cli.event_stream import EventStream, event_record
from aether_cli.hooks import HOOK_EVENTS, HookResult, hook_env, run_hook
from aether_cli.redact import redact_text
from aether_cli.settings import Settings

# The last lines of a hook's output shown in its notice (all of it is in the ledger).
SHOWN_LINES = 5
SHOWN_LINE_CHARS = 200


class RunEvents:
    """Where one run's events go: the stream and the hooks."""

    def __init__(
        self, settings: Settings, stream: EventStream | None, *, memory_dir: Path,
        environ: dict[str, str], cwd: Path, record: Callable[..., None],
        notice: Callable[[str, str], None], cancelled: Callable[[], bool] = lambda: False,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.stream = stream
        self.memory_dir = memory_dir
        self.environ = environ
        self.cwd = cwd
        self.record = record
        self.notice = notice
        self.cancelled = cancelled
        self.session = ""

    def emit(self, event: str, /, **fields: Any) -> None:
        """Write the event line, then run the event's hook (if one is set) and wait for it."""
        if self.stream is not None:
            self.stream.session = self.session
            self.stream.emit(event, **fields)
        command = self.settings.hook(event) if event in HOOK_EVENTS else None
        if command is not None:
            self._run(event, command, fields)

    def _run(self, event: str, command: str, fields: dict[str, Any]) -> None:
        data = event_record(event, self.session, fields)
        payload = orjson.dumps(data, default=str) + b"\n"
        result = run_hook(
            event, command, payload, env=hook_env(self.environ, data, self.memory_dir),
            timeout=self.settings.hook_timeout, cwd=self.cwd, cancelled=self.cancelled,
        )  # fmt: skip
        ledger = result.record()
        ledger["output"] = redact_text(result.output)
        self.record("hook", **ledger)
        self.notice(*_notice(result))
        if self.stream is not None:
            self.stream.emit(
                "hook", hook=event, ok=result.ok, exit_code=result.exit_code,
                timed_out=result.timed_out, seconds=round(result.seconds, 3),
            )  # fmt: skip

    def close(self) -> None:
        """Close the stream (after the last event)."""
        if self.stream is not None:
            self.stream.close()


def _notice(result: HookResult) -> tuple[str, str]:
    """The notice of a hook's result: (text, kind)."""
    lines = [ln[:SHOWN_LINE_CHARS] for ln in redact_text(result.output).splitlines() if ln.strip()]
    shown = "".join(f"\n  | {ln}" for ln in lines[-SHOWN_LINES:])
    name = f"on-{result.event} hook"
    if result.ok:
        return f"{name}: ok ({result.seconds:.1f}s){shown}", "hook"
    return f"{name} {result.verdict()}; the run goes on (its output is in the run ledger){shown}", "warn"
