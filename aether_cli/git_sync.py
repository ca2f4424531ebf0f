"""`aether push` and `aether pull`: aether's memory commits between clones of a repository.

Both move `refs/aether/*` with an explicit refspec (git neither fetches nor
pushes refs outside `refs/heads/` and `refs/tags/` by default), never forced:
a session continued on two machines is refused by git as a non-fast-forward,
and reported as diverged.

`pull` then brings the `.memory/` folder of the work tree up to the pulled
session when the folder is older: its committable files (as a tree) are those
of a commit in the pulled commit's history, or there are none. When they are
not, the two have diverged and nothing is written. The pulled commit is
checked before any file is written: only regular files under the folder's
path, never `runs/`; files the folder has and the commit does not are
removed. The project's own files are the user's to sync.

It knows nothing of Typer, sessions' content or the supervisor; every failure
is an `AetherError` with one line.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

from aether_cli.errors import AetherError, UsageError
from aether_cli.git_repo import REF_PREFIX, Entry, GitError, Repo, Snapshot, find_repo

REFSPEC = f"{REF_PREFIX}*:{REF_PREFIX}*"
# Network commands get longer than local ones, still bounded.
NET_TIMEOUT = 120.0
# How far back `pull` looks for the commit the work tree's memory matches.
MAX_HISTORY = 100_000
_REJECTED = re.compile(r"\[rejected\]\s+(\S+)")


def _repo(memory_dir: Path) -> Repo:
    try:
        repo = find_repo(memory_dir)
    except GitError as exc:
        raise AetherError(str(exc)) from None
    if repo is None:
        raise AetherError(f"{memory_dir} is not inside a git repository: there is nothing to push or pull")
    return repo


def _check_remote(remote: str) -> None:
    # A remote starting with "-" would be read by git as an option.
    if not remote or remote.startswith("-") or any(c.isspace() or ord(c) < 32 for c in remote):
        raise UsageError(f"not a remote name or URL: {remote!r}")


def _tips(repo: Repo) -> dict[str, str]:
    out = repo.run(["for-each-ref", "--format=%(refname) %(objectname)", REF_PREFIX])
    return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)


def _session(ref: str) -> str:
    return ref.removeprefix(REF_PREFIX)


def _rejected(exc: GitError) -> list[str]:
    return sorted({_session(m.group(1).split(":")[0]) for m in _REJECTED.finditer(exc.detail)})


def push(memory_dir: Path, remote: str = "origin") -> str:
    """Push every `refs/aether/*` to `remote`; a line saying what was pushed."""
    _check_remote(remote)
    repo = _repo(memory_dir)
    tips = _tips(repo)
    if not tips:
        return "nothing to push: aether has made no commits here yet (refs/aether/ is empty)"
    try:
        repo.run(["push", "--quiet", remote, REFSPEC], timeout=NET_TIMEOUT)
    except GitError as exc:
        diverged = _rejected(exc)
        if diverged:
            raise AetherError(
                f"push to {remote} refused: session {', '.join(diverged)} has commits there that this "
                f"clone lacks (continued on another machine); `aether pull {remote}` first"
            ) from None
        raise AetherError(f"push to {remote} failed: {exc}") from None
    return f"pushed {len(tips)} aether session ref(s) to {remote}: " + ", ".join(map(_session, sorted(tips)))


def pull(memory_dir: Path, remote: str = "origin") -> str:
    """Fetch `refs/aether/*` from `remote` and bring `.memory/` up to the pulled session."""
    _check_remote(remote)
    repo = _repo(memory_dir)
    before = _tips(repo)
    try:
        repo.run(["fetch", "--no-tags", remote, REFSPEC], timeout=NET_TIMEOUT)
    except GitError as exc:
        diverged = _rejected(exc)
        if diverged:
            raise AetherError(
                f"pull refused: session {', '.join(diverged)} has diverged (this clone and {remote} "
                "each added commits to it); nothing was changed"
            ) from None
        raise AetherError(f"pull from {remote} failed: {exc}") from None
    after = _tips(repo)
    changed = {ref: sha for ref, sha in after.items() if before.get(ref) != sha}
    candidate = _newest(repo, changed or after)
    if candidate is None:
        return f"nothing to pull: {remote} has no aether commits"
    ref, sha = candidate
    snap = Snapshot(repo, memory_dir)
    entries = snap.entries() if memory_dir.is_dir() else []
    if entries:
        here = snap.tree(entries)
        trees = repo.run(["log", f"--max-count={MAX_HISTORY}", "--format=%T", sha]).split()
        if trees and trees[0] == here:
            return f"already up to date with session {_session(ref)} ({sha[:12]})"
        if here not in trees:
            raise AetherError(
                f"pull refused: {memory_dir} holds changes that session {_session(ref)} from {remote} "
                "does not (the two have diverged); nothing was changed"
            )
    _checkout(repo, memory_dir, sha, entries)
    subject = repo.run(["log", "-1", "--format=%s", sha])
    return (
        f"brought {memory_dir.name}/ up to session {_session(ref)} ({sha[:12]}: {subject}); "
        "continue with `aether resume`"
    )


def _newest(repo: Repo, tips: dict[str, str]) -> tuple[str, str] | None:
    """The ref among `tips` whose commit is the newest."""
    if not tips:
        return None
    out = repo.run(["for-each-ref", "--sort=-committerdate", "--format=%(refname) %(objectname)", REF_PREFIX])
    for line in out.splitlines():
        ref, _, sha = line.partition(" ")
        if ref in tips:
            return ref, sha
    return None


def _checkout(repo: Repo, memory_dir: Path, sha: str, old: list[Entry]) -> None:
    """Write the folder's files of commit `sha` (checked first), and remove those it lacks."""
    listing = repo.run(["ls-tree", "-r", "-z", "--full-tree", sha])
    wanted: set[str] = set()
    base = repo.prefix + "/"
    for item in filter(None, listing.split("\0")):
        meta, _, path = item.partition("\t")
        mode = meta.split(" ")[0]
        parts = path.removeprefix(base).split("/")
        if (
            mode not in ("100644", "100755")
            or not path.startswith(base)
            or parts[0] == "runs"
            or any(p in ("", ".", "..", ".git") for p in parts)
        ):
            raise AetherError(f"pull refused: commit {sha[:12]} holds {path!r}, which is not aether memory")
        wanted.add(path)
    with tempfile.TemporaryDirectory(prefix="aether-pull-") as tmp:
        index = Path(tmp) / "index"
        repo.run(["read-tree", sha], index=index)
        repo.run(["checkout-index", "-a", "-f"], index=index)
    for entry in old:
        if entry.path in wanted:
            continue
        target = memory_dir / entry.path.removeprefix(base)
        try:
            if stat.S_ISREG(os.lstat(target).st_mode):
                target.unlink()
        except FileNotFoundError:
            pass
