"""`--events FILE|-`: aether's own events as JSON lines, for dashboards and CI.

One line per event, each `{"ts": ..., "event": ..., "session": ..., <fields>}`,
flushed as it is written, appended to FILE (so runs and resumes add to one
log) or written to stderr for `-`. A FILE that cannot be opened is a
`UsageError` before anything starts; a write that fails later (a full disk, a
reader that went away) is told once through `on_fail` and the stream goes
quiet: a dashboard must never stop the run.

`StreamingReporter` puts the `Reporter` calls into the stream too: every
notice, and the context usage at most once a second per episode.

Knows nothing of the supervisor, the store or the terminal.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import orjson

from aether_cli import protocol as P
from aether_cli.errors import UsageError
from aether_cli.reporter import Reporter
from aether_cli.store.clock import iso_utc, utc_now

STDERR = "-"
# Usage lines are this far apart at least (per episode), so a chatty agent cannot flood a dashboard.
USAGE_EVERY = 1.0


def event_record(event: str, session: str, fields: dict[str, Any]) -> dict[str, Any]:
    """One event as the stream writes it and a hook reads it on stdin."""
    return {"ts": iso_utc(utc_now()), "event": event, "session": session, **fields}


class EventStream:
    """The writer of one run's event lines."""

    def __init__(self, out: IO[Any], *, name: str, owned: bool) -> None:
        # `owned`: a file this stream opened (binary, closed at the end); else stderr (text).
        self._out: IO[Any] | None = out
        self.name = name
        self._owned = owned
        self.session = ""
        self.failed: str | None = None
        self.on_fail: Callable[[str], None] = lambda _reason: None

    @classmethod
    def open(cls, target: str) -> EventStream:
        """The stream for `--events target`; UsageError if the file cannot be opened."""
        if target == STDERR:
            return cls(sys.stderr, name="stderr", owned=False)
        try:
            out = open(target, "ab")  # noqa: SIM115 (held for the whole run, closed by close())
        except OSError as exc:
            raise UsageError(f"--events: cannot open {target}: {exc.strerror or exc}") from None
        return cls(out, name=target, owned=True)

    def emit(self, event: str, /, **fields: Any) -> None:
        """Write one event line (fields that are not JSON are written as text)."""
        if self._out is None:
            return
        line = orjson.dumps(event_record(event, self.session, fields), default=str) + b"\n"
        try:
            if self._owned:
                self._out.write(line)
            else:
                self._out.write(line.decode())
            self._out.flush()
        except (OSError, ValueError) as exc:
            # Quiet first: the warning below is itself a notice that would come back here.
            self.failed = f"{self.name}: {getattr(exc, 'strerror', None) or exc}"
            self.close()
            self.on_fail(f"--events stopped: cannot write {self.failed}; the run goes on")

    def close(self) -> None:
        """Close the file (never stderr)."""
        out, self._out = self._out, None
        if out is not None and self._owned:
            # What a failed write left in the buffer cannot be written either: the file closes anyway.
            with contextlib.suppress(OSError, ValueError):
                out.close()


class StreamingReporter:
    """A `Reporter` that tells `inner` everything and puts notices and usage in `stream`."""

    def __init__(
        self, inner: Reporter, stream: EventStream, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.inner = inner
        self.stream = stream
        self._clock = clock
        self._last_usage: tuple[int, float] | None = None
        stream.on_fail = lambda text: inner.notice(text, "warn")

    def event(self, ev: P.Event) -> None:
        """The agent's events are the ledger's, not the stream's."""
        self.inner.event(ev)

    def stderr(self, text: str) -> None:
        """The agent's stderr is the ledger's, not the stream's."""
        self.inner.stderr(text)

    def notice(self, text: str, kind: str = "info") -> None:
        """Shown, then streamed as a "notice" event (text, kind)."""
        self.inner.notice(text, kind)
        self.stream.emit("notice", text=text, kind=kind)

    def usage(self, *, episode: int, used: int, window: int, reported: bool) -> None:
        """Shown, and streamed as a "usage" event at most once a second per episode."""
        self.inner.usage(episode=episode, used=used, window=window, reported=reported)
        now = self._clock()
        last = self._last_usage
        if last is not None and last[0] == episode and now - last[1] < USAGE_EVERY:
            return
        self._last_usage = (episode, now)
        fraction = round(used / window, 4) if window else 0.0
        self.stream.emit(
            "usage", episode=episode, used=used, window=window, fraction=fraction, reported=reported
        )

    def close(self) -> None:
        """Close the inner reporter; the stream is closed by its owner."""
        self.inner.close()
