"""codex_rollout: finding a thread's rollout file and reading Codex's token counts from it, safely.

The line shapes are those the real Codex 0.169.0 wrote in `make e2e-real` (see docs/adapters.md).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from aether_cli.codex_rollout import (
    MAX_LINE,
    RolloutUsage,
    RolloutWatcher,
    codex_home,
    open_rollout,
    usage_of_line,
    watch,
)

THREAD = "01a24645-38fe-7c11-989a-3fefb198cf84"
WINDOW = 258_400


def usage(inp: int, out: int = 30) -> dict[str, int]:
    return {
        "input_tokens": inp,
        "cached_input_tokens": inp // 2,
        "cache_write_input_tokens": 0,
        "output_tokens": out,
        "reasoning_output_tokens": 0,
        "total_tokens": inp + out,
    }


def token_count(last: int, total: int, window: int | None = WINDOW) -> dict[str, Any]:
    info = {
        "total_token_usage": usage(total, 0),
        "last_token_usage": usage(last),
        "last_usage_includes_reasoning": False,
        "model_context_window": window,
    }
    payload = {"type": "token_count", "info": info, "rate_limits": {"primary": None}}
    return {"timestamp": "2026-12-05T12:54:31.637Z", "type": "event_msg", "payload": payload}


def usage_record(request: int, thread: int) -> dict[str, Any]:
    payload = {"thread_id": THREAD, "usage": usage(request), "thread_token_usage": usage(thread, 0)}
    return {"timestamp": "2026-12-05T12:54:31.530Z", "type": "token_usage_record", "payload": payload}


def line(obj: Any) -> bytes:
    return (json.dumps(obj) + "\n").encode()


def day_dir(home: Path, day: str = "2026/12/05") -> Path:
    path = home / "sessions" / day
    path.mkdir(parents=True, exist_ok=True)
    return path


def rollout(home: Path, thread: str = THREAD, day: str = "2026/12/05") -> Path:
    path = day_dir(home, day) / f"rollout-2026-12-05T12-54-31-{thread}.jsonl"
    meta = {"type": "session_meta", "payload": {"id": thread, "cli_version": "0.169.0"}}
    path.write_bytes(line(meta))
    return path


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "codex-home"


def test_codex_home_is_codex_home_else_dot_codex_in_home() -> None:
    assert codex_home({"CODEX_HOME": "/x/ch", "HOME": "/h"}) == Path("/x/ch")
    assert codex_home({"CODEX_HOME": "", "HOME": "/h"}) == Path("/h/.codex")
    assert codex_home({}) is None
    assert watch({}, THREAD) is None


def test_watch_follows_the_codex_home_of_the_launch_environment(home: Path) -> None:
    append(rollout(home), line(token_count(4_000, 4_000)))
    watcher = watch({"CODEX_HOME": str(home)}, THREAD)
    assert watcher is not None
    with watcher:
        assert watcher.poll() == RolloutUsage(4_000, WINDOW, 4_000)


def test_the_context_is_the_last_requests_input_and_the_window_codex_states(home: Path) -> None:
    path = rollout(home)
    append(path, line(token_count(12_400, 12_400)) + line(token_count(12_700, 25_100)))
    with RolloutWatcher(home, THREAD) as watcher:
        got = watcher.poll()
        assert got == RolloutUsage(12_700, WINDOW, 25_100)
        assert watcher.poll() is None  # nothing new
        assert watcher.latest == got


def test_a_usage_record_gives_the_figure_before_the_tool_runs_and_keeps_the_known_window(home: Path) -> None:
    path = rollout(home)
    append(path, line(token_count(12_400, 12_400)))
    with RolloutWatcher(home, THREAD) as watcher:
        watcher.poll()
        append(path, line(usage_record(12_700, 25_160)))
        assert watcher.poll() == RolloutUsage(12_700, WINDOW, 25_160)
        assert watcher.token_counts == 1  # the record is not a token_count


def test_only_new_bytes_are_read_each_poll(home: Path) -> None:
    path = rollout(home)
    with RolloutWatcher(home, THREAD) as watcher:
        assert watcher.poll() is None
        first = watcher.bytes_read
        append(path, line(token_count(13_000, 38_100)))
        assert watcher.poll() == RolloutUsage(13_000, WINDOW, 38_100)
        assert watcher.bytes_read == path.stat().st_size > first


def test_a_partial_last_line_waits_for_the_rest(home: Path) -> None:
    path = rollout(home)
    whole = line(token_count(14_000, 50_000))
    append(path, whole[:40])
    with RolloutWatcher(home, THREAD) as watcher:
        assert watcher.poll() is None
        append(path, whole[40:])
        assert watcher.poll() == RolloutUsage(14_000, WINDOW, 50_000)


def test_info_null_is_rate_limits_only(home: Path) -> None:
    path = rollout(home)
    null = {"type": "event_msg", "payload": {"type": "token_count", "info": None, "rate_limits": {}}}
    append(path, line(token_count(9_000, 9_000)) + line(null))
    with RolloutWatcher(home, THREAD) as watcher:
        assert watcher.poll() == RolloutUsage(9_000, WINDOW, 9_000)


@pytest.mark.parametrize(
    "bad",
    [
        -1,
        10**12,
        True,
        12.5,
        "12000",
        None,
        [12_000],
    ],
)
def test_absurd_counts_are_ignored(bad: Any) -> None:
    obj = token_count(1, 1)
    obj["payload"]["info"]["last_token_usage"]["input_tokens"] = bad
    assert usage_of_line(obj, None) is None
    obj = token_count(5_000, 5_000, window=bad)
    assert usage_of_line(obj, 1_000) == RolloutUsage(5_000, 1_000, 5_000)


def test_garbage_lines_are_skipped_and_what_follows_is_read(home: Path) -> None:
    path = rollout(home)
    junk = [
        b"\x00\xff\xfe garbage token_count\n",
        b'{"type": "event_msg", "payload": {"type": "token_count", "info": \n',
        b'["token_count"]\n',
        b'{"type": "event_msg", "payload": "token_count"}\n',
        b'{"type": "event_msg", "payload": {"type": "token_count", "info": [1, 2]}}\n',
        b'{"type": "token_usage_record", "payload": {"usage": "token_count"}}\n',
        b'{"type": "event_msg", "payload": {"type": "token_count", "info": {"last_token_usage": 7}}}\n',
        b"\n\n\r\n",
        line({"type": "event_msg", "payload": {"type": "token_count", "x": "\u00e9\u2028"}}),
    ]
    append(path, b"".join(junk) + line(token_count(11_000, 11_000)))
    with RolloutWatcher(home, THREAD) as watcher:
        assert watcher.poll() == RolloutUsage(11_000, WINDOW, 11_000)


def test_a_line_longer_than_the_cap_is_skipped_unread(home: Path) -> None:
    path = rollout(home)
    huge = token_count(99_999, 99_999)
    huge["payload"]["padding"] = "x" * (MAX_LINE + 10)
    append(path, line(huge) + line(token_count(8_000, 8_000)))
    with RolloutWatcher(home, THREAD) as watcher:
        assert watcher.poll() == RolloutUsage(8_000, WINDOW, 8_000)


def test_a_50_mb_file_costs_one_bounded_read_and_gives_the_latest_figure(home: Path) -> None:
    path = rollout(home)
    block = line({"type": "response_item", "payload": {"type": "function_call_output", "output": "y" * 4000}})
    with path.open("ab") as f:
        f.write(line(token_count(1_000, 1_000)))
        for _ in range(50 * 1024 * 1024 // len(block)):
            f.write(block)
        f.write(b"z" * (3 << 20))  # a 3 MB line with no end yet...
        f.write(b"\n")
        f.write(line(token_count(200_000, 9_000_000)))
    limit = 1 << 20
    with RolloutWatcher(home, THREAD, max_poll_bytes=limit) as watcher:
        assert watcher.poll() == RolloutUsage(200_000, WINDOW, 9_000_000)
        assert watcher.bytes_read <= limit
        append(path, line(token_count(201_000, 9_300_000)))
        assert watcher.poll() == RolloutUsage(201_000, WINDOW, 9_300_000)


def test_a_backlog_larger_than_a_poll_is_skipped_from_a_line_start(home: Path) -> None:
    path = rollout(home)
    with RolloutWatcher(home, THREAD, max_poll_bytes=4096) as watcher:
        watcher.poll()
        figure = line(token_count(7_777, 7_777))
        filler = line({"type": "response_item", "payload": {"text": "f" * 100}})
        append(path, filler * 200 + figure)
        # The last 4096 bytes start mid-line: that fragment is dropped, the figure is read.
        assert watcher.poll() == RolloutUsage(7_777, WINDOW, 7_777)
        assert watcher.bytes_read <= path.stat().st_size


def test_a_truncated_file_is_read_again_from_the_start(home: Path) -> None:
    path = rollout(home)
    append(path, line(token_count(5_000, 5_000)) * 20)
    with RolloutWatcher(home, THREAD) as watcher:
        watcher.poll()
        path.write_bytes(line(token_count(3_000, 3_000)))
        assert watcher.poll() == RolloutUsage(3_000, WINDOW, 3_000)


def test_a_symlinked_rollout_file_is_never_followed(home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.jsonl"
    outside.write_bytes(line(token_count(4_242, 4_242)))
    link = day_dir(home) / f"rollout-2026-12-05T12-54-31-{THREAD}.jsonl"
    link.symlink_to(outside)
    with RolloutWatcher(home, THREAD) as watcher:
        assert watcher.poll() is None
        assert not watcher.found and "no rollout file" in watcher.note


def test_a_symlinked_dated_folder_is_never_followed(home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / f"rollout-x-{THREAD}.jsonl").write_bytes(line(token_count(4_242, 4_242)))
    (home / "sessions" / "2026" / "12").mkdir(parents=True)
    (home / "sessions" / "2026" / "12" / "05").symlink_to(outside)
    with RolloutWatcher(home, THREAD) as watcher:
        assert watcher.poll() is None


def test_a_symlinked_sessions_folder_is_the_users_own_setup(tmp_path: Path) -> None:
    real = tmp_path / "real-home"
    append(rollout(real), line(token_count(6_000, 6_000)))
    linked = tmp_path / "linked-home"
    linked.mkdir()
    (linked / "sessions").symlink_to(real / "sessions")
    with RolloutWatcher(linked, THREAD) as watcher:
        assert watcher.poll() == RolloutUsage(6_000, WINDOW, 6_000)


def test_a_fifo_in_place_of_the_file_does_not_block(home: Path) -> None:
    os.mkfifo(day_dir(home) / f"rollout-2026-12-05T12-54-31-{THREAD}.jsonl")
    with RolloutWatcher(home, THREAD) as watcher:
        assert watcher.poll() is None


@pytest.mark.parametrize("thread", ["", "../../etc", "*", "a" * 100, f"{THREAD}/x", "-rf", "abc"])
def test_a_thread_id_that_is_not_an_id_is_never_searched(home: Path, thread: str) -> None:
    rollout(home)
    fd, why = open_rollout(home, thread)
    assert fd is None and why == "the thread id is not an id"


def test_the_file_is_looked_for_again_only_after_the_rescan_interval(home: Path) -> None:
    now = [0.0]
    with RolloutWatcher(home, THREAD, rescan_seconds=5, clock=lambda: now[0]) as watcher:
        assert watcher.poll() is None and "no sessions folder" in watcher.note
        append(rollout(home), line(token_count(2_000, 2_000)))
        now[0] = 4.9
        assert watcher.poll() is None  # not looked for again yet
        now[0] = 5.0
        assert watcher.poll() == RolloutUsage(2_000, WINDOW, 2_000)


def test_the_newest_dated_folder_is_searched_first_and_other_threads_are_ignored(home: Path) -> None:
    append(rollout(home, "01a24645-0000-7c11-989a-3fefb198cf84"), line(token_count(1, 1)))
    append(rollout(home, day="2025/01/31"), line(token_count(3_100, 3_100)))
    with RolloutWatcher(home, THREAD) as watcher:
        assert watcher.poll() == RolloutUsage(3_100, WINDOW, 3_100)


def test_catch_up_reaches_the_end_reading_only_the_last_poll_worth(home: Path) -> None:
    path = rollout(home)
    with RolloutWatcher(home, THREAD, max_poll_bytes=1024) as watcher:
        watcher.poll()
        first = watcher.bytes_read
        append(path, b"".join(line(token_count(k, k)) for k in range(1, 40)))
        assert watcher.catch_up() == RolloutUsage(39, WINDOW, 39)
        assert watcher.bytes_read - first <= 1024
        append(path, line(token_count(40, 40)))
        assert watcher.catch_up() == RolloutUsage(40, WINDOW, 40)
