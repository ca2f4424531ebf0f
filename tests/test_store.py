"""store: the .memory layout, the run lock, continuity races, tasks, checkpoints, ledger, redaction."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from aether_cli import constants as C
from aether_cli.errors import (
    AetherError,
    CorruptMemoryError,
    LockedError,
    NotFoundError,
    UsageError,
)
from aether_cli.store import (
    InvalidTaskIdError,
    Ledger,
    MemoryStore,
    StaleWriteError,
    iso_utc,
    proc_start,
    read_ledger,
)

FIXED = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
GH_TOKEN = "ghp_" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6"
AWS_ID = "AKIA" + "Q7W2E9R4T1Y6U3I8"
PASSWORD = "Zx9-Qw8_Er7!"


def fixed_clock() -> datetime:
    return FIXED


@pytest.fixture
def store(tmp_path: Path) -> MemoryStore:
    s = MemoryStore(tmp_path / "project" / ".memory", clock=fixed_clock)
    s.init()
    return s


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` (relative) with its bytes (None for folders and links)."""
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


def task(task_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": task_id, **fields}


def draft(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "session_id": "s1",
        "episode": 1,
        "trigger": "budget",
        "objective": "ship it",
        "progress": ["started"],
        "state": {},
        "next_actions": ["continue"],
        "errors": [],
        "tasks": [],
        "distiller": "rules",
        "distiller_note": "",
        "metrics": {"episode_tokens": 1000, "checkpoint_tokens": 50, "tool_calls": 3, "events": 9},
        "workspace": {"git_head": None, "dirty_hash": None},
        "tokenizer": "cl100k_base",
    }
    base.update(fields)
    return base


# ------------------------------------------------------------- init / layout


def test_init_creates_the_layout(tmp_path: Path) -> None:
    s = MemoryStore(tmp_path / "p" / ".memory")
    assert not s.exists()
    created = s.init()
    assert s.exists()
    assert set(created) == {
        "task_states/",
        "checkpoints/",
        "templates/",
        "runs/",
        "README.md",
        ".gitignore",
        ".gitattributes",
        "config.toml",
        "templates/README.md",
    }
    root = s.root
    assert root.is_absolute()
    for folder in ("task_states", "checkpoints", "templates", "runs"):
        assert (root / folder).is_dir()
    readme = (root / "README.md").read_text()
    for needle in (
        "aether resume",
        "aether status",
        "runs/",
        "session_continuity.json",
        "project_memory.json",
        "context_index.json",
        "checkpoints/",
        "task_states/",
    ):
        assert needle in readme
    ignore = (root / ".gitignore").read_text().splitlines()
    assert "runs/" in ignore and "*.tmp" in ignore
    # The default config is all comments: valid TOML that sets nothing.
    assert tomllib.loads((root / "config.toml").read_text()) == {}
    assert "window" in (root / "config.toml").read_text()


def test_init_is_idempotent_and_never_overwrites(store: MemoryStore) -> None:
    (store.root / "README.md").write_text("my notes")
    (store.root / "config.toml").write_text('agent = ["x"]\n')
    before = tree(store.root)
    assert store.init() == []
    assert store.init(config=False) == []
    assert tree(store.root) == before


def test_a_run_lays_out_the_folder_without_config_toml(tmp_path: Path) -> None:
    """config.toml is the user's: `aether init` writes its commented default, a run does not."""
    s = MemoryStore(tmp_path / ".memory")
    assert "config.toml" not in s.init(config=False)
    assert not (s.root / "config.toml").exists() and (s.root / ".gitignore").is_file()


def test_init_sweeps_leftover_temp_files(store: MemoryStore) -> None:
    for folder in (store.root, store.tasks_dir, store.checkpoints_dir):
        (folder / ".x.json.999999999-deadbeef.tmp").write_bytes(b"half")
    store.init()
    assert not list(store.root.rglob("*.tmp"))


def test_init_refuses_a_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / ".memory").write_text("not a folder")
    with pytest.raises(CorruptMemoryError, match="not a directory"):
        MemoryStore(tmp_path / ".memory").init()


def test_root_is_made_absolute(tmp_path: Path) -> None:
    s = MemoryStore(Path(".memory"))
    assert s.root == Path.cwd() / ".memory"
    assert s.runs_dir == s.root / "runs"
    assert s.tasks_dir == s.root / "task_states"
    assert s.checkpoints_dir == s.root / "checkpoints"
    assert s.templates_dir == s.root / "templates"


# ------------------------------------------------------------- the lock

HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from aether_cli.store import MemoryStore
    store = MemoryStore(Path(sys.argv[1]))
    store.acquire(["fake-agent", "--fast"])
    print("ready", flush=True)
    sys.stdin.read()   # hold until stdin closes (or we are killed)
    store.release()
