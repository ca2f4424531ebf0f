"""work_log: the step log stays bounded, numbers on across episodes and reads back leniently."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from aether_cli.work_log import (
    MAX_RANGE_TOOLS,
    MAX_RANGES,
    MAX_RECENT,
    StepLog,
    describe_range,
    describe_step,
)


def fill(log: StepLog, n: int, tool: str = "Bash", fail_every: int = 0) -> StepLog:
    for i in range(n):
        ok = not (fail_every and i % fail_every == 0)
        log.add(tool, f"{tool}: echo {i}", ok, "ok" if ok else "exit 1: boom")
    return log


def covered(log: StepLog) -> list[int]:
    """Every call number the log accounts for, in order."""
    nums = [n for r in log.ranges for n in range(r["from"], r["to"] + 1)]
    return nums + [s["n"] for s in log.recent]


def test_a_thousand_steps_stay_bounded_and_all_are_counted() -> None:
    log = StepLog()
    sizes = []
    for i in range(1000):
        log.add(["Bash", "Edit", "Read"][i % 3], f"call {i} " + "x" * 500, i % 97 != 0, "ok")
        sizes.append(len(orjson.dumps(log.to_state())))
    assert log.total == 1000
    assert len(log.recent) == MAX_RECENT and len(log.ranges) <= MAX_RANGES
    assert covered(log) == list(range(1, 1001))
    assert sum(r["failed"] for r in log.ranges) + sum(not s["ok"] for s in log.recent) == 11
    # Flat: the last 900 steps did not make the log any bigger than the first 100 did.
    assert max(sizes[100:]) <= max(sizes[:100]) * 1.1  # longer numbers only
    assert max(sizes) < 10_000


def test_ranges_say_tools_and_failures() -> None:
    log = fill(StepLog(), 97)
    fill(log, 30, tool="Edit", fail_every=10)
    ranges, calls = log.lines()
    assert ranges[0] == "calls 1\u201350: Bash \u00d750, all ok"
    assert ranges[1] == "calls 51\u2013100: Bash \u00d747, Edit \u00d73, 1 failed"
    assert ranges[2] == "calls 101\u2013107: Edit \u00d77, all ok"
    assert calls[-1] == "call 127: Edit: echo 29 \u2192 ok"
    assert describe_step(log.recent[0]).startswith("call 108: Edit: echo 10 \u2192 exit 1: boom")


def test_many_tool_names_fold_into_other() -> None:
    log = StepLog()
    for i in range(200):
        log.add(f"tool{i % 12}", f"t{i}", True, "ok")
    for rng in log.ranges:
        assert len(rng["tools"]) <= MAX_RANGE_TOOLS
        assert sum(rng["tools"].values()) == rng["to"] - rng["from"] + 1
    assert "other \u00d7" in describe_range(log.ranges[0])


def test_extend_numbers_on_across_three_episodes() -> None:
    session = StepLog()
    for size in (7, 130, 3):
        episode = fill(StepLog(), size)
        session = StepLog.from_state(session.to_state())  # through the checkpoint, as in a run
        session.extend(episode)
    assert session.total == 140
    assert covered(session) == list(range(1, 141))
    assert session.last is not None and session.last["n"] == 140
    assert len(session.recent) == MAX_RECENT


def test_fold_to_keeps_the_last_calls() -> None:
    log = fill(StepLog(), 30)
    log.fold_to(5)
    assert [s["n"] for s in log.recent] == [26, 27, 28, 29, 30]
    assert covered(log) == list(range(1, 31))
    log.fold_to(0)
    assert not log.recent and covered(log) == list(range(1, 31))


@pytest.mark.parametrize(
    "state",
    [
        None, 5, "x", [], {"total": "many"}, {"ranges": "x", "recent": 7},
        {"ranges": [{"from": 5, "to": 2, "tools": {}, "failed": 0}]},
        {"ranges": [{"from": 1, "to": 3, "tools": {"Bash": "3"}, "failed": -1}, 4]},
        {"recent": [{"n": 1, "tool": 3, "call": "c", "outcome": "ok"}, {"n": True}]},
        {"recent": [{"n": 3, "tool": "t", "call": "c", "outcome": "ok"},
                    {"n": 2, "tool": "t", "call": "older after newer", "outcome": "ok"}]},
        {"total": -5, "recent": [{"n": 10**12, "tool": "t", "call": "x" * 10**5, "outcome": "ok"}]},
    ],
)
def test_a_tampered_work_log_is_read_leniently(state: Any) -> None:
    log = StepLog.from_state(state)
    nums = covered(log)
    assert nums == sorted(set(nums))  # never out of order, never twice
    assert log.total >= (nums[-1] if nums else 0)
    assert all(len(s["call"]) <= 160 for s in log.recent)
    before = log.total
    fill(log, 3)  # and it keeps working, numbering on
    assert log.total == before + 3 and log.last is not None and log.last["n"] == log.total
