"""How an episode can end: `EpisodeEnd`, and the agent's own failure verdict read as one.

Claude's `result` line and Codex's `turn.failed` say why the agent stopped; an
overflow or a turn limit is a budget matter (relaunch), anything else a crash,
even with exit code 0. Knows nothing of processes, the store or the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass

from aether_cli.adapters.base import Outcome
from aether_cli.episode_log import cap

# An agent's own failure verdict that means its context overflowed: a budget matter,
# not a crash (Claude's terminal_reason, Codex's error text).
_OVERFLOW_WORDS = (
    "prompt_too_long",
    "prompt is too long",
    "context window",
    "context_length",
    "context length",
    "maximum context",
    "too many tokens",
)
_TURN_LIMIT_WORDS = ("max_turns", "max turns")


@dataclass
class EpisodeEnd:
    """How an episode ended, and what the supervisor should do next."""

    kind: str  # relaunch | inplace | finished | crashed | interrupted | capped
    trigger: str = ""
    status: int | None = None
    signum: int = 0
    note: str = ""


def judge_failure(out: Outcome | None, status: int) -> EpisodeEnd | None:
    """The agent's own verdict of failure as what it means for the run; None when it
    reported none. `status` is the exit status a crash is reported with."""
    if out is None or out.ok:
        return None
    said = f"{out.reason} {out.text}".lower()
    if any(w in said for w in _OVERFLOW_WORDS):
        return EpisodeEnd("relaunch", trigger="emergency", note=f"agent reported: {out.reason}")
    if any(w in said for w in _TURN_LIMIT_WORDS):
        return EpisodeEnd("relaunch", trigger="steps", note=f"agent reported: {out.reason}")
    said = cap_line(out.reason) + (f" ({cap_line(out.text)})" if out.text.strip() else "")
    return EpisodeEnd("crashed", status=status, note=f"agent reported: {said}")


def cap_line(text: str, limit: int = 200) -> str:
    """The first line of `text`, cut to `limit` characters."""
    return cap(text.strip().splitlines()[0] if text.strip() else "", limit)