""")


@pytest.fixture
def holder_proc(store: MemoryStore) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def test_a_second_process_is_locked_out_with_the_holders_pid(
    store: MemoryStore, holder_proc: subprocess.Popen[str]
) -> None:
    with pytest.raises(LockedError) as info:
        store.acquire(["aether", "run"])
    message = str(info.value)
    assert f"locked by aether (pid {holder_proc.pid}" in message
    assert "supervising the agent command: fake-agent --fast" in message
    assert "since 20" in message
    assert info.value.exit_code == C.EXIT_LOCKED
    assert not store.locked


def test_holder_reports_a_live_holder_without_taking_the_lock(
    store: MemoryStore, holder_proc: subprocess.Popen[str]
) -> None:
    info = store.holder()
    assert info is not None
    assert info["pid"] == holder_proc.pid
    assert info["command"] == ["fake-agent", "--fast"]
    assert info["started_at"].endswith("Z")
    assert info["proc_start"] == proc_start(holder_proc.pid)
    assert isinstance(info["host"], str)
    # Asking twice changes nothing and the holder still holds.
    assert store.holder() == info
    with pytest.raises(LockedError):
        store.acquire(["x"])


def test_after_sigkill_of_the_holder_the_lock_is_free_at_once(
    store: MemoryStore, holder_proc: subprocess.Popen[str]
) -> None:
    holder_proc.kill()
    holder_proc.wait()
    assert store.lock_info_path.exists()  # the dead holder could not clean up
    assert store.holder() is None
    store.acquire(["aether", "run"])
    try:
        info = store.holder()
        assert info is not None and info["pid"] == os.getpid()
    finally:
        store.release()
    assert store.holder() is None
    assert not store.lock_info_path.exists()


def test_a_killed_but_unreaped_holder_is_not_live(
    store: MemoryStore, holder_proc: subprocess.Popen[str]
) -> None:
    os.kill(holder_proc.pid, signal.SIGKILL)
    # Wait for it to die but leave it a zombie (WNOWAIT): its pid still exists.
    os.waitid(os.P_PID, holder_proc.pid, os.WEXITED | os.WNOWAIT)
    assert store.holder() is None


def test_a_clean_release_removes_lock_info(store: MemoryStore, holder_proc: subprocess.Popen[str]) -> None:
    assert holder_proc.stdin is not None
    holder_proc.stdin.close()
    assert holder_proc.wait() == 0
    assert store.holder() is None
    assert not store.lock_info_path.exists()


def test_two_stores_in_one_process_exclude_each_other(store: MemoryStore) -> None:
    other = MemoryStore(store.root)
    with store.holding(["first"]):
        assert store.locked
        with pytest.raises(LockedError, match=f"pid {os.getpid()}"):
            other.acquire(["second"])
    assert not store.locked
    other.acquire(["second"])
    other.release()


def test_acquiring_twice_is_a_bug_and_release_is_idempotent(store: MemoryStore) -> None:
    store.acquire(["x"])
    with pytest.raises(AetherError, match="already holds"):
        store.acquire(["x"])
    store.release()
    store.release()
    assert store.holder() is None


def test_acquire_works_without_init_and_redacts_the_command(tmp_path: Path) -> None:
    s = MemoryStore(tmp_path / ".memory")
    with s.holding(["agent", f"--token={GH_TOKEN}"]):
        raw = s.lock_info_path.read_text()
        assert GH_TOKEN not in raw
        assert "[REDACTED:github_token]" in raw


def _plant_lock_info(s: MemoryStore, **info: Any) -> None:
    s.runs_dir.mkdir(parents=True, exist_ok=True)
    s.lock_info_path.write_bytes(orjson.dumps(info))


def test_holder_ignores_a_recycled_pid(store: MemoryStore) -> None:
    import socket

    me = os.getpid()
    _plant_lock_info(
        store, pid=me, command=["x"], started_at="t", proc_start=proc_start(me), host=socket.gethostname()
    )
    assert store.holder() is not None
    _plant_lock_info(
        store,
        pid=me,
        command=["x"],
        started_at="t",
        proc_start=(proc_start(me) or 0) + 1,
        host=socket.gethostname(),
    )
    assert store.holder() is None


@pytest.mark.parametrize(
    "content",
    [b"", b"{broken", b"[1, 2]", b'{"pid": "12"}', b'{"pid": -5}', b'{"pid": true}'],
)
def test_holder_is_none_for_garbage_lock_info(store: MemoryStore, content: bytes) -> None:
    store.lock_info_path.write_bytes(content)
    assert store.holder() is None


def test_holder_on_another_host_is_reported_as_recorded(store: MemoryStore) -> None:
    _plant_lock_info(store, pid=1, command=["x"], started_at="t", proc_start=None, host="elsewhere.invalid")
    info = store.holder()
    assert info is not None and info["host"] == "elsewhere.invalid"


def test_locked_message_without_lock_info(store: MemoryStore) -> None:
    other = MemoryStore(store.root)
    other.acquire(["x"])
    try:
        os.unlink(other.lock_info_path)
        with pytest.raises(LockedError, match="another aether process"):
            store.acquire(["y"])
    finally:
        other.release()


def test_a_symlinked_lock_file_is_refused(store: MemoryStore, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.lock"
    target.write_text("")
    store.lock_path.symlink_to(target)
    with pytest.raises(CorruptMemoryError, match=r"aether\.lock"):
        store.acquire(["x"])


# ------------------------------------------------------------- session_continuity.json


def test_continuity_absent_is_none(store: MemoryStore) -> None:
    assert store.read_continuity() is None


def test_update_seq_increments_and_updated_at_is_utc(store: MemoryStore) -> None:
    first = store.write_continuity({"session_id": "s1", "status": "running"})
    assert first["_update_seq"] == 1
    assert first["updated_at"] == "2025-01-02T03:04:05.678Z"
    second = store.write_continuity({"session_id": "s1", "status": "stopped"})
    assert second["_update_seq"] == 2
    on_disk = store.read_continuity()
    assert on_disk == second
    # A fresh store continues the sequence from disk.
    assert MemoryStore(store.root).write_continuity({"status": "done"})["_update_seq"] == 3


def test_a_lost_race_raises_and_does_not_overwrite(store: MemoryStore) -> None:
    store.write_continuity({"status": "running", "writer": "a"})
    other = MemoryStore(store.root)
    assert other.read_continuity()["_update_seq"] == 1  # type: ignore[index]
    other.write_continuity({"status": "running", "writer": "b"})
    before = store.continuity_path.read_bytes()
    with pytest.raises(StaleWriteError, match="expected _update_seq 1, found 2"):
        store.write_continuity({"status": "stopped", "writer": "a"})
    assert store.continuity_path.read_bytes() == before
    assert issubclass(StaleWriteError, AetherError)
    # Reading again brings the store up to date; then it may write.
    store.read_continuity()
    assert store.write_continuity({"status": "stopped", "writer": "a"})["_update_seq"] == 3


def test_continuity_deleted_behind_a_writers_back_is_a_lost_race(store: MemoryStore) -> None:
    store.write_continuity({"status": "running"})
    os.unlink(store.continuity_path)
    with pytest.raises(StaleWriteError):
        store.write_continuity({"status": "running"})


def test_continuity_is_redacted_and_the_input_untouched(store: MemoryStore) -> None:
    data = {"command": ["agent", f"--key={GH_TOKEN}"], "resume_instructions": f"use {AWS_ID}"}
    written = store.write_continuity(data)
    raw = store.continuity_path.read_text()
    assert GH_TOKEN not in raw and AWS_ID not in raw
    assert written["command"] == ["agent", "--key=[REDACTED:github_token]"]
    assert data["command"] == ["agent", f"--key={GH_TOKEN}"]
    assert "updated_at" not in data


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b"[1]", "expected a JSON object"),
        (b'{"_update_seq": "x"}', "_update_seq"),
    ],
)
def test_corrupt_continuity_names_the_file(store: MemoryStore, content: bytes, reason: str) -> None:
    store.continuity_path.write_bytes(content)
    with pytest.raises(CorruptMemoryError, match=reason) as info:
        store.read_continuity()
    assert C.CONTINUITY_FILE in str(info.value)
    with pytest.raises(CorruptMemoryError):
        store.write_continuity({"status": "running"})
    assert store.continuity_path.read_bytes() == content


# ------------------------------------------------------------- task_states/


def test_write_task_fills_contract_fields(store: MemoryStore) -> None:
    rel = store.write_task(task("001", title="Parse input"))
    assert rel == "task_states/task_001_state.json"
    data = orjson.loads((store.root / rel).read_bytes())
    assert data == {
        "id": "001",
        "title": "Parse input",
        "status": "pending",
        "progress": 0.0,
        "next_action": "",
        "notes": "",
        "files": [],
        "updated_at": "2025-01-02T03:04:05.678Z",
    }
    assert store.read_task("001") == data


def test_write_task_keeps_given_fields_and_clamps_progress(store: MemoryStore) -> None:
    store.write_task(
        task("a.b-c_9", status="in_progress", progress=7, files=["x.py"], updated_at="then", extra=1)
    )
    data = store.read_task("a.b-c_9")
    assert data is not None
    assert data["status"] == "in_progress"
    assert data["progress"] == 1.0
    assert data["files"] == ["x.py"]
    assert data["updated_at"] == "then"
    assert data["extra"] == 1


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"status": "finished"}, "status"),
        ({"progress": "half"}, "progress"),
        ({"progress": float("nan")}, "progress"),
        ({"progress": True}, "progress"),
        ({"files": "a.py"}, "files"),
        ({"files": [1]}, "files"),
    ],
)
def test_write_task_refuses_bad_fields(store: MemoryStore, fields: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        store.write_task(task("t1", **fields))
    assert store.read_task("t1") is None


def test_write_task_refuses_a_non_dict(store: MemoryStore) -> None:
    with pytest.raises(TypeError):
        store.write_task(["not", "a", "dict"])  # type: ignore[arg-type]


BAD_IDS = [
    "../../x",
    "",
    "a" * 65,
    ".hidden",
    "a/b",
    "a\\b",
    "..",
    "a\nb",
    "abc\n",
    "a b",
    "é",
    "x\0y",
    GH_TOKEN,
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_invalid_task_ids_are_refused_and_nothing_is_written(
    store: MemoryStore, tmp_path: Path, bad: str
) -> None:
    before = tree(tmp_path)
    assert not MemoryStore.valid_task_id(bad)
    with pytest.raises(InvalidTaskIdError):
        store.task_file(bad)
    with pytest.raises(ValueError):
        store.write_task(task(bad, title="evil"))
    with pytest.raises(AetherError):
        store.read_task(bad)
    assert tree(tmp_path) == before


def test_valid_task_ids() -> None:
    for good in ("001", "a", "A-b_c.d", "a" * 64, "x.."):
        assert MemoryStore.valid_task_id(good)
    assert not MemoryStore.valid_task_id(None)  # type: ignore[arg-type]
    assert not MemoryStore.valid_task_id(12)  # type: ignore[arg-type]


def test_list_tasks_is_sorted_and_skips_other_files(store: MemoryStore) -> None:
    for tid in ("b", "a", "c"):
        store.write_task(task(tid, title=tid.upper()))
    (store.tasks_dir / "notes.txt").write_text("hi")
    (store.tasks_dir / ".task_z_state.json.1-ab.tmp").write_text("{")
    (store.tasks_dir / "task_.bad_state.json").write_text("{")
    assert [t["id"] for t in store.list_tasks()] == ["a", "b", "c"]


def test_list_tasks_without_a_folder_is_empty(tmp_path: Path) -> None:
    assert MemoryStore(tmp_path / ".memory").list_tasks() == []


def test_a_corrupt_task_file_is_named(store: MemoryStore) -> None:
    store.write_task(task("good"))
    (store.tasks_dir / "task_bad_state.json").write_text('{"id": "bad", ')
    with pytest.raises(CorruptMemoryError, match=r"task_bad_state\.json"):
        store.list_tasks()
    with pytest.raises(CorruptMemoryError, match=r"task_bad_state\.json"):
        store.read_task("bad")


def test_a_task_file_holding_another_id_is_corrupt(store: MemoryStore) -> None:
    (store.tasks_dir / "task_x_state.json").write_text('{"id": "y"}')
    with pytest.raises(CorruptMemoryError, match="holds task 'y'"):
        store.list_tasks()


def test_a_symlink_planted_in_task_states_is_refused(store: MemoryStore, tmp_path: Path) -> None:
    victim = tmp_path / "home" / ".bashrc"
    victim.write_text("precious")
    link = store.tasks_dir / "task_001_state.json"
    link.symlink_to(victim)
    with pytest.raises(AetherError, match=r"task_001_state\.json"):
        store.write_task(task("001", notes="pwned"))
    with pytest.raises(CorruptMemoryError, match="symlink"):
        store.read_task("001")
    with pytest.raises(CorruptMemoryError, match="symlink"):
        store.list_tasks()
    assert victim.read_text() == "precious"
    assert link.is_symlink()


def test_a_symlinked_task_states_folder_is_refused(store: MemoryStore, tmp_path: Path) -> None:
    elsewhere = tmp_path / "home" / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(store.tasks_dir)
    store.tasks_dir.symlink_to(elsewhere)
    with pytest.raises(CorruptMemoryError, match="task_states"):
        store.write_task(task("001"))
    with pytest.raises(CorruptMemoryError, match="task_states"):
        store.list_tasks()
    assert list(elsewhere.iterdir()) == []


# ------------------------------------------------------------- checkpoints/


def test_checkpoint_ids_parent_chain_and_hash(store: MemoryStore) -> None:
    first = store.write_checkpoint(draft(objective="one"))
    second = store.write_checkpoint(draft(objective="two"))
    third = store.write_checkpoint(draft(objective="three"))
    assert first["id"].startswith("chk_000001_") and len(first["id"]) == len("chk_000001_12345678")
    assert second["id"].startswith("chk_000002_")
    assert (first["parent"], second["parent"], third["parent"]) == (None, first["id"], second["id"])
    assert (first["seq"], second["seq"], third["seq"]) == (1, 2, 3)
    assert first["created_at"] == "2025-01-02T03:04:05.678Z"
    assert first["id"].endswith(first["sha256"][:8])
    assert store.checkpoint_ids() == [first["id"], second["id"], third["id"]]
    assert store.latest_checkpoint_id() == third["id"]
    on_disk = orjson.loads((store.checkpoints_dir / f"{second['id']}.json").read_bytes())
    assert on_disk == second
    assert store.read_checkpoint(second["id"]) == second


def test_checkpoint_keeps_a_given_parent_and_created_at_and_ignores_a_given_id(store: MemoryStore) -> None:
    store.write_checkpoint(draft())
    ck = store.write_checkpoint(draft(parent=None, created_at="2020-01-01T00:00:00.000Z", id="chk_999999_x"))
    assert ck["parent"] is None
    assert ck["created_at"] == "2020-01-01T00:00:00.000Z"
    assert ck["id"].startswith("chk_000002_")


def test_checkpoint_fills_missing_contract_fields(store: MemoryStore) -> None:
    ck = store.write_checkpoint({"objective": "x", "trigger": "manual"})
    for field in (
        "id",
        "parent",
        "session_id",
        "episode",
        "created_at",
        "trigger",
        "objective",
        "progress",
        "state",
        "next_actions",
        "errors",
        "tasks",
        "distiller",
        "distiller_note",
        "metrics",
        "workspace",
        "tokenizer",
    ):
        assert field in ck
    assert set(ck["metrics"]) == {"episode_tokens", "checkpoint_tokens", "tool_calls", "events"}
    assert ck["workspace"] == {"git_head": None, "dirty_hash": None}


def test_checkpoint_files_are_read_only(store: MemoryStore) -> None:
    old = os.umask(0o022)
    try:
        ck = store.write_checkpoint(draft())
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(store.checkpoints_dir / f"{ck['id']}.json").st_mode)
    assert mode == 0o444


def test_an_edited_checkpoint_is_detected(store: MemoryStore) -> None:
    ck = store.write_checkpoint(draft())
    path = store.checkpoints_dir / f"{ck['id']}.json"
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes().replace(b"ship it", b"ship that"))
    with pytest.raises(CorruptMemoryError, match="sha256"):
        store.read_checkpoint(ck["id"])


def test_same_checkpoint_content_gives_the_same_id_and_bytes(tmp_path: Path) -> None:
    a = MemoryStore(tmp_path / "a" / ".memory", clock=fixed_clock)
    b = MemoryStore(tmp_path / "b" / ".memory", clock=fixed_clock)
    ck_a = a.write_checkpoint(draft(state={"z": 1, "a": [1, 2]}))
    ck_b = b.write_checkpoint(draft(state={"a": [1, 2], "z": 1}))
    assert ck_a["id"] == ck_b["id"]
    assert (a.checkpoints_dir / f"{ck_a['id']}.json").read_bytes() == (
        b.checkpoints_dir / f"{ck_b['id']}.json"
    ).read_bytes()


def test_checkpoint_ids_ignore_other_names_and_sort_by_number(store: MemoryStore) -> None:
    for name in (
        "chk_000002_aaaaaaaa.json",
        "chk_1000000_bbbbbbbb.json",
        "chk_000010_cccccccc.json",
        ".chk_000011_dddddddd.json.1-ab.tmp",
        "chk_000012_XYZ.json",
        "notes.md",
        "chk_13_eeeeeeee.json",
    ):
        (store.checkpoints_dir / name).write_text("{}")
    assert store.checkpoint_ids() == ["chk_000002_aaaaaaaa", "chk_000010_cccccccc", "chk_1000000_bbbbbbbb"]
    assert store.latest_checkpoint_id() == "chk_1000000_bbbbbbbb"
    assert store.write_checkpoint(draft())["id"].startswith("chk_1000001_")


def test_no_checkpoints(tmp_path: Path) -> None:
    s = MemoryStore(tmp_path / ".memory")
    assert s.checkpoint_ids() == []
    assert s.latest_checkpoint_id() is None
    with pytest.raises(NotFoundError):
        s.resolve_checkpoint("latest")


@pytest.fixture
def three(store: MemoryStore) -> list[str]:
    return [store.write_checkpoint(draft(objective=str(i)))["id"] for i in range(3)]


def test_resolve_exact_prefix_number_and_latest(store: MemoryStore, three: list[str]) -> None:
    assert store.resolve_checkpoint(three[1]) == three[1]
    assert store.resolve_checkpoint(f"{three[1]}.json") == three[1]
    assert store.resolve_checkpoint("chk_000002") == three[1]
    assert store.resolve_checkpoint(three[2][:14]) == three[2]
    assert store.resolve_checkpoint("3") == three[2]
    assert store.resolve_checkpoint("latest") == three[2]
    assert store.read_checkpoint("chk_000001")["objective"] == "0"


def test_resolve_ambiguous_lists_candidates(store: MemoryStore, three: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        store.resolve_checkpoint("chk_0000")
    for cid in three:
        assert cid in str(info.value)


@pytest.mark.parametrize("ref", ["chk_000009", "nope", "99"])
def test_resolve_unknown_is_not_found(store: MemoryStore, three: list[str], ref: str) -> None:
    with pytest.raises(NotFoundError):
        store.resolve_checkpoint(ref)


@pytest.mark.parametrize("ref", ["../x", "..", "a/b", "chk_000001/../../etc", "a\\b", "chk\0", "", "   "])
def test_resolve_refuses_path_like_refs(store: MemoryStore, three: list[str], ref: str) -> None:
    with pytest.raises(UsageError):
        store.resolve_checkpoint(ref)
    with pytest.raises(UsageError):
        store.read_checkpoint(ref)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"{oops", "invalid JSON"), (b"[]", "expected a JSON object"), (b'{"id": "other"}', "id field")],
)
def test_a_corrupt_checkpoint_is_named(store: MemoryStore, content: bytes, match: str) -> None:
    path = store.checkpoints_dir / "chk_000001_0000abcd.json"
    path.write_bytes(content)
    with pytest.raises(CorruptMemoryError, match=match) as info:
        store.read_checkpoint("chk_000001")
    assert "chk_000001_0000abcd.json" in str(info.value)


def test_a_corrupt_checkpoint_does_not_block_new_ones(store: MemoryStore) -> None:
    (store.checkpoints_dir / "chk_000001_0000abcd.json").write_bytes(b"{oops")
    ck = store.write_checkpoint(draft())
    assert ck["parent"] == "chk_000001_0000abcd"
    index = store.read_context_index()
    assert index is not None
    assert index["checkpoints"][0] == {
        "id": "chk_000001_0000abcd",
        "file": "checkpoints/chk_000001_0000abcd.json",
        "error": "unreadable",
    }


def test_drop_checkpoint(store: MemoryStore, three: list[str]) -> None:
    with pytest.raises(UsageError, match="latest"):
        store.drop_checkpoint(three[2])
    assert store.drop_checkpoint("chk_000001") == three[0]
    assert store.checkpoint_ids() == three[1:]
    index = store.read_context_index()
    assert index is not None and [c["id"] for c in index["checkpoints"]] == three[1:]
    assert store.drop_checkpoint("latest", force=True) == three[2]
    assert store.checkpoint_ids() == [three[1]]
    with pytest.raises(NotFoundError):
        store.drop_checkpoint(three[0])
    with pytest.raises(UsageError):
        store.drop_checkpoint("../x", force=True)


def test_a_symlinked_checkpoints_folder_is_refused(store: MemoryStore, tmp_path: Path) -> None:
    elsewhere = tmp_path / "home" / "ck"
    elsewhere.mkdir()
    shutil.rmtree(store.checkpoints_dir)
    store.checkpoints_dir.symlink_to(elsewhere)
    with pytest.raises(CorruptMemoryError, match="checkpoints"):
        store.write_checkpoint(draft())
    with pytest.raises(CorruptMemoryError, match="checkpoints"):
        store.checkpoint_ids()
    assert list(elsewhere.iterdir()) == []


def test_concurrent_checkpoint_writers_get_distinct_sequence_numbers(store: MemoryStore) -> None:
    others = [MemoryStore(store.root, clock=fixed_clock) for _ in range(4)]
    errors: list[BaseException] = []

    def write(s: MemoryStore, n: int) -> None:
        try:
            for i in range(5):
                s.write_checkpoint(draft(objective=f"{n}-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(others)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids = store.checkpoint_ids()
    assert [int(i.split("_")[1]) for i in ids] == list(range(1, 21))


# ------------------------------------------------------------- project_memory.json


def test_project_memory_defaults(store: MemoryStore) -> None:
    assert store.read_project_memory() == {"objective": "", "facts": [], "finished_tasks": [], "learned": {}}


def test_apply_memory_ops_adds_replaces_and_removes(store: MemoryStore) -> None:
    pm = store.apply_memory_ops(
        [
            {"op": "add", "key": "zeta", "text": "z", "pinned": True, "priority": 2},
            {"op": "add", "key": "alpha", "text": "a"},
        ],
        seq=1,
    )
    assert [f["key"] for f in pm["facts"]] == ["alpha", "zeta"]
    assert pm["facts"][1] == {
        "key": "zeta",
        "text": "z",
        "pinned": True,
        "priority": 2,
        "added_seq": 1,
        "updated_seq": 1,
        "source": "agent",
        "episode": None,
    }
    pm = store.apply_memory_ops(
        [
            {"op": "add", "key": "zeta", "text": "z2"},
            {"op": "remove", "key": "alpha"},
            {"op": "remove", "key": "nope"},
        ],
        seq=4,
        episode=2,
    )
    assert pm["facts"] == [
        {"key": "zeta", "text": "z2", "pinned": False, "priority": 0, "added_seq": 1, "updated_seq": 4,
         "source": "agent", "episode": 2},
    ]
    assert store.read_project_memory() == pm


def test_memory_ops_with_an_empty_key_are_skipped(store: MemoryStore) -> None:
    pm = store.apply_memory_ops([{"op": "add", "key": "", "text": "x"}, {"op": "add", "key": "k"}], seq=1)
    assert [f["key"] for f in pm["facts"]] == ["k"]


@pytest.mark.parametrize(
    "op",
    [
        "not a dict",
        {"op": "upsert", "key": "k"},
        {"op": "add", "key": 5},
        {"op": "add", "key": "k", "text": 5},
        {"op": "add", "key": "k", "pinned": "yes"},
        {"op": "add", "key": "k", "priority": 1.5},
        {"op": "add", "key": "k", "priority": True},
    ],
)
def test_malformed_memory_ops_raise_before_writing(store: MemoryStore, op: Any) -> None:
    with pytest.raises(ValueError):
        store.apply_memory_ops([{"op": "add", "key": "fine"}, op], seq=1)
    assert not store.project_memory_path.exists()


def test_write_project_memory_sorts_facts_and_redacts(store: MemoryStore) -> None:
    store.write_project_memory(
        {
            "objective": f"deploy with {AWS_ID}",
            "facts": [{"key": "b", "text": f"password={PASSWORD}"}, {"key": "a", "text": "x"}],
        }
    )
    raw = store.project_memory_path.read_text()
    assert AWS_ID not in raw and PASSWORD not in raw
    pm = store.read_project_memory()
    assert [f["key"] for f in pm["facts"]] == ["a", "b"]
    assert pm["finished_tasks"] == [] and pm["learned"] == {}


@pytest.mark.parametrize("content", [b"{", b"[]", b'{"facts": {}}', b'{"facts": [1]}'])
def test_corrupt_project_memory(store: MemoryStore, content: bytes) -> None:
    store.project_memory_path.write_bytes(content)
    with pytest.raises(CorruptMemoryError, match=r"project_memory\.json"):
        store.read_project_memory()


# ------------------------------------------------------------- context_index.json


def test_context_index_lists_checkpoints_and_tasks(store: MemoryStore) -> None:
    store.write_task(task("t1", status="done"))
    store.write_task(task("t2", status="in_progress"))
    ck = store.write_checkpoint(draft())
    index = store.update_context_index(token_counts={"task_states/task_t1_state.json": 40, "t2": 30})
    ck_bytes = (store.checkpoints_dir / f"{ck['id']}.json").stat().st_size
    t1_bytes = (store.tasks_dir / "task_t1_state.json").stat().st_size
    assert index["checkpoints"] == [
        {
            "id": ck["id"],
            "file": f"checkpoints/{ck['id']}.json",
            "episode": 1,
            "trigger": "budget",
            "bytes": ck_bytes,
            "tokens": 50,
        }
    ]
    assert index["tasks"][0] == {
        "id": "t1",
        "file": "task_states/task_t1_state.json",
        "status": "done",
        "bytes": t1_bytes,
        "tokens": 40,
    }
    assert index["tasks"][1]["tokens"] == 30
    assert index["totals"]["checkpoints"] == 1
    assert index["totals"]["tasks"] == 2
    assert index["totals"]["open_tasks"] == 1
    assert index["totals"]["tokens"] == 120
    assert index["totals"]["latest_checkpoint"] == ck["id"]
    assert store.read_context_index() == index


def test_context_index_keeps_token_counts_of_unchanged_files(store: MemoryStore) -> None:
    store.write_task(task("t1"))
    store.update_context_index(token_counts={"t1": 40})
    assert store.update_context_index()["tasks"][0]["tokens"] == 40
    store.write_task(task("t1", notes="now a longer note than before"))
    assert "tokens" not in store.update_context_index()["tasks"][0]


def test_context_index_is_not_rewritten_when_unchanged(store: MemoryStore) -> None:
    store.write_task(task("t1"))
    store.update_context_index()
    inode = os.stat(store.context_index_path).st_ino
    store.update_context_index()
    assert os.stat(store.context_index_path).st_ino == inode


# ------------------------------------------------------------- runs/


def test_heartbeat_round_trip(store: MemoryStore) -> None:
    assert store.read_heartbeat() is None
    store.write_heartbeat({"pid": 1, "used": 10, "note": f"token={GH_TOKEN}"})
    beat = store.read_heartbeat()
    assert beat is not None and beat["used"] == 10
    assert GH_TOKEN not in store.heartbeat_path.read_text()


@pytest.mark.parametrize("content", [b"{", b"[]", b""])
def test_an_unreadable_heartbeat_is_none(store: MemoryStore, content: bytes) -> None:
    store.heartbeat_path.write_bytes(content)
    assert store.read_heartbeat() is None


def test_prompt_file_is_written_verbatim(store: MemoryStore) -> None:
    text = "Continue.\nThe tests use password=hunter2XYZ9 in fixtures.\n"
    path = store.write_prompt(text)
    assert path == store.prompt_file() == store.root / "runs" / "start.prompt"
    assert path.is_absolute()
    assert path.read_text() == text


def test_checkpoint_request_is_taken_once(store: MemoryStore) -> None:
    assert store.take_checkpoint_request() is False
    store.request_checkpoint()
    store.request_checkpoint()
    assert store.take_checkpoint_request() is True
    assert store.take_checkpoint_request() is False


# ------------------------------------------------------------- the ledger


def test_ledger_seq_continues_across_reopen(store: MemoryStore) -> None:
    ledger = store.open_ledger("sess-1")
    assert ledger.append({"kind": "start"}) == 1
    assert ledger.append({"kind": "event", "seq": 999}) == 2
    ledger.close()
    with store.open_ledger("sess-1") as again:
        assert again.seq == 2
        assert again.append({"kind": "end"}) == 3
    records = list(read_ledger(store.runs_dir / "sess-1.jsonl"))
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert [r["kind"] for r in records] == ["start", "event", "end"]
    assert records[0]["ts"] == "2025-01-02T03:04:05.678Z"
    lines = (store.runs_dir / "sess-1.jsonl").read_bytes().splitlines()
    assert all(line.startswith(b"{") and line.endswith(b"}") for line in lines)


def test_a_torn_last_line_is_skipped_and_never_modified_by_readers(store: MemoryStore) -> None:
    path = store.runs_dir / "s.jsonl"
    with store.open_ledger("s") as ledger:
        ledger.append({"n": 1})
        ledger.append({"n": 2})
    with open(path, "ab") as fh:
        fh.write(b'{"n": 3, "seq": 3, "te')
    before = path.read_bytes()
    assert [r["n"] for r in read_ledger(path)] == [1, 2]
    assert path.read_bytes() == before
    # A writer reopening it closes the torn line off and continues after seq 2.
    with store.open_ledger("s") as ledger:
        assert ledger.append({"n": 4}) == 3
    assert [(r["n"], r["seq"]) for r in read_ledger(path)] == [(1, 1), (2, 2), (4, 3)]


def test_ledger_seq_is_found_behind_a_huge_last_line(store: MemoryStore) -> None:
    with store.open_ledger("big") as ledger:
        ledger.append({"n": 1})
        ledger.append({"blob": "x" * 300_000})
    with store.open_ledger("big") as ledger:
        assert ledger.append({"n": 3}) == 3


def test_ledger_seq_skips_garbage_complete_lines(store: MemoryStore) -> None:
    path = store.runs_dir / "g.jsonl"
    path.write_bytes(b'{"seq": 7}\nnot json\n["a list"]\n\n')
    with store.open_ledger("g") as ledger:
        assert ledger.append({}) == 8
    assert [r["seq"] for r in read_ledger(path)] == [7, 8]


def test_ledger_redacts_records(store: MemoryStore) -> None:
    with store.open_ledger("r") as ledger:
        ledger.append(
            {"type": "tool_result", "output": f"AWS_ACCESS_KEY_ID={AWS_ID}", "env": {"PASSWORD": PASSWORD}}
        )
    raw = (store.runs_dir / "r.jsonl").read_text()
    assert AWS_ID not in raw and PASSWORD not in raw


def test_ledger_survives_an_unserialisable_record(store: MemoryStore) -> None:
    with store.open_ledger("u") as ledger:
        assert ledger.append({"bad": object(), "note": f"token={GH_TOKEN}"}) == 1
        assert ledger.append({"ok": True}) == 2
    records = list(read_ledger(store.runs_dir / "u.jsonl"))
    assert records[0]["type"] == "ledger_error"
    assert GH_TOKEN not in records[0]["record"]
    assert records[1]["ok"] is True


def test_ledger_close_is_idempotent_and_append_after_close_fails(store: MemoryStore) -> None:
    ledger = store.open_ledger("c")
    ledger.close()
    ledger.close()
    with pytest.raises(AetherError, match="closed"):
        ledger.append({})


@pytest.mark.parametrize("bad", ["../x", "", "a/b", ".hidden", "s" * 65])
def test_open_ledger_refuses_bad_session_ids(store: MemoryStore, bad: str) -> None:
    with pytest.raises(UsageError):
        store.open_ledger(bad)


def test_a_symlinked_ledger_is_refused(store: MemoryStore, tmp_path: Path) -> None:
    victim = tmp_path / "home" / "victim.txt"
    victim.write_text("precious")
    (store.runs_dir / "s.jsonl").symlink_to(victim)
    with pytest.raises(CorruptMemoryError, match="symlink"):
        store.open_ledger("s")
    with pytest.raises(CorruptMemoryError, match="symlink"):
        list(read_ledger(store.runs_dir / "s.jsonl"))
    with pytest.raises(CorruptMemoryError, match="symlink"):
        Ledger(store.runs_dir / "s.jsonl")
    assert victim.read_text() == "precious"


# ------------------------------------------------------------- across the whole folder


def _fill(s: MemoryStore, secret_note: str) -> None:
    s.init()
    s.write_task(
        task("001", title="build", notes=secret_note, next_action=f"login with password: {PASSWORD}")
    )
    s.write_checkpoint(draft(progress=[secret_note], state={"env": {"GITHUB_TOKEN": GH_TOKEN}}))
    s.apply_memory_ops([{"op": "add", "key": "creds", "text": secret_note, "pinned": True}], seq=1)
    s.write_continuity({"session_id": "s1", "resume_instructions": secret_note, "command": ["a", GH_TOKEN]})
    s.update_context_index()
    s.write_heartbeat({"note": secret_note})
    with s.open_ledger("s1") as ledger:
        ledger.append({"kind": "event", "raw": {"type": "message", "text": secret_note}})


def test_secrets_never_reach_any_file(store: MemoryStore) -> None:
    note = f"export AWS_ACCESS_KEY_ID={AWS_ID} GITHUB_TOKEN={GH_TOKEN} and db postgres://u:{PASSWORD}@h/db"
    with store.holding(["agent", f"--api-key={GH_TOKEN}"]):
        _fill(store, note)
        files = [p for p in store.root.rglob("*") if p.is_file()]
        assert len(files) >= 10
        for path in files:
            raw = path.read_bytes()
            for secret in (AWS_ID, GH_TOKEN, PASSWORD):
                assert secret.encode() not in raw, f"{secret} leaked into {path}"


def test_same_input_gives_the_same_bytes(tmp_path: Path) -> None:
    note = "plain progress note"
    a = MemoryStore(tmp_path / "a" / ".memory", clock=fixed_clock)
    b = MemoryStore(tmp_path / "b" / ".memory", clock=fixed_clock)
    _fill(a, note)
    _fill(b, note)
    tree_a = {k: v for k, v in tree(a.root).items() if not k.startswith("runs/")}
    tree_b = {k: v for k, v in tree(b.root).items() if not k.startswith("runs/")}
    assert tree_a == tree_b
    assert (a.runs_dir / "s1.jsonl").read_bytes() == (b.runs_dir / "s1.jsonl").read_bytes()
    for rel, content in tree_a.items():
        if rel.endswith(".json"):
            assert content is not None and content.endswith(b"}\n")
            assert orjson.loads(content) is not None


def test_iso_utc_converts_to_utc_with_z() -> None:
    from datetime import timedelta, timezone

    moment = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(moment) == "2025-06-01T10:00:00.000Z"
