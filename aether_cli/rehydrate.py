"""The prompt an agent starts from: the first one, and the one that rehydrates it after a reset.

A relaunched agent knows only what this prompt tells it, and the prompt spends
the context the relaunch was meant to free, so it has a hard token budget.
This module decides what each prompt carries and in what order optional
material is evicted to fit that budget (`prompt_fit` does the fitting,
`prompt_template` the Markdown templates, user-overridable in
`.memory/templates/`). What the contract says a rehydrated prompt always
carries (objective, next actions verbatim, every unfinished task with its next
action, every pinned fact, the checkpoint id, the latest progress) is never
dropped: at worst over-long items are shortened. Of the rest, raw tool-call
lines and the work log's folded old calls go first, and what a relaunched
agent needs most to neither lose nor redo work goes last: interrupted calls,
unresolved errors, the files changed and open todos (see docs/handoff.md).
Pure logic: it reads templates and nothing else, and the same inputs give the
same bytes.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aether_cli import constants as C
from aether_cli.carry_over import ANNOUNCED, INTERRUPTED
from aether_cli.error_book import describe, entry_from_state
from aether_cli.prompt_fit import Counter, Cutter, Pool, Prompt, Step, fit
from aether_cli.prompt_template import load_template, render
from aether_cli.work_log import StepLog

__all__ = ["STANDARD_RESUME", "Prompt", "first_prompt", "prompt_budget", "rehydrate_prompt"]

MIN_BUDGET = 64

START_REQUIRED = ("objective", "pinned_facts")
REHYDRATE_REQUIRED = (
    "objective", "checkpoint", "next_actions", "tasks", "pinned_facts", "progress",
)

STANDARD_RESUME = (
    "Continue from the next actions; do not redo finished work. Check what an interrupted "
    "call did before trusting it, and redo it if needed. Keep sending task updates."
)

_UNFINISHED_ORDER = ("in_progress", "pending", "blocked")

# What goes first when a rehydrate prompt is too big: (pool, items kept, label).
# Raw tool-call lines and folded old steps go first; what a relaunched agent
# needs most to continue without redoing or losing work goes last: interrupted
# calls, unresolved errors, the files changed and open todos.
_REHYDRATE_STEPS = (
    Step("work_ranges", 0, "work_log_ranges:{k}"),
    Step("recent_calls", 0, "recent_calls:{k}"),
    Step("work_calls", 5, "work_log_calls:{k} oldest"),
    Step("files_read", 0, "files_read:{k}"),
    Step("facts", 0, "fact:{k}"),
    Step("decisions", 3, "decisions:{k} oldest"),
    Step("progress", 3, "progress:{k} oldest"),
    Step("done_tasks", 0, "done_tasks:{k}"),
    Step("work_calls", 0, "work_log_calls:{k} latest"),
    Step("last_intent", 0, "last_intent:{k}"),
    Step("decisions", 0, "decisions:{k} latest"),
    Step("constraints", 3, "constraints:{k} oldest"),
    # What changed since the checkpoint a resume starts from: its details may go, its one
    # summary line never (a resumed agent must learn its notes may be stale).
    Step("changed", 1, "changed_since_checkpoint:{k}"),
    # Still too big: the rest of the optional material goes too, the most needed last.
    Step("files_written", 5, "files_written:{k} oldest"),
    Step("files_changed", 10, "files_changed:{k} oldest"),
    Step("todos", 3, "todos:{k} oldest"),
    Step("errors", 3, "errors:{k} oldest"),
    Step("constraints", 0, "constraints:{k} latest"),
    Step("files_written", 0, "files_written:{k} latest"),
    Step("files_changed", 0, "files_changed:{k} latest"),
    Step("todos", 0, "todos:{k} latest"),
    Step("errors", 0, "errors:{k} latest"),
    Step("interrupted", 0, "interrupted_calls:{k}"),
    Step("resume", 0, "resume_instructions:standard text used"),
)
LAST_INTENT_CHARS = C.LAST_INTENT_CHARS
CHANGED_TITLE = "Changed since the checkpoint (re-read these; your notes may be stale)"
MAX_DONE_SHOWN = 10
TODO_PREFIX = "todo-"  # the ids adapters give the items of an agent's todo list
# Next actions the rules wrote for an open call: the call is then not listed twice.
_OPEN_CALL_ACTIONS = (INTERRUPTED, ANNOUNCED)


# ----------------------------------------------------------------- budget


def prompt_budget(window: int, override: int | None = None) -> int:
    """Tokens a relaunch prompt may use: `override`, else min(2000, 10% of window); at least 64."""
    if override is not None:
        return max(MIN_BUDGET, int(override))
    share = int(window * C.DEFAULT_PROMPT_BUDGET_SHARE)
    return max(MIN_BUDGET, min(C.DEFAULT_PROMPT_BUDGET_CAP, share))


# ---------------------------------------------------------------- prompts


def _section(title: str, lines: list[str]) -> str:
    return f"## {title}\n" + "\n".join(lines) if lines else ""


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strs(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _facts(facts: list[dict]) -> tuple[list[tuple[str, str]], Pool]:
    """Pinned facts (key, text) in the given order, and a pool of the others.

    The pool's items are in eviction order (lowest priority, then oldest
    `updated_seq`, then key) and are shown in the given order.
    """
    pinned: list[tuple[str, str]] = []
    others: list[dict[str, Any]] = []
    for fact in facts if isinstance(facts, list) else []:
        if not isinstance(fact, dict) or not _str(fact.get("key")):
            continue
        if fact.get("pinned") is True:
            pinned.append((fact["key"], _str(fact.get("text"))))
        else:
            others.append(fact)
    order = sorted(
        range(len(others)),
        key=lambda i: (_int(others[i].get("priority")), _int(others[i].get("updated_seq")),
                       others[i]["key"], i),
    )
    rank = {original: pos for pos, original in enumerate(order)}
    items = [f"- {others[i]['key']}: {_str(others[i].get('text'))}" for i in order]
    labels = [f"fact:{others[i]['key']}" for i in order]
    return pinned, Pool(items, labels=labels, display=[rank[i] for i in range(len(others))])


def first_prompt(
    *, objective: str, facts: list[dict], count: Counter, budget: int, memory_dir: Path | None,
    session: str,
) -> Prompt:
    """The prompt of a fresh start (template "start.md"), fitted to `budget` tokens.

    Carries the objective, every pinned fact, the other facts as room allows,
    and how to work with aether (task events, checkpoint answers).
    """
    template = load_template("start.md", memory_dir)
    pinned, fact_pool = _facts(facts)
    pools = {"facts": fact_pool}

    def build(cut: Cutter) -> str:
        return render(template, {
            "objective": cut(objective.strip() or "(no objective given)"),
            "session": session,
            "pinned_facts": _section(
                "Pinned facts (always true)", [f"- {k}: {cut(t)}" for k, t in pinned]
            ),
            "facts": _section("Known facts", fact_pool.kept()),
        }, name="start.md", required=START_REQUIRED)

    return fit(build, pools, [Step("facts", 0, "fact:{k}")], count, budget)


def _merge_tasks(tasks: list[dict], checkpoint_tasks: Any) -> list[dict[str, Any]]:
    """Task states by id: the full states given, completed by the checkpoint's rows."""
    merged: dict[str, dict[str, Any]] = {}
    for task in tasks if isinstance(tasks, list) else []:
        if isinstance(task, dict) and _str(task.get("id")):
            merged[task["id"]] = dict(task)
    for row in checkpoint_tasks if isinstance(checkpoint_tasks, list) else []:
        if isinstance(row, dict) and _str(row.get("id")):
            merged[row["id"]] = {**row, **merged.get(row["id"], {})}
    return list(merged.values())


