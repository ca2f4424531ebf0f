"""A git repository holding a `.memory/` folder, and the folder's committable files in it.

`git` runs one bounded git command (`GIT_TIMEOUT`) and turns every failure
(not installed, timed out, an error) into a one-line `GitError`. `find_repo`
finds the repository around a `.memory/` folder, where the folder sits in it,
and the identity to commit with (the user's, else the fallback "aether" when
git has none configured). `Snapshot` lists the folder's committable files
(what the folder's own `.gitignore` leaves; never `runs/`, never a symlink),
writes them as blobs and builds trees in a temporary index (`GIT_INDEX_FILE`),
never the user's.

It knows nothing of sessions, checkpoints or commits' meaning: `git_memory`
and `git_sync` build on it.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

GIT_TIMEOUT = 10.0
REF_PREFIX = "refs/aether/"
FALLBACK_NAME = "aether"
FALLBACK_EMAIL = "aether@localhost"
ZERO = "0" * 40
# A session id becomes a ref name only if it is this plain (no `..`, no `.lock`, no `/`).
_REF_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class GitError(Exception):
    """A git command failed, timed out or could not be started; the message is one line,
    `detail` all git said on stderr."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def git(
    args: list[str],
    cwd: Path,
    *,
    env: dict[str, str] | None = None,
    data: bytes | None = None,
    timeout: float = GIT_TIMEOUT,
) -> str:
    """Run `git args` in `cwd`; its stdout (text, stripped of the final newline), else GitError."""
    try:
        res = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed (not found on PATH)") from None
    except subprocess.TimeoutExpired:
        raise GitError(f"`git {args[0]}` took longer than {timeout:g}s") from None
    except OSError as exc:
        raise GitError(f"could not run git: {exc.strerror or exc}") from None
    if res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace").strip().splitlines()
        first = next((ln for ln in err if ln.startswith(("fatal:", "error:"))), err[0] if err else "")
        message = f"`git {args[0]}` failed: {first or f'exit {res.returncode}'}"
        raise GitError(message, "\n".join(err))
    return res.stdout.decode("utf-8", "surrogateescape").removesuffix("\n")


def valid_ref_part(name: str) -> bool:
    """Whether `name` can be used as is as the last part of a ref name."""
    return bool(_REF_PART.match(name)) and ".." not in name and not name.endswith((".lock", "."))


@dataclass(frozen=True)
class Repo:
    """The git repository that holds a `.memory/` folder, and where the folder sits in it."""

    top: Path
    git_dir: Path
    # The folder's path from the top of the work tree, "/"-separated (".memory" by default).
    prefix: str
    # os.environ plus a fallback identity when git has none configured.
    env: dict[str, str]

    def run(
        self,
        args: list[str],
        *,
        index: Path | None = None,
        data: bytes | None = None,
        timeout: float = GIT_TIMEOUT,
    ) -> str:
        """git in this repository; `index`: a temporary index instead of the user's."""
        env = self.env if index is None else {**self.env, "GIT_INDEX_FILE": str(index)}
        return git(args, self.top, env=env, data=data, timeout=timeout)


def find_repo(memory_dir: Path, environ: dict[str, str] | None = None) -> Repo | None:
    """The repository holding `memory_dir` (or its parent, if it does not exist yet); None outside one.

    Raises GitError when git itself fails (not installed, timed out)."""
    env = {
        k: v
        for k, v in (os.environ if environ is None else environ).items()
        if k not in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE")
    }
    where = memory_dir if memory_dir.is_dir() else memory_dir.parent
    try:
        out = git(["rev-parse", "--show-toplevel", "--absolute-git-dir"], where, env=env)
    except GitError as exc:
        if "not a git repository" in str(exc) or "must be run in a work tree" in str(exc):
            return None
        raise
    top, git_dir = out.splitlines()[:2]
    prefix = os.path.relpath(os.path.realpath(memory_dir), top).replace(os.sep, "/")
    if prefix.startswith("..") or prefix == ".":
        return None
    return Repo(Path(top), Path(git_dir), prefix, _with_identity(env, Path(top)))


