"""The parsers never crash (issue 4, item 18).

What an agent prints goes through the line reader and protocol decoding; what
a checkout holds goes through the `.memory` readers. Hypothesis feeds both
invalid UTF-8, NaN, 100k-deep nesting, JSON that is not an object, duplicate
keys and wrong field types. The only outcomes allowed: for agent output, an
Event (a known type with bad fields is `Invalid`, the counted protocol
warning; anything else that is not a message is text); for files, a value or
a one-line AetherError naming the file. (The adapters of other agent formats
are tested elsewhere.)
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aether_cli import protocol as P
from aether_cli.episode_log import EpisodeLog
from aether_cli.errors import AetherError, CorruptMemoryError
from aether_cli.reader import LineSplitter, iter_lines
from aether_cli.store import Ledger, MemoryStore, files, read_ledger

# `make stress` (AETHER_STRESS=1, read at import: the autouse fixture clears AETHER_*) runs far more examples.
EXAMPLES = 5000 if os.environ.get("AETHER_STRESS") else 300
ROBUST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DEEP = 100_000
DEEP_LINES = [
    "[" * DEEP + "]" * DEEP,
    '{"a":' * DEEP + "1" + "}" * DEEP,
    '{"type": "tool_call", "name": "x", "input": ' + '{"a":' * 600 + "1" + "}" * 600 + "}",
    '{"type": "checkpoint", "state": ' + '{"a":' * 300 + "1" + "}" * 300 + "}",
    '{"type": "tool_result", "output": ' + "[" * 1000 + "]" * 1000 + "}",
    '{"type": "memory", "key": "k", "text": ' + "[" * DEEP + "]" * DEEP + "}",
]
SPECIAL_LINES = [
    '{"type": "usage", "context_tokens": NaN}',
    '{"type": "usage", "context_tokens": Infinity}',
    '{"type": "usage", "context_tokens": -Infinity}',
    '{"type": "usage", "context_tokens": 1e400}',
    '{"type": "usage", "context_tokens": 123456789012345678901234567890}',
    '{"type": "task", "id": "a", "progress": 1e999}',
    '{"type": "task", "id": "a", "id": 5}',  # duplicate key: the last one wins
    '{"type": "message", "type": "tool_call", "name": "x"}',
    '{"type": "message", "text": "\\ud800"}',  # an unpaired surrogate escape
    '{"type": "message", "text": "\\u0000"}',
    "[]",
    "null",
    '"a string"',
    "42",
    "{}",
    '{"type": 7}',
    '{"type": null}',
    '{"type": "no-such-type"}',
    "{",
    '{"type": "message", "text": "unterminated',
    "\ufeff{}",
]

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # beyond 64 bits too: orjson refuses those, so the line is text
    st.floats(),  # NaN and infinities too: json.dumps writes NaN / Infinity tokens
    st.text(max_size=30),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
FIELDS = [
    *("role", "text", "id", "name", "input", "output", "is_error", "context_tokens", "input_tokens"),
    *("output_tokens", "title", "status", "progress", "next_action", "notes", "files", "op", "key"),
    *("pinned", "priority", "state", "summary", "level", "agent", "model", "context_window", "capabilities"),
]
TYPED = st.builds(
    lambda kind, fields: {**fields, "type": kind},
    st.sampled_from(P.EVENT_TYPES),
    st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=6),
)
EVENT_CLASSES = {
    "hello": P.Hello,
    "message": P.Message,
    "tool_call": P.ToolCall,
    "tool_result": P.ToolResult,
    "usage": P.Usage,
    "task": P.TaskUpdate,
    "memory": P.MemoryOp,
    "checkpoint": P.CheckpointEvent,
    "done": P.Done,
    "log": P.Log,
}


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """A folder for the examples; on tmpfs when there is one (thousands of fsyncs are slow on ext4)."""
    shm = Path("/dev/shm")
    where = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    base = Path(tempfile.mkdtemp(prefix="aether-parse-", dir=where))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def ledger(scratch: Path) -> Iterator[Ledger]:
    """One ledger that every decoded event of the module is recorded in."""
    with Ledger(scratch / "events.jsonl", repair=True) as opened:
        yield opened
    problems: list[str] = []
    records = list(read_ledger(scratch / "events.jsonl", problems))
    assert problems == []
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))


def _consume(ev: P.Event, ledger: Ledger) -> None:
    """What the supervisor does next with an event: count it, log it, record it; none may raise."""
    assert isinstance(ev, P.Event)
    assert isinstance(P.counted_text(ev), str)
    EpisodeLog(objective="o").add(ev)
    ledger.append({"kind": "event", "event": ev.raw})


def _dumps_loose(value: Any) -> str:
    return json.dumps(value, allow_nan=True)  # NaN / Infinity tokens, big ints: what a sloppy agent prints


# ------------------------------------------------------------- the line reader


@ROBUST
@given(chunks=st.lists(st.binary(max_size=300), max_size=12), cap=st.integers(min_value=1, max_value=64))
@example(chunks=[b"\xff\xfe\n", b"\xc3", b"\xa9\r\n", b"\x00" * 70], cap=8)
def test_the_line_reader_takes_any_bytes(chunks: list[bytes], cap: int) -> None:
    splitter = LineSplitter(cap)
    lines = [line for chunk in chunks for line in splitter.feed(chunk)]
    last = splitter.close()
    data = b"".join(chunks)
    assert len(lines) == data.count(b"\n")
    assert all(line.terminated for line in lines)
    if last is not None:
        lines.append(last)
        assert not last.terminated
    for line in lines:
        assert "\n" not in line.text
        assert len(line.text.encode("utf-8", "surrogatepass")) <= cap * 3  # U+FFFD may stand for one byte
        assert line.dropped_bytes >= 0
        assert isinstance(P.decode_line(line.text), P.Event)


def test_the_line_reader_survives_a_pipe_of_garbage() -> None:
    garbage = b"".join(
        [b"\xff\xfe\xfd\n", b"{" * 5000, b"\n", ("x" * 3_000_000).encode(), b"\n", b"\xc3\n", b"tail"]
    )
    read_fd, write_fd = os.pipe()
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"],
        stdin=subprocess.PIPE,
        stdout=write_fd,
    )
    os.close(write_fd)
    assert writer.stdin is not None
    writer.stdin.write(garbage)
    writer.stdin.close()
    try:
        lines = list(iter_lines(read_fd, max_line_bytes=1 << 16))
    finally:
        os.close(read_fd)
        writer.wait()
    assert [line.terminated for line in lines] == [True, True, True, True, False]
    assert lines[2].dropped_bytes == 3_000_000 - (1 << 16)
    assert lines[0].text == "\ufffd" * 3 and lines[3].text == "\ufffd"
    for line in lines:
        assert isinstance(P.decode_line(line.text), P.Event)


# ------------------------------------------------------------- protocol decoding


@ROBUST
@given(line=st.text(max_size=300))
@example(line="{" * 2000)
def test_any_text_line_decodes_to_an_event(ledger: Ledger, line: str) -> None:
    _consume(P.decode_line(line), ledger)


@pytest.mark.parametrize("line", DEEP_LINES + SPECIAL_LINES, ids=range(len(DEEP_LINES + SPECIAL_LINES)))
def test_hostile_lines_decode_to_an_event_or_a_counted_warning(ledger: Ledger, line: str) -> None:
    ev = P.decode_line(line)
    assert isinstance(ev, (P.Text, P.Unknown, P.Invalid, *EVENT_CLASSES.values()))
    seq = ledger.seq
    _consume(ev, ledger)
    assert ledger.seq == seq + 1


@ROBUST
@given(obj=TYPED)
@example(obj={"type": "usage", "context_tokens": float("nan")})
@example(obj={"type": "usage", "context_tokens": 2**70})
@example(obj={"type": "task", "id": "a", "progress": float("inf")})
@example(obj={"type": "hello", "capabilities": "rehydrate"})
def test_wrong_field_types_become_a_counted_warning_never_a_crash(
    ledger: Ledger, obj: dict[str, Any]
) -> None:
    line = _dumps_loose(obj)
    ev = P.decode_line(line)
    expected = EVENT_CLASSES[obj["type"]]
    try:
        strict = files.loads(line)
    except ValueError:
        # NaN, Infinity or a 65-bit integer: not JSON to a strict parser, so plain text.
        assert isinstance(ev, P.Text) and ev.text == line
    else:
        assert isinstance(ev, expected | P.Invalid), (obj, ev)
        if isinstance(ev, P.Invalid):
            assert ev.reason.startswith(f"{obj['type']}: ") and ev.text == line
        assert ev.raw == strict
    _consume(ev, ledger)


@ROBUST
@given(pairs=st.lists(st.tuples(st.sampled_from(["type", "id", "text", "name"]), JSON_SCALARS), max_size=8))
def test_duplicate_keys_decode_like_the_last_one_wins(pairs: list[tuple[str, Any]]) -> None:
    line = "{" + ", ".join(f"{json.dumps(k)}: {_dumps_loose(v)}" for k, v in pairs) + "}"
    ev = P.decode_line(line)
    assert isinstance(ev, P.Event)
    if not isinstance(ev, P.Text):
        assert ev.raw == dict(pairs)


@ROBUST
@given(value=JSON_VALUES)
def test_json_that_is_not_a_typed_object_is_text(value: Any) -> None:
    line = _dumps_loose(value)
    ev = P.decode_line(line)
    if not (isinstance(value, dict) and isinstance(value.get("type"), str)):
        assert isinstance(ev, P.Text) and ev.text == line


# ------------------------------------------------------------- the .memory readers


def _store(scratch: Path, name: str) -> MemoryStore:
    store = MemoryStore(scratch / name / ".memory")
    store.init()
    return store


def _every_reader(store: MemoryStore) -> None:
    """Each reader of the store returns a value or raises an AetherError (naming the file); nothing else."""
    readers = [
        store.read_continuity,
        store.read_project_memory,
        store.read_context_index,
        store.read_heartbeat,
        store.holder,
        store.list_tasks,
        lambda: store.read_task("t1"),
        lambda: store.read_checkpoint("1"),
        store.checkpoint_ids,
        lambda: store.newest_intact_checkpoint(),
        store.update_context_index,
    ]
    for reader in readers:
        try:
            reader()
        except CorruptMemoryError as exc:
            assert str(store.root) in str(exc), exc
            assert "\n" not in str(exc)
        except AetherError:
            pass


@ROBUST
@given(data=st.binary(max_size=400) | JSON_VALUES.map(lambda v: _dumps_loose(v).encode()))
@example(data=b"\xff\xfe{}")
@example(data=b"NaN")
@example(data=b"[" * DEEP + b"]" * DEEP)
@example(data=b'{"_update_seq": "7"}')
@example(data=b'{"facts": [1, 2]}')
@example(data=b'{"id": "chk_000001_00000000", "sha256": 5}')
@example(data=b'{"pid": 99999999999999999999}')
@example(data=b'{"tasks": 1}')  # found by `make stress`: an index section of the wrong type
def test_every_memory_reader_takes_any_file_content(scratch: Path, data: bytes) -> None:
    store = _store(scratch, "readers")
    targets = [
        store.continuity_path,
        store.project_memory_path,
        store.context_index_path,
        store.heartbeat_path,
        store.lock_info_path,
        store.tasks_dir / "task_t1_state.json",
        store.checkpoints_dir / "chk_000001_00000000.json",
    ]
    for target in targets:
        if target.exists():
            os.chmod(target, 0o644)
        target.write_bytes(data)
    _every_reader(store)
    try:
        value = files.read_json(store.continuity_path)
    except CorruptMemoryError as exc:
        assert str(store.continuity_path) in str(exc)
    else:
        assert files.loads(data) == value or (isinstance(value, float) and math.isnan(value))


@ROBUST
@given(data=st.binary(max_size=600))
@example(data=b'{"seq": 1}\n\xff\xfe\n{"seq": "2"}\n[3]\n{"seq": 4}\n{"seq": 5, "to')
@example(data=b'{"seq": true}\n{"seq": 2}')
@example(data=b"\n\n\n")
def test_ledgers_read_and_reopen_whatever_they_hold(scratch: Path, data: bytes) -> None:
    path = scratch / "any.jsonl"
    path.write_bytes(data)
    problems: list[str] = []
    records = list(read_ledger(path, problems))
    assert all(isinstance(r, dict) for r in records)
    assert all(p.startswith(f"{path}: line ") for p in problems)
    assert path.read_bytes() == data  # reading never modifies
    with Ledger(path, repair=True) as ledger:
        seq = ledger.append({"n": 1})
    after = list(read_ledger(path))
    assert after[-1]["seq"] == seq and after[-1]["n"] == 1
    assert path.read_bytes().endswith(b"\n")
