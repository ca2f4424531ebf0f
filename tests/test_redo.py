"""Continuity figures per relaunch: steps redone and first steps that followed the handoff,
counted from what the agent does; and `aether status` reading them from a committed record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aether_cli import commands
from aether_cli.store import MemoryStore
from aether_cli.supervisor.redo import MAX_REMEMBERED, RedoMeter, follows

CK = {"id": "chk_000001_abcdef12", "next_actions": ["Run `echo step 9 >> steps.txt`", "then step 10"]}


def episode(meter: RedoMeter, n: int, ck: dict | None, calls: list[tuple[str, dict]]) -> Any:
    meter.start(n, ck)
    for name, data in calls:
        meter.call(name, data)
        meter.finished(name, data)
    return meter.end()


def bash(k: int) -> tuple[str, dict]:
    return "Bash", {"command": f"echo step {k} >> steps.txt"}


def test_a_relaunch_that_continues_redoes_nothing_and_follows_the_handoff() -> None:
    meter = RedoMeter()
    assert episode(meter, 1, None, [bash(k) for k in range(1, 9)]) is None, "a fresh start is no relaunch"
    figures = episode(meter, 2, CK, [bash(9), bash(10)])
    assert (figures.calls, figures.redone, figures.followed_next_action) == (2, 0, True)
    assert meter.totals() == {
        "relaunches": 1,
        "steps_redone": 0,
        "first_step_judged": 1,
        "first_step_followed": 1,
    }


def test_steps_done_before_the_checkpoint_and_done_again_count_as_redone() -> None:
    meter = RedoMeter()
    episode(meter, 1, None, [bash(k) for k in range(1, 9)])
    figures = episode(meter, 2, CK, [bash(7), bash(8), bash(9)])
    assert (figures.redone, figures.followed_next_action) == (2, False)


def test_a_call_repeated_within_one_episode_is_not_a_redo() -> None:
    meter = RedoMeter()
    episode(meter, 1, None, [bash(1)])
    figures = episode(meter, 2, {"id": "chk_000001_abcdef12"}, [("Bash", {"command": "pytest"})] * 3)
    assert figures.redone == 0 and figures.followed_next_action is None, "no next action to judge by"


def test_key_order_does_not_make_a_call_new() -> None:
    meter = RedoMeter()
    episode(meter, 1, None, [("Write", {"path": "a.py", "content": "x"})])
    figures = episode(meter, 2, CK, [("Write", {"content": "x", "path": "a.py"})])
    assert figures.redone == 1


def test_memory_stays_bounded_over_many_steps() -> None:
    meter = RedoMeter()
    episode(meter, 1, None, [bash(k) for k in range(3 * MAX_REMEMBERED)])
    assert len(meter._done) == MAX_REMEMBERED


@pytest.mark.parametrize(
    ("action", "data", "expected"),
    [
        ("Run `pytest tests/test_api.py -x`", {"command": "pytest  tests/test_api.py -x"}, True),
        ("Edit src/app.py to add the route", {"file_path": "src/app.py", "old": "a", "new": "b"}, True),
        ("Write the docs", {"command": "ls"}, False),  # too short to say anything
        ("Fix the parser", {"nested": [{"deep": {"deeper": "x" * 10}}]}, False),
        ("anything", "not a dict", False),
        ("", {"command": "make"}, False),
    ],
)
def test_follows(action: str, data: Any, expected: bool) -> None:
    assert follows(action, "Tool", data) is expected


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"relaunches": 4, "steps_redone": 1, "first_step_judged": 4, "first_step_followed": 3}, 0.25),
        ({"relaunches": "4", "steps_redone": -1, "first_step_judged": 2**62}, None),
        ("garbage", None),
        ({"relaunches": True, "steps_redone": 1}, None),
    ],
)
def test_status_shows_the_redo_rate_and_ignores_a_tampered_record(
    project: Path, record: Any, expected: float | None
) -> None:
    store = MemoryStore(project / ".memory")
    store.init()
    store.write_continuity({"session_id": "ses_x", "status": "stopped", "continuity": record})
    figures = commands.status(store)["continuity"]
    assert figures.get("redo_rate") == expected
    assert all(type(v) in (int, float) for v in figures.values())