def _with_identity(env: dict[str, str], top: Path) -> dict[str, str]:
    """`env`, plus GIT_AUTHOR/COMMITTER name and email "aether" where git has none configured."""
    try:
        conf = git(["config", "--get-regexp", r"^user\.(name|email)$"], top, env=env)
    except GitError:
        conf = ""  # exit 1: neither is set
    keys = {line.split(" ", 1)[0] for line in conf.splitlines()}
    out = dict(env)
    for what, key, fallback in (
        ("NAME", "user.name", FALLBACK_NAME),
        ("EMAIL", "user.email", FALLBACK_EMAIL),
    ):
        if key in keys:
            continue
        for who in ("AUTHOR", "COMMITTER"):
            out.setdefault(f"GIT_{who}_{what}", fallback)
    return out


@dataclass(frozen=True)
class Entry:
    """One committable file: its mode, blob and path from the top of the work tree."""

    mode: str
    sha: str
    path: str


class Snapshot:
    """The committable files of one `.memory/` folder, hashed into the repository's objects.

    Files unchanged since the last look (same size, mtime and inode) are not hashed again:
    checkpoints are never rewritten, so a long run hashes only what changed."""

    def __init__(self, repo: Repo, memory_dir: Path) -> None:
        self.repo = repo
        self.memory_dir = memory_dir
        self._known: dict[str, tuple[tuple[int, int, int], str]] = {}

    def files(self) -> list[str]:
        """The committable files, relative to the folder: what its own .gitignore leaves, no runs/."""
        with tempfile.TemporaryDirectory(prefix="aether-ls-") as tmp:
            # The folder as its own work tree: its .gitignore applies as written, the
            # project's ignore rules do not decide what aether's memory is.
            out = git(
                [
                    "--git-dir",
                    str(self.repo.git_dir),
                    "--work-tree",
                    str(self.memory_dir),
                    "ls-files",
                    "-z",
                    "--others",
                    "--exclude-per-directory=.gitignore",
                ],
                self.memory_dir,
                env={**self.repo.env, "GIT_INDEX_FILE": str(Path(tmp) / "index")},
            )
        names = [n for n in out.split("\0") if n and not n.endswith("/")]
        return sorted(n for n in names if n != "runs" and not n.startswith("runs/"))

    def entries(self) -> list[Entry]:
        """Every committable file as an index entry; blobs written to the object store."""
        found: list[tuple[str, str, tuple[int, int, int]]] = []
        for name in self.files():
            try:
                st = os.lstat(self.memory_dir / name)
            except FileNotFoundError:
                continue  # removed since it was listed
            if not stat.S_ISREG(st.st_mode):
                continue  # a symlink in shared memory could point anywhere: never followed
            mode = "100755" if st.st_mode & 0o111 else "100644"
            found.append((name, mode, (st.st_size, st.st_mtime_ns, st.st_ino)))
        todo = [n for n, _m, key in found if self._known.get(n, ((-1, -1, -1), ""))[0] != key]
        if todo:
            shas = self.repo.run(
                ["hash-object", "-w", "--no-filters", "--stdin-paths"],
                data="".join(str(self.memory_dir / n) + "\n" for n in todo).encode(
                    "utf-8", "surrogateescape"
                ),
            ).split()
            if len(shas) != len(todo):
                raise GitError("`git hash-object` answered for fewer files than asked")
            keys = {n: key for n, _m, key in found}
            for n, sha in zip(todo, shas, strict=True):
                self._known[n] = (keys[n], sha)
        return [Entry(mode, self._known[n][1], f"{self.repo.prefix}/{n}") for n, mode, _k in found]

    def tree(self, entries: Iterable[Entry], base: str | None = None) -> str:
        """The tree of `base` (a tree-ish, or nothing) with the folder replaced by `entries`."""
        with tempfile.TemporaryDirectory(prefix="aether-index-") as tmp:
            index = Path(tmp) / "index"
            if base is not None:
                self.repo.run(["read-tree", base], index=index)
                old = self.repo.run(["ls-files", "-z", "--", f"{self.repo.prefix}/"], index=index)
                gone = [p for p in old.split("\0") if p]
            else:
                gone = []
            lines = [f"0 {ZERO}\t{p}\0" for p in gone]
            lines += [f"{e.mode} {e.sha}\t{e.path}\0" for e in entries]
            if lines:
                self.repo.run(
                    ["update-index", "-z", "--index-info"],
                    index=index,
                    data="".join(lines).encode("utf-8", "surrogateescape"),
                )
            return self.repo.run(["write-tree"], index=index)
