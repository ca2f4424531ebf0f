"""The step log of a session: every finished tool call, the old ones folded into ranges.

A relaunched agent must know which steps are done. `StepLog` keeps the last
MAX_RECENT steps one by one (number, tool, call, outcome) and folds older
ones into at most MAX_RANGES ranges (`calls 1-97: Bash x97, all ok`, with
the real dash and multiplication sign), so its
size is fixed however many steps and relaunches a session has. It lives in a
checkpoint's `state["work_log"]`: each episode's log is appended to its
parent's (`extend`), numbered on from it. `from_state` reads a parent's copy
back and skips anything malformed (a tampered `.memory` included).

Knows nothing of protocol events, prompts or files: callers give it steps.
"""

from __future__ import annotations

from collections import deque
from typing import Any

MAX_RECENT = 20
MAX_RANGES = 6
RANGE_SPAN = 50  # steps a range takes before a new one is started
MAX_RANGE_TOOLS = 5
CALL_CHARS = 160
OUTCOME_CHARS = 240
TOOL_CHARS = 60
OTHER = "other"
DASH, TIMES = "\u2013", "\u00d7"  # an en dash and a multiplication sign, as typeset
ELLIPSIS = "…"


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def step(n: int, tool: str, call: str, ok: bool, outcome: str) -> dict[str, Any]:
    """One finished step as stored: {"n", "tool", "call", "ok", "outcome"}, texts capped."""
    return {
        "n": n,
        "tool": _cap(tool, TOOL_CHARS),
        "call": _cap(" ".join(call.split()), CALL_CHARS),
        "ok": ok,
        "outcome": _cap(outcome, OUTCOME_CHARS),
    }


def _merge_tools(*counts: dict[str, int]) -> dict[str, int]:
    """Counts per tool summed; beyond MAX_RANGE_TOOLS names, the rarest go into "other"."""
    total: dict[str, int] = {}
    for c in counts:
        for name, k in c.items():
            total[name] = total.get(name, 0) + k
    named = sorted(
        ((k, name) for name, k in total.items() if name != OTHER), key=lambda p: (-p[0], p[1])
    )
    fits = len(named) + (OTHER in total) <= MAX_RANGE_TOOLS
    keep = {name: k for k, name in (named if fits else named[: MAX_RANGE_TOOLS - 1])}
    rest = sum(total.values()) - sum(keep.values())
    if rest:
        keep[OTHER] = rest
    return keep


