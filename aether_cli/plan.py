"""Where a run starts and how it ended: `ResumePlan` and `RunResult`.

Plain records passed between the commands and the supervisor, so neither has
to import the other for them. Knows nothing of processes or files.
"""

from __future__ import annotations

from dataclasses import dataclass


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
