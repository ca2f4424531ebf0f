"""The work log a checkpoint carries: its parent's, with one more episode added.

Some facts must span episodes, and a checkpoint's parent is the only memory
of them: the finished calls (`work_log`), the failures no later success
cleared (`unresolved_errors`), the agent's todo list (`todos`) and the files
changed since the session began (`files_changed`, from git). `carry` folds
one episode's `EpisodeLog` into its parent's state; `rules_progress` and
`rules_next_actions` say, from that log, what is done and what comes next:
the interrupted or announced-but-never-run call first. These keys are built
whatever wrote the rest of the checkpoint (the agent, a model or rules).

Pure: no files, no processes, no clock; a tampered parent is read leniently
(malformed parts skipped, never raised on). Knows nothing of prompts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aether_cli.episode_log import EpisodeLog
from aether_cli.error_book import describe, entry_from_state
from aether_cli.tool_calls import cap, identity, todo_item
from aether_cli.work_log import StepLog, describe_step

MAX_FILES_CHANGED = 50
MAX_TODOS = 50
SUMMARY_CHARS = 200

DONE_SO_FAR = "Done so far: "
LEGACY_LAST_MESSAGE = "Last message: "
INTERRUPTED = "Check the interrupted call (started, no result seen), then redo it if needed: "
ANNOUNCED = "Run the call that was announced but never started: "
CONTINUE_AFTER = "Continue after call "
_UNFINISHED_ORDER = ("in_progress", "pending", "blocked")


def _strs(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dedupe_first(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class Carried:
    """What one checkpoint carries on: the merged step log and its other work-log keys."""

    steps: StepLog
    unresolved: list[dict[str, Any]]
    todos: list[dict[str, str]] | None
    files_changed: list[str] | None
    texts: dict[str, str]  # this episode's open failures' outputs, verbatim, by key

    def state(self) -> dict[str, Any]:
        """The keys these add to a checkpoint's `state` (absent ones are left out)."""
        out: dict[str, Any] = {
            "work_log": self.steps.to_state(),
            "unresolved_errors": self.unresolved,
        }
        if self.todos is not None:
            out["todos"] = self.todos
        if self.files_changed is not None:
            out["files_changed"] = self.files_changed
        return out

    def error_lines(self) -> list[str]:
        """The unresolved errors, oldest first: this episode's as the call's output, verbatim;
        earlier episodes' as one line naming the call and its first error line."""
        return [self.texts.get(e["key"]) or describe(e) for e in self.unresolved]


def _todos(value: Any) -> list[dict[str, str]] | None:
    if not isinstance(value, list):
        return None
    out = []
    for item in value[:MAX_TODOS]:
        if isinstance(item, dict) and isinstance(item.get("text"), str) and item["text"].strip():
            out.append(todo_item(item["text"], item.get("status")))
    return out


def _change(item: dict[str, Any]) -> str:
    path, status = item["path"], item.get("status")
    added, deleted = item.get("added"), item.get("deleted")
    counted = isinstance(added, int) and isinstance(deleted, int)
    if status == "added":
        what = f"added, +{added}" if isinstance(added, int) else "added"
    elif status in ("deleted", "renamed"):
        what = str(status)
    elif status == "untracked":
        what = "new, untracked"
    else:
        what = f"+{added} -{deleted}" if counted else "modified"
    return f"{cap(path, 1024)} ({what})"


def files_changed(value: Any) -> list[str] | None:
    """Git's changed files as kept: `path (+10 -2)`, `path (added, +5)`, `path (deleted)` …;
    None when git said nothing (no repository, no git)."""
    if not isinstance(value, list):
        return None
    return [
        _change(item) for item in value[:MAX_FILES_CHANGED]
        if isinstance(item, dict) and _str(item.get("path")).strip()
    ]


def carry(log: EpisodeLog, parent_state: dict[str, Any], changed: list[dict[str, Any]] | None) -> Carried:
    """The parent's work log with `log`'s episode added; `changed` is git's list, None if unknown."""
    steps = StepLog.from_state(parent_state.get("work_log"))
    offset = steps.total
    steps.extend(log.steps)
    older = [e for e in map(entry_from_state, _list(parent_state.get("unresolved_errors"))) if e]
    todos = log.todos if log.todos is not None else _todos(parent_state.get("todos"))
    return Carried(
        steps=steps,
        unresolved=log.error_book.carry(older, offset),
        todos=todos,
        files_changed=files_changed(changed),
        texts=dict(log.error_book.texts),
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# ----------------------------------------------------------- the rules' words


def done_so_far(steps: StepLog) -> str | None:
    """`Done so far: tool calls 1-N finished; the last was call N: ... -> ok.`, or None if none."""
    last = steps.last
    if last is None:
        return None
    return f"{DONE_SO_FAR}tool calls 1\u2013{steps.total} finished; the last was {describe_step(last)}."


def rules_progress(log: EpisodeLog, parent: dict[str, Any], steps: StepLog) -> list[str]:
    """The parent's progress, finished tasks, the objective's end, and one line of what is done.

    The last assistant text is never progress (it may announce a step that
    never ran); an old "Last message:" line and the parent's own "Done so
    far" line are replaced, so progress does not grow by a line per episode.
    """
    progress = [
        p for p in _strs(parent.get("progress"))
        if not p.startswith((LEGACY_LAST_MESSAGE, DONE_SO_FAR))
    ]
    for tid in log.tasks_done:
        title = _str(log.tasks[tid].get("title")).strip() or tid
        progress.append(f"{title}: done")
    if log.done is not None:
        summary = log.done.summary.strip()
        progress.append("Objective reported done" + (f": {cap(summary, SUMMARY_CHARS)}" if summary else ""))
    line = done_so_far(steps)
    if line is not None:
        progress.append(line)
    return progress


def open_call_actions(log: EpisodeLog) -> list[str]:
    """Next action 1: the call that was interrupted, or announced and never run, if any."""
    actions = []
    for call in log.interrupted_calls:
        actions.append(INTERRUPTED + identity(call.name, call.input).call)
    for call in log.announced_calls:
        actions.append(ANNOUNCED + identity(call.name, call.input).call)
    return actions


def rules_next_actions(
    log: EpisodeLog, parent: dict[str, Any], objective: str, steps: StepLog
) -> list[str]:
    """The open call first; then unfinished tasks' next actions; else what follows the last call."""
    open_calls = open_call_actions(log)
    unfinished = [t for t in log.tasks.values() if t.get("status") != "done"]
    rank = {status: i for i, status in enumerate(_UNFINISHED_ORDER)}
    # Stable sort: within a status the tasks keep their own order.
    unfinished.sort(key=lambda t: rank.get(_str(t.get("status")), len(rank)))
    tasks = [a for a in (_str(t.get("next_action")) for t in unfinished) if a.strip()]
    actions = open_calls + tasks
    if not tasks and log.steps.total == 0:
        # Nothing finished in this episode: the parent's next actions still stand.
        actions += [a for a in _strs(parent.get("next_actions")) if a.strip()]
    elif not actions and steps.last is not None:
        last = steps.last
        actions.append(
            f"{CONTINUE_AFTER}{last['n']} ({last['call']}), the last one "
            "finished; do not redo calls that succeeded."
        )
    if not actions:
        actions = [f"Continue with the objective: {objective}"]
    return _dedupe_first(actions)
