"""Never lose state (issue 4, items 8-15): kills, torn tails, corruption, immutability, locks,
symlinks and filesystem faults.

Faults are injected through store.files' filesystem seam (`files.use_fs`), never by
mocking the OS; kills are real SIGKILLs of real processes; the CLI runs as a
real subprocess. Every test here fails if its guarantee breaks.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import AGENTS, aether, agent_cmd, read_json

from aether_cli import commands
from aether_cli import constants as C
from aether_cli.errors import (
    AetherError,
    ChecksumMismatchError,
    CorruptMemoryError,
    LockedError,
    StorageError,
)
from aether_cli.store import Ledger, MemoryStore, files, read_ledger

# Read at import: the autouse fixture clears AETHER_* variables before each test runs.
STRESS = bool(os.environ.get("AETHER_STRESS"))
KILLS = int(os.environ.get("AETHER_STRESS_KILLS", "0")) or (1000 if STRESS else 30)
SEED = int(os.environ.get("AETHER_STRESS_SEED", "0")) or int(time.time())
# A fresh .memory every ROTATE kills keeps each kill's cost flat (the index lists every checkpoint).
ROTATE = 25

FAST = {"AETHER_TOKENIZER": "estimate"}
FIXED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def fixed_clock() -> datetime:
    return FIXED


# ===================================================================== helpers


class FaultyFS(files.OsFS):
    """Fails the k-th call of each operation in `ops` with OSError(err); with `always`, every later one too.

    A failing `write` first writes half of its data for real: a dying disk may
    take part of a write before it reports the error.
    """

    def __init__(self, ops: str | tuple[str, ...], k: int, err: int = errno.EIO, *, always: bool = False):
        self.ops = (ops,) if isinstance(ops, str) else ops
        self.k = k
        self.err = err
        self.always = always
        self.calls: Counter[str] = Counter()
        self.raised = 0

    def _hit(self, op: str) -> None:
        self.calls[op] += 1
        n = self.calls[op]
        if op in self.ops and (n == self.k or (self.always and n > self.k)):
            self.raised += 1
            raise OSError(self.err, os.strerror(self.err))

    def write(self, fd: int, data: bytes | memoryview) -> int:
        try:
            self._hit("write")
        except OSError:
            if len(data) > 1:
                os.write(fd, bytes(data[: len(data) // 2]))
            raise
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        self._hit("fsync")
        super().fsync(fd)

    def replace(self, src: Path, dst: Path) -> None:
        self._hit("replace")
        super().replace(src, dst)

    def link(self, src: Path, dst: Path) -> None:
        self._hit("link")
        super().link(src, dst)

    def truncate(self, fd: int, size: int) -> None:
        self._hit("truncate")
        super().truncate(fd, size)

    def fsync_dir(self, folder: Path) -> None:
        self._hit("fsync_dir")
        super().fsync_dir(folder)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every regular file under `root` (relative path -> bytes); symlinks are not followed."""
    out: dict[str, bytes] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.tmp")]


def ledger_lines(path: Path) -> tuple[list[dict[str, Any]], bytes]:
    """(the complete records, the torn tail) of a ledger; fails on a complete line that is not a record."""
    raw = path.read_bytes()
    *complete, tail = raw.split(b"\n")
    records = []
    for number, line in enumerate(complete, 1):
        record = orjson.loads(line)
        assert isinstance(record, dict) and isinstance(record.get("seq"), int), f"{path}:{number}: {line!r}"
        records.append(record)
    return records, tail


def assert_seq_contiguous(path: Path) -> list[dict[str, Any]]:
    records, _ = ledger_lines(path)
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(1, len(seqs) + 1)), f"{path}: seq has gaps or repeats: {seqs[-20:]}"
    return records


def check_memory(store: MemoryStore) -> Counter[str]:
    """Everything under .memory reads back intact; returns what was checked."""
    seen: Counter[str] = Counter()
    for path in sorted(store.root.rglob("*.json")):
        value = files.read_json(path)
        assert isinstance(value, dict), path
        seen["json_files"] += 1
    for checkpoint_id in store.checkpoint_ids():
        store.read_checkpoint(checkpoint_id)
        seen["checkpoints"] += 1
    store.read_continuity()
    store.list_tasks()
    store.read_project_memory()
    store.read_context_index()
    for ledger in sorted(store.runs_dir.glob("*.jsonl")):
        assert_seq_contiguous(ledger)
        seen["ledgers"] += 1
    return seen


def draft(n: int = 1, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "session_id": "s1",
        "episode": n,
        "trigger": "budget",
        "objective": "ship it",
        "progress": [f"step {n}"],
        "state": {"n": n},
        "next_actions": ["continue"],
        "tasks": [{"id": "w", "status": "in_progress", "next_action": "go on"}],
    }
    base.update(fields)
    return base


def continuity(n: int) -> dict[str, Any]:
    agent = agent_cmd("minimal_agent.py")
    return {
        "session_id": "s1",
        "status": "stopped",
        "episode": n,
        "context_usage_percent": 10.0,
        "last_checkpoint": None,
        "active_tasks": [],
        "memory_locations": [],
        "resume_instructions": "aether resume",
        "command": agent,
        "settings": {"command": agent, "objective": "ship it"},
    }


