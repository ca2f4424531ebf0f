"""Where the agent's stream stands: mid-step or between steps, in a turn or not, quiet or not.

A stop waits for a safe point, and what a safe point is depends on the
format (`SAFE_POINTS`): "calls", no tool call in flight (protocol agents);
"turns", a step boundary of a turn-based CLI, every tool call the model asked
for has its result or the turn ended, so the model's next request has not been
answered and nothing it decided is lost; "quiet", a few seconds without
output (plain-text agents). `StreamPosition` follows the events to know which
holds now; for Claude in input mode it also follows the turns (a work turn
that ended means Claude waits for a message that will not come).

Knows nothing of budgets, stops, processes or the memory store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aether_cli import protocol as P
from aether_cli.adapters.base import TURN_WORK, Outcome, TurnEnd

# A plain-text agent is at a safe point after this many seconds without output.
QUIET_SECONDS = 2.0
SAFE_POINTS = {"claude": "turns", "codex": "turns", "text": "quiet"}


@dataclass
class StreamPosition:
    """The stream's position, as the events and the clock tell it."""

    kind: str = "calls"  # see SAFE_POINTS
    at_boundary: bool = False  # "turns": between steps now
    turn_open: bool = False  # a turn is running (its result line has not come)
    turn_ended: bool = False  # a work turn ended and nothing has been done about it yet
    last_output: float = float("-inf")
    _fresh_output: bool = False

    def output(self) -> None:
        """The agent printed something (its time is taken at the next `tick`)."""
        self._fresh_output = True

    def tick(self, now: float) -> None:
        if self._fresh_output:
            self._fresh_output, self.last_output = False, now

    def note(self, ev: P.Event, *, calls_open: bool) -> bool:
        """Follow one accepted event; True when it completed a step (its last open call returned)."""
        completed = False
        if isinstance(ev, P.ToolResult):
            self.at_boundary = completed = not calls_open
        elif isinstance(ev, Outcome | TurnEnd):
            self.at_boundary = True
        elif isinstance(ev, P.ToolCall | P.Usage) or (isinstance(ev, P.Message) and ev.role == "assistant"):
            # The model is answering: more of its blocks (a tool call after its text) may follow.
            self.at_boundary = False
        if isinstance(ev, TurnEnd):
            self.turn_open, self.turn_ended = False, ev.phase == TURN_WORK
        elif isinstance(ev, P.ToolCall | P.ToolResult | P.Usage | P.Message):
            self.turn_open = True
        return completed

    def settled(self, now: float, *, calls_open: bool, urgent: bool, recorded: Callable[[], bool]) -> bool:
        """Whether this is a safe point to stop. `urgent`: near overflow, the model's next request
        must not be waited for, no call in flight is enough. `recorded`: the agent has stored
        the completed step's output (Codex writes it to its thread a moment after printing it;
        stopped before that, the resumed thread has lost it and redoes the step)."""
        if calls_open:
            return False
        if self.kind == "calls" or urgent:
            return True
        if self.kind == "turns":
            return self.at_boundary and recorded()
        return now - self.last_output >= QUIET_SECONDS
