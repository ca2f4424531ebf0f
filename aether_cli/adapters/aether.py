"""Agents that speak the aether line protocol natively."""

from __future__ import annotations

from aether_cli import protocol as P
from aether_cli.adapters.base import Adapter


class AetherAdapter(Adapter):
    """Protocol-v1 lines decode as they are: the agent's own events, its own usage figures."""

    name = "aether"
    speaks_protocol = True
    usage_is_context = True

    def _feed(self, line: str) -> list[P.Event]:
        return [P.decode_line(line)]
