"""Where the agent works: the git state a checkpoint records.

`git_head` is the commit, `dirty_hash` a short hash of uncommitted changes
(null when clean), both null outside a git repository or without git.
`session_start` names the commit a session began at, and `changed_files` the
files changed since then (committed or not, untracked included): the ground
truth of what the agent wrote, whatever tool it used. A checkpoint must never
fail because git is missing, slow or verbose, so every failure here answers
null, and every git call is bounded in time (and, for lists, in output).
"""

from __future__ import annotations

import hashlib
import os
import re
import selectors
import subprocess
import time
from pathlib import Path
from typing import Any


def _git(args: list[str], cwd: Path) -> bytes | None:
    try:
        res = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            timeout=5,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def workspace_state(cwd: Path) -> dict[str, str | None]:
    """{"git_head": sha or None, "dirty_hash": 12 hex of the uncommitted diff or None}."""
    head = _git(["rev-parse", "--verify", "-q", "HEAD"], cwd)
    if head is None:
        return {"git_head": None, "dirty_hash": None}
    # .memory itself changes at every checkpoint; leave it out so the hash says
    # something about the user's work, not about aether's bookkeeping.
    status = _git(["status", "--porcelain=v1", "-z", "--", ".", ":(exclude).memory"], cwd) or b""
    if not status:
        return {"git_head": head.decode().strip(), "dirty_hash": None}
    diff = (
        _git(["diff", "--no-ext-diff", "--binary", "HEAD", "--", ".", ":(exclude).memory"], cwd)
        or b""
    )
    digest = hashlib.sha256(status + b"\0" + diff).hexdigest()[:12]
    return {"git_head": head.decode().strip(), "dirty_hash": digest}


# ------------------------------------------------------------ changed files

MAX_GIT_BYTES = 1024 * 1024  # more output than this is cut: a list of files, not a dump
MAX_CHANGED = 200
CHANGES_TIMEOUT = 5.0  # for all the git calls of one look, together
_SHA = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
# The user's work in a git command: every path but aether's own folder.
WORK_PATHS = ("--", ".", ":(exclude).memory")


def git_bounded(args: list[str], cwd: Path, deadline: float) -> bytes | None:
    """git's stdout, at most MAX_GIT_BYTES, or None on failure or once `deadline` passes."""
    try:
        proc = subprocess.Popen(
            ["git", *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    assert proc.stdout is not None
    chunks: list[bytes] = []
    size, complete = 0, False
    with proc, selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while size < MAX_GIT_BYTES:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                break
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                complete = True
                break
            chunks.append(chunk)
            size += len(chunk)
        if not complete:
            proc.kill()
        try:
            code = proc.wait(max(0.0, deadline - time.monotonic()) + 0.5)
        except subprocess.TimeoutExpired:
            return None
    if complete:
        return b"".join(chunks) if code == 0 else None
    if size < MAX_GIT_BYTES:
        return None  # out of time: a part of the answer could mislead
    # Cut at the size limit: keep the whole records only.
    data = b"".join(chunks)[:MAX_GIT_BYTES]
    return data[: data.rfind(b"\0") + 1]


def is_commit(value: str) -> bool:
    """True for a full commit id (40 or 64 hex digits): nothing else may reach git's command line."""
    # fullmatch: `$` alone would also accept an id followed by a newline.
    return bool(_SHA.fullmatch(value))


def in_repository(cwd: Path) -> bool:
    """Whether `cwd` is inside a git repository (False without git too)."""
    return _git(["rev-parse", "--git-dir"], cwd) is not None


def session_start(cwd: Path) -> str | None:
    """The commit HEAD names now (call it when a session begins), or None outside a repository."""
    head = _git(["rev-parse", "--verify", "-q", "HEAD"], cwd)
    sha = head.decode(errors="replace").strip() if head else ""
    return sha if is_commit(sha) else None


def _status_entries(out: bytes) -> dict[str, str]:
    """path → status from `git status --porcelain=v1 -z` (a rename's old path is skipped)."""
    found: dict[str, str] = {}
    fields = out.split(b"\0")
    i = 0
    while i < len(fields):
        rec = fields[i]
        i += 1
        if len(rec) < 4:
            continue
        xy, path = rec[:2].decode(errors="replace"), rec[3:].decode(errors="replace")
        if "R" in xy or "C" in xy:
            i += 1  # the record after a rename or copy is its source path
        if xy == "??":
            found[path] = "untracked"
        elif "D" in xy:
            found[path] = "deleted"
        elif "A" in xy:
            found[path] = "added"
        elif "R" in xy:
            found[path] = "renamed"
        else:
            found[path] = "modified"
    return found


def _numstat(out: bytes) -> dict[str, tuple[int | None, int | None]]:
    """path → (lines added, deleted) from `git diff --numstat -z --no-renames` (None for binary)."""
    counts: dict[str, tuple[int | None, int | None]] = {}
    for rec in out.split(b"\0"):
        parts = rec.decode(errors="replace").split("\t", 2)
        if len(parts) == 3 and parts[2]:
            added, deleted = (int(p) if p.isdigit() else None for p in parts[:2])
            counts[parts[2]] = (added, deleted)
    return counts


def changed_files(cwd: Path, since: str | None) -> list[dict[str, Any]] | None:
    """Files changed since commit `since` (committed or not) and untracked ones, sorted by path:
    [{"path", "status", "added", "deleted"}]; None outside a repository or without git.

    Never raises; every git call shares one CHANGES_TIMEOUT and is cut at
    MAX_GIT_BYTES. A `since` that is not a full commit id is not used (it
    goes on git's command line), nor is one git no longer knows.
    """
    deadline = time.monotonic() + CHANGES_TIMEOUT
    status = git_bounded(
        ["status", "--porcelain=v1", "-z", "--untracked-files=all", *WORK_PATHS], cwd, deadline
    )
    if status is None:
        return None
    # git names paths from the repository's top; the agent reads them from its own folder.
    prefix = git_bounded(["rev-parse", "--show-prefix"], cwd, deadline) or b""
    top = prefix.decode(errors="replace").strip()
    found = _status_entries(status)
    counts: dict[str, tuple[int | None, int | None]] = {}
    if since is not None and is_commit(since):
        diff = ["diff", "--no-renames", "-z", since, *WORK_PATHS]
        names = git_bounded([*diff[:1], "--name-status", *diff[1:]], cwd, deadline)
        fields = (names or b"").split(b"\0")
        for code, raw in zip(fields[::2], fields[1::2], strict=False):
            kind = {"A": "added", "D": "deleted"}.get(code.decode(errors="replace")[:1], "modified")
            name = raw.decode(errors="replace")
            if name and found.get(name) != "untracked":
                found[name] = kind
        numstat = git_bounded([*diff[:1], "--numstat", *diff[1:]], cwd, deadline)
        counts = _numstat(numstat or b"")
    out = []
    for path in sorted(found)[:MAX_CHANGED]:
        added, deleted = counts.get(path, (None, None))
        shown = path[len(top) :] if top and path.startswith(top) else path
        if not shown:
            continue
        out.append({"path": shown, "status": found[path], "added": added, "deleted": deleted})
    return out
