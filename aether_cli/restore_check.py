"""Restore guardrails: what changed since the checkpoint a resume starts from.

A checkpoint records the workspace it was written in (`workspace.git_head`,
`workspace.dirty_hash`). On a resume this module compares that with the
workspace now (`WorkspaceDrift`: new commits, a HEAD that is no longer a
descendant, changed and untracked files, different uncommitted changes), and
names the session's checkpoints written after the one resumed
(`later_checkpoints`: their work is on disk). Both give short, bounded lines:
for the person before the launch, and for the relaunch prompt's "Changed
since the checkpoint" section, so the agent re-reads those files instead of
trusting its old notes.

Promises: the checkpoint is untrusted (`.memory/` is committed by others), so
its `git_head` reaches git only when it is a full commit id (40 or 64 hex
digits: never an option, never a range); every git call is bounded in time
and output (`workspace`); every failure answers "not checked", never an
exception; every line is plain text (no terminal escapes) and redacted.
Knows nothing of the terminal, the supervisor or how the prompt is fitted.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aether_cli.plain_text import clean
from aether_cli.redact import redact_text
from aether_cli.workspace import (
    WORK_PATHS,
    changed_files,
    git_bounded,
    in_repository,
    is_commit,
    session_start,
    workspace_state,
)

MAX_LISTED = 20  # commits, files or checkpoints named; the rest are counted ("and N more")
MAX_LINE = 160  # characters of one commit subject or progress line
DRIFT_TIMEOUT = 5.0  # for the commit calls of one check, together (changed_files has its own)
_DIRTY = re.compile(r"[0-9a-f]{12,64}")  # workspace_state's hash; anything else counts as none

# How HEAD now relates to the checkpoint's commit.
SAME = "same"  # HEAD is the checkpoint's commit, or adds only commits of .memory/ (aether's own)
AHEAD = "ahead"  # new commits on top of it
DIVERGED = "diverged"  # not a descendant: history rewritten, or another branch checked out
UNKNOWN = "unknown"  # this repository does not have the checkpoint's commit
UNRECORDED = "unrecorded"  # the checkpoint names no (valid) commit


def plain_line(text: str, limit: int = MAX_LINE) -> str:
    """One safe line: no control characters, no secret, at most `limit` characters."""
    line = " ".join(clean(text[: limit * 4]).split())  # cut first: the text may be huge
    line = redact_text(line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _capped(items: list[str], total: int | None = None) -> list[str]:
    """At most MAX_LISTED items, then "and N more" when there were more."""
    total = len(items) if total is None else total
    shown = items[:MAX_LISTED]
    return shown + ([f"and {total - len(shown)} more"] if total > len(shown) else [])


@dataclass(frozen=True)
class WorkspaceDrift:
    """The workspace now against the one a checkpoint recorded."""

    checked: bool
    reason: str = ""  # why it was not checked, or what could not be compared
    head_then: str | None = None
    head_now: str | None = None
    relation: str = UNRECORDED
    commits: list[str] = field(default_factory=list)  # "abc1234 subject", newest first
    commit_count: int = 0
    dirty_then: str | None = None
    dirty_now: str | None = None
    files: list[str] = field(default_factory=list)  # "path (modified, +3 -1)"
    file_count: int = 0

    @property
    def dirty_changed(self) -> bool:
        return self.checked and self.dirty_then != self.dirty_now

    @property
    def changed(self) -> bool:
        """Whether anything is known to have changed since the checkpoint."""
        return self.checked and (self.relation in (AHEAD, DIVERGED) or self.dirty_changed)

    @property
    def uncertain(self) -> bool:
        """In a repository, but the checkpoint's commit cannot be compared (unknown or unrecorded)."""
        return self.checked and self.relation in (UNKNOWN, UNRECORDED)

    def summary(self) -> str:
        """One line naming what changed (or could not be compared)."""
        if not self.checked:
            return f"workspace not checked: {self.reason}"
        parts: list[str] = []
        if self.relation == AHEAD:
            parts.append(f"{self.commit_count} new commit{'s' if self.commit_count != 1 else ''}")
        elif self.relation == DIVERGED:
            parts.append(
                f"HEAD {_short(self.head_now)} is not a descendant of the checkpoint's commit "
                f"{_short(self.head_then)} (history rewritten or another branch)"
            )
        elif self.relation in (UNKNOWN, UNRECORDED):
            parts.append(self.reason)
        if self.dirty_changed:
            parts.append(
                "uncommitted changes differ"
                if self.dirty_then and self.dirty_now
                else "uncommitted changes appeared" if self.dirty_now else "uncommitted changes are gone"
            )
        if self.file_count:
            parts.append(f"{self.file_count} file{'s' if self.file_count != 1 else ''} changed")
        return "; ".join(parts) if parts else "workspace unchanged since the checkpoint"

    def lines(self) -> list[str]:
        """What changed, a few bounded lines: the summary, the commits, the files."""
        if not self.changed and not self.uncertain:
            return [self.summary()]
        out = [f"changed since the checkpoint: {self.summary()}"]
        if self.commits:
            out.append("commits: " + ", ".join(_capped(self.commits, self.commit_count)))
        if self.files:
            out.append("files: " + ", ".join(_capped(self.files, self.file_count)))
        return out


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "?"


