"""Where the supervisor says what happens: the `Reporter` protocol and a silent one.

The terminal's reporter lives in `render` (Rich); library use and tests take
`NullReporter`. Knows nothing of Rich, Typer or the supervisor's state.
"""

from __future__ import annotations

from typing import Protocol

from aether_cli import protocol as P


class Reporter(Protocol):
    """Where the supervisor says what happens (the terminal, or nothing).

    A notice's `kind` is "info", "ok", "warn" or "error"; "checkpoint" (one was
    written) and "launch" (an episode began) are "ok" notices a view may lift out;
    "hook" (a hook ran and worked, with the end of its output) is an "info" one a view may dim.
    """

    def event(self, ev: P.Event) -> None: ...
    def stderr(self, text: str) -> None: ...
    def notice(self, text: str, kind: str = "info") -> None: ...
    def usage(self, *, episode: int, used: int, window: int, reported: bool) -> None: ...
    def close(self) -> None: ...


class NullReporter:
    """Says nothing (for library use and tests)."""

    def event(self, ev: P.Event) -> None:
        """Ignore an agent event."""

    def stderr(self, text: str) -> None:
        """Ignore a stderr line."""

    def notice(self, text: str, kind: str = "info") -> None:
        """Ignore a notice."""

    def usage(self, *, episode: int, used: int, window: int, reported: bool) -> None:
        """Ignore a usage update."""

    def close(self) -> None:
        """Nothing to close."""
