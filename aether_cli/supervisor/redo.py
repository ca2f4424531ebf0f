"""Continuity figures per relaunch: steps redone, and whether the first step followed the handoff.

aether's promise is that a relaunched agent continues exactly where it stopped.
`RedoMeter` measures it from what the agent does, not from what aether wrote:
after each relaunch, a tool call equal to one that finished before the
checkpoint (same tool, same input) counts as redone, and the episode's first
tool call is judged against the checkpoint's first next action. An agent may
legitimately repeat a call (running the tests again), so the figure is an upper
bound of the redo; read it as a trend. Remembered calls are hashed and capped,
so memory stays bounded over any number of steps.

Knows nothing of processes, files or the terminal; the session records the figures.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

# Finished calls remembered across relaunches (hashes, oldest dropped first).
MAX_REMEMBERED = 5000
# An input string shorter than this says too little to match a next action by.
MIN_MATCH_CHARS = 4
_SPACE = re.compile(r"\s+")


def call_signature(name: str, data: Any) -> str:
    """A short stable hash of a tool call: its name and its input, key order aside."""
    try:
        body = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        body = repr(data).encode("utf-8", "replace")
    return hashlib.sha1(name.encode("utf-8", "replace") + b"\0" + body).hexdigest()[:20]


def _strings(data: Any, depth: int = 0) -> list[str]:
    if isinstance(data, str):
        return [data]
    if depth > 4:
        return []
    if isinstance(data, dict):
        return [s for v in data.values() for s in _strings(v, depth + 1)]
    if isinstance(data, list):
        return [s for v in data[:20] for s in _strings(v, depth + 1)]
    return []


def follows(next_action: str, name: str, data: Any) -> bool:
    """Whether a tool call does what `next_action` says: one of its input strings (a command,
    a path) appears in the action's text, spaces folded."""
    action = _SPACE.sub(" ", next_action).strip().lower()
    for text in _strings(data):
        text = _SPACE.sub(" ", text).strip().lower()
        if len(text) >= MIN_MATCH_CHARS and text[:500] in action:
            return True
    return False


@dataclass
class RelaunchFigures:
    """One relaunched episode's continuity figures."""

    episode: int
    checkpoint: str
    calls: int = 0
    redone: int = 0
    first_call: str = ""
    followed_next_action: bool | None = None  # None: no next action to follow, or no call yet

    def as_record(self) -> dict[str, Any]:
        """The ledger record's fields."""
        return {
            "checkpoint": self.checkpoint,
            "calls": self.calls,
            "redone": self.redone,
            "first_call": self.first_call,
            "followed_next_action": self.followed_next_action,
        }


@dataclass
class RedoMeter:
    """Counts redone steps after each relaunch over a whole session."""

    relaunches: int = 0
    redone: int = 0
    judged: int = 0
    followed: int = 0
    current: RelaunchFigures | None = None
    # Calls finished before the current episode's checkpoint, and those finished since:
    # a call repeated within one episode is the agent's own business, not a redo.
    _done: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _pending: list[str] = field(default_factory=list)
    _next_action: str = ""
    # Steps the last episode finished that no earlier episode had: its progress.
    last_new_steps: int = 0

    def start(self, episode: int, checkpoint: dict[str, Any] | None) -> None:
        """A new episode begins; `checkpoint` is the one it was relaunched from (None on a fresh start)."""
        self.current = None
        if checkpoint is None or not isinstance(checkpoint.get("id"), str):
            return
        actions = checkpoint.get("next_actions")
        first = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], str) else ""
        self._next_action = first
        self.current = RelaunchFigures(episode=episode, checkpoint=checkpoint["id"])

    def call(self, name: str, data: Any) -> None:
        """The agent started a tool call."""
        cur = self.current
        if cur is None:
            return
        cur.calls += 1
        if cur.calls == 1:
            cur.first_call = f"{name} {orjson.dumps(data).decode('utf-8', 'replace')[:200]}"
            if self._next_action:
                cur.followed_next_action = follows(self._next_action, name, data)
        if call_signature(name, data) in self._done:
            cur.redone += 1

    def finished(self, name: str, data: Any) -> None:
        """A tool call got its result: a step done, which a later episode must not redo."""
        if len(self._pending) < MAX_REMEMBERED:
            self._pending.append(call_signature(name, data))

    def end(self) -> RelaunchFigures | None:
        """Close the episode (its finished calls become ones a later episode must not redo);
        its figures, added to the session's totals, if it was a relaunch."""
        self.last_new_steps = len({sig for sig in self._pending if sig not in self._done})
        for sig in self._pending:
            self._done.pop(sig, None)
            self._done[sig] = None
        self._pending.clear()
        while len(self._done) > MAX_REMEMBERED:
            self._done.popitem(last=False)
        cur, self.current = self.current, None
        if cur is None:
            return None
        self.relaunches += 1
        self.redone += cur.redone
        if cur.followed_next_action is not None:
            self.judged += 1
            self.followed += int(cur.followed_next_action)
        return cur

    def totals(self) -> dict[str, int]:
        """The session's figures so far, for the continuity record and `aether status`."""
        return {
            "relaunches": self.relaunches,
            "steps_redone": self.redone,
            "first_step_judged": self.judged,
            "first_step_followed": self.followed,
        }
