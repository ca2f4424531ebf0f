"""Adapters: turn each supported agent's stdout into aether protocol events.

`make_adapter(fmt)` gives a fresh, stateful adapter for one episode;
`detect_format(argv)` guesses the format from the agent's command line.
"""

from __future__ import annotations

from aether_cli.adapters.aether import AetherAdapter
from aether_cli.adapters.argv import detect_format
from aether_cli.adapters.base import Adapter, Compaction, Outcome, StreamStarted
from aether_cli.adapters.claude import ClaudeAdapter
from aether_cli.adapters.codex import CodexAdapter
from aether_cli.adapters.gemini import GeminiAdapter
from aether_cli.adapters.text import TextAdapter
from aether_cli.errors import UsageError

FORMATS = ("aether", "claude", "codex", "gemini", "text")

_ADAPTERS: dict[str, type[Adapter]] = {
    "aether": AetherAdapter,
    "claude": ClaudeAdapter,
    "codex": CodexAdapter,
    "gemini": GeminiAdapter,
    "text": TextAdapter,
}

__all__ = [
    "FORMATS",
    "Adapter",
    "Compaction",
    "Outcome",
    "StreamStarted",
    "context_overhead",
    "detect_format",
    "make_adapter",
]


def make_adapter(fmt: str) -> Adapter:
    """A new adapter for one episode of an agent printing `fmt`; UsageError for an unknown format."""
    cls = _ADAPTERS.get(fmt)
    if cls is None:
        raise UsageError(f"unknown agent format {fmt!r}: use one of {', '.join(FORMATS)}")
    return cls()


def context_overhead(fmt: str, setting: int | None) -> int:
    """Tokens to add for what the agent holds but never prints: `setting`, else the format's default."""
    if setting is not None:
        return setting
    cls = _ADAPTERS.get(fmt)
    return cls.context_overhead if cls is not None else 0