def run_agent(*extra: str) -> subprocess.CompletedProcess[str]:
    """`aether run` of the minimal agent in the current project (one session, one checkpoint)."""
    return aether("run", "-q", *extra, "--", *agent_cmd("minimal_agent.py"), env=FAST)


def assert_one_line_error(res: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert res.returncode == code, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("aether: error:")]
    assert len(errors) == 1, res.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def flip_byte(path: Path, index: int, mask: int = 0x04) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[index] ^= mask
    path.write_bytes(bytes(data))


# ===================================================================== item 12: fault injection


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A folder for fault-injection runs: on tmpfs when there is one.

    The faults are simulated, so the filesystem does not matter to what is
    tested, and a real fsync costs milliseconds on ext4 (thousands run here).
    """
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="aether-faults-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _baseline(root: Path) -> tuple[MemoryStore, Ledger]:
    store = MemoryStore(root, clock=fixed_clock)
    store.init()
    store.acquire(["agent"])
    store.write_task({"id": "w", "title": "v0"})
    first = store.write_checkpoint(draft(0))
    store.write_continuity({**continuity(0), "last_checkpoint": first["id"]})
    store.apply_memory_ops([{"op": "add", "key": "k", "text": "v0"}], seq=0)
    store.write_heartbeat({"n": 0})
    ledger = store.open_ledger("s1")
    ledger.append({"n": 0})
    return store, ledger


def _workload(store: MemoryStore, ledger: Ledger, n: int) -> list[tuple[str, Callable[[], Any]]]:
    return [
        ("task", lambda: store.write_task({"id": "w", "title": f"v{n}"})),
        ("checkpoint", lambda: store.write_checkpoint(draft(n))),
        ("continuity", lambda: store.write_continuity(continuity(n))),
        ("memory", lambda: store.apply_memory_ops([{"op": "add", "key": "k", "text": f"v{n}"}], seq=n)),
        ("heartbeat", lambda: store.write_heartbeat({"n": n})),
        ("ledger", lambda: ledger.append({"n": n})),
        ("index", lambda: store.update_context_index(token_counts={"w": n})),
        ("prompt", lambda: store.write_prompt(f"prompt {n}")),
    ]


def _calls_per_op(root: Path) -> Counter[str]:
    store, ledger = _baseline(root)
    counter = FaultyFS((), 0)
    with files.use_fs(counter):
        for _, step in _workload(store, ledger, 1):
            step()
    ledger.close()
    store.release()
    return counter.calls


@pytest.mark.parametrize("always", [False, True], ids=["fail-once", "fail-always"])
@pytest.mark.parametrize("op", ["write", "fsync", "replace", "link", "fsync_dir"])
def test_the_kth_failing_call_leaves_the_previous_state_valid(scratch: Path, op: str, always: bool) -> None:
    calls = _calls_per_op(scratch / "count" / ".memory")[op]
    assert calls >= 1, f"the workload never calls {op}"
    for k in range(1, calls + 2):  # k = calls + 1: no call fails, everything must succeed
        root = scratch / f"k{k}" / ".memory"
        store, ledger = _baseline(root)
        err = (errno.EIO, errno.ENOSPC)[k % 2]  # both, across the values of k
        faulty = FaultyFS(op, k, err, always=always)
        failed: list[str] = []
        with files.use_fs(faulty):
            for name, step in _workload(store, ledger, 1):
                before = snapshot(root)
                try:
                    step()
                except StorageError as exc:
                    failed.append(name)
                    # Clear: names a file under .memory, the step and the OS's reason.
                    assert exc.errno == err and isinstance(exc, AetherError)
                    assert exc.exit_code == C.EXIT_STORAGE
                    assert str(root) in str(exc) and os.strerror(err) in str(exc), str(exc)
                    after = snapshot(root)
                    if op != "fsync_dir":
                        # Only a failed folder fsync may leave the (complete) new content in place.
                        assert [p for p in before if after.get(p) != before[p]] == [], f"k={k}"
                    assert temp_files(root) == [], f"k={k}: {temp_files(root)}"
                    check_memory(store)
        assert (len(failed) > 0) == (k <= calls), (k, failed, faulty.raised)
        # Faults gone: the very same writes succeed and land.
        for _, step in _workload(store, ledger, 2):
            step()
        assert store.read_task("w")["title"] == "v2"  # type: ignore[index]
        assert store.read_project_memory()["facts"][0]["text"] == "v2"
        assert store.read_heartbeat() == {"n": 2}
        ledger.close()
        store.release()
        check_memory(store)
        plan, _settings, _note = commands.resume_plan(store, None, {})
        assert plan.checkpoint_id == store.latest_checkpoint_id()
        assert (store.root / C.RUNS_DIR / "s1.jsonl").exists()


def test_a_failing_ledger_append_leaves_no_partial_line_and_no_seq_gap(tmp_path: Path) -> None:
    store, ledger = _baseline(tmp_path / ".memory")
    path = ledger.path
    before = path.read_bytes()
    with files.use_fs(FaultyFS("write", 1, errno.ENOSPC)), pytest.raises(StorageError, match="ledger"):
        ledger.append({"n": 1, "blob": "y" * 5000})
    assert path.read_bytes() == before  # the half-written line was cut away
    assert ledger.append({"n": 2}) == 2  # the failed record's seq is reused: no gap
    records = assert_seq_contiguous(path)
    assert [r["n"] for r in records] == [0, 2]
    ledger.close()
    store.release()


def test_an_append_whose_cleanup_fails_too_is_undone_by_the_next_append(tmp_path: Path) -> None:
    store, ledger = _baseline(tmp_path / ".memory")
    path = ledger.path
    with files.use_fs(FaultyFS(("write", "truncate"), 1, errno.EIO, always=True)):
        with pytest.raises(StorageError):
            ledger.append({"n": 1, "blob": "y" * 5000})
        # The partial line is still there (nothing could cut it) but readers skip it ...
        assert not path.read_bytes().endswith(b"\n")
        assert [r["n"] for r in read_ledger(path)] == [0]
        # ... and no append goes after it while the disk keeps failing.
        with pytest.raises(StorageError):
            ledger.append({"n": 2})
    assert ledger.append({"n": 3}) == 2
    assert [r["n"] for r in assert_seq_contiguous(path)] == [0, 3]
    ledger.close()
    store.release()


def test_a_failing_acquire_frees_the_lock(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    with files.use_fs(FaultyFS("fsync", 1, errno.EIO, always=True)), pytest.raises(StorageError):
        store.acquire(["agent"])
    assert not store.locked
    other = MemoryStore(tmp_path / ".memory")
    other.acquire(["agent"])
    other.release()


def test_a_failing_ledger_flush_on_close_is_reported(tmp_path: Path) -> None:
    store, ledger = _baseline(tmp_path / ".memory")
    with files.use_fs(FaultyFS("fsync", 1, errno.EIO)), pytest.raises(StorageError, match="fsync"):
        ledger.close()
    ledger.close()  # closed anyway: idempotent
    store.release()


def test_a_folder_in_place_of_a_file_is_named_not_a_crash(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    # A folder where a file should be cannot be opened for reading as one.
    os.mkdir(store.continuity_path)
    with pytest.raises(CorruptMemoryError, match="not a regular file"):
        store.read_continuity()


FAILING_RUN = """
import errno, os, sys
from aether_cli.store import files
from aether_cli.cli import main