def _percent(task: dict[str, Any]) -> int:
    p = task.get("progress")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or p != p:
        return 0
    return round(min(1.0, max(0.0, float(p))) * 100)


def _todo_titles(state: dict[str, Any]) -> set[str] | None:
    """The texts of the agent's latest todo list, None if the checkpoint has none."""
    todos = state.get("todos")
    if not isinstance(todos, list):
        return None
    return {t["text"].strip() for t in todos if isinstance(t, dict) and isinstance(t.get("text"), str)}


def _split_tasks(
    tasks: list[dict], checkpoint_tasks: Any, todo_titles: set[str] | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The unfinished tasks (in progress, then pending, then blocked) and the finished ones
    (the latest MAX_DONE_SHOWN, by when they were updated).

    A todo (a task an adapter made from a TodoWrite or todo_list item, id
    `todo-…`) that the agent's latest todo list no longer has was dropped by
    the agent: it is not listed as unfinished.
    """
    all_tasks = _merge_tasks(tasks, checkpoint_tasks)
    rank = {s: i for i, s in enumerate(_UNFINISHED_ORDER)}
    unfinished = sorted(
        (t for t in all_tasks if t.get("status") != "done"
         and not (todo_titles is not None and t["id"].startswith(TODO_PREFIX)
                  and _str(t.get("title")).strip() not in todo_titles)),
        key=lambda t: rank.get(_str(t.get("status")), len(rank)),
    )
    done = [t for t in all_tasks if t.get("status") == "done"]
    done.sort(key=lambda t: _str(t.get("updated_at")))  # stable: without stamps, the given order
    return unfinished, done


@dataclass(frozen=True)
class _Mandatory:
    """What a rehydrate prompt always carries, read from the checkpoint."""

    objective: str
    checkpoint: str
    episode: int
    next_actions: list[str]
    unfinished: list[dict[str, Any]]
    pinned: list[tuple[str, str]]


def _written_not_changed(written: list[str], changed: list[str]) -> list[str]:
    """Paths tool calls wrote that git's list does not already name (absolute or relative)."""
    known = {c.rsplit(" (", 1)[0] for c in changed}
    return [w for w in written if w not in known and not any(w.endswith("/" + k) for k in known)]


def _open_todos(state: dict[str, Any], unfinished: list[dict[str, Any]]) -> list[str]:
    """The agent's open todos that are not already listed as unfinished tasks."""
    titles = {_str(t.get("title")).strip() for t in unfinished}
    todos = state.get("todos")
    return [
        f"- [{_str(t.get('status')) or 'pending'}] {t['text']}"
        for t in (todos if isinstance(todos, list) else [])
        if isinstance(t, dict) and _str(t.get("text")).strip() and t.get("status") != "done"
        and t["text"].strip() not in titles
    ]


def _errors(chk: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """The errors to show, least needed first: the checkpoint's own (the agent's, log lines),
    then the unresolved ones, one line each naming the call, oldest first.

    A work-log checkpoint's `errors` also hold its episode's failures verbatim
    (tracebacks); those are shown as their one line, not again in full.
    """
    raw = state.get("unresolved_errors")
    entries = [e for e in map(entry_from_state, raw if isinstance(raw, list) else []) if e]
    lines = [describe(e) for e in entries]
    others = [
        x for x in _strs(chk.get("errors"))
        if x not in lines and not any(e["error"] and e["error"] in x for e in entries)
    ]
    return others + lines


def _open_calls(chk: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """Interrupted and announced calls, unless the next actions already name them."""
    if any(a.startswith(_OPEN_CALL_ACTIONS) for a in _strs(chk.get("next_actions"))):
        return []
    return [f"- interrupted: {c}" for c in _strs(state.get("interrupted_calls"))] + [
        f"- announced, never run: {c}" for c in _strs(state.get("announced_calls"))
    ]


def _done_lines(done: list[dict[str, Any]]) -> list[str]:
    """The latest finished tasks, one line each; older ones only counted, so the list stays flat."""
    lines = [f"- {t['id']} {_str(t.get('title'))}".rstrip() for t in done[-MAX_DONE_SHOWN:]]
    if len(done) > MAX_DONE_SHOWN:
        lines.insert(0, f"- ({len(done) - MAX_DONE_SHOWN} earlier finished tasks not listed)")
    return lines


def _changed_pool(changed: list[str]) -> Pool:
    """The "Changed since the checkpoint" lines as a pool, shown in the given order: the first
    (the summary) is evicted last, the others in order (commits, files, later checkpoints)."""
    order = [*range(1, len(changed)), 0] if changed else []  # eviction order, by given index
    return Pool([changed[i] for i in order], display=[order.index(i) for i in range(len(changed))])


def _rehydrate_pools(
    chk: dict[str, Any], state: dict[str, Any], tasks: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    fact_pool: Pool, since_checkpoint: list[str],
) -> dict[str, Pool]:
    unfinished, done = tasks
    resume = _str(chk.get("resume_instructions")) or _str(state.get("resume_instructions"))
    work = StepLog.from_state(state.get("work_log")) if "work_log" in state else None
    ranges, calls = work.lines() if work is not None else ([], [])
    changed = _strs(state.get("files_changed"))
    last_intent = _str(state.get("last_message")).strip()
    return {
        "work_ranges": Pool(ranges),
        # Raw call lines only where there is no work log (an older checkpoint).
        "recent_calls": Pool([] if work is not None else _strs(state.get("recent_tool_calls"))),
        "work_calls": Pool(calls),
        "files_read": Pool(_strs(state.get("files_read"))),
        "facts": fact_pool,
        "decisions": Pool(_strs(state.get("decisions"))),
        "progress": Pool(_strs(chk.get("progress"))),
        "done_tasks": Pool(_done_lines(done)),
        "last_intent": Pool([last_intent] if last_intent else []),
        "constraints": Pool(_strs(state.get("constraints"))),
        "files_written": Pool(_written_not_changed(_strs(state.get("files_modified")), changed)),
        "files_changed": Pool(changed),
        "todos": Pool(_open_todos(state, unfinished)),
        "errors": Pool(_errors(chk, state)),
        "interrupted": Pool(_open_calls(chk, state)),
        "resume": Pool([resume] if resume.strip() else []),
        "changed": _changed_pool(since_checkpoint),
    }


def _task_line(t: dict[str, Any], cut: Cutter) -> str:
    status = _str(t.get("status")) or "pending"
    title = cut(_str(t.get("title")))
    line = f"- {t['id']} [{status} {_percent(t)}%]" + (f" {title}" if title else "")
    action = _str(t.get("next_action"))
    return line + (f"; next: {cut(action)}" if action else "")


def _files(pools: dict[str, Pool]) -> list[str]:
    lines = []
    if pools["files_changed"].kept():
        lines.append("Changed since the session began (git): " + ", ".join(pools["files_changed"].kept()))
    if pools["files_written"].kept():
        label = "Written by tool calls" if pools["files_changed"].items else "Modified"
        lines.append(f"{label}: " + ", ".join(pools["files_written"].kept()))
    if pools["files_read"].kept():
        lines.append("Read: " + ", ".join(pools["files_read"].kept()))
    return lines


def _rehydrate_values(fixed: _Mandatory, pools: dict[str, Pool], cut: Cutter) -> dict[str, str]:
    """The template's variables from the mandatory texts (cut to `cut`'s limit) and the kept items."""
    kept_resume = pools["resume"].kept()

    def bullets(pool: str) -> list[str]:
        return [f"- {item}" for item in pools[pool].kept()]

    intent = [_cap(i, LAST_INTENT_CHARS) for i in pools["last_intent"].kept()]
    return {
        "objective": cut(fixed.objective),
        "checkpoint": fixed.checkpoint,
        "episode": str(fixed.episode),
        "next_actions": _section(
            "Next actions", [f"{i}. {cut(a)}" for i, a in enumerate(fixed.next_actions, 1)]
        ),
        "tasks": _section("Unfinished tasks", [_task_line(t, cut) for t in fixed.unfinished]),
        "pinned_facts": _section(
            "Pinned facts (always true)", [f"- {k}: {cut(v)}" for k, v in fixed.pinned]
        ),
        "progress": _section("Progress so far", [f"- {cut(p)}" for p in pools["progress"].kept()]),
        "interrupted": _section("Interrupted tool calls (no result seen)", pools["interrupted"].kept()),
        "errors": _section("Unresolved errors (first lines verbatim)", bullets("errors")),
        "todos": _section("Open todos", pools["todos"].kept()),
        "facts": _section("Known facts", pools["facts"].kept()),
        "constraints": _section("Constraints from the user", bullets("constraints")),
        "decisions": _section("Decisions made", bullets("decisions")),
        "files": _section("Files", _files(pools)),
        "last_intent": _section(
            "Last intent (may be unfinished; done only if the work log says so)", intent
        ),
        "work_log": _section(
            "Work log (finished tool calls, oldest first)",
            bullets("work_ranges") + bullets("work_calls"),
        ),
        "recent_calls": _section("Last tool calls", bullets("recent_calls")),
        "done_tasks": _section("Finished tasks", pools["done_tasks"].kept()),
        "resume": kept_resume[0] if kept_resume else STANDARD_RESUME,
        "changed": _section(CHANGED_TITLE, pools["changed"].kept()),
    }


def rehydrate_prompt(
    *, checkpoint: dict, tasks: list[dict], facts: list[dict], episode: int, count: Counter,
    budget: int, memory_dir: Path | None, changed: list[str] | None = None,
) -> Prompt:
    """The relaunch prompt for `episode` from `checkpoint` (template "rehydrate.md").

    Always carries the objective, the checkpoint id, `next_actions` verbatim,
    every unfinished task (id, status, progress %, title, next_action) and
    every pinned fact. Optional material is dropped in the order of
    `_REHYDRATE_STEPS` (raw call lines and folded old calls first; interrupted
    calls, unresolved errors, files changed and open todos last) until the
    prompt fits `budget`; then over-long mandatory items are shortened with
    "…". `evicted` records all of it.

    `changed`: the "Changed since the checkpoint" lines of a resume
    (restore_check), shown as `$changed`, or after the prompt when a user's
    template does not use that variable (a template from before it existed).
    """
    template = load_template("rehydrate.md", memory_dir)
    if changed and "changed" not in string.Template(template).get_identifiers():
        template = template.rstrip("\n") + "\n\n$changed\n"
    chk = checkpoint if isinstance(checkpoint, dict) else {}
    raw_state = chk.get("state")
    state: dict[str, Any] = raw_state if isinstance(raw_state, dict) else {}
    unfinished, done = _split_tasks(tasks, chk.get("tasks"), _todo_titles(state))
    pinned, fact_pool = _facts(facts)
    fixed = _Mandatory(
        objective=_str(chk.get("objective")).strip() or "(no objective recorded)",
        checkpoint=_str(chk.get("id")) or "(none)",
        episode=episode,
        next_actions=_strs(chk.get("next_actions")),
        unfinished=unfinished,
        pinned=pinned,
    )
    pools = _rehydrate_pools(chk, state, (unfinished, done), fact_pool, list(changed or []))

    def build(cut: Cutter) -> str:
        values = _rehydrate_values(fixed, pools, cut)
        return render(template, values, name="rehydrate.md", required=REHYDRATE_REQUIRED)

    return fit(build, pools, _REHYDRATE_STEPS, count, budget)
