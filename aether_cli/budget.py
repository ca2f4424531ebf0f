"""The context budget of one episode and every rule about *when* to checkpoint.

`Budget` says how full the window is and which threshold was just crossed:
aether's own estimate grows with every counted event; a `usage` event from the
agent replaces it with the model's figure, and events after it add on top.
Each threshold fires once per episode.

`Triggers` turns what happens in an episode (an event, a crossed threshold, a
manual request, the agent's done, the duration cap) into the one checkpoint
the episode wants, with the precedence between them in one place.
`decide_window` and `limit_tokens` are the only places the window and a
threshold in tokens are computed.

Knows nothing of processes, files, settings objects or the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from aether_cli import protocol as P

SOFT = "soft"
CHECKPOINT = "checkpoint"
EMERGENCY = "emergency"
LEVELS = (SOFT, CHECKPOINT, EMERGENCY)


def decide_window(*, user: int | None, agent: int | None, default: int) -> int:
    """The context window: the user's (a flag or the model's), else the agent's hello, else the default."""
    return user or agent or default


def limit_tokens(window: int, fraction: float) -> int:
    """A threshold in tokens: `fraction` of `window`, rounded down."""
    return int(window * fraction)


@dataclass
class Budget:
    """Token usage of the running episode against the window."""

    window: int
    soft_at: float
    checkpoint_at: float
    emergency_at: float
    max_steps: int | None = None
    base: int = 0
    since_base: int = 0
    reported: bool = False
    steps: int = 0
    fired: set[str] = field(default_factory=set)

    @property
    def used(self) -> int:
        """Tokens in context now (reported figure plus what came after it)."""
        return self.base + self.since_base

    @property
    def checkpoint_limit(self) -> int:
        """Tokens at which the episode checkpoints."""
        return limit_tokens(self.window, self.checkpoint_at)

    @property
    def fraction(self) -> float:
        """Used share of the window."""
        return self.used / self.window if self.window else 0.0

    def reset(self, prompt_tokens: int) -> None:
        """Start a new episode whose context holds only the launch prompt."""
        self.base = prompt_tokens
        self.since_base = 0
        self.reported = False
        self.steps = 0
        self.fired.clear()

    def add(self, tokens: int) -> None:
        """Count an event's tokens."""
        self.since_base += tokens

    def report(self, context_tokens: int) -> None:
        """The model's own count of its context replaces the estimate."""
        self.base = context_tokens
        self.since_base = 0
        self.reported = True

    def step(self) -> bool:
        """Count one step (a tool call); True when the step limit is reached now."""
        self.steps += 1
        return self.max_steps is not None and self.steps == self.max_steps

    def crossed(self) -> list[str]:
        """Thresholds crossed since the last call, lowest first (each fires once per episode)."""
        f = self.fraction
        out = []
        for level, at in (
            (SOFT, self.soft_at),
            (CHECKPOINT, self.checkpoint_at),
            (EMERGENCY, self.emergency_at),
        ):
            if f >= at and level not in self.fired:
                self.fired.add(level)
                out.append(level)
        return out


class Want(NamedTuple):
    """A checkpoint an episode wants: why, and whether it cannot wait for the agent."""

    trigger: str
    urgent: bool


@dataclass
class Triggers:
    """Which checkpoint the running episode wants, if any.

    Precedence: an urgent want (emergency, done) is never replaced by a calm one;
    the budget threshold replaces a calm want; the other calm triggers (task done,
    steps, error, agent, manual) only fill an empty slot; the duration cap and the
    agent's done replace whatever was there.
    """

    on_task_done: bool = False
    on_error: bool = False
    on_agent: bool = False
    want: Want | None = None

    def _offer(self, trigger: str) -> None:
        if self.want is None:
            self.want = Want(trigger, False)

    def event(self, ev: P.Event, budget: Budget) -> None:
        """Judge one accepted agent event (after the budget counted it)."""
        if isinstance(ev, P.TaskUpdate) and self.on_task_done and ev.fields.get("status") == "done":
            self._offer("task_done")
        if isinstance(ev, P.ToolCall) and budget.step():
            self._offer("steps")
        if self.on_error and (
            (isinstance(ev, P.ToolResult) and ev.is_error)
            or (isinstance(ev, P.Log) and ev.level in ("error", "critical"))
        ):
            self._offer("error")
        if isinstance(ev, P.CheckpointEvent) and self.on_agent:
            self._offer("agent")

    def crossed(self, level: str) -> None:
        """A budget threshold was crossed."""
        if level == EMERGENCY:
            self.want = Want("emergency", True)
        elif level == CHECKPOINT and (self.want is None or not self.want.urgent):
            self.want = Want("budget", False)

    def manual(self) -> None:
        """`aether checkpoint` asked for one."""
        self._offer("manual")

    def done(self) -> None:
        """The agent said it is done: stop it, no questions asked."""
        self.want = Want("done", True)

    def capped(self) -> None:
        """--max-duration ran out: stop resumably."""
        self.want = Want("interrupt", False)

    @property
    def urgent(self) -> bool:
        """True when the wanted checkpoint cannot wait for an answer."""
        return self.want is not None and self.want.urgent
