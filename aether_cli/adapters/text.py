"""Plain-text agents: every stdout line is agent output, nothing more is known."""

from __future__ import annotations

from aether_cli import protocol as P
from aether_cli.adapters.base import Adapter, text_event


class TextAdapter(Adapter):
    """Every non-empty line becomes a `text` event, even one that looks like JSON.

    The user chose `text` because the agent's output is not a format we
    understand; guessing at JSON-looking lines would make a tool that prints
    `{"type": "done"}` end the run.
    """

    name = "text"

    def _feed(self, line: str) -> list[P.Event]:
        return [text_event(line)] if line else []
