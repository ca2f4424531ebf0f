"""Files changed since the session began, from git: the ground truth of what the agent wrote.

Real git in a real repository (no mocks); a folder that is not a repository, a
hostile starting commit and a tampered parent checkpoint are answered without
raising. The last test runs the whole cycle: the starting commit is recorded
once, read back from the parent chain, and the relaunch prompt names the files.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from aether_cli import workspace
from aether_cli.launcher import Child, spawn
from aether_cli.settings import Settings
from aether_cli.store import MemoryStore
from aether_cli.supervisor import Supervisor
from aether_cli.workspace import changed_files, is_commit, session_start

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(repo)}
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True,
                          env=env).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    (root / "keep.txt").write_text("a\nb\n")
    (root / "old.txt").write_text("old\n")
    git(root, "add", ".")
    git(root, "commit", "-qm", "start")
    return root


def test_changed_since_the_start_committed_or_not(repo: Path) -> None:
    start = session_start(repo)
    assert start is not None and is_commit(start)
    (repo / "keep.txt").write_text("a\nB\nc\n")
    (repo / "old.txt").unlink()
    (repo / "scratch.txt").write_text("s")
    (repo / "lib").mkdir()
    (repo / "lib" / "new.py").write_text("x = 1\n")
    git(repo, "add", "lib/new.py")
    git(repo, "commit", "-qm", "agent commit")  # HEAD moves; the start does not
    (repo / ".memory").mkdir()
    (repo / ".memory" / "noise.json").write_text("{}")
    found = {f["path"]: f for f in changed_files(repo, start) or []}
    assert set(found) == {"keep.txt", "old.txt", "scratch.txt", "lib/new.py"}
    assert (found["keep.txt"]["status"], found["keep.txt"]["added"], found["keep.txt"]["deleted"]) == (
        "modified", 2, 1)
    assert found["old.txt"]["status"] == "deleted"
    assert found["scratch.txt"]["status"] == "untracked"
    assert (found["lib/new.py"]["status"], found["lib/new.py"]["added"]) == ("added", 1)
    # From a subfolder, paths are the agent's own: relative to where it works.
    assert [f["path"] for f in changed_files(repo / "lib", start) or []] == ["new.py"]
    # Without a start, only what is uncommitted now.
    assert {f["path"] for f in changed_files(repo, None) or []} == {"keep.txt", "old.txt", "scratch.txt"}


@pytest.mark.parametrize(
    "since",
    ["--output=/tmp/aether-pwned", "HEAD", "-p", "0" * 39, "g" * 40, "", "a" * 40 + "\n", "f" * 40],
)
def test_a_start_that_is_not_a_known_full_commit_is_not_used(repo: Path, since: str) -> None:
    (repo / "keep.txt").write_text("changed\n")
    found = changed_files(repo, since)
    assert [f["path"] for f in found or []] == ["keep.txt"]
    assert not Path("/tmp/aether-pwned").exists()


def test_outside_a_repository_there_is_no_answer(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    assert session_start(plain) is None
    assert changed_files(plain, None) is None
    assert changed_files(tmp_path / "missing", "a" * 40) is None


def test_many_files_are_cut_and_time_is_bounded(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(500):
        (repo / f"f{i:04d}_{'x' * 100}.txt").write_text("x")
    start = time.monotonic()
    found = changed_files(repo, session_start(repo)) or []
    assert len(found) == workspace.MAX_CHANGED
    monkeypatch.setattr(workspace, "MAX_GIT_BYTES", 2000)
    cut = changed_files(repo, None) or []
    assert 0 < len(cut) < 20 and all(f["path"].endswith(".txt") for f in cut)  # no half record
    monkeypatch.setattr(workspace, "CHANGES_TIMEOUT", 0.0)
    assert changed_files(repo, None) is None
    assert time.monotonic() - start < 30


AGENT = """
import json, pathlib, subprocess, sys
def say(**ev): print(json.dumps(ev), flush=True)
p = pathlib.Path('launches.txt')
n = int(p.read_text()) + 1 if p.exists() else 1
p.write_text(str(n))
sys.stdin.readline()
say(type='hello', agent='t')
if n > 1:
    say(type='done', summary='done')
    sys.exit(0)
say(type='tool_call', id='a', name='bash', input={'command': 'echo one > made_by_shell.txt'})
pathlib.Path('made_by_shell.txt').write_text('one\\n')
say(type='tool_result', id='a', output='')
say(type='tool_call', id='b', name='bash', input={'command': 'pytest tests/test_x.py'})
say(type='tool_result', id='b', output='FAILED tests/test_x.py::t - assert 0', is_error=True)
subprocess.run(['git', 'add', 'made_by_shell.txt'], check=True)
subprocess.run(['git', '-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'x'], check=True)
say(type='message', role='assistant', text='Now running the tests again.')
say(type='usage', context_tokens=19500)
for line in sys.stdin:
    if json.loads(line)['type'] == 'stop':
        sys.exit(0)
"""


def test_the_cycle_records_the_start_once_and_the_prompt_names_the_files(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    start = session_start(repo)
    prompts: list[str] = []

    def spawn_fn(argv: Sequence[str], *, env: Mapping[str, str], **kw: object) -> Child:
        prompts.append(Path(env["AETHER_PROMPT_FILE"]).read_text())
        return spawn(argv, env=env, **kw)  # type: ignore[arg-type]

    settings = Settings(command=(sys.executable, "-c", AGENT), objective="x", context_window=20_000,
                        checkpoint_timeout=0.2, stop_grace=1.0, term_grace=1.0)
    store = MemoryStore(repo / ".memory")
    result = Supervisor(settings, store, spawn_fn=spawn_fn, cwd=repo).run()
    assert result.status == "done", result
    cks = [store.read_checkpoint(i) for i in store.checkpoint_ids()]
    first = cks[0]
    assert first["workspace"]["start_head"] == start
    assert first["workspace"]["git_head"] != start  # the agent committed: HEAD moved, the start did not
    assert "made_by_shell.txt" in first["state"]["files_modified"]
    assert "made_by_shell.txt (added, +1)" in first["state"]["files_changed"]
    assert first["errors"] == ["FAILED tests/test_x.py::t - assert 0"]
    assert all(ck["workspace"]["start_head"] == start for ck in cks)
    relaunch = prompts[1]
    changed = next(ln for ln in relaunch.splitlines() if ln.startswith("Changed since the session began"))
    assert "made_by_shell.txt (added, +1)" in changed
    assert "Written by tool calls" not in relaunch  # git already names the file
    assert "FAILED tests/test_x.py::t - assert 0" in relaunch
    assert "Now running the tests again." in relaunch.split("## Last intent")[1]