def _commit_lines(cwd: Path, then: str, now: str, deadline: float) -> tuple[list[str], int]:
    """The commits reachable from `now` and not from `then`, newest first (capped), and their number."""
    span = f"{then}..{now}"  # both checked full ids: the range cannot be read as an option
    # Commits that touch only .memory/ are aether's own (`--commit-to-branch`), not news.
    out = git_bounded(
        ["log", "-z", "--no-color", "--no-decorate", f"--max-count={MAX_LISTED}",
         "--format=%h %s", span, *WORK_PATHS],
        cwd, deadline,
    )  # fmt: skip
    lines = [plain_line(r.decode(errors="replace")) for r in (out or b"").split(b"\0") if r.strip()]
    count = git_bounded(["rev-list", "--count", span, *WORK_PATHS], cwd, deadline)
    text = (count or b"").decode(errors="replace").strip()
    return lines, int(text) if text.isdigit() else len(lines)


def _file_lines(cwd: Path, since: str | None) -> list[str]:
    """The files changed since commit `since` (committed or not) and untracked ones, one line each."""
    found = changed_files(cwd, since) or []
    lines = []
    for f in found:
        counts = ""
        if isinstance(f.get("added"), int) and isinstance(f.get("deleted"), int):
            counts = f", +{f['added']} -{f['deleted']}"
        lines.append(plain_line(f"{f['path']} ({f['status']}{counts})"))
    return lines


def workspace_drift(cwd: Path, recorded: Any) -> WorkspaceDrift:
    """The workspace in `cwd` now against `recorded`, a checkpoint's `workspace` field (untrusted).

    Never raises. Outside a repository or without git: not checked. A
    recorded `git_head` that is not a full commit id is never given to git.
    """
    ws = recorded if isinstance(recorded, dict) else {}
    head_now = session_start(cwd)
    if head_now is None:
        reason = "the repository has no commit yet" if in_repository(cwd) else "not a git repository"
        return WorkspaceDrift(checked=False, reason=reason)
    dirty_then = ws.get("dirty_hash")
    drift = WorkspaceDrift(
        checked=True, head_now=head_now, dirty_now=workspace_state(cwd).get("dirty_hash"),
        dirty_then=dirty_then if isinstance(dirty_then, str) and _DIRTY.fullmatch(dirty_then) else None,
    )  # fmt: skip
    then = ws.get("git_head")
    if not isinstance(then, str) or not is_commit(then):
        what = "records no commit" if then is None else "names no valid commit id (ignored)"
        drift = replace(drift, relation=UNRECORDED, reason=f"the checkpoint {what}")
        # No commit to diff from: the files listed are the uncommitted ones now.
        return replace(drift, **_files(cwd, None)) if drift.dirty_now else drift
    deadline = time.monotonic() + DRIFT_TIMEOUT
    if git_bounded(["cat-file", "-e", f"{then}^{{commit}}"], cwd, deadline) is None:
        reason = f"the checkpoint's commit {_short(then)} is not in this repository"
        drift = replace(drift, head_then=then, relation=UNKNOWN, reason=reason)
        return replace(drift, **_files(cwd, None)) if drift.dirty_now else drift
    if then == head_now:
        drift = replace(drift, head_then=then, relation=SAME)
    else:
        ancestor = git_bounded(["merge-base", "--is-ancestor", then, head_now], cwd, deadline) is not None
        commits, count = _commit_lines(cwd, then, head_now, deadline)
        relation = DIVERGED if not ancestor else AHEAD if count else SAME
        drift = replace(drift, head_then=then, relation=relation, commits=commits, commit_count=count)
    return replace(drift, **_files(cwd, then)) if drift.changed else drift


def _files(cwd: Path, since: str | None) -> dict[str, Any]:
    """The `files` and `file_count` of a drift (changed_files stops at workspace.MAX_CHANGED:
    past that, the count is a floor)."""
    files = _file_lines(cwd, since)
    return {"files": files, "file_count": len(files)}