class Full(files.OsFS):
    calls = 0
    def replace(self, src, dst):
        Full.calls += 1
        if Full.calls > int(os.environ["OK_RENAMES"]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().replace(src, dst)

files.FS = Full()
sys.argv = ["aether", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("ok_renames", [0, 3, 8])
def test_a_disk_full_run_exits_with_one_clear_line(project: Path, ok_renames: int) -> None:
    res = subprocess.run(
        [sys.executable, "-c", FAILING_RUN, "run", "-q", "--", *agent_cmd("minimal_agent.py")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **FAST, "OK_RENAMES": str(ok_renames)},
        stdin=subprocess.DEVNULL,
    )
    assert_one_line_error(res, C.EXIT_STORAGE, "No space left on device", str(project / ".memory"))
    store = MemoryStore(project / ".memory")
    assert temp_files(store.root) == []
    check_memory(store)
    assert store.holder() is None
    assert aether("status", "--json", env=FAST).returncode == 0


# ===================================================================== item 9: the ledger


def test_the_locked_writer_truncates_a_torn_tail_and_logs_it(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    with store.holding(["agent"]), store.open_ledger("s") as ledger:
        ledger.append({"n": 1})
        ledger.append({"n": 2})
    path = store.runs_dir / "s.jsonl"
    with open(path, "ab") as fh:
        fh.write(b'{"n": 3, "seq": 3, "ts": "2025')
    before = path.read_bytes()
    assert [r["n"] for r in read_ledger(path)] == [1, 2]  # readers skip it ...
    assert path.read_bytes() == before  # ... and never touch it
    with store.holding(["agent"]), store.open_ledger("s") as ledger:
        assert ledger.repaired_bytes == len(b'{"n": 3, "seq": 3, "ts": "2025')
        assert ledger.append({"n": 4}) == 4
    records = assert_seq_contiguous(path)
    assert [r.get("kind") for r in records] == [None, None, "ledger_repair", None]
    assert records[2]["truncated_bytes"] == ledger.repaired_bytes
    assert b"2025\n" not in path.read_bytes()  # the fragment is gone, not merely closed off


def test_an_unlocked_writer_never_truncates(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    path = store.runs_dir / "s.jsonl"
    path.write_bytes(b'{"seq": 1}\n{"seq": 2, "x": "torn')
    with store.open_ledger("s") as ledger:
        assert ledger.repaired_bytes == 0
        assert ledger.append({}) == 2
    assert path.read_bytes().startswith(b'{"seq": 1}\n{"seq": 2, "x": "torn\n')


def test_a_torn_fragment_missing_only_its_newline_keeps_its_seq(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    path = store.runs_dir / "s.jsonl"
    path.write_bytes(b'{"seq": 1}\n{"seq": 2}')
    with store.open_ledger("s") as ledger:
        assert ledger.append({}) == 3
    assert [r["seq"] for r in read_ledger(path)] == [1, 2, 3]


def test_a_repair_the_disk_refuses_fails_cleanly_and_changes_nothing(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    path = store.runs_dir / "s.jsonl"
    path.write_bytes(b'{"seq": 1}\n{"seq": 2, "x": "to')
    before = path.read_bytes()
    with store.holding(["agent"]):
        with files.use_fs(FaultyFS("truncate", 1, errno.EIO)), pytest.raises(StorageError, match="torn"):
            store.open_ledger("s")
        assert path.read_bytes() == before
        with store.open_ledger("s") as ledger:
            assert ledger.append({}) == 3
    assert [r["seq"] for r in read_ledger(path)] == [1, 2, 3]


def test_interior_ledger_damage_is_reported_by_line(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"seq": 1}\n{"seq": 2, "x"; 1}\n\n[3]\n{"seq": 4}\n{"seq": 5')
    problems: list[str] = []
    assert [r["seq"] for r in read_ledger(path, problems)] == [1, 4]
    assert problems[0].startswith(f"{path}: line 2: invalid JSON at line 1, column")
    assert problems[1] == f"{path}: line 4: not a JSON object"
    assert len(problems) == 2


# ===================================================================== item 10: corruption


def test_every_single_bit_flip_and_truncation_of_a_checkpoint_is_caught(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory", clock=fixed_clock)
    store.init()
    ck = store.write_checkpoint(draft(1, state={"note": "naïve café ✓", "n": [1, 2.5, None, True]}))
    path = store.checkpoints_dir / f"{ck['id']}.json"
    original = path.read_bytes()
    os.chmod(path, 0o644)
    outcomes: Counter[str] = Counter()
    # Damage in place (pwrite, ftruncate): rewriting the whole file 10,000 times is slow on ext4.
    fd = os.open(path, os.O_RDWR)
    try:
        for index, byte in enumerate(original):
            for bit in range(8):
                os.pwrite(fd, bytes([byte ^ (1 << bit)]), index)
                with pytest.raises(CorruptMemoryError) as info:
                    store.read_checkpoint(ck["id"])
                assert path.name in str(info.value)
                outcomes[type(info.value).__name__] += 1
            os.pwrite(fd, bytes([byte]), index)
        for size in range(len(original) - 1):  # dropping only the final newline leaves the content intact
            os.ftruncate(fd, size)
            with pytest.raises(CorruptMemoryError, match="line"):
                store.read_checkpoint(ck["id"])
            os.pwrite(fd, original[size:], size)
    finally:
        os.close(fd)
    assert path.read_bytes() == original
    assert store.read_checkpoint(ck["id"]) == ck
    assert outcomes["ChecksumMismatchError"] > 0 and outcomes["CorruptMemoryError"] > 0


def test_a_checkpoint_without_its_sha256_field_is_still_checked_by_its_id(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory", clock=fixed_clock)
    store.init()
    ck = store.write_checkpoint(draft())
    path = store.checkpoints_dir / f"{ck['id']}.json"
    os.chmod(path, 0o644)
    edited = {k: v for k, v in ck.items() if k != "sha256"}
    path.write_bytes(files.dumps(edited))
    assert store.read_checkpoint(ck["id"])["objective"] == "ship it"  # the content still matches its id
    edited["objective"] = "something else"
    path.write_bytes(files.dumps(edited))
    with pytest.raises(ChecksumMismatchError):
        store.read_checkpoint(ck["id"])


def test_a_checkpoint_nested_too_deep_to_hash_is_corrupt_not_a_crash(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    deep = b"[" * 600 + b"]" * 600
    (store.checkpoints_dir / "chk_000001_00000000.json").write_bytes(
        b'{"id": "chk_000001_00000000", "state": ' + deep + b"}"
    )
    with pytest.raises(CorruptMemoryError, match="hashed"):
        store.read_checkpoint("1")


def test_newest_intact_skips_broken_and_missing_checkpoints(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory", clock=fixed_clock)
    store.init()
    ids = [store.write_checkpoint(draft(n))["id"] for n in range(1, 5)]
    flip_byte(store.checkpoints_dir / f"{ids[3]}.json", 40)
    (store.checkpoints_dir / f"{ids[2]}.json").unlink()
    newest, skipped = store.newest_intact_checkpoint()
    assert newest == ids[1]
    assert len(skipped) == 1 and ids[3] in skipped[0]
    newest, skipped = store.newest_intact_checkpoint(ids[2])
    assert newest == ids[1] and "missing" in skipped[0]
    assert store.newest_intact_checkpoint(ids[0]) == (ids[0], [])


@pytest.fixture
def two_sessions(project: Path) -> list[str]:
    """Two real `aether run`s of the minimal agent: two checkpoints, the second session current."""
    for _ in range(2):
        res = run_agent()
        assert res.returncode == 0, res.stderr
    ids = MemoryStore(project / ".memory").checkpoint_ids()
    assert len(ids) == 2
    return ids


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flip", "truncate", "edit"])
def test_resume_falls_back_to_the_newest_intact_checkpoint_and_says_so(
    project: Path, two_sessions: list[str], damage: str
) -> None:
    path = project / ".memory" / "checkpoints" / f"{two_sessions[1]}.json"
    os.chmod(path, 0o644)
    if damage == "flip":
        flip_byte(path, len(path.read_bytes()) // 2, 0x01)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.write_bytes(path.read_bytes().replace(b'"trigger": "done"', b'"trigger": "manual"'))
    # The fixture's session ended done, which a resume refuses without --force (issue 13.4),
    # and --force would also take the edited checkpoint: the fallback is a stopped session's.
    cont = project / ".memory" / "session_continuity.json"
    record = json.loads(cont.read_bytes())  # its own record, not one in other_sessions (13.3)
    record["status"] = "stopped"
    cont.write_text(json.dumps(record))
    res = aether("resume", env=FAST)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert f"skipped a corrupt checkpoint: {path}" in res.stdout + res.stderr
    assert f"resuming from {two_sessions[0]}" in res.stdout + res.stderr
    assert f"from {two_sessions[0]}" in res.stdout  # the episode really launched from it


@pytest.mark.slow
def test_corruption_is_reported_by_file_and_line_with_its_exit_code(
    project: Path, two_sessions: list[str]
) -> None:
    path = project / ".memory" / "checkpoints" / f"{two_sessions[1]}.json"
    flip_byte(path, path.read_bytes().index(b'"objective"') - 1, 0x20)  # the newline before a key
    for args in (["resume", two_sessions[1]], ["show", two_sessions[1]]):
        res = aether(*args, env=FAST)
        assert_one_line_error(res, C.EXIT_CORRUPT, str(path), "invalid JSON at line")
    for other in (project / ".memory" / "checkpoints").iterdir():
        other.chmod(0o644)
        other.write_bytes(b'{"id": ')
    res = aether("resume", env=FAST)
    assert_one_line_error(res, C.EXIT_CORRUPT, "no intact checkpoint", two_sessions[0], two_sessions[1])
    continuity = project / ".memory" / "session_continuity.json"
    continuity.write_bytes(continuity.read_bytes()[:-30])
    # With no intact checkpoint to rebuild it from, resume refuses, naming the file and line
    # and the way out; status (issue 12.8: it used to exit 5 too) reports the damage and exits 0.
    res = aether("resume", env=FAST)
    assert_one_line_error(res, C.EXIT_CORRUPT, str(continuity), "line", "git checkout")
    res = aether("status", "--json", env=FAST)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    status = orjson.loads(res.stdout)
    assert status["state"] == "damaged" and "invalid JSON at line" in status["state_note"]


# ===================================================================== item 11: immutability


def test_a_checkpoint_is_created_exclusively_and_born_read_only(tmp_path: Path) -> None:
    a = MemoryStore(tmp_path / "a" / ".memory", clock=fixed_clock)
    b = MemoryStore(tmp_path / "b" / ".memory", clock=fixed_clock)
    a.init()
    b.init()
    ck = a.write_checkpoint(draft())
    planted = b.checkpoints_dir / f"{ck['id']}.json"

    class RacingWriter(files.OsFS):
        """Another writer creates the very same file between our listing and our link."""

        def link(self, src: Path, dst: Path) -> None:
            Path(dst).write_bytes(b"someone else's file")
            super().link(src, dst)

    with files.use_fs(RacingWriter()), pytest.raises(AetherError, match="never rewritten"):
        b.write_checkpoint(draft())
    assert planted.read_bytes() == b"someone else's file"
    assert temp_files(b.root) == []
    path = a.checkpoints_dir / f"{ck['id']}.json"
    assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0
    assert (
        ck["sha256"]
        == hashlib.sha256(
            files.dumps({k: v for k, v in ck.items() if k not in ("id", "sha256")})
        ).hexdigest()
    )
    assert ck["id"].endswith(ck["sha256"][:8])


@pytest.mark.slow
def test_runs_never_rewrite_a_checkpoint(project: Path, two_sessions: list[str]) -> None:
    folder = project / ".memory" / "checkpoints"
    before = {p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}
    # Both sessions ended done: resuming them anyway takes --force (issue 13.4).
    assert aether("resume", "--force", env=FAST).returncode == 0
    assert aether("resume", "--force", two_sessions[0], env=FAST).returncode == 0
    after = {p.name: (p.read_bytes(), p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert {k: after[k] for k in before} == before
    assert len(after) > len(before)


@pytest.mark.slow
def test_resume_refuses_an_edited_checkpoint_unless_forced(project: Path, two_sessions: list[str]) -> None:
    edited = two_sessions[1]
    path = project / ".memory" / "checkpoints" / f"{edited}.json"
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes().replace(b'"trigger": "done"', b'"trigger": "manual"'))
    res = aether("resume", edited, env=FAST)
    assert_one_line_error(res, C.EXIT_CORRUPT, str(path), "sha256", "--force")
    res = aether("resume", "--force", edited, env=FAST)
    assert res.returncode == 0, res.stderr
    assert f"using {edited} although its content no longer matches its sha256" in res.stdout + res.stderr
    assert f"from {edited}" in res.stdout
    # Without a name, --force takes the newest checkpoint even though it was edited.
    cont = read_json(project / ".memory" / "session_continuity.json")
    assert cont["last_checkpoint"] != edited
    assert path.read_bytes().count(b'"trigger": "manual"') == 1  # resume never "repairs" the file


# ===================================================================== item 13: deterministic prompts

RENDER = """
import hashlib, sys
from pathlib import Path
from aether_cli.rehydrate import prompt_budget, rehydrate_prompt
from aether_cli.store import MemoryStore
from aether_cli.tokens import load_counter
store = MemoryStore(Path(sys.argv[1]))
ck = store.read_checkpoint("latest")
for window in (2_000, 128_000):  # one that forces cutting, one that keeps everything
    prompt = rehydrate_prompt(
        checkpoint=ck, tasks=store.list_tasks(), facts=store.read_project_memory()["facts"],
        episode=ck["episode"] + 1, count=load_counter().count, budget=prompt_budget(window),
        memory_dir=store.root,
    )
    sys.stdout.buffer.write(prompt.text.encode() + b"\\0")
"""


def test_the_same_checkpoint_and_settings_render_the_same_prompt_bytes(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory", clock=fixed_clock)
    store.init()
    for i in range(12):
        store.write_task(
            {"id": f"t{i}", "title": f"task {i} " * 5, "status": "in_progress", "progress": i / 12}
        )
    store.apply_memory_ops(
        [
            {"op": "add", "key": f"fact{i}", "text": f"fact number {i} " * 6, "pinned": i % 4 == 0}
            for i in range(20)
        ],
        seq=1,
    )
    store.write_checkpoint(
        draft(
            3,
            progress=[f"did {i}" for i in range(30)],
            errors=[f"error {i}" for i in range(10)],
            state={
                "files_read": [f"src/{i}.py" for i in range(40)],
                "decisions": [f"decision {i}" for i in range(15)],
                "recent_tool_calls": [f"shell {{'cmd': 'make {i}'}}" for i in range(10)],
            },
        )
    )
    outputs = set()
    for seed in ("0", "4242"):
        res = subprocess.run(
            [sys.executable, "-c", RENDER, str(store.root)],
            capture_output=True,
            timeout=60,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
        )
        outputs.add(res.stdout)
    assert len(outputs) == 1
    cut, full = outputs.pop().split(b"\0")[:2]
    assert len(cut) < len(full)  # the small window really cut material


# ===================================================================== item 14: one writer


@pytest.fixture
def live_run(project: Path) -> Iterator[subprocess.Popen[str]]:
    """A real `aether run` of a slow agent, holding the lock until the test ends."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aether_cli",
            "run",
            "-q",
            "--",
            *agent_cmd("stepper.py", "--steps", "400", "--delay", "0.05"),
        ],
        cwd=project,
        env={**os.environ, **FAST},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    beat = project / ".memory" / "runs" / "heartbeat.json"
    try:
        deadline = time.monotonic() + 30
        while not (beat.exists() and (project / ".memory" / "runs" / "lock.json").exists()):
            assert proc.poll() is None, "the run ended early"
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.05)
        yield proc
    finally:
        child = None
        with contextlib.suppress(OSError, ValueError):
            child = read_json(beat).get("child_pid")
        proc.kill()
        proc.wait()
        if isinstance(child, int):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child, signal.SIGKILL)


@pytest.mark.slow
def test_a_second_run_exits_at_once_naming_the_holder(project: Path, live_run: subprocess.Popen[str]) -> None:
    t0 = time.monotonic()
    assert aether("--version").returncode == 0
    startup = time.monotonic() - t0
    t0 = time.monotonic()
    res = run_agent()
    elapsed = time.monotonic() - t0
    info = read_json(project / ".memory" / "runs" / "lock.json")
    assert_one_line_error(
        res, C.EXIT_LOCKED, f"pid {live_run.pid}", "stepper.py", f"since {info['started_at']}"
    )
    # Within 1 s; on a loaded machine, at most half a second more than a bare `aether --version`.
    assert elapsed < 1.0 or elapsed - startup < 0.5, (elapsed, startup)
    res = aether("resume", env=FAST)
    assert_one_line_error(res, C.EXIT_LOCKED, f"pid {live_run.pid}", "stepper.py", info["started_at"])


@pytest.mark.slow
def test_status_works_during_a_live_run_and_the_lock_frees_at_once_on_sigkill(
    project: Path, live_run: subprocess.Popen[str]
) -> None:
    res = aether("status", "--json", env=FAST)
    assert res.returncode == 0, res.stderr
    state = json.loads(res.stdout)
    assert state["state"] == "running" and state["pid"] == live_run.pid
    store = MemoryStore(project / ".memory")
    with pytest.raises(LockedError):
        store.acquire(["me"])
    live_run.kill()
    live_run.wait()
    # Killed: it left its runs/lock.json behind, so status knows it did not exit on its own.
    state = json.loads(aether("status", "--json", env=FAST).stdout)
    assert state["state"] == "stale"
    t0 = time.monotonic()
    store.acquire(["me"])  # no wait, no stale-lock cleanup needed
    assert time.monotonic() - t0 < 0.5
    store.release()


# ===================================================================== item 15: symlinks

VICTIM_TEXT = b"# precious shell settings\n"


@pytest.fixture
def victim(project: Path) -> Path:
    path = Path(os.environ["HOME"]) / ".bashrc"
    path.write_bytes(VICTIM_TEXT)
    os.chmod(path, 0o600)
    return path


def _victim_intact(victim: Path, home_before: list[str]) -> None:
    assert victim.read_bytes() == VICTIM_TEXT
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600
    assert sorted(os.listdir(victim.parent)) == home_before


FILE_LINKS = [
    "runs/aether.lock",
    "runs/lock.json",
    "runs/write.lock",
    "runs/heartbeat.json",
    "runs/start.prompt",
    "runs/s1.jsonl",
    "session_continuity.json",
    "project_memory.json",
    "context_index.json",
    "task_states/task_w_state.json",
    "checkpoints/chk_000001_00000000.json",
    "README.md",
    ".gitignore",
]
DIR_LINKS = ["runs", "task_states", "checkpoints"]


def _every_store_operation(store: MemoryStore) -> list[str]:
    """Run each store operation once; return the messages of the refusals (all CorruptMemoryError)."""
    refusals: list[str] = []
    steps: list[Callable[[], Any]] = [
        store.init,
        lambda: store.acquire(["agent"]),
        lambda: store.write_task({"id": "w"}),
        store.list_tasks,
        lambda: store.read_task("w"),
        lambda: store.write_checkpoint(draft()),
        lambda: store.read_checkpoint("1"),
        lambda: store.write_continuity(continuity(1)),
        store.read_continuity,
        lambda: store.apply_memory_ops([{"op": "add", "key": "k", "text": "t"}], seq=1),
        store.update_context_index,
        lambda: store.write_heartbeat({"n": 1}),
        lambda: store.write_prompt("p"),
        lambda: store.open_ledger("s1").append({"n": 1}),
        lambda: list(read_ledger(store.runs_dir / "s1.jsonl")),
        store.request_checkpoint,
        store.sweep,
    ]
    for step in steps:
        try:
            step()
        except CorruptMemoryError as exc:
            refusals.append(str(exc))
        except (FileNotFoundError, AetherError):
            pass
    store.release()
    return refusals


@pytest.mark.parametrize("name", FILE_LINKS + DIR_LINKS)
def test_no_store_operation_follows_a_planted_symlink(project: Path, victim: Path, name: str) -> None:
    store = MemoryStore(project / ".memory", clock=fixed_clock)
    store.init()
    link = store.root / name
    if link.exists():
        if link.is_dir():
            for p in link.iterdir():
                p.unlink()
            link.rmdir()
        else:
            link.unlink()
    link.symlink_to(victim.parent if name in DIR_LINKS else victim)
    home_before = sorted(os.listdir(victim.parent))
    refusals = _every_store_operation(store)
    _victim_intact(victim, home_before)
    assert link.is_symlink()
    assert any("symlink" in r and name.split("/")[-1] in r for r in refusals), refusals


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [*FILE_LINKS, *DIR_LINKS, "templates/rehydrate.md", "templates", "config.toml"]
)
def test_aether_run_and_resume_never_follow_a_planted_symlink(project: Path, victim: Path, name: str) -> None:
    store = MemoryStore(project / ".memory")
    store.init()
    store.write_continuity({**continuity(1), "session_id": "s1"})
    home_before = sorted(os.listdir(victim.parent))
    link = store.root / name
    if link.is_dir() and not link.is_symlink():
        for p in link.iterdir():
            p.unlink()
        link.rmdir()
    elif link.exists():
        link.unlink()
    link.symlink_to(victim.parent if name in (*DIR_LINKS, "templates") else victim)
    # --yes: the hand-made session never ran here, and the resume must get as far as the link.
    for res in (aether("resume", "-q", "--yes", env=FAST), run_agent()):
        assert res.returncode in (0, C.EXIT_USAGE, C.EXIT_CORRUPT), (res.returncode, res.stderr)
        assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr
        if res.returncode == C.EXIT_CORRUPT:
            assert_one_line_error(res, C.EXIT_CORRUPT, "symlink")
        _victim_intact(victim, home_before)
    if name == C.CONTINUITY_FILE:
        # Issue 12.8: a new `run` moves a bad record aside, the link itself (never followed),
        # and writes its own; `resume`, with no checkpoint to rebuild from, refused.
        kept = list(store.runs_dir.glob(f"{name}.bad-*"))
        assert len(kept) == 1 and kept[0].is_symlink() and not link.is_symlink()
    else:
        assert link.is_symlink()


# ===================================================================== items 8 and 9: random SIGKILLs

WRITER = AGENTS / "checkpoint_writer.py"


def _kill_at_random(folder: Path, rng: random.Random) -> list[list[str]]:
    """Start the writer, SIGKILL it at a random moment; return the writes it acknowledged.

    A third of the kills aim at the end of the big ledger append (after its
    redacting and encoding, in its one write): the only write a kill can tear.
    """
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(folder / ".memory"), json.dumps(agent_cmd("minimal_agent.py"))],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    acked: list[list[str]] = []
    try:
        target = rng.randint(0, 40)
        aim_at_big = rng.random() < 1 / 3
        if target == 0:
            time.sleep(rng.uniform(0.0, 0.4))  # somewhere in start-up: init, sweep, lock, ledger repair
        else:
            while len(acked) < target or (aim_at_big and acked[-1][0] != "ledger-big-start"):
                line = proc.stdout.readline()
                assert line, f"the writer died on its own: {proc.stderr.read()[-3000:]}"
                acked.append(line.split())
            took = float(acked[-1][1]) if aim_at_big else 0.0  # the previous big append's duration
            # Its write is the last 0.3 ms or so of about 25 ms: aim at the final 1.5 ms.
            time.sleep(max(0.0, took - rng.uniform(0.0, 0.0015)) if took else rng.uniform(0.0, 0.004))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        acked.extend(line.split() for line in proc.stdout.read().splitlines())
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    assert err == "", err[-3000:]
    return acked


def _check_acknowledged(store: MemoryStore, acked: list[list[str]]) -> None:
    """Every write the writer reported done is on disk; the ledger lost at most its last line."""
    cont = store.read_continuity() or {}
    session = cont.get("session_id")
    path = store.ledger_path(str(session))
    records, _tail = ledger_lines(path)
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(1, len(seqs) + 1)), seqs[-10:]
    for kind, *rest in acked:
        if kind == "ledger":
            assert int(rest[0]) <= len(seqs), f"acknowledged ledger seq {rest[0]} lost"
        elif kind == "checkpoint":
            assert store.read_checkpoint(rest[0])["id"] == rest[0]
        elif kind == "continuity":
            assert cont["_update_seq"] >= int(rest[0])


@pytest.mark.slow
def test_random_sigkills_never_lose_state(project: Path) -> None:
    rng = random.Random(SEED)
    figures: Counter[str] = Counter()
    folder = project
    store = MemoryStore(project / ".memory")
    for kill in range(KILLS):
        if kill % ROTATE == 0:
            folder = project / f"round{kill // ROTATE}"
            folder.mkdir()
            store = MemoryStore(folder / ".memory")
            res = aether("run", "-q", "--", *agent_cmd("minimal_agent.py"), cwd=folder, env=FAST)
            assert res.returncode == 0, res.stderr
        where = f"seed {SEED}, kill {kill + 1} of {KILLS}, in {folder}"
        acked = _kill_at_random(folder, rng)
        figures["acknowledged_writes"] += len(acked)
        figures["acknowledged_checkpoints"] += sum(1 for a in acked if a[0] == "checkpoint")
        # Right after the kill, before anything repairs or sweeps.
        figures["temp_files_after_kill"] += len(temp_files(store.root))
        ledger = store.ledger_path(str((store.read_continuity() or {}).get("session_id")))
        _records, tail = ledger_lines(ledger)
        figures["torn_ledger_tails"] += bool(tail)
        try:
            checked = check_memory(store)
            _check_acknowledged(store, acked)
        except (AssertionError, AetherError) as exc:
            raise AssertionError(f"{where}: {exc}") from exc
        figures["json_files_checked"] += checked["json_files"]
        seq_before = len(_records)
        # The restart: a real `aether resume` recovers the dead session and runs it to the end
        # (--force: a kill that came after the agent finished leaves a session that ended done).
        res = aether("resume", "-q", "--force", cwd=folder, env=FAST)
        assert res.returncode == 0, f"{where}: resume failed: {res.stderr[-3000:]}"
        assert "Traceback" not in res.stderr and "skipped a corrupt" not in res.stderr, (
            f"{where}: {res.stderr}"
        )
        figures["resumes_ok"] += 1
        assert temp_files(store.root) == [], f"{where}: temp files survived the restart"
        records = assert_seq_contiguous(ledger)
        if tail:
            repairs = [r for r in records[seq_before:] if r.get("kind") == "ledger_repair"]
            assert len(repairs) == 1 and repairs[0]["truncated_bytes"] == len(tail), f"{where}: {repairs}"
            figures["ledger_repairs_logged"] += 1
        figures["json_files_checked"] += check_memory(store)["json_files"]
        figures["kills"] += 1
    figures["checkpoints_on_disk"] = sum(
        len(MemoryStore(f / ".memory").checkpoint_ids()) for f in project.glob("round*")
    )
    assert figures["kills"] == KILLS and figures["resumes_ok"] == KILLS
    assert figures["ledger_repairs_logged"] == figures["torn_ledger_tails"]
    print(f"\nkill-test figures (seed {SEED}): " + json.dumps(dict(sorted(figures.items()))))
