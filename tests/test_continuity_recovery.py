"""Issue 12, point 8: one bad `session_continuity.json` must not block everything.

Every bad form (a lone `{`, an array, wrong types, a huge file, git conflict
markers, a folder in its place) leaves `status` working with a hint; `resume`
rebuilds the record from the newest intact checkpoint and the session's ledger,
keeping the bad file under runs/; a missing record with checkpoints left is
rebuilt the same way; `run` deals with the record before it launches the
agent. The sessions are real (`aether run` and `aether resume` of a tiny
agent), the files real, and the CLI runs in a subprocess.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import orjson
import pytest
from helpers import aether, read_json

from aether_cli import constants as C
from aether_cli.errors import CorruptMemoryError, LockedError
from aether_cli.store import Ledger, MemoryStore

# Writes its environment to env_<episode>.json and exits 0: one episode, one checkpoint.
AGENT = [
    sys.executable,
    "-c",
    "import json, os; e = dict(os.environ); json.dump(e, open('env_%s.json' % e['AETHER_EPISODE'], 'w'))",
]

BAD_FORMS = {
    "a lone brace": b"{",
    "an array": b"[1, 2]",
    "a string": b'"stopped"',
    "episode of the wrong type": b'{"session_id": "ses_x", "episode": "three"}',
    "command of the wrong type": b'{"session_id": "ses_x", "command": "rm -rf ~"}',
    "a session id that is a path": b'{"session_id": "../../etc/x", "episode": 1}',
    "a percent that is text": b'{"context_usage_percent": "full"}',
    "an episode past 64 bits": b'{"episode": 18446744073709551616}',
    "settings that are a list": b'{"settings": [1]}',
    "conflict markers": b'{\n<<<<<<< HEAD\n  "episode": 3,\n=======\n  "episode": 4,\n>>>>>>> theirs\n}\n',
}


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real session of two episodes, two checkpoints (run, then resume), made once."""
    folder = tmp_path_factory.mktemp("session")
    env = {"HOME": str(folder)}
    first = aether("run", "-q", "--objective", "keep going", "--", *AGENT, cwd=folder, env=env)
    assert first.returncode == 0, first.stderr
    again = aether("resume", "-q", cwd=folder, env=env)
    assert again.returncode == 0, again.stderr
    return folder


@pytest.fixture
def memory(session: Path, project: Path) -> Path:
    """A copy of the session's .memory in this test's project."""
    shutil.copytree(session / C.MEMORY_DIRNAME, project / C.MEMORY_DIRNAME, symlinks=True)
    return project / C.MEMORY_DIRNAME


def checkpoint_files(memory: Path) -> list[Path]:
    return sorted((memory / C.CHECKPOINTS_DIR).glob("chk_*.json"))


def damage(memory: Path, content: bytes) -> Path:
    path = memory / C.CONTINUITY_FILE
    path.write_bytes(content)
    return path


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# ------------------------------------------------------------------ status


@pytest.mark.parametrize("form", sorted(BAD_FORMS))
def test_status_says_the_record_is_damaged_and_how_to_recover(memory: Path, form: str) -> None:
    session_id = read_json(memory / C.CONTINUITY_FILE)["session_id"]
    path = damage(memory, BAD_FORMS[form])
    res = aether("status", "--json")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    data = orjson.loads(res.stdout)
    assert data["state"] == "damaged"
    assert "session_continuity.json is damaged" in data["state_note"]
    assert "`aether resume` rebuilds it from checkpoints/" in data["state_note"]
    # It shows what the rebuild would give: the session of the newest checkpoint.
    assert data["session_id"] == session_id and data["episode"] == 2
    assert path.read_bytes() == BAD_FORMS[form]  # status only reads


def test_status_names_conflict_markers_and_the_line(memory: Path) -> None:
    damage(memory, BAD_FORMS["conflict markers"])
    note = orjson.loads(aether("status", "--json").stdout)["state_note"]
    assert "git merge-conflict markers from line 2" in note
    plain = aether("status")
    assert plain.returncode == 0, plain.stderr
    assert "damaged" in plain.stdout and "aether resume" in plain.stdout


