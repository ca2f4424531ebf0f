"""The scripted task both fake model servers play, and their request log.

The task: append the line `step K` to steps.txt in the workdir, for K = 1..N, one Bash tool
call per model turn, then answer "All N steps done.". The step to take is decided only from
the text the model was sent (its prompt and its own conversation, read as prose by
`fakes.reading`), never from the workdir: an agent relaunched with a fresh conversation carries
on where its prompt says, so a prompt that misstates the progress shows up in steps.txt as a
step lost or done twice. Stdlib only: the fakes must run with any Python, without the
project's dependencies.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

STEPS_FILE = "steps.txt"
# Claude Code wraps injected context in these; they would hide the prompt in a truncated log.
_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)
LOG_TEXT_LIMIT = 400


@dataclass(frozen=True)
class Turn:
    """What the model answers on one request: a tool call doing `step`, or the final text."""

    kind: Literal["tool", "final"]
    step: int
    command: str
    text: str


@dataclass(frozen=True)
class Scenario:
    """The scripted model: N steps, and a context size that grows with the conversation.

    `workdir` is where the agent runs the commands; the model never reads it.
    """

    workdir: Path
    steps: int = 3
    base_tokens: int = 1000
    tokens_per_turn: int = 200
    # Lines of filler each step's command also prints, so the agent's stream grows.
    step_output: int = 0

    def turn(self, step: int) -> Turn:
        """The answer that takes `step`: its tool call, or the final text once every step is done."""
        if step > self.steps:
            return Turn("final", self.steps, "", f"All {self.steps} steps done.")
        filler = f"; seq 1 {self.step_output}" if self.step_output else ""
        return Turn(
            "tool",
            step,
            f'echo "step {step}" >> {STEPS_FILE}' + filler,
            f"Step {step} of {self.steps}: appending it to {STEPS_FILE}.",
        )

    def context_tokens(self, n_messages: int) -> int:
        """The context size to report for a request carrying `n_messages` messages."""
        return self.base_tokens + self.tokens_per_turn * max(0, n_messages)


def without_reminders(text: str) -> str:
    """`text` without Claude Code's system reminders, its lines kept (a prompt as the model reads it)."""
    return _REMINDER.sub("", text).strip()


def clean_text(text: str, limit: int = LOG_TEXT_LIMIT) -> str:
    """`text` without Claude Code's system reminders, whitespace-squeezed and truncated for the log."""
    squeezed = " ".join(_REMINDER.sub(" ", text).split())
    return squeezed if len(squeezed) <= limit else squeezed[: limit - 1] + "…"


class RequestLog:
    """Appends one JSON line per request to a file (or nowhere), safe across server threads."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        """Add `record` with a timestamp; a no-op without a log file."""
        if self.path is None:
            return
        line = json.dumps({"time": round(time.time(), 3), **record}, ensure_ascii=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as f:
            f.write(line)


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every record of a request log, oldest first (an absent log has none)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
