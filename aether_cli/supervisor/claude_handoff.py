"""Asking a stopped Claude Code for its own handoff, in its own session.

Claude Code run with `--input-format stream-json` reads its user messages on
stdin, so at a step boundary aether can still talk to it: end the running turn
with the interrupt control request, wait for that turn's `result`, send the
handoff request as the next user message, and read the answer from the handoff
turn's `result`. `ClaudeHandoff` is that exchange as a small state machine fed
the adapter's events (`Ack`, `TurnEnd`) and a clock; it ends with a
`HandoffResult`: the validated state, or the reason it failed (no answer in
time, a refused answer, stdin closed). Every failure falls back to rules.

    INTERRUPTING (interrupt sent) ──result of the cut turn──► ASKING (request sent)
    ASKING ──result of the handoff turn──► DONE (answer parsed)
    any ──deadline──► DONE (failed)

Knows nothing of processes (it writes through `send`), episodes or stores.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from aether_cli import protocol as P
from aether_cli.adapters import claude_input as CI
from aether_cli.adapters.base import TURN_HANDOFF, Ack, TurnEnd
from aether_cli.distill import Counter, HandoffResult
from aether_cli.handoff import parse_handoff

# How long the whole exchange may take before rules stand in: the interrupted turn's end
# comes within a second or two, the answer is one model turn of a few hundred tokens.
HANDOFF_TIMEOUT = 120.0


class Stage(Enum):
    """Where the exchange stands."""

    INTERRUPTING = "interrupting"
    ASKING = "asking"
    DONE = "done"


class ClaudeHandoff:
    """One handoff exchange with a Claude Code reading stream-json on stdin."""

    def __init__(
        self,
        send: Callable[[bytes], None],
        *,
        request: str,
        max_tokens: int,
        count: Counter,
        timeout: float = HANDOFF_TIMEOUT,
    ) -> None:
        self._send = send
        self._request = request
        self._max_tokens = max_tokens
        self._count = count
        self._timeout = timeout
        self.stage = Stage.INTERRUPTING
        self.result: HandoffResult | None = None
        self._started = 0.0
        self._deadline = 0.0
        self._interrupt_id = ""
        self._answer: tuple[dict[str, Any] | None, str, int | None] | None = None
        # The running turn is cut (the interrupt acknowledged, or no turn ran): a call Claude
        # announces from then on never runs. One announced before may have started.
        self.cut = False

    def start(self, now: float, *, turn_running: bool) -> None:
        """Begin: cut the running turn first, or, between turns, ask at once."""
        self._started, self._deadline = now, now + self._timeout
        if turn_running:
            self._interrupt_id, line = CI.interrupt_request()
            self._send(line)
            self.stage = Stage.INTERRUPTING
        else:
            self.cut = True
            self._ask()

    def _ask(self) -> None:
        self._send(CI.handoff_message(self._request))
        self.stage = Stage.ASKING

    def event(self, ev: P.Event) -> None:
        """One event of Claude's stream while the exchange runs."""
        if self.stage is Stage.INTERRUPTING:
            # The cut turn's result (or a turn that ended on its own meanwhile); or the
            # interrupt refused because no turn was running after all: no result will come.
            ack = ev if isinstance(ev, Ack) and ev.id == self._interrupt_id else None
            if ack is not None or isinstance(ev, TurnEnd):
                self.cut = True
            if isinstance(ev, TurnEnd) or (ack is not None and not ack.ok):
                self._ask()
        elif self.stage is Stage.ASKING and isinstance(ev, TurnEnd) and ev.phase == TURN_HANDOFF:
            state, reason = parse_handoff(ev.text, max_tokens=self._max_tokens, count=self._count)
            known = ev.input_tokens is not None or ev.output_tokens is not None
            tokens = (ev.input_tokens or 0) + (ev.output_tokens or 0) if known else None
            self._answer = (state, reason or "", tokens)

    def advance(self, now: float) -> None:
        """Take the answer that came, or give up once the deadline passes."""
        if self.stage is Stage.DONE:
            return
        if self._answer is not None:
            self._finish(now, *self._answer)
        elif now >= self._deadline:
            what = "the interrupted turn did not end" if self.stage is Stage.INTERRUPTING else "no answer"
            self._finish(now, None, f"{what} within {self._timeout:g}s", None)

    def fail(self, now: float, reason: str) -> None:
        """End the exchange from outside (the agent exited, its stdin closed)."""
        if self.stage is not Stage.DONE:
            self._finish(now, None, reason, None)

    def _finish(self, now: float, state: dict[str, Any] | None, reason: str, tokens: int | None) -> None:
        self.stage = Stage.DONE
        self.result = HandoffResult(state, reason, round(now - self._started, 3), tokens)

    @property
    def done(self) -> bool:
        """Whether the exchange is over (answered or failed)."""
        return self.stage is Stage.DONE
