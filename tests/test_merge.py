"""Issue 13, point 3: two branches that each ran aether merge with plain `git merge`.

The merge rules alone (fast), the driver given hostile inputs, the store's
other sessions and tied checkpoint numbers, `aether doctor`; then real git
repositories in tmp folders where two branches run real sessions and merge
(slow), with the driver registered and without it.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest
from gitrepo import GIT_ENV, git, init_repo
from helpers import aether, agent_cmd, read_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether_cli import constants as C
from aether_cli import doctor, merge_driver
from aether_cli.store import MemoryStore
from aether_cli.store.continuity import MAX_OTHER_SESSIONS
from aether_cli.store.files import dumps
from aether_cli.store.merge import MergeError, conflict_sides, kind_of, merge, merge_bytes, resolve_conflicted


@pytest.fixture(autouse=True)
def _plain_git(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


def record(session: str, at: str, **more: object) -> dict:
    return {
        "session_id": session,
        "status": "stopped",
        "episode": 2,
        "last_checkpoint": None,
        "command": ["agent"],
        "updated_at": at,
        "_update_seq": 3,
        **more,
    }


# ------------------------------------------------------------ the rules


def test_kinds_by_name() -> None:
    assert kind_of(".memory/session_continuity.json") == "continuity"
    assert kind_of("x/.memory/task_states/task_work_state.json") == "task"
    assert kind_of("pruned.json") == "pruned" and kind_of("context_index.json") == "index"
    assert kind_of(".memory/project_memory.json") == "project_memory"
    assert kind_of(".memory/checkpoints/chk_000001_abcdef12.json") is None
    assert kind_of("task_../x_state.json") is None and kind_of("config.toml") is None


def test_continuity_newest_session_on_top_and_the_other_kept() -> None:
    a = record("ses_a", "2026-01-01T10:00:00.000Z", _update_seq=7)
    b = record("ses_b", "2026-01-01T11:00:00.000Z", _update_seq=4)
    for ours, theirs in ((a, b), (b, a)):
        merged = merge("continuity", None, ours, theirs)
        assert merged["session_id"] == "ses_b" and merged["_update_seq"] == 8
        assert [r["session_id"] for r in merged["other_sessions"]] == ["ses_a"]
        assert merged["other_sessions"][0] == {k: v for k, v in a.items()}
    # Merged again with a third branch: all three are kept, none nested.
    c = record("ses_c", "2026-01-01T09:00:00.000Z")
    again = merge("continuity", None, merged, c)
    assert [r["session_id"] for r in again["other_sessions"]] == ["ses_a", "ses_c"]
    assert all("other_sessions" not in r for r in again["other_sessions"])
    # The same session on both sides: the newer record wins, nothing else.
    old = record("ses_a", "2026-01-01T09:00:00.000Z", episode=1)
    same = merge("continuity", None, old, a)
    assert same["episode"] == 2 and "other_sessions" not in same


@pytest.mark.parametrize(
    "bad",
    [
        [1, 2],
        {"session_id": "../../etc"},
        {"session_id": "ses_x", "episode": "three"},
        {"session_id": "ses_x", "other_sessions": "nope"},
        {"session_id": "ses_x", "other_sessions": [{"session_id": "ses_y", "command": "rm -rf ~"}]},
        {"episode": 3},
    ],
)
def test_continuity_refuses_a_damaged_side(bad: object) -> None:
    good = dumps(record("ses_a", "2026-01-01T10:00:00.000Z"))
    with pytest.raises(MergeError):
        merge_bytes("continuity", None, good, orjson.dumps(bad))
    if isinstance(bad, dict) and "session_id" not in bad:
        return
    with pytest.raises(MergeError):
        merge_bytes("continuity", None, orjson.dumps(bad), orjson.dumps(bad))


def test_project_memory_facts_are_a_union_by_key() -> None:
    def fact(key: str, seq: int, text: str = "t") -> dict:
        return {"key": key, "text": text, "pinned": False, "priority": 0, "added_seq": 1, "updated_seq": seq}

    base = {
        "objective": "o",
        "facts": [fact("kept", 1), fact("gone", 1)],
        "finished_tasks": ["t1"],
        "learned": {},
    }
    ours = {**base, "facts": [fact("kept", 3, "ours"), fact("mine", 2)], "finished_tasks": ["t1", "t2"]}
    theirs = {
        **base,
        "objective": "new",
        "facts": [fact("kept", 4, "theirs"), fact("gone", 1), fact("yours", 2)],
        "finished_tasks": ["t1", "t3"],
    }
    merged = merge("project_memory", base, ours, theirs)
    assert [(f["key"], f["text"]) for f in merged["facts"]] == [
        ("kept", "theirs"),
        ("mine", "t"),
        ("yours", "t"),
    ]
    assert merged["finished_tasks"] == ["t1", "t2", "t3"] and merged["objective"] == "new"
    with pytest.raises(MergeError):
        merge("project_memory", None, {"facts": [1]}, theirs)


def test_pruned_index_and_tasks() -> None:
    a, b = "chk_000002_aaaaaaaa", "chk_000001_bbbbbbbb"
    assert merge("pruned", None, {"pruned": [a, "junk", 3]}, {"pruned": [b]}) == {"pruned": [b, a]}
    ours = {"checkpoints": [{"id": a, "bytes": 10, "tokens": 5}], "tasks": [{"id": "t", "status": "done"}]}
    theirs = {
        "checkpoints": [{"id": b, "bytes": 1, "tokens": 1}],
        "tasks": [],
        "pruned": [b, "chk_000000_cccccccc"],
    }
    index = merge("index", None, ours, theirs)
    assert [e["id"] for e in index["checkpoints"]] == [b, a]
    assert index["totals"]["latest_checkpoint"] == a and index["totals"]["tokens"] == 6
    assert index["pruned"] == ["chk_000000_cccccccc"]
    old = {"id": "t", "updated_at": "2026-01-01T10:00:00.000Z", "status": "done"}
    new = {"id": "t", "updated_at": "2026-01-01T11:00:00.000Z", "status": "in_progress"}
    assert merge("task", None, old, new) == new and merge("task", None, new, old) == new
    with pytest.raises(MergeError):
        merge("task", None, old, {**new, "id": "other"})
    hostile = {"checkpoints": [{"id": a, "bytes": "many", "tokens": [1]}], "tasks": {}}
    with pytest.raises(MergeError):
        merge("index", None, hostile, theirs)
    with pytest.raises(MergeError):
        merge("index", None, {"checkpoints": [{"id": a, "bytes": "many"}], "tasks": []}, theirs)


def test_conflict_sides_as_git_writes_them() -> None:
    text = (
        b'{\n  "a": 1,\n<<<<<<< HEAD\n  "b": 2\n||||||| base\n  "b": 0\n=======\n  "b": 3\n>>>>>>> other\n}\n'
    )
    assert conflict_sides(text) == (b'{\n  "a": 1,\n  "b": 2\n}\n', b'{\n  "a": 1,\n  "b": 3\n}\n')
    assert conflict_sides(b'{"a": 1}') is None
    for broken in (b"<<<<<<< a\nx\n", b"<<<<<<< a\n=======\n=======\n>>>>>>> b\n", b"<<<<<<< a\n<<<<<<< b\n"):
        assert conflict_sides(broken) is None
    assert resolve_conflicted("task", b"<<<<<<< a\n[1]\n=======\n{}\n>>>>>>> b\n") is None


# ------------------------------------------------------------ the driver, hostile inputs


def drive(tmp_path: Path, base: bytes, ours: bytes, theirs: bytes, name: str) -> tuple[int, str, bytes]:
    paths = []
    for label, data in (("base", base), ("ours", ours), ("theirs", theirs)):
        (tmp_path / label).write_bytes(data)
        paths.append(tmp_path / label)
    code, said = merge_driver.run(paths[0], paths[1], paths[2], name)
    return code, said, paths[1].read_bytes()


HOSTILE = {
    "not JSON": b"\x00\xff garbage",
    "an array": b"[1, 2, 3]",
    "nested too deep": b"[" * 100_000 + b"]" * 100_000,
    "a number": b"1e999999",
    "invalid UTF-8 in a string": b'{"session_id": "\xff"}',
}


@pytest.mark.parametrize("what", HOSTILE)
def test_the_driver_leaves_what_it_cannot_merge_to_git(tmp_path: Path, what: str) -> None:
    good = dumps(record("ses_a", "2026-01-01T10:00:00.000Z"))
    base = dumps(record("ses_a", "2026-01-01T09:00:00.000Z"))
    code, said, result = drive(tmp_path, base, good, HOSTILE[what], ".memory/session_continuity.json")
    assert code == 1 and said.startswith("aether: cannot merge .memory/session_continuity.json by rule")
    assert "\n" not in said and len(said) < 400
    # git merge-file's markers (or ours as it was, for what it takes as binary): git reports a conflict.
    assert b"<<<<<<< ours" in result or result == good


def test_the_driver_refuses_a_huge_side_and_unknown_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(merge_driver, "MAX_BYTES", 1000)
    good = dumps(record("ses_a", "2026-01-01T10:00:00.000Z"))
    huge = dumps(record("ses_b", "2026-01-01T11:00:00.000Z", objective="x" * 5000))
    assert drive(tmp_path, good, good, huge, "session_continuity.json")[0] == 1
    assert drive(tmp_path, good, good, good, ".memory/config.toml")[0] == 1


def test_the_driver_through_the_cli(tmp_path: Path) -> None:
    a = dumps(record("ses_a", "2026-01-01T10:00:00.000Z"))
    b = dumps(record("ses_b", "2026-01-01T11:00:00.000Z"))
    for name, data in (("o", b""), ("a", a), ("b", b)):
        (tmp_path / name).write_bytes(data)
    res = aether(
        "merge-file",
        str(tmp_path / "o"),
        str(tmp_path / "a"),
        str(tmp_path / "b"),
        ".memory/session_continuity.json",
    )
    assert res.returncode == 0, res.stderr
    merged = read_json(tmp_path / "a")
    assert merged["session_id"] == "ses_b" and merged["other_sessions"][0]["session_id"] == "ses_a"
    (tmp_path / "b").write_bytes(b"\x1b[31m{{{")
    res = aether(
        "merge-file", str(tmp_path / "o"), str(tmp_path / "a"), str(tmp_path / "b"), ".memory/pruned.json"
    )
    assert res.returncode == 1 and "Traceback" not in res.stderr and res.stderr.count("\n") == 1
    assert "merge-file" not in aether("--help").stdout  # hidden: git runs it, not a person


# ------------------------------------------------------------ the store


def test_a_write_keeps_every_other_session(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    store.write_continuity(record("ses_a", ""))
    store.write_continuity(record("ses_b", ""))
    cont = store.read_continuity() or {}
    assert cont["session_id"] == "ses_b" and [r["session_id"] for r in cont["other_sessions"]] == ["ses_a"]
    store.write_continuity({**record("ses_a", ""), "episode": 9})  # resuming ses_a: ses_b stays
    cont = store.read_continuity() or {}
    assert cont["session_id"] == "ses_a" and cont["episode"] == 9
    assert [r["session_id"] for r in cont["other_sessions"]] == ["ses_b"]
    for n in range(MAX_OTHER_SESSIONS + 5):
        store.write_continuity(record(f"ses_{n:03d}", ""))
    assert len((store.read_continuity() or {})["other_sessions"]) == MAX_OTHER_SESSIONS


def test_tied_checkpoint_numbers_latest_and_resume_start(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    first = store.write_checkpoint({"session_id": "ses_a", "created_at": "2026-01-01T10:00:00.000Z"})
    # Another branch's second checkpoint, copied in as a merge would bring it.
    other = tmp_path / "other" / ".memory"
    shutil.copytree(store.root, other)
    theirs = MemoryStore(other).write_checkpoint(
        {"session_id": "ses_b", "created_at": "2026-01-01T12:00:00.000Z"}
    )
    ours = store.write_checkpoint({"session_id": "ses_a", "created_at": "2026-01-01T11:00:00.000Z"})
    shutil.copy(MemoryStore(other).checkpoint_path(theirs["id"]), store.checkpoints_dir)
    assert ours["id"][:10] == theirs["id"][:10] == "chk_000002"
    fresh = MemoryStore(store.root)
    assert fresh.latest_checkpoint_id() == theirs["id"] == fresh.resolve_checkpoint("latest")
    assert fresh.newest_intact_checkpoint(ours["id"])[0] == ours["id"]
    assert fresh.newest_intact_checkpoint(first["id"])[0] == first["id"]
    nxt = fresh.write_checkpoint({"session_id": "ses_a", "parent": ours["id"]})
    assert nxt["id"].startswith("chk_000003_") and nxt["parent"] == ours["id"]


def conflicted_folder(root: Path) -> MemoryStore:
    """A .memory/ as a merge without the driver leaves it: markers in the shared files."""
    store = MemoryStore(root)
    store.init()
    a = dumps(record("ses_a", "2026-01-01T10:00:00.000Z"))
    b = dumps(record("ses_b", "2026-01-01T11:00:00.000Z"))
    store.continuity_path.write_bytes(b"<<<<<<< HEAD\n" + a + b"=======\n" + b + b">>>>>>> b\n")
    task = {
        "id": "work",
        "title": "w",
        "status": "in_progress",
        "progress": 0.5,
        "next_action": "n",
        "notes": "",
        "files": [],
    }
    t1 = dumps({**task, "updated_at": "2026-01-01T10:00:00.000Z"})
    t2 = dumps({**task, "updated_at": "2026-01-01T11:00:00.000Z", "progress": 0.7})
    store.tasks_dir.mkdir(exist_ok=True)
    (store.tasks_dir / "task_work_state.json").write_bytes(
        b"<<<<<<< HEAD\n" + t1 + b"=======\n" + t2 + b">>>>>>> b\n"
    )
    store.context_index_path.write_bytes(b'{\n<<<<<<< HEAD\n"a": 1\n=======\n"a": 2\n>>>>>>> b\n}\n')
    return store


@pytest.mark.slow
def test_status_reads_through_conflict_markers_and_doctor_repairs(tmp_path: Path) -> None:
    store = conflicted_folder(tmp_path / ".memory")
    res = aether("status", "--json", "--memory-dir", str(store.root))
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [s["session_id"] for s in data["sessions"]] == ["ses_b", "ses_a"]
    assert data["tasks"][0]["progress"] == 0.7 and "conflict" in data["state_note"]
    res = aether("doctor", "--memory-dir", str(store.root))
    assert res.returncode == 1 and "git conflict markers" in res.stdout, res.stdout
    res = aether("doctor", "--repair", "--json", "--memory-dir", str(store.root))
    assert res.returncode == 0, res.stdout + res.stderr
    fixed = {f["file"]: f["fixed"] for f in json.loads(res.stdout)["findings"]}
    assert set(fixed) == {C.CONTINUITY_FILE, C.CONTEXT_INDEX_FILE, "task_states/task_work_state.json"}
    assert all(fixed.values())
    cont = read_json(store.continuity_path)
    assert cont["session_id"] == "ses_b" and cont["other_sessions"][0]["session_id"] == "ses_a"
    assert list((store.runs_dir).glob("session_continuity.json.bad-*"))  # the bad file is kept
    assert aether("doctor", "--memory-dir", str(store.root)).stdout.strip() == "healthy: nothing to repair"
    res = aether("resume", "ses_nope", "--memory-dir", str(store.root))
    assert res.returncode == 1 and "no session 'ses_nope'" in res.stderr, res.stderr


def test_doctor_reports_what_it_cannot_fix(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    ck = store.write_checkpoint({"session_id": "ses_a"})
    path = store.checkpoint_path(ck["id"])
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes().replace(b'"ses_a"', b'"ses_x"'))
    store.project_memory_path.write_bytes(b"\x00not json")
    os.unlink(store.root / ".gitattributes")
    report = doctor.run(store, fix=True)
    assert not report.healthy
    by_file = {f.file: f for f in report.findings}
    assert not by_file[C.PROJECT_MEMORY_FILE].fixed and "git checkout" in by_file[C.PROJECT_MEMORY_FILE].hint
    assert "seal broken" in by_file[f"checkpoints/{ck['id']}.json"].problem
    assert by_file[".gitattributes"].fixed and (store.root / ".gitattributes").is_file()
    assert store.project_memory_path.read_bytes() == b"\x00not json"  # never overwritten


def test_driver_registration_inside_git(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    memory = repo / ".memory"
    assert merge_driver.registered(memory) is False
    assert aether("init", cwd=repo).returncode == 0
    driver = git(repo, "config", "--local", "merge.aether.driver").strip()
    assert driver == merge_driver.driver_command() and merge_driver.registered(memory) is True
    assert merge_driver.ensure_registered(memory) == ""  # once is enough
    git(repo, "config", "--local", "merge.aether.driver", "/old/aether merge-file %O %A %B %P")
    assert aether("status", cwd=repo).returncode == 0  # opening the folder puts it right
    assert git(repo, "config", "--local", "merge.aether.driver").strip() == driver
    git(repo, "config", "--local", "--unset", "merge.aether.driver")
    res = aether("doctor", "--memory-dir", str(memory), cwd=tmp_path)
    # doctor opens the folder too, so it is registered again before the check.
    assert res.returncode == 0, res.stdout
    assert merge_driver.registered(tmp_path / "elsewhere" / ".memory") is None


# ------------------------------------------------------------ real branches, real runs

RUN = ["--objective", "do the steps", "--context-window", "4000", "--max-steps", "4", "--yes"]


def stepper(steps: int = 12) -> list[str]:
    return ["--", *agent_cmd("stepper.py", "--steps", str(steps), "--payload", "800", "--delay", "0.02")]


def branches(repo: Path) -> tuple[str, str]:
    """main ran a session and committed it; branches a and b each ran their own and committed."""
    init_repo(repo)
    assert aether("init", cwd=repo).returncode == 0
    sessions = []
    for branch in ("main", "a", "b"):
        if branch != "main":
            git(repo, "checkout", "-q", "-B", branch, "main")
        # One episode each: every session stops part-way, so each resume below has work left
        # (a session that ended done would need --force).
        res = aether("run", *RUN, "--max-episodes", "1", *stepper(), cwd=repo)
        assert res.returncode == 0, res.stderr
        assert read_json(repo / ".memory" / C.CONTINUITY_FILE)["status"] == "stopped"
        sessions.append(read_json(repo / ".memory" / C.CONTINUITY_FILE)["session_id"])
        git(repo, "add", ".memory")
        git(repo, "commit", "-q", "-m", f"aether on {branch}")
    git(repo, "checkout", "-q", "a")
    return sessions[1], sessions[2]


def resume_each(repo: Path, a: str, b: str) -> None:
    for session in (a, b):
        res = aether("resume", session, "--yes", "--max-episodes", "50", cwd=repo)
        assert res.returncode == 0, res.stderr
        cont = read_json(repo / ".memory" / C.CONTINUITY_FILE)
        assert cont["session_id"] == session and cont["status"] == "done"
        assert {a, b} <= {session, *(r["session_id"] for r in cont["other_sessions"])}
        mine = [
            ck
            for ck in json.loads(aether("checkpoints", "--json", cwd=repo).stdout)
            if ck["session_id"] == session
        ]
        # The session's chain stays its own: each parent is the session's previous checkpoint.
        assert all(ck["parent"] in (None, prev["id"]) for prev, ck in itertools.pairwise(mine))


def merge_b(repo: Path) -> subprocess.CompletedProcess[str]:
    """`git merge b` on the checked-out branch, as a user would type it."""
    return subprocess.run(
        ["git", "merge", "-q", "--no-edit", "b"], cwd=repo, capture_output=True, text=True,
        env={**os.environ, **GIT_ENV},
    )  # fmt: skip


@pytest.mark.slow
def test_two_branches_merge_cleanly_and_each_session_resumes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    a, b = branches(repo)
    merged = merge_b(repo)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert git(repo, "status", "--porcelain", "--", ".memory") == ""
    assert b"<<<<<<<" not in b"".join(p.read_bytes() for p in (repo / ".memory").rglob("*.json"))
    status = json.loads(aether("status", "--json", cwd=repo).stdout)
    listed = [s["session_id"] for s in status["sessions"]]
    assert status["session_id"] == b and {a, b} <= set(listed)
    assert aether("doctor", cwd=repo).returncode == 0
    resume_each(repo, a, b)


@pytest.mark.slow
def test_a_merge_without_the_driver_is_rebuilt_instead_of_failing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    a, b = branches(repo)
    git(repo, "config", "--local", "--remove-section", "merge.aether")  # a fresh clone, another tool
    merged = merge_b(repo)
    assert merged.returncode != 0 and "CONFLICT" in merged.stdout, merged.stdout
    assert b"<<<<<<<" in (repo / ".memory" / C.CONTINUITY_FILE).read_bytes()
    copy = tmp_path / "copy" / ".memory"
    shutil.copytree(repo / ".memory", copy, ignore=shutil.ignore_patterns("runs"))
    res = aether("status", "--json", cwd=repo)
    assert res.returncode == 0, res.stderr
    assert {a, b} <= {s["session_id"] for s in json.loads(res.stdout)["sessions"]}
    # resume rebuilds the conflicted files and goes on; doctor (on a copy) repairs them too.
    resume_each(repo, a, b)
    res = aether("doctor", "--memory-dir", str(copy))
    assert res.returncode == 1 and "git conflict markers" in res.stdout
    res = aether("doctor", "--repair", "--memory-dir", str(copy))
    assert res.returncode == 0 and "fixed session_continuity.json" in res.stdout, res.stdout
    assert aether("doctor", "--memory-dir", str(copy)).returncode == 0


def test_registration_in_a_linked_worktree_and_a_hostile_dot_git(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"), "-b", "side")
    memory = tmp_path / "wt" / ".memory"
    assert merge_driver.registered(memory) is False
    assert merge_driver.ensure_registered(memory).startswith("registered")
    assert merge_driver.registered(memory) is True
    assert git(repo, "config", "--local", "merge.aether.driver").strip() == merge_driver.driver_command()
    for text in ("gitdir:", "gitdir: \n", "nonsense", "gitdir: /nowhere/at/all"):
        odd = tmp_path / f"odd{len(text)}{text[:3]}"
        odd.mkdir()
        (odd / ".git").write_text(text)
        assert merge_driver.registered(odd / ".memory") in (None, False)
        merge_driver.ensure_registered(odd / ".memory")  # never raises


def test_a_new_session_on_a_conflicted_record_keeps_both_merged_sessions(tmp_path: Path) -> None:
    store = conflicted_folder(tmp_path / ".memory")
    note = store.repair_continuity(missing=False, rebuild=False)  # what `aether run` does first
    assert "kept it as runs/session_continuity.json.bad-" in note and "both sides" in note
    store.write_continuity(record("ses_c", ""))
    cont = store.read_continuity() or {}
    assert cont["session_id"] == "ses_c"
    assert {r["session_id"] for r in cont["other_sessions"]} == {"ses_a", "ses_b"}


# Field names the rules look at, so the generated objects reach them.
_FIELDS = [
    "session_id",
    "updated_at",
    "other_sessions",
    "episode",
    "command",
    "facts",
    "key",
    "updated_seq",
    "finished_tasks",
    "pruned",
    "checkpoints",
    "tasks",
    "id",
    "bytes",
    "tokens",
    "status",
    "_update_seq",
    "objective",
    "last_checkpoint",
    "settings",
]
_SCALAR = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
_JSON = st.recursive(
    _SCALAR | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(_FIELDS), inner, max_size=6),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["continuity", "project_memory", "pruned", "index", "task"]), a=_JSON, b=_JSON)
def test_any_json_either_merges_or_is_refused(kind: str, a: object, b: object) -> None:
    """Whatever two sides hold, the rules merge them or raise MergeError: nothing else escapes."""
    try:
        out = merge_bytes(kind, None, orjson.dumps(a), orjson.dumps(b))
    except MergeError:
        return
    assert isinstance(orjson.loads(out), dict)


def test_doctor_on_a_missing_folder_is_an_error_not_healthy(tmp_path: Path) -> None:
    res = aether("doctor", "--memory-dir", str(tmp_path / "nowhere"))
    assert res.returncode == 1 and "healthy" not in res.stdout
    assert res.stderr.startswith("aether: error: nothing to check:") and "Traceback" not in res.stderr


def test_a_resumed_session_ignores_another_sessions_view_of_a_shared_task(tmp_path: Path) -> None:
    """After a merge, task_work_state.json may hold the other branch's session: a resume of this
    session is told its own checkpoint's progress, not the other's."""
    from aether_cli.episode_prompt import episode_prompt

    store = MemoryStore(tmp_path / ".memory")
    store.init()
    row = {"id": "work", "status": "in_progress", "progress": 0.3, "next_action": "step 4 of A"}
    ck = store.write_checkpoint({"session_id": "ses_a", "tasks": [row]})
    store.write_task({**row, "progress": 0.9, "next_action": "step 9 of B", "session_id": "ses_b"})
    store.write_task({"id": "old", "status": "pending", "next_action": "written before sessions"})

    def prompt() -> str:
        return episode_prompt(
            store, lambda s: len(s) // 4, objective="o", window=100_000, budget_override=None,
            checkpoint=store.read_checkpoint(ck["id"]), episode=2, session_id="ses_a",
        ).text  # fmt: skip

    text = prompt()
    assert "step 4 of A" in text and "[in_progress 30%]" in text and "step 9 of B" not in text
    assert "written before sessions" in text  # a task file that names no session still counts
    store.write_task({**row, "progress": 0.5, "next_action": "step 6 of A", "session_id": "ses_a"})
    assert "step 6 of A" in prompt()  # its own newer file wins over its checkpoint row, as before
