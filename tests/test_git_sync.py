"""`aether push` / `aether pull` (issue 13.2): two clones and a bare remote in a tmp folder, real git."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from gitrepo import GIT_ENV, git, init_repo
from helpers import aether, agent_cmd, read_json

pytestmark = pytest.mark.slow

RUN = ["--objective", "do the steps", "--context-window", "4000", "--max-steps", "4", "--max-episodes", "1"]
AGENT = ["--", *agent_cmd("stepper.py", "--steps", "12", "--payload", "800", "--delay", "0.02")]


@pytest.fixture(autouse=True)
def _plain_git(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)


def clone(bare: Path, where: Path) -> Path:
    git(bare.parent, "clone", "-q", str(bare), str(where))
    git(where, "config", "user.name", where.name)
    git(where, "config", "user.email", f"{where.name}@example.com")
    return where


@pytest.fixture
def machines(tmp_path: Path) -> tuple[Path, Path, Path]:
    seed = init_repo(tmp_path / "seed")
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(seed, "push", "-q", str(bare), "main")
    return bare, clone(bare, tmp_path / "a"), clone(bare, tmp_path / "b")


def steps(project: Path) -> list[int]:
    log = project / "steps.log"
    return [int(n) for n in re.findall(r"^step (\d+) ", log.read_text(), flags=re.M)] if log.exists() else []


def memory_digest(project: Path) -> str:
    h = hashlib.sha256()
    for p in sorted((project / ".memory").rglob("*")):
        if p.is_file() and "runs" not in p.parts:
            h.update(str(p.relative_to(project)).encode() + p.read_bytes())
    return h.hexdigest()


def test_push_on_one_clone_pull_and_resume_on_the_other(machines: tuple[Path, Path, Path]) -> None:
    bare, a, b = machines
    res = aether("run", *RUN, *AGENT, cwd=a)
    assert res.returncode == 0, res.stderr
    session = read_json(a / ".memory" / "session_continuity.json")["session_id"]
    done_on_a = steps(a)
    assert done_on_a and max(done_on_a) < 12
    res = aether("push", cwd=a)
    assert res.returncode == 0, res.stderr
    assert f"refs/aether/{session}" in git(bare, "for-each-ref", "refs/aether/")

    res = aether("pull", cwd=b)
    assert res.returncode == 0, res.stderr
    assert (
        res.stdout.startswith(f"brought .memory/ up to session {session} ") and "aether resume" in res.stdout
    )
    assert read_json(b / ".memory" / "session_continuity.json")["session_id"] == session
    assert not (b / ".memory" / "runs").exists() or not list((b / ".memory" / "runs").glob("*.jsonl"))
    assert "already up to date" in aether("pull", cwd=b).stdout

    # The other clone continues the session where the first one left it.
    res = aether("resume", "--yes", cwd=b)  # another clone: the command is confirmed once
    assert res.returncode == 0, res.stderr
    cont = read_json(b / ".memory" / "session_continuity.json")
    assert cont["session_id"] == session and cont["episode"] == 2
    assert steps(b) and min(steps(b)) == max(done_on_a) + 1
    assert aether("push", cwd=b).returncode == 0
    log = git(
        bare, "log", "--format=%(trailers:key=Aether-Episode,valueonly,separator=)", f"refs/aether/{session}"
    )
    assert {"1", "2"} <= set(log.split())

    # The first clone, still at the older memory, pulls the continuation.
    res = aether("pull", cwd=a)
    assert res.returncode == 0, res.stderr
    assert "brought .memory/ up to session" in res.stdout
    assert memory_digest(a) == memory_digest(b)


def test_a_session_continued_on_both_clones_is_refused(machines: tuple[Path, Path, Path]) -> None:
    _bare, a, b = machines
    assert aether("run", *RUN, *AGENT, cwd=a).returncode == 0
    assert aether("push", cwd=a).returncode == 0
    assert aether("pull", cwd=b).returncode == 0
    # Both clones continue the same session, each on its own.
    assert aether("resume", "--yes", cwd=b).returncode == 0  # another clone: confirmed once
    assert aether("resume", cwd=a).returncode == 0
    assert aether("push", cwd=b).returncode == 0
    res = aether("push", cwd=a)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "push to origin refused" in res.stderr, res.stderr
    before = memory_digest(a)
    res = aether("pull", cwd=a)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "has diverged" in res.stderr, res.stderr
    assert memory_digest(a) == before


def test_a_memory_changed_here_is_not_overwritten(machines: tuple[Path, Path, Path]) -> None:
    _bare, a, b = machines
    assert aether("run", *RUN, *AGENT, cwd=a).returncode == 0
    assert aether("push", cwd=a).returncode == 0
    assert aether("pull", cwd=b).returncode == 0
    readme = b / ".memory" / "README.md"  # a committed file (`run` writes no config.toml)
    readme.write_text(readme.read_text() + "\nedited on b\n")
    before = memory_digest(b)
    res = aether("pull", cwd=b)
    assert res.returncode == 1 and "the two have diverged" in res.stderr and res.stderr.count("\n") == 1
    assert memory_digest(b) == before


def test_push_and_pull_outside_git_or_with_a_bad_remote(
    project: Path, machines: tuple[Path, Path, Path]
) -> None:
    res = aether("pull")
    assert (
        res.returncode == 1 and "not inside a git repository" in res.stderr and "Traceback" not in res.stderr
    )
    _bare, a, _b = machines
    assert aether("push", cwd=a).stdout.startswith("nothing to push")
    res = aether("pull", "--", "-oops", cwd=a)
    assert res.returncode == 2 and "not a remote name" in res.stderr
    res = aether("pull", "nowhere", cwd=a)
    assert res.returncode == 1 and "pull from nowhere failed" in res.stderr and res.stderr.count("\n") == 1
