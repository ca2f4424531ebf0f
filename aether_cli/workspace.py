"""Where the agent works: the git state a checkpoint records.

`git_head` is the commit, `dirty_hash` a short hash of uncommitted changes
(null when clean), both null outside a git repository or without git. A
checkpoint must never fail because git is missing or slow, so every failure
here answers null.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path


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
