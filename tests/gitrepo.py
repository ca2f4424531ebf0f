"""Real git repositories in tmp folders for the tests of aether's git commits, push and pull."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

# No identity or config from the machine running the tests leaks in (HOME is private already).
GIT_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0"}


def git(repo: Path, *args: str, check: bool = True) -> str:
    """Run git in `repo`; its stdout."""
    res = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **GIT_ENV},
        stdin=subprocess.DEVNULL,
    )
    if check and res.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {res.stderr}")
    return res.stdout


def init_repo(path: Path, *, identity: bool = True) -> Path:
    """A repository with one commit (README) on `main`, and a user identity unless told not to."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    if identity:
        git(path, "config", "user.name", "Tess Ter")
        git(path, "config", "user.email", "tess@example.com")
    (path / "README").write_text("hello\n")
    git(path, "add", "README")
    env = (
        {}
        if identity
        else {
            "GIT_AUTHOR_NAME": "x",
            "GIT_AUTHOR_EMAIL": "x@y",
            "GIT_COMMITTER_NAME": "x",
            "GIT_COMMITTER_EMAIL": "x@y",
        }
    )
    subprocess.run(
        ["git", "commit", "-q", "-m", "init"],
        cwd=path,
        check=True,
        env={**os.environ, **GIT_ENV, **env},
        capture_output=True,
    )
    return path


class UserState:
    """What the user's side of a repository looks like: HEAD, the index file, staged and work tree."""

    def __init__(self, repo: Path) -> None:
        self.head = git(repo, "rev-parse", "HEAD")
        self.index = hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest()
        self.staged = git(repo, "diff", "--cached", "--binary")
        self.worktree = git(repo, "diff", "--binary")
        self.status = git(repo, "status", "--porcelain", "--untracked-files=all")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserState) and vars(self) == vars(other)

    def __repr__(self) -> str:
        return repr(vars(self))
