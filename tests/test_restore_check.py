"""Restore guardrails (issue 13.4): what changed since the checkpoint a resume starts from.

Real git repositories in tmp folders: a new commit, a dirty file, a rewritten
history, a commit the repository lacks, hostile `git_head` values from a
hand-edited checkpoint, and a folder outside git. Then the prompt section
(bounded, evictable, added to a user's template that lacks it), the expected
prompt size, and the later checkpoints of an older resume.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from aether_cli.prompt_fit import Prompt
from aether_cli.rehydrate import CHANGED_TITLE, rehydrate_prompt
from aether_cli.restore_check import (
    AHEAD,
    DIVERGED,
    MAX_LISTED,
    SAME,
    UNKNOWN,
    UNRECORDED,
    expected_tokens,
    later_checkpoints,
    later_note,
    prompt_lines,
    rehydration_line,
    workspace_drift,
)
from aether_cli.store import MemoryStore
from aether_cli.workspace import workspace_state
from tests.gitrepo import git, init_repo

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = init_repo(tmp_path / "repo")
    (root / "app.py").write_text("x = 1\n")
    git(root, "add", "app.py")
    git(root, "commit", "-qm", "app")
    return root


def recorded(repo: Path) -> dict[str, Any]:
    """What a checkpoint written now records of the workspace."""
    return workspace_state(repo)


def commit(repo: Path, name: str, text: str, message: str) -> None:
    (repo / name).write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-qm", message)


# ------------------------------------------------------------------ the drift


def test_nothing_changed(repo: Path) -> None:
    drift = workspace_drift(repo, recorded(repo))
    assert drift.checked and drift.relation == SAME and not drift.changed and not drift.uncertain
    assert drift.lines() == ["workspace unchanged since the checkpoint"]
    assert prompt_lines(drift, []) == []


def test_a_new_commit_is_named_with_its_files(repo: Path) -> None:
    ws = recorded(repo)
    commit(repo, "app.py", "x = 2\ny = 3\n", "rework app")
    drift = workspace_drift(repo, ws)
    assert drift.relation == AHEAD and drift.changed and drift.commit_count == 1
    assert drift.commits[0].endswith(" rework app")
    assert drift.files == ["app.py (modified, +2 -1)"]
    lines = drift.lines()
    assert lines[0] == "changed since the checkpoint: 1 new commit; 1 file changed"
    assert lines[1].startswith("commits: ") and "rework app" in lines[1]
    assert lines[2] == "files: app.py (modified, +2 -1)"


def test_a_dirty_file_and_an_untracked_one(repo: Path) -> None:
    ws = recorded(repo)
    (repo / "app.py").write_text("x = 99\n")
    (repo / "notes.txt").write_text("new\n")
    drift = workspace_drift(repo, ws)
    assert drift.relation == SAME and drift.changed and drift.dirty_then is None and drift.dirty_now
    assert "uncommitted changes appeared" in drift.summary()
    assert drift.files == ["app.py (modified, +1 -1)", "notes.txt (untracked)"]


def test_uncommitted_changes_that_differ_from_the_recorded_ones(repo: Path) -> None:
    (repo / "app.py").write_text("x = 5\n")
    ws = recorded(repo)
    assert workspace_drift(repo, ws).changed is False  # the same dirty tree: nothing new
    (repo / "app.py").write_text("x = 6\n")
    assert "uncommitted changes differ" in workspace_drift(repo, ws).summary()


def test_aethers_own_memory_commits_are_not_news(repo: Path) -> None:
    ws = recorded(repo)
    (repo / ".memory").mkdir()
    commit(repo, ".memory/checkpoint.json", "{}", "aether: checkpoint")  # --commit-to-branch
    drift = workspace_drift(repo, ws)
    assert drift.relation == SAME and not drift.changed


def test_a_rewritten_history_or_another_branch(repo: Path) -> None:
    ws = recorded(repo)
    git(repo, "commit", "-q", "--amend", "-m", "app, reworded")
    drift = workspace_drift(repo, ws)
    assert drift.relation == DIVERGED and drift.changed
    assert "is not a descendant of the checkpoint's commit" in drift.summary()
    git(repo, "checkout", "-q", "-b", "other", "HEAD~1")
    commit(repo, "other.py", "o\n", "other work")
    drift = workspace_drift(repo, ws)
    assert drift.relation == DIVERGED and "other.py (added" in ", ".join(drift.files)


def test_a_commit_this_repository_lacks(repo: Path) -> None:
    drift = workspace_drift(repo, {"git_head": "a" * 40, "dirty_hash": None})
    assert drift.relation == UNKNOWN and drift.uncertain and not drift.changed
    assert "commit aaaaaaaaaaaa is not in this repository" in drift.summary()
    assert prompt_lines(drift, [])  # the agent is told its notes cannot be checked


def test_the_lists_are_capped(repo: Path) -> None:
    ws = recorded(repo)
    for i in range(MAX_LISTED + 5):
        commit(repo, f"f{i:02}.txt", f"{i}\n", f"commit {i}")
    drift = workspace_drift(repo, ws)
    assert drift.commit_count == MAX_LISTED + 5 and len(drift.commits) == MAX_LISTED
    assert drift.commits[0].endswith(f"commit {MAX_LISTED + 4}")  # newest first
    assert drift.lines()[1].endswith(", and 5 more")
    assert drift.file_count == MAX_LISTED + 5 and drift.lines()[2].endswith(", and 5 more")
    section = prompt_lines(drift, [])
    assert len(section) == 3 and all(len(line) < 4000 for line in section)


def test_commit_subjects_reach_no_terminal_and_no_secret(repo: Path) -> None:
    ws = recorded(repo)
    commit(repo, "app.py", "x = 3\n", "fix \x1b]0;pwned\x07 token ghp_" + "A1b2C3d4E5" * 4)
    drift = workspace_drift(repo, ws)
    text = "\n".join(drift.lines() + prompt_lines(drift, []))
    assert "\x1b" not in text and "\x07" not in text and "A1b2C3d4E5A1b2" not in text
    assert "[REDACTED" in text


@pytest.mark.parametrize(
    "head",
    [
        "--output=OUT",
        "HEAD~1; rm -rf KEEP",
        "HEAD",
        "a" * 40 + "\n",
        "-" + "a" * 39,
        "A" * 40,  # git spells ids in lower case
        "a" * 39,
        "x" * (10 << 20),
        ["a" * 40],
        40,
        {"sha": "a" * 40},
    ],
    ids=["an option", "a shell line", "a name", "a trailing newline", "a dash", "upper case",
         "too short", "10 MB", "a list", "a number", "an object"],
)
def test_a_hostile_git_head_never_reaches_git(repo: Path, tmp_path: Path, head: Any) -> None:
    out, keep = tmp_path / "x", repo / "KEEP"
    keep.write_text("keep\n")
    git(repo, "add", "KEEP")
    git(repo, "commit", "-qm", "keep")
    value = head.replace("OUT", str(out)).replace("KEEP", str(keep)) if isinstance(head, str) else head
    started = time.monotonic()
    drift = workspace_drift(repo, {"git_head": value, "dirty_hash": "z" * (1 << 20)})
    assert time.monotonic() - started < 5
    assert drift.relation == UNRECORDED and drift.uncertain
    assert drift.summary() == "the checkpoint names no valid commit id (ignored)"
    assert not out.exists() and keep.read_text() == "keep\n"
    assert all(len(line) < 1000 for line in drift.lines())


@pytest.mark.parametrize("ws", [None, "text", [], {"git_head": None}, {}])
def test_a_checkpoint_without_a_workspace(repo: Path, ws: Any) -> None:
    drift = workspace_drift(repo, ws)
    assert drift.relation == UNRECORDED and drift.summary() == "the checkpoint records no commit"


def test_outside_git_it_is_said_once(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    drift = workspace_drift(folder, {"git_head": "a" * 40})
    assert not drift.checked and not drift.changed and not drift.uncertain
    assert drift.lines() == ["workspace not checked: not a git repository"]
    assert prompt_lines(drift, []) == []


def test_a_repository_without_a_commit(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    git(folder, "init", "-q")
    assert workspace_drift(folder, {}).lines() == ["workspace not checked: the repository has no commit yet"]


# ------------------------------------------------------------------ the prompt section


def _prompt(changed: list[str] | None, budget: int = 4000, memory_dir: Path | None = None) -> Prompt:
    chk = {"id": "chk_000002_aaaaaaaa", "objective": "ship it", "next_actions": ["run the tests"],
           "progress": ["step one done"], "state": {}}
    return rehydrate_prompt(
        checkpoint=chk, tasks=[], facts=[], episode=3, count=lambda t: len(t) // 4,
        budget=budget, memory_dir=memory_dir, changed=changed,
    )  # fmt: skip


def test_the_prompt_lists_what_changed(repo: Path) -> None:
    ws = recorded(repo)
    commit(repo, "app.py", "x = 7\n", "rework app")
    lines = prompt_lines(workspace_drift(repo, ws), ["chk_000003_bbbbbbbb (episode 3): more"])
    text = _prompt(lines).text
    assert f"## {CHANGED_TITLE}" in text
    assert "- 1 new commit; 1 file changed" in text and "app.py (modified" in text
    assert "Later checkpoints of this session exist" in text
    assert text.index(CHANGED_TITLE) < text.index("## How to resume")
    assert CHANGED_TITLE not in _prompt(None).text and CHANGED_TITLE not in _prompt([]).text


def test_the_section_is_evicted_before_the_essentials_summary_last() -> None:
    lines = ["- 3 new commits; 40 files changed", "- New commits: " + "c, " * 200,
             "- Changed files (re-read before relying on your notes): " + "f.py, " * 300]
    full = _prompt(lines)
    assert "New commits" in full.text
    tight = _prompt(lines, budget=_prompt([]).tokens + 40)
    assert "- 3 new commits; 40 files changed" in tight.text and "New commits" not in tight.text
    assert "changed_since_checkpoint:2" in tight.evicted
    assert "run the tests" in tight.text and "ship it" in tight.text  # the essentials stay
    # However tight the budget, the summary line stays: the agent must learn its notes may be stale.
    starved = _prompt(lines, budget=10)
    assert "- 3 new commits; 40 files changed" in starved.text and "New commits" not in starved.text
    assert not any("summary" in e for e in starved.evicted)


def test_a_users_template_without_the_variable_still_gets_the_section(tmp_path: Path) -> None:
    memory = tmp_path / ".memory"
    (memory / "templates").mkdir(parents=True)
    (memory / "templates" / "rehydrate.md").write_text(
        "$objective $checkpoint $next_actions $tasks $pinned_facts $progress\n"
    )
    text = _prompt(["- 1 new commit"], memory_dir=memory).text
    assert text.rstrip().endswith(f"## {CHANGED_TITLE}\n- 1 new commit")


# ------------------------------------------------------------------ the expected size


def test_the_expected_size_comes_from_the_last_launch_else_the_checkpoint() -> None:
    ck = {"id": "chk_1", "metrics": {"checkpoint_tokens": 900}}
    launch = {"checkpoint": "chk_1", "prompt_tokens": 1200}
    assert expected_tokens(ck, launch, 2000) == (1200, "its last launch")
    other = {**launch, "checkpoint": "chk_0"}
    assert expected_tokens(ck, other, 2000) == (900, "the checkpoint's size")
    assert expected_tokens(ck, None, 500) == (500, "the checkpoint's size")  # fitted to its budget
    for bad in (None, [], {"metrics": "x"}, {"metrics": {"checkpoint_tokens": True}},
                {"metrics": {"checkpoint_tokens": -5}}, {"metrics": {"checkpoint_tokens": 10**30}}):
        assert expected_tokens(bad, {"prompt_tokens": "1"}, 2000) == (None, "")


def test_the_rehydration_line() -> None:
    assert rehydration_line(1234, 1200, "its last launch") == (
        "rehydrated prompt: 1,234 tokens (expected ~1,200, from its last launch)", "info"
    )
    text, kind = rehydration_line(2000, 1000, "the checkpoint's size")
    assert kind == "warn" and text.endswith("; 100% more than expected")
    unknown = ("rehydrated prompt: 10 tokens (no expected figure recorded)", "info")
    assert rehydration_line(10, None, "") == unknown


# ------------------------------------------------------------------ later checkpoints


def _checkpoint(store: MemoryStore, session: str, episode: int, progress: Any) -> str:
    draft = {"session_id": session, "episode": episode, "trigger": "budget", "objective": "o",
             "progress": progress, "state": {}, "next_actions": [], "errors": [], "tasks": []}
    return str(store.write_checkpoint(draft)["id"])


def test_later_checkpoints_of_the_session_are_listed(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    first = _checkpoint(store, "ses_a", 1, ["one"])
    second = _checkpoint(store, "ses_a", 2, ["two", "two and a half \x1b[2J"])
    _checkpoint(store, "ses_b", 1, ["another session"])
    third = _checkpoint(store, "ses_a", 3, "not a list")
    later = later_checkpoints(store, first, "ses_a")
    assert later == [f"{second} (episode 2): two and a half", f"{third} (episode 3)"]
    assert later_checkpoints(store, third, "ses_a") == []
    assert later_checkpoints(store, "chk_999999_ffffffff", "ses_a") == []
    for i in range(MAX_LISTED + 3):
        _checkpoint(store, "ses_a", 4 + i, [f"step {i}"])
    capped = later_checkpoints(store, first, "ses_a")
    assert len(capped) == MAX_LISTED + 1
    assert capped[-1] == "and 5 more checkpoint files after these (not read)"
    note = later_note(first, later)
    assert note.startswith(f"{first} is not the session's latest checkpoint") and "on disk" in note