# ------------------------------------------------------------ later checkpoints


def later_checkpoints(store: Any, ckpt_id: str, session_id: str) -> list[str]:
    """One line per checkpoint of `session_id` written after `ckpt_id` (capped): id, episode,
    its last progress line. Unreadable ones are named as such; never raises."""
    try:
        ids = store.checkpoint_ids()
    except Exception:  # a damaged folder: the guard says nothing rather than stop the resume
        return []
    if ckpt_id not in ids:
        return []
    lines: list[str] = []
    after = ids[ids.index(ckpt_id) + 1 :]
    for n, cid in enumerate(after):
        if len(lines) == MAX_LISTED:
            # Each one is read in full to know its session: a long tail is counted, not read.
            lines.append(f"and {len(after) - n} more checkpoint files after these (not read)")
            break
        try:
            ck = store.read_checkpoint(cid)
        except Exception:
            lines.append(f"{cid} (unreadable)")
            continue
        if ck.get("session_id") != session_id:
            continue
        progress = ck.get("progress")
        last = progress[-1] if isinstance(progress, list) and progress else ""
        last = last if isinstance(last, str) else ""
        episode = ck.get("episode")
        ep = f"episode {episode}" if type(episode) is int else "episode ?"
        lines.append(plain_line(f"{cid} ({ep})" + (f": {last}" if last else "")))
    return lines


def later_note(ckpt_id: str, later: list[str]) -> str:
    """The warning for a resume from a checkpoint that is not the session's latest."""
    return (
        f"{ckpt_id} is not the session's latest checkpoint: later work happened after it and its "
        "side effects (files, commits) are on disk; later checkpoints: " + "; ".join(later)
    )


def prompt_lines(drift: WorkspaceDrift | None, later: list[str]) -> list[str]:
    """The relaunch prompt's "Changed since the checkpoint" items ([] when nothing changed)."""
    out: list[str] = []
    if drift is not None and (drift.changed or drift.uncertain):
        out.append(f"- {drift.summary()}")
        if drift.commits:
            out.append("- New commits: " + ", ".join(_capped(drift.commits, drift.commit_count)))
        if drift.files:
            out.append("- Changed files (re-read before relying on your notes): "
                       + ", ".join(_capped(drift.files, drift.file_count)))
    if later:
        out.append("- Later checkpoints of this session exist; their work is on disk: " + "; ".join(later))
    return out


# ------------------------------------------------------------ prompt size

OVER_EXPECTED = 1.5  # a rehydrated prompt this much over what was expected is worth a warning


def _count(value: Any) -> int | None:
    return value if type(value) is int and 0 < value < 1 << 40 else None


def expected_tokens(checkpoint: Any, last_launch: Any, budget: int) -> tuple[int | None, str]:
    """What the rehydrated prompt of `checkpoint` should cost, and where the figure comes from:
    the session's last launch from that checkpoint (its ledger record), else the checkpoint's
    own size (`metrics.checkpoint_tokens`, what the index lists) capped at the prompt budget
    it is fitted to; (None, "") when neither is known. Both inputs are untrusted."""
    ck = checkpoint if isinstance(checkpoint, dict) else {}
    launched = last_launch if isinstance(last_launch, dict) else {}
    tokens = _count(launched.get("prompt_tokens"))
    if tokens is not None and launched.get("checkpoint") == ck.get("id"):
        return tokens, "its last launch"
    metrics = ck.get("metrics")
    size = _count(metrics.get("checkpoint_tokens")) if isinstance(metrics, dict) else None
    if size is None:
        return None, ""
    return min(size, budget), "the checkpoint's size"


def rehydration_line(actual: int, expected: int | None, source: str) -> tuple[str, str]:
    """The line saying what the rehydrated prompt cost against what was expected, and its kind
    ("warn" when it is over OVER_EXPECTED times the expected figure)."""
    if expected is None:
        return f"rehydrated prompt: {actual:,} tokens (no expected figure recorded)", "info"
    text = f"rehydrated prompt: {actual:,} tokens (expected ~{expected:,}, from {source})"
    if actual > expected * OVER_EXPECTED:
        over = round(100 * (actual - expected) / expected) if expected else 0
        return text + f"; {over}% more than expected", "warn"
    return text, "info"


__all__ = [
    "AHEAD", "DIVERGED", "MAX_LISTED", "SAME", "UNKNOWN", "UNRECORDED",
    "WorkspaceDrift", "expected_tokens", "later_checkpoints", "later_note", "plain_line",
    "prompt_lines", "rehydration_line", "workspace_drift",
]