class StepLog:
    """Finished steps, numbered from 1 across a session; bounded in size."""

    def __init__(self) -> None:
        """An empty log: no steps yet."""
        self.total = 0
        self.ranges: list[dict[str, Any]] = []
        self.recent: deque[dict[str, Any]] = deque()

    # ------------------------------------------------------------ adding

    def add(self, tool: str, call: str, ok: bool, outcome: str) -> int:
        """Record the next finished step; its number."""
        self.total += 1
        self._push(step(self.total, tool, call, ok, outcome))
        return self.total

    def _push(self, entry: dict[str, Any]) -> None:
        self.recent.append(entry)
        while len(self.recent) > MAX_RECENT:
            self._fold(self.recent.popleft())

    def _fold(self, entry: dict[str, Any]) -> None:
        n, failed = entry["n"], 0 if entry["ok"] else 1
        last = self.ranges[-1] if self.ranges else None
        if last is not None and last["to"] == n - 1 and last["to"] - last["from"] + 1 < RANGE_SPAN:
            last["to"] = n
            last["tools"] = _merge_tools(last["tools"], {entry["tool"]: 1})
            last["failed"] += failed
        else:
            self._add_range({"from": n, "to": n, "tools": {entry["tool"]: 1}, "failed": failed})

    def _add_range(self, rng: dict[str, Any]) -> None:
        self.ranges.append(rng)
        while len(self.ranges) > MAX_RANGES:
            a, b = self.ranges[0], self.ranges[1]
            self.ranges[0:2] = [{
                "from": a["from"], "to": b["to"], "tools": _merge_tools(a["tools"], b["tools"]),
                "failed": a["failed"] + b["failed"],
            }]

    def extend(self, later: StepLog) -> None:
        """Append `later` (the next episode's log, numbered from 1), numbered on from here."""
        offset = self.total
        if later.ranges:
            # Its ranges are older than its own recent steps but newer than ours.
            while self.recent:
                self._fold(self.recent.popleft())
            for rng in later.ranges:
                self._add_range({**rng, "from": rng["from"] + offset, "to": rng["to"] + offset,
                                 "tools": dict(rng["tools"])})
        for entry in later.recent:
            self._push({**entry, "n": entry["n"] + offset})
        self.total = offset + later.total

    def fold_to(self, keep: int) -> None:
        """Fold all but the last `keep` recent steps into ranges (to make a checkpoint smaller)."""
        while len(self.recent) > max(0, keep):
            self._fold(self.recent.popleft())

    # ------------------------------------------------------------ views

    @property
    def last(self) -> dict[str, Any] | None:
        """The last finished step, if any."""
        return self.recent[-1] if self.recent else None

    def lines(self) -> tuple[list[str], list[str]]:
        """(folded ranges, recent steps) as one line each, oldest first."""
        return [describe_range(r) for r in self.ranges], [describe_step(s) for s in self.recent]

    # ------------------------------------------------------------ state

    def to_state(self) -> dict[str, Any]:
        """The JSON form kept in `state["work_log"]`."""
        return {"total": self.total, "ranges": [dict(r) for r in self.ranges],
                "recent": [dict(s) for s in self.recent]}

    @classmethod
    def from_state(cls, value: Any) -> StepLog:
        """A log from its JSON form; malformed parts are skipped, never raised on."""
        log = cls()
        if not isinstance(value, dict):
            return log
        last_to = 0
        ranges, recent = value.get("ranges"), value.get("recent")
        for rng in ranges if isinstance(ranges, list) else []:
            ok = _range(rng)
            if ok is not None and ok["from"] > last_to:
                log._add_range(ok)
                last_to = ok["to"]
        for entry in recent if isinstance(recent, list) else []:
            ok = _step(entry)
            if ok is not None and ok["n"] > last_to:
                log._push(ok)
                last_to = ok["n"]
        total = _int(value.get("total"))
        log.total = max(total or 0, last_to)
        return log


def _range(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    start, end, failed = _int(value.get("from")), _int(value.get("to")), _int(value.get("failed"))
    tools = value.get("tools")
    if start is None or end is None or start < 1 or end < start or not isinstance(tools, dict):
        return None
    counts = {_cap(k, TOOL_CHARS): v for k, v in tools.items() if isinstance(k, str) and _int(v)}
    failed = min(failed or 0, end - start + 1)
    return {"from": start, "to": end, "tools": _merge_tools(counts), "failed": failed}


def _step(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    n = _int(value.get("n"))
    tool, call, outcome = value.get("tool"), value.get("call"), value.get("outcome")
    if not n or not isinstance(tool, str) or not isinstance(call, str) or not isinstance(outcome, str):
        return None
    return step(n, tool, call, value.get("ok") is True, outcome)


def describe_range(rng: dict[str, Any]) -> str:
    """`calls 1-97: Bash x90, Edit x7, all ok` (or `..., 3 failed`), typeset with DASH and TIMES."""
    span = f"call {rng['from']}" if rng["from"] == rng["to"] else f"calls {rng['from']}{DASH}{rng['to']}"
    tools = ", ".join(f"{name} {TIMES}{k}" for name, k in rng["tools"].items())
    failed = rng["failed"]
    return f"{span}: {tools}, " + (f"{failed} failed" if failed else "all ok")


def describe_step(entry: dict[str, Any]) -> str:
    """`call 98: Bash: echo hi → ok`.

    Numbered as "call", not "step": the agent's own plan may number its steps
    differently, and the two must not be confused.
    """
    return f"call {entry['n']}: {entry['call']} → {entry['outcome']}"
