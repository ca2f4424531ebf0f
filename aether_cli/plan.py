"""Where a run starts and how it ended: the two plain records passed between the
commands and the supervisor.

They live apart from the supervisor so `commands.resume_plan` can build a plan
without importing the supervisor (and with it the tokenizer and the adapters).
This module knows nothing of processes, the store or the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunResult:
    """How a run ended."""

    exit_code: int
    status: str
    message: str
    session_id: str
    episode: int
    last_checkpoint: str | None


@dataclass
class ResumePlan:
    """Where a resumed run picks up: the session, the next episode and its checkpoint."""

    session_id: str
    episode: int
    checkpoint_id: str | None
    restarts: int = 0
    recover: bool = False
    latest: bool = True
    # The relaunch prompt's "Changed since the checkpoint" lines (commands.restore_guard):
    # what changed in the workspace, and later checkpoints; empty when nothing did.
    changed: list[str] = field(default_factory=list)
