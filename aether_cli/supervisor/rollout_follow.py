"""Following Codex's own account of its context during an episode.

Codex's stream cannot say how big its context is (its usage is summed over the
thread), but its rollout file can (`codex_rollout`). `RolloutFollower` starts a
watcher once the stream names its thread, polls it a few times a second, and
tells the episode two things: the context figure to report to the budget, and
whether the output of the step that just completed is recorded in the thread
yet. Codex writes it a few milliseconds after printing `item.completed`; stopped
in between, the resumed thread shows that output as "aborted" and the step is
redone. Without a rollout file the confirmation falls back to a short wait.

Knows nothing of the budget, the stream adapter or processes.
"""

from __future__ import annotations

from collections.abc import Callable

from aether_cli.codex_rollout import RolloutUsage, RolloutWatcher

POLL_EVERY = 0.2
# Without the rollout to confirm it, a step's output is taken as recorded this long after
# its item.completed (Codex takes a few milliseconds).
UNCONFIRMED_WAIT = 0.5


class RolloutFollower:
    """One episode's view of a Codex rollout file."""

    def __init__(self, make_watcher: Callable[[str], RolloutWatcher | None]) -> None:
        self._make = make_watcher
        self.watcher: RolloutWatcher | None = None
        self._next_poll = float("-inf")
        self._counts_at_boundary = 0
        self._boundary_at: float | None = None
        self._boundary_pending = False

    def start(self, thread_id: str) -> None:
        """The stream named its thread: follow that thread's rollout file."""
        if self.watcher is None and thread_id:
            self.watcher = self._make(thread_id)

    def close(self) -> None:
        """Let go of the file."""
        if self.watcher is not None:
            self.watcher.close()

    def poll(self, now: float) -> RolloutUsage | None:
        """A new context figure, if the file has one (at most every POLL_EVERY seconds)."""
        if self.watcher is None or now < self._next_poll:
            return None
        self._next_poll = now + POLL_EVERY
        return self.watcher.poll()

    def step_completed(self) -> None:
        """A tool call's result reached the stream; its recording in the thread is awaited."""
        self._boundary_pending = True
        self._boundary_at = None
        self._counts_at_boundary = self.watcher.token_counts if self.watcher is not None else 0

    def recorded(self, now: float) -> bool:
        """Whether the last completed step's output is in Codex's thread by now."""
        if not self._boundary_pending:
            return True
        if self._boundary_at is None:
            self._boundary_at = now
        w = self.watcher
        if w is not None and w.found:
            w.poll()
            if w.token_counts > self._counts_at_boundary:
                self._boundary_pending = False
                return True
        return now - self._boundary_at >= UNCONFIRMED_WAIT