def test_a_huge_record_is_refused_without_being_read_whole(memory: Path) -> None:
    path = memory / C.CONTINUITY_FILE
    with open(path, "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB of NUL bytes
    res = aether("status", "--json")
    assert res.returncode == 0, res.stderr
    data = orjson.loads(res.stdout)
    assert data["state"] == "damaged" and "67,108,864 bytes" in data["state_note"]


def test_status_without_a_record_points_at_the_checkpoints(memory: Path) -> None:
    os.unlink(memory / C.CONTINUITY_FILE)
    data = orjson.loads(aether("status", "--json").stdout)
    assert data["state"] == "missing"
    assert "`aether resume` rebuilds it from checkpoints/" in data["state_note"]


# ------------------------------------------------------------------ resume


@pytest.mark.parametrize(
    "form", ["a lone brace", "an array", "episode of the wrong type", "conflict markers"]
)
def test_resume_rebuilds_the_record_from_the_newest_checkpoint(
    memory: Path, project: Path, form: str
) -> None:
    before = read_json(memory / C.CONTINUITY_FILE)
    newest = read_json(checkpoint_files(memory)[-1])
    damage(memory, BAD_FORMS[form])
    # The agent's episodes end with exit 0, so the newest checkpoint's trigger is "done" and the
    # rebuilt record says the session ended done: resuming it takes --force (issue 13.4).
    res = aether("resume", "-q", "--yes", "--force")  # a copied .memory is another clone: confirmed here
    assert res.returncode == 0, res.stderr
    # The agent went on with the same session, one episode after the newest checkpoint.
    env = read_json(project / "env_3.json")
    assert env["AETHER_SESSION"] == before["session_id"] == newest["session_id"]
    assert env["AETHER_EPISODE"] == "3" and newest["episode"] == 2
    assert env["AETHER_CHECKPOINT"] == newest["id"]
    # The bad file is kept, byte for byte, and the note says where, in one line.
    kept = list((memory / C.RUNS_DIR).glob("session_continuity.json.bad-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == BAD_FORMS[form]
    note = [line for line in res.stdout.splitlines() if "was damaged" in line]
    assert len(note) == 1 and f"kept it as runs/{kept[0].name}" in note[0]
    assert f"rebuilt it from checkpoints/{newest['id']}.json and runs/{before['session_id']}.jsonl" in note[0]
    after = read_json(memory / C.CONTINUITY_FILE)
    assert after["session_id"] == before["session_id"] and after["episode"] == 3
    assert after["command"] == before["command"]  # from the local ledger


def test_resume_rebuilds_from_the_newest_intact_checkpoint(memory: Path, project: Path) -> None:
    first, second = checkpoint_files(memory)
    second.chmod(0o644)
    second.write_bytes(b'{"id": ')
    damage(memory, b"{")
    # The agent's episodes end with exit 0, so the newest checkpoint's trigger is "done" and the
    # rebuilt record says the session ended done: resuming it takes --force (issue 13.4).
    res = aether("resume", "-q", "--yes", "--force")  # a copied .memory is another clone: confirmed here
    assert res.returncode == 0, res.stderr
    env = read_json(project / "env_2.json")
    assert env["AETHER_CHECKPOINT"] == first.stem and env["AETHER_EPISODE"] == "2"


def test_resume_without_the_record_continues_from_the_checkpoints(memory: Path, project: Path) -> None:
    before = read_json(memory / C.CONTINUITY_FILE)
    newest = checkpoint_files(memory)[-1].stem
    os.unlink(memory / C.CONTINUITY_FILE)
    # The agent's episodes end with exit 0, so the newest checkpoint's trigger is "done" and the
    # rebuilt record says the session ended done: resuming it takes --force (issue 13.4).
    res = aether("resume", "-q", "--yes", "--force")  # a copied .memory is another clone: confirmed here
    assert res.returncode == 0, res.stderr
    assert "session_continuity.json was missing; rebuilt it from" in res.stdout
    env = read_json(project / "env_3.json")
    assert env["AETHER_SESSION"] == before["session_id"] and env["AETHER_CHECKPOINT"] == newest


def test_resume_with_nothing_to_rebuild_from_says_how_and_keeps_the_file(memory: Path) -> None:
    for path in checkpoint_files(memory):
        path.chmod(0o644)
        path.write_bytes(b"[]")
    path = damage(memory, b"{")
    res = aether("resume", "-q", "--yes")  # a copied .memory is another clone: confirmed here
    assert res.returncode == C.EXIT_CORRUPT
    line = one_line(res.stderr)
    assert str(path) in line and "no intact checkpoint to rebuild it from" in line
    assert "git checkout" in line and "aether run" in line
    assert path.read_bytes() == b"{"
    assert not list((memory / C.RUNS_DIR).glob("session_continuity.json.bad-*"))


# ------------------------------------------------------------------ run


def test_run_keeps_a_damaged_record_and_starts_a_new_session(memory: Path, project: Path) -> None:
    old = read_json(memory / C.CONTINUITY_FILE)["session_id"]
    damage(memory, b"{")
    res = aether("run", "-q", "--", *AGENT)
    assert res.returncode == 0, res.stderr
    assert "session_continuity.json was damaged" in res.stdout
    assert [p.read_bytes() for p in (memory / C.RUNS_DIR).glob("session_continuity.json.bad-*")] == [b"{"]
    new = read_json(memory / C.CONTINUITY_FILE)["session_id"]
    assert new != old and read_json(project / "env_1.json")["AETHER_SESSION"] == new


def test_run_that_cannot_write_its_record_never_launches_the_agent(
    memory: Path, project: Path, tmp_path: Path
) -> None:
    # Before: the agent was launched, and the run failed at its first continuity write.
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    (memory / C.RUNS_DIR / "write.lock").unlink(missing_ok=True)
    os.link(outside, memory / C.RUNS_DIR / "write.lock")
    ledgers = set((memory / C.RUNS_DIR).glob("*.jsonl"))
    res = aether("run", "-q", "--", sys.executable, "-c", "open('marker', 'w')")
    assert res.returncode == C.EXIT_CORRUPT
    assert "hard links" in one_line(res.stderr)
    assert not (project / "marker").exists()
    for ledger in set((memory / C.RUNS_DIR).glob("*.jsonl")) - ledgers:
        assert b'"kind":"launch"' not in ledger.read_bytes()
    assert outside.read_text() == "precious\n"


# ------------------------------------------------------------------ the store


def test_problem_names_the_field_of_the_wrong_type() -> None:
    from aether_cli.store.continuity import problem

    assert problem({}) is None
    assert problem({"session_id": "ses_1", "episode": 2, "command": ["a"], "last_checkpoint": None}) is None
    assert problem([]) == "expected a JSON object, found list"
    assert problem({"episode": True}) == "episode is not a non-negative integer"
    assert problem({"episode": -1}) == "episode is not a non-negative integer"
    assert problem({"command": ["a", 1]}) == "command is not a list of strings"
    assert problem({"context_usage_percent": float("nan")}) == "context_usage_percent is not a number"
    assert problem({"last_checkpoint": 7}) == "last_checkpoint is not a checkpoint id"
    assert problem({"active_tasks": {}}) == "active_tasks is not a list"
    assert problem({"objective": ["x"]}) == "objective is not a string"


def test_a_record_of_the_wrong_type_is_refused_at_read(memory: Path) -> None:
    damage(memory, b'{"episode": "three"}')
    with pytest.raises(CorruptMemoryError, match="episode is not a non-negative integer"):
        MemoryStore(memory).read_continuity()


def test_repair_while_a_run_is_live_touches_nothing(memory: Path) -> None:
    path = damage(memory, b"{")
    live = MemoryStore(memory)
    live.acquire(["agent"])
    try:
        with pytest.raises(LockedError, match="a run is live"):
            MemoryStore(memory).repair_continuity()
    finally:
        live.release()
    assert path.read_bytes() == b"{"


def test_repair_twice_keeps_both_bad_files_and_rebuilds_once_each(memory: Path) -> None:
    store = MemoryStore(memory)
    damage(memory, b"{")
    assert "was damaged" in store.repair_continuity()
    assert store.repair_continuity() == ""  # intact now: nothing to do
    damage(memory, b"[")
    assert "was damaged" in store.repair_continuity()
    kept = sorted(p.read_bytes() for p in (memory / C.RUNS_DIR).glob("session_continuity.json.bad-*"))
    assert kept == [b"[", b"{"]
    assert store.read_continuity()["recovered_from"][0].startswith("checkpoints/")  # type: ignore[index]


def test_a_folder_in_place_of_the_record_is_moved_aside(memory: Path) -> None:
    path = memory / C.CONTINUITY_FILE
    path.unlink()
    path.mkdir()
    (path / "inside").write_text("x")
    note = MemoryStore(memory).repair_continuity()
    assert "not a regular file" in note and path.is_file()
    kept = next((memory / C.RUNS_DIR).glob("session_continuity.json.bad-*"))
    assert (kept / "inside").read_text() == "x"


def test_last_record_reads_a_ledger_from_its_end(tmp_path: Path) -> None:
    from aether_cli.store.ledger import last_record

    path = tmp_path / "s.jsonl"
    with Ledger(path) as ledger:
        ledger.append({"kind": "session", "n": 1})
        for i in range(200):
            ledger.append({"kind": "event", "text": "x" * 5000, "i": i})
        ledger.append({"kind": "session", "n": 2})
        ledger.append({"kind": "launch"})
    with open(path, "ab") as f:
        f.write(b'{"kind":"session","n":3')  # torn: a killed writer's last line
    record = last_record(path, "session")
    assert record is not None and record["n"] == 2
    assert last_record(path, "checkpoint") is None
    assert last_record(tmp_path / "absent.jsonl", "session") is None
