"""aether commits `.memory/` to git (issue 13.1): real repositories in tmp folders.

The committer alone (fast), then the real CLI supervising a real agent (slow).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import orjson
import pytest
from gitrepo import GIT_ENV, UserState, git, init_repo
from helpers import aether, agent_cmd

from aether_cli.git_memory import MemoryGit
from aether_cli.store import MemoryStore

Notes = list[tuple[str, str]]


@pytest.fixture(autouse=True)
def _plain_git(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


def user_repo(project: Path) -> Path:
    """A repository with a staged new file, an unstaged edit and a .memory/ with a ledger."""
    init_repo(project)
    (project / "staged.txt").write_text("staged by the user\n")
    git(project, "add", "staged.txt")
    (project / "README").write_text("edited, not staged\n")
    store = MemoryStore(project / ".memory")
    store.init()
    (project / ".memory" / "runs" / "s_1.jsonl").write_text('{"kind": "session"}\n')
    (project / ".memory" / "half.tmp").write_text("leftover")
    return project


def committer(project: Path, notes: Notes, **kw: object) -> MemoryGit:
    return MemoryGit(project / ".memory", notice=lambda text, kind: notes.append((kind, text)), **kw)  # type: ignore[arg-type]


def commit(g: MemoryGit, trigger: str = "budget", **kw: object):  # type: ignore[no-untyped-def]
    args = {
        "session": "s_1",
        "episode": 1,
        "trigger": trigger,
        "checkpoint": "chk_000001_abcdef12",
        "progress": "read 5 files\x1b[31m of 20",
    }
    args.update(kw)
    return g.commit(**args)  # type: ignore[arg-type]


def test_commits_land_on_the_session_ref_and_leave_the_user_alone(project: Path) -> None:
    user_repo(project)
    before = UserState(project)
    notes: Notes = []
    g = committer(project, notes)
    first = commit(g)
    assert first is not None and first.ref == "refs/aether/s_1"
    assert UserState(project) == before
    files = git(project, "ls-tree", "-r", "--name-only", "refs/aether/s_1").split()
    assert ".memory/README.md" in files and ".memory/config.toml" in files
    assert not [f for f in files if "/runs/" in f or f.endswith(".tmp") or not f.startswith(".memory/")]
    text = git(project, "log", "-1", "--format=%B", "refs/aether/s_1")
    assert text.splitlines()[0] == "aether: checkpoint chk_000001_abcdef12, session s_1 episode 1"
    assert "read 5 files [31m of 20" in text and "\x1b" not in text
    for trailer in (
        "Aether-Session: s_1",
        "Aether-Episode: 1",
        "Aether-Trigger: budget",
        "Aether-Checkpoint: chk_000001_abcdef12",
    ):
        assert trailer in text
    # Nothing changed: no commit. A change: a commit on top of the first one.
    assert commit(g) is None
    (project / ".memory" / "project_memory.json").write_text("{}\n")
    before = UserState(project)
    second = commit(g, "end", status="done")
    assert second is not None
    assert git(project, "rev-parse", "refs/aether/s_1^").strip() == first.sha
    assert "Aether-Status: done" in git(project, "log", "-1", "--format=%B", "refs/aether/s_1")
    assert UserState(project) == before
    assert notes == []


def test_a_new_session_continues_the_newest_aether_history(project: Path) -> None:
    user_repo(project)
    notes: Notes = []
    first = commit(committer(project, notes))
    (project / ".memory" / "project_memory.json").write_text("{}\n")
    other = commit(committer(project, notes), session="s_2")
    assert first is not None and other is not None
    assert git(project, "rev-parse", "refs/aether/s_2^").strip() == first.sha


def test_commit_to_branch_keeps_the_users_staged_file_staged_and_the_index_consistent(project: Path) -> None:
    user_repo(project)
    head = git(project, "rev-parse", "HEAD").strip()
    notes: Notes = []
    done = commit(committer(project, notes, to_branch=True))
    assert done is not None and done.ref == "refs/heads/main"
    assert git(project, "rev-parse", "HEAD~1").strip() == head
    changed = git(project, "diff-tree", "-r", "--name-only", "--no-commit-id", "HEAD").split()
    assert changed and all(p.startswith(".memory/") for p in changed)
    status = git(project, "status", "--porcelain").splitlines()
    assert "A  staged.txt" in status and " M README" in status
    assert not [line for line in status if ".memory" in line], status
    # A file aether removed from .memory/ leaves the branch and the index together.
    (project / ".memory" / "templates" / "README.md").unlink()
    assert commit(committer(project, notes, to_branch=True), "end") is not None
    status = git(project, "status", "--porcelain").splitlines()
    assert not [line for line in status if ".memory" in line], status
    assert "A  staged.txt" in status and notes == []


def test_commit_to_branch_is_skipped_on_a_detached_head_and_during_a_merge(project: Path) -> None:
    user_repo(project)
    git(project, "checkout", "-q", "--detach")
    notes: Notes = []
    g = committer(project, notes, to_branch=True)
    assert commit(g) is None and commit(g) is None
    assert notes == [("warn", "--commit-to-branch: skipped on a detached HEAD (no branch to commit to)")]
    git(project, "checkout", "-q", "main")
    git(project, "checkout", "-q", "-b", "side")
    (project / "side.txt").write_text("side\n")
    git(project, "add", "side.txt")
    git(project, "commit", "-q", "-m", "side")
    git(project, "checkout", "-q", "main")
    git(project, "merge", "-q", "--no-ff", "--no-commit", "side")
    head = git(project, "rev-parse", "HEAD")
    notes.clear()
    assert commit(committer(project, notes, to_branch=True)) is None
    assert notes == [("warn", "--commit-to-branch: skipped, the repository is in the middle of a merge")]
    assert git(project, "rev-parse", "HEAD") == head


def test_outside_a_repository_it_says_so_once(project: Path) -> None:
    MemoryStore(project / ".memory").init()
    notes: Notes = []
    g = committer(project, notes)
    assert commit(g) is None and commit(g) is None
    assert len(notes) == 1 and notes[0][0] == "info" and "not inside a git repository" in notes[0][1]


def test_off_means_no_git_at_all(project: Path) -> None:
    user_repo(project)
    notes: Notes = []
    assert commit(committer(project, notes, enabled=False)) is None
    assert git(project, "for-each-ref", "refs/aether/") == "" and notes == []


def test_a_failing_git_warns_once_and_never_raises(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_repo(project)
    notes: Notes = []
    (project / ".git" / "refs" / "aether").mkdir(parents=True)
    (project / ".git" / "refs" / "aether" / "s_1.lock").write_text("")
    g = committer(project, notes)
    assert commit(g) is None and commit(g, progress="again") is None
    assert len(notes) == 1 and notes[0][0] == "warn" and "could not commit .memory/" in notes[0][1]
    # A locked index stops --commit-to-branch before the branch moves.
    head = git(project, "rev-parse", "HEAD")
    (project / ".git" / "index.lock").write_text("")
    notes.clear()
    assert commit(committer(project, notes, to_branch=True)) is None
    assert len(notes) == 1 and "index.lock" in notes[0][1]
    assert git(project, "rev-parse", "HEAD") == head
    (project / ".git" / "index.lock").unlink()
    # No git on PATH at all.
    monkeypatch.setenv("PATH", str(project / "no-such-dir"))
    notes.clear()
    g = committer(project, notes)
    assert commit(g) is None and commit(g) is None
    assert notes == [
        (
            "warn",
            "could not commit .memory/ to git (git is not installed (not found on PATH)); "
            "the run goes on without it",
        )
    ]


def test_without_an_identity_aether_commits_as_aether(project: Path) -> None:
    init_repo(project, identity=False)
    MemoryStore(project / ".memory").init()
    notes: Notes = []
    assert commit(committer(project, notes)) is not None, notes
    author = git(project, "log", "-1", "--format=%an <%ae>", "refs/aether/s_1").strip()
    assert author == "aether <aether@localhost>"


def test_a_symlink_in_memory_is_never_followed(project: Path) -> None:
    user_repo(project)
    secret = project.parent / "secret.txt"
    secret.write_text("do not commit me\n")
    os.symlink(secret, project / ".memory" / "notes.json")
    assert commit(committer(project, [])) is not None
    assert ".memory/notes.json" not in git(project, "ls-tree", "-r", "--name-only", "refs/aether/s_1")


# ------------------------------------------------------------ the real CLI

RUN = ["--objective", "do the steps", "--context-window", "4000", "--max-steps", "4"]


def stepper(steps: int = 12) -> list[str]:
    return ["--", *agent_cmd("stepper.py", "--steps", str(steps), "--payload", "800", "--delay", "0.02")]


def ledger(project: Path) -> list[dict]:
    (path,) = (project / ".memory" / "runs").glob("ses_*.jsonl")
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.mark.slow
def test_a_run_commits_every_checkpoint_and_its_end(project: Path) -> None:
    user_repo(project)
    before = UserState(project)
    res = aether("run", *RUN, *stepper())
    assert res.returncode == 0, res.stderr
    records = ledger(project)
    checkpoints = [r["id"] for r in records if r["kind"] == "checkpoint"]
    commits = [r for r in records if r["kind"] == "memory_commit"]
    assert len(checkpoints) >= 2
    assert [c["checkpoint"] for c in commits if c["trigger"] != "end"] == checkpoints
    (session,) = {r["ref"] for r in commits}
    log = git(project, "log", "--format=%H %(trailers:key=Aether-Trigger,valueonly,separator=)", session)
    assert [line.split()[0] for line in log.splitlines()] == [c["commit"] for c in reversed(commits)]
    assert all(c["seconds"] > 0 for c in commits)
    # Each checkpoint's commit holds the continuity record that names it: a clone that pulls
    # it resumes from that checkpoint, not the one before.
    for c in commits:
        if c["trigger"] != "end":
            held = json.loads(git(project, "show", f"{c['commit']}:.memory/session_continuity.json"))
            assert held["last_checkpoint"] == c["checkpoint"], (c, held["last_checkpoint"])
    # The end commit holds the final continuity record: the work tree's memory is clean against it.
    shown = git(project, "show", f"{session}:.memory/session_continuity.json")
    assert shown == (project / ".memory" / "session_continuity.json").read_text()
    after = UserState(project)
    assert (after.head, after.index, after.staged, after.worktree) == (
        before.head,
        before.index,
        before.staged,
        before.worktree,
    )


@pytest.mark.slow
def test_no_commit_and_config_commit_false_turn_it_off(project: Path) -> None:
    user_repo(project)
    assert aether("run", *RUN, "--no-commit", *stepper(4)).returncode == 0
    assert git(project, "for-each-ref", "refs/aether/") == ""
    (project / ".memory" / "config.toml").write_text("[run]\ncommit = false\n")
    assert aether("run", *RUN, *stepper(4)).returncode == 0
    assert git(project, "for-each-ref", "refs/aether/") == ""


@pytest.mark.slow
def test_outside_git_or_without_git_the_run_goes_on(project: Path, tmp_path: Path) -> None:
    res = aether("run", *RUN, *stepper(6))
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert out.count("not inside a git repository") == 1
    user_repo(tmp_path / "repo")
    res = aether(
        "run",
        *RUN,
        *stepper(6),
        cwd=tmp_path / "repo",
        env={"PATH": str(Path(sys.executable).parent / "no-git-here")},
    )
    assert res.returncode == 0, res.stderr
    assert (res.stdout + res.stderr).count("could not commit .memory/") == 1


@pytest.mark.slow
def test_commit_to_branch_run(project: Path) -> None:
    user_repo(project)
    head = git(project, "rev-parse", "HEAD").strip()
    res = aether("run", *RUN, "--commit-to-branch", *stepper(6))
    assert res.returncode == 0, res.stderr
    assert git(project, "rev-parse", "HEAD").strip() != head
    status = git(project, "status", "--porcelain").splitlines()
    assert "A  staged.txt" in status and not [s for s in status if ".memory" in s], status
    assert git(project, "for-each-ref", "refs/aether/") == ""
