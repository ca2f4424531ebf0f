"""The context budget of one episode: how full the window is and which threshold
was just crossed.

aether's own estimate grows with every counted event; a `usage` event from the
agent replaces it with the model's figure, and events after it add on top.
Each threshold fires once per episode. Knows nothing of processes or files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SOFT = "soft"
CHECKPOINT = "checkpoint"
EMERGENCY = "emergency"
LEVELS = (SOFT, CHECKPOINT, EMERGENCY)


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
