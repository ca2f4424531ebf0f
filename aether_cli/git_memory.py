"""aether's own git commits of `.memory/`: one per checkpoint and one at the end of a run.

`MemoryGit` records the committable files of `.memory/` (what `.memory/.gitignore`
leaves; never `runs/`, never a symlink) as a commit on `refs/aether/<session>`,
with a structured message (session, episode, trigger, checkpoint id, one
progress line). Promises:

- the user's index, work tree, HEAD and staged files are never touched: blobs
  are written with `hash-object`, the tree is built in a temporary index
  (`GIT_INDEX_FILE`), the commit made with `commit-tree` (which runs no hooks),
  and the ref moved with `update-ref` against the value it was read at;
- with `to_branch`, the same files go onto the current branch as their own
  commit instead, and the real index learns exactly the `.memory/` entries of
  that commit (so `git status` shows them clean) and nothing else; on a
  detached HEAD or during a merge, rebase or cherry-pick it is skipped with a
  warning;
- every git call is bounded in time (`GIT_TIMEOUT`);
- it never raises and never stops the run: outside a repository it says so
  once, a failing git warns once, and each later failure is silent.

It knows nothing of the supervisor, of what a checkpoint means, of Typer or
Rich: it is given plain values and a `notice` callable. The git work itself
(the bounded calls, the folder's files, the temporary index) is `git_repo`'s.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aether_cli.git_repo import REF_PREFIX, ZERO, Entry, GitError, Repo, Snapshot, find_repo, valid_ref_part

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
PROGRESS_CHARS = 160
# Files in a state of git that a branch commit must not land in the middle of.
_BUSY = {
    "MERGE_HEAD": "a merge",
    "rebase-merge": "a rebase",
    "rebase-apply": "a rebase",
    "CHERRY_PICK_HEAD": "a cherry-pick",
    "REVERT_HEAD": "a revert",
}

Notice = Callable[[str, str], None]


@dataclass(frozen=True)
class Commit:
    """One commit aether made: where it went and what it cost."""

    sha: str
    ref: str
    seconds: float
    files: int


def message(*, title: str, progress: str, trailers: dict[str, str]) -> str:
    """A commit message: a subject, one line of progress, and `Aether-*` trailers."""
    line = _CONTROL.sub(" ", progress).strip()[:PROGRESS_CHARS] or "(no progress recorded)"
    tail = "\n".join(f"Aether-{k}: {_CONTROL.sub(' ', v).strip()}" for k, v in trailers.items())
    return f"{_CONTROL.sub(' ', title).strip()}\n\n{line}\n\n{tail}\n"


class MemoryCommits(Protocol):
    """What the checkpoint writer needs of a committer (a seam for tests)."""

    def commit(
        self,
        *,
        session: str,
        episode: int,
        trigger: str,
        checkpoint: str | None,
        progress: str,
        status: str | None = None,
    ) -> Commit | None: ...


class MemoryGit:
    """Commits one `.memory/` folder for one run; warns at most once."""

    def __init__(
        self,
        memory_dir: Path,
        *,
        enabled: bool = True,
        to_branch: bool = False,
        notice: Notice | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.memory_dir = memory_dir
        self.enabled = enabled
        self.to_branch = to_branch
        self.notice: Notice = notice or (lambda _text, _kind: None)
        self.environ = environ
        self._snapshot: Snapshot | None = None
        self._looked = False
        self._warned = False
        # The tip and tree of each ref this run moved: read once, then known.
        self._tips: dict[str, tuple[str, str]] = {}

    def commit(
        self,
        *,
        session: str,
        episode: int,
        trigger: str,
        checkpoint: str | None,
        progress: str,
        status: str | None = None,
    ) -> Commit | None:
        """Commit the folder as it is now; the commit, or None (off, nothing changed, or failed)."""
        if not self.enabled:
            return None
        started = time.perf_counter()
        try:
            snap = self._open()
            if snap is None:
                return None
            ref = self._ref(snap.repo, session)
            if ref is None:
                return None
            trailers = {
                "Session": session,
                "Episode": str(episode),
                "Trigger": trigger,
                "Checkpoint": checkpoint or "none",
            }
            if status:
                trailers["Status"] = status
            what = f"checkpoint {checkpoint}" if trigger != "end" else f"run end ({status or 'stopped'})"
            text = message(
                title=f"aether: {what}, session {session} episode {episode}",
                progress=progress,
                trailers=trailers,
            )
            sha, files = self._commit(snap, ref, text)
        except GitError as exc:
            self._warn(f"could not commit .memory/ to git ({exc}); the run goes on without it")
            return None
        if sha is None:
            return None
        return Commit(sha, ref, time.perf_counter() - started, files)

    # ------------------------------------------------------------ internals

    def _open(self) -> Snapshot | None:
        """The folder's snapshot in its repository; None outside one (said once)."""
        if self._snapshot is not None or self._looked:
            return self._snapshot
        self._looked = True
        repo = find_repo(self.memory_dir, self.environ)
        if repo is None:
            self.notice(
                f"{self.memory_dir} is not inside a git repository: aether does not commit it", "info"
            )
            return None
        self._snapshot = Snapshot(repo, self.memory_dir)
        return self._snapshot

    def _ref(self, repo: Repo, session: str) -> str | None:
        """The ref this commit goes to; None (with a warning) when it must be skipped."""
        if not self.to_branch:
            if not valid_ref_part(session):
                self._warn(f"session id {session!r} cannot name a git ref; .memory/ is not committed")
                return None
            return REF_PREFIX + session
        for name, what in _BUSY.items():
            if (repo.git_dir / name).exists():
                self._warn(f"--commit-to-branch: skipped, the repository is in the middle of {what}")
                return None
        try:
            return repo.run(["symbolic-ref", "-q", "HEAD"])
        except GitError:
            self._warn("--commit-to-branch: skipped on a detached HEAD (no branch to commit to)")
            return None

    def _tip(self, repo: Repo, ref: str) -> tuple[str | None, str | None, str]:
        """(parent, its tree, the ref's value now or zeros) of the next commit on `ref`."""
        if ref in self._tips and not self.to_branch:
            sha, tree = self._tips[ref]
            return sha, tree, sha
        parts = repo.run(["for-each-ref", "--format=%(objectname) %(tree)", ref]).split()
        if len(parts) == 2:
            return parts[0], parts[1], parts[0]
        if self.to_branch:
            return None, None, ZERO  # an unborn branch
        # A new session's first commit continues the newest aether history there is,
        # so `aether pull` can tell an older memory from a diverged one.
        newest = repo.run(
            ["for-each-ref", "--count=1", "--sort=-committerdate", "--format=%(objectname)", REF_PREFIX]
        ).strip()
        return newest or None, None, ZERO

    def _commit(self, snap: Snapshot, ref: str, text: str) -> tuple[str | None, int]:
        repo = snap.repo
        entries = snap.entries()
        parent, parent_tree, old = self._tip(repo, ref)
        tree = snap.tree(entries, parent if self.to_branch else None)
        if tree == parent_tree:
            return None, len(entries)  # nothing changed since the last commit
        args = ["commit-tree", tree, "-F", "-"] + (["-p", parent] if parent else [])
        sha = repo.run(args, data=text.encode("utf-8"))
        if self.to_branch:
            self._sync_index(repo, entries)
        # Against the value read: a ref moved by someone else meanwhile is not overwritten.
        repo.run(["update-ref", "-m", text.splitlines()[0], ref, sha, old])
        self._tips[ref] = (sha, tree)
        return sha, len(entries)

    def _sync_index(self, repo: Repo, entries: list[Entry]) -> None:
        """The user's index gets exactly the folder's entries of the new commit, nothing else:
        before the branch moves, so `git status` never shows the commit staged in reverse."""
        old = repo.run(["ls-files", "-z", "--", f"{repo.prefix}/"])
        keep = {e.path for e in entries}
        lines = [f"0 {ZERO}\t{p}\0" for p in old.split("\0") if p and p not in keep]
        lines += [f"{e.mode} {e.sha}\t{e.path}\0" for e in entries]
        repo.run(
            ["update-index", "-z", "--index-info"], data="".join(lines).encode("utf-8", "surrogateescape")
        )

    def _warn(self, text: str) -> None:
        if not self._warned:
            self._warned = True
            self.notice(text, "warn")
