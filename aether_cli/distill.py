"""Turn one episode into a checkpoint draft: the agent's own state if it is usable, else rules.

The agent knows best what it was doing, so its `checkpoint` answer wins when it
passes validation (fail closed: anything malformed, empty or oversized is
refused with a one-line reason). Otherwise the draft is built by rules from the
`EpisodeLog`. Either way the facts a free-text summary tends to lose are merged
in from the log and the parent checkpoint: the user's constraints, decisions,
exact file paths, verbatim errors and the tool calls that never got a result.

This module owns the distiller's fields of a checkpoint (see
shared/memory-layout.md); the caller adds identity, timing and workspace
fields and writes it. It is pure: no files, no processes, no clock, so the same
inputs always give the same dict, and odd agent data is skipped, never raised on.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aether_cli.carry_over import Carried, carry, rules_next_actions, rules_progress
from aether_cli.episode_log import MAX_ERROR_CHARS, EpisodeLog, cap, short_input
from aether_cli.protocol import dumps_compact
from aether_cli.work_log import StepLog

Counter = Callable[[str], int]
# Asks a model to distil: gets the rules draft, returns (its answer, or None with the reason).
CommandDistiller = Callable[[dict[str, Any]], tuple[Any, str | None]]


@dataclass(frozen=True)
class HandoffResult:
    """What asking the agent for its handoff gave (`handoff`, `codex_handoff`): its state,
    already validated and redacted, or None and why not; what the handoff itself cost
    (None where it could not be told)."""

    state: dict[str, Any] | None
    reason: str = ""
    seconds: float | None = None
    tokens: int | None = None

    def metrics(self) -> dict[str, Any]:
        """The checkpoint's `metrics` entries for this handoff."""
        return {"handoff_seconds": self.seconds, "handoff_tokens": self.tokens}

MAX_PROGRESS = 20
MAX_CONSTRAINTS = 30
MAX_DECISIONS = 20
# Paths a checkpoint carries across episodes (oldest dropped first; the prompt keeps the newest).
MAX_FILES = 200
MAX_ERRORS = 10
MAX_INTERRUPTED_INPUT = 300
SUMMARY_CHARS = 200

# Keys of `state` that aether owns and merges, whatever the agent put there.
MERGED_STATE_KEYS = (
    "constraints", "decisions", "files_read", "files_modified",
    "recent_tool_calls", "interrupted_calls", "announced_calls", "last_message",
    "work_log", "unresolved_errors", "todos", "files_changed",
)


# ----------------------------------------------------------- small helpers


def _strs(value: Any) -> list[str]:
    """The string items of a list (other types skipped); [] for a non-list."""
    if not isinstance(value, list):
        return []
    return [v for v in value if isinstance(v, str)]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _dedupe_first(items: Iterable[str]) -> list[str]:
    """Unique items in order of first appearance."""
    return list(dict.fromkeys(items))


def _dedupe_last(items: Iterable[str]) -> list[str]:
    """Unique items, each at the position of its last appearance (recency order)."""
    seen: dict[str, None] = {}
    for item in items:
        seen.pop(item, None)
        seen[item] = None
    return list(seen)


def _json_tokens(obj: Any, count: Counter) -> int:
    return count(dumps_compact(obj))


# --------------------------------------------------------------- validation


def validate_agent_state(state: Any, *, max_tokens: int, count: Counter) -> str | None:
    """None if the agent's checkpoint state is usable, else the reason in one line.

    Fails closed: not an object; objective missing, not a string or empty;
    progress or next_actions not lists of strings; neither any progress nor
    any next action; `state` not an object; `errors` not a list; or more than
    `max_tokens` tokens of compact JSON ("oversized: N tokens > M").
    """
    if not isinstance(state, dict):
        return "checkpoint state is not an object"
    if "objective" not in state:
        return "objective missing"
    if not isinstance(state["objective"], str):
        return "objective is not a string"
    if not state["objective"].strip():
        return "objective is empty"
    for key in ("progress", "next_actions"):
        value = state.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return f"{key} is not a list of strings"
    progress = [p for p in state.get("progress", []) if p.strip()]
    actions = [a for a in state.get("next_actions", []) if a.strip()]
    if not progress and not actions:
        return "no progress and no next_actions"
    if "state" in state and not isinstance(state["state"], dict):
        return "state is not an object"
    if "errors" in state and not isinstance(state["errors"], list):
        return "errors is not a list"
    tokens = _json_tokens(state, count)
    if tokens > max_tokens:
        return f"oversized: {tokens} tokens > {max_tokens}"
    return None


# ----------------------------------------------------------------- distil


def _task_rows(log: EpisodeLog, todos: list[dict[str, str]] | None) -> list[dict[str, str]]:
    """Every unfinished task, and those finished in this episode: a task done long ago is in
    its own file and the project memory, and would make every checkpoint grow with the run.
    A todo (`todo-…`, made from the agent's todo list) the agent's latest list no longer
    has was dropped by the agent: it is left out too."""
    rows = []
    touched = set(log.tasks_touched)
    titles = {_str(t.get("text")).strip() for t in todos} if todos is not None else None
    for tid, task in log.tasks.items():
        if _str(task.get("status")) == "done" and tid not in touched:
            continue
        if titles is not None and tid.startswith("todo-") and _str(task.get("title")).strip() not in titles:
            continue
        rows.append({
            "id": tid,
            "status": _str(task.get("status")) or "pending",
            "next_action": _str(task.get("next_action")),
        })
    return rows


def _merge_state(
    base: dict[str, Any], *, log: EpisodeLog, parent_state: dict[str, Any],
    constraints: list[str], carried: Carried, workdir: str = "",
) -> dict[str, Any]:
    """`base` plus the facts aether keeps across episodes, deduped and capped."""
    # aether owns these keys: what the agent put there is replaced, or removed if aether has none.
    state = {k: v for k, v in base.items() if k not in ("todos", "files_changed")}
    state.update(carried.state())

    def old(key: str) -> list[str]:
        return _strs(parent_state.get(key)) + _strs(base.get(key))

    # The caller's constraints come from the run's settings and are always
    # kept; the others (earlier episodes, the user's messages) keep the newest.
    given = _dedupe_first(c for c in constraints if c.strip())
    others = [c for c in _dedupe_last(old("constraints") + log.user_messages) if c not in given]
    room = max(0, MAX_CONSTRAINTS - len(given))
    state["constraints"] = given + (others[-room:] if room else [])
    state["decisions"] = _dedupe_last(old("decisions") + log.decisions)[-MAX_DECISIONS:]
    rel = _relative_to(workdir)
    state["files_read"] = _dedupe_last(map(rel, old("files_read") + log.files_read))[-MAX_FILES:]
    state["files_modified"] = _dedupe_last(map(rel, old("files_modified") + log.files_modified))[-MAX_FILES:]
    state["recent_tool_calls"] = log.recent_calls
    state["interrupted_calls"] = [
        f"{call.name} {short_input(call.input, MAX_INTERRUPTED_INPUT)}" for call in log.interrupted_calls
    ]
    state["announced_calls"] = [
        f"{call.name} {short_input(call.input, MAX_INTERRUPTED_INPUT)}" for call in log.announced_calls
    ]
    state["last_message"] = log.last_words or _str(base.get("last_message"))
    return state


def _relative_to(workdir: str) -> Callable[[str], str]:
    """A path under `workdir` as relative to it (one spelling per file, and shorter); others as they are."""
    prefix = workdir.rstrip("/") + "/" if workdir else ""

    def rel(path: str) -> str:
        return path[len(prefix) :] if prefix and path.startswith(prefix) and len(path) > len(prefix) else path

    return rel


# Optional material dropped, in this order, when a draft exceeds max_tokens.
def _trim_steps(draft: dict[str, Any]) -> list[tuple[str, Callable[[], None]]]:
    state = draft["state"]

    def keep_last(container: dict[str, Any], key: str, n: int) -> Callable[[], None]:
        def run() -> None:
            if isinstance(container.get(key), list):
                container[key] = container[key][-n:] if n else []
        return run

    def shorten_last_message() -> None:
        state["last_message"] = cap(state["last_message"], SUMMARY_CHARS)

    def fold_work_log(keep: int) -> Callable[[], None]:
        def run() -> None:
            steps = StepLog.from_state(state.get("work_log"))
            steps.fold_to(keep)
            state["work_log"] = steps.to_state()
        return run

    def drop_done_todos() -> None:
        state["todos"] = [t for t in state.get("todos") or [] if t.get("status") != "done"]

    # What a relaunched agent needs most goes last: open errors, open todos,
    # the files it changed, its next actions and tasks (never trimmed).
    return [
        ("recent_tool_calls", keep_last(state, "recent_tool_calls", 0)),
        ("last_message", shorten_last_message),
        ("files_read", keep_last(state, "files_read", 0)),
        ("work_log beyond the last 5 calls folded", fold_work_log(5)),
        ("errors beyond the last 3", keep_last(draft, "errors", 3)),
        ("decisions beyond the last 5", keep_last(state, "decisions", 5)),
        ("progress beyond the last 5", keep_last(draft, "progress", 5)),
        ("finished todos", drop_done_todos),
        ("work_log folded", fold_work_log(0)),
        ("files_changed beyond the last 20", keep_last(state, "files_changed", 20)),
        ("files_modified beyond the last 10", keep_last(state, "files_modified", 10)),
        ("unresolved_errors beyond the last 5", keep_last(state, "unresolved_errors", 5)),
    ]


@dataclass(frozen=True)
class _Episode:
    """What every draft of one distillation is built from."""

    trigger: str
    objective: str  # the run's objective, "" when none was given
    log: EpisodeLog
    parent: dict[str, Any]
    count: Counter
    max_tokens: int
    constraints: list[str]
    carried: Carried
    workdir: str = ""  # the agent's folder: paths under it are kept relative


@dataclass(frozen=True)
class _Body:
    """The part of a draft that depends on its source: the agent's (or a model's) state, or rules."""

    objective: str
    base_state: dict[str, Any]
    progress: list[str]
    next_actions: list[str]
    errors: list[str]
    resume: str
    distiller: str
    note_parts: list[str]


def distill(
    *, trigger: str, objective: str, log: EpisodeLog, parent: dict | None, count: Counter,
    max_tokens: int, constraints: list[str] | None = None, prefer_agent: bool = True,
    note: str = "", command: CommandDistiller | None = None,
    workspace_changes: list[dict[str, Any]] | None = None, workdir: str = "",
    handoff: HandoffResult | None = None,
) -> dict[str, Any]:
    """A checkpoint draft with the fields the distiller owns (see the module docstring).

    Uses the agent's own checkpoint when `prefer_agent` and it validates
    (distiller "agent"), else rules over the episode log (distiller "rules",
    with the reason in `distiller_note`). The run's `objective` stays
    authoritative when non-empty. A draft over `max_tokens` loses optional
    state first (recent calls, last message, files read, older errors …),
    listed in `state["trimmed"]`; next actions and tasks are never trimmed.
    Deterministic; never raises on odd data.

    With `command` (--distill-command), a model is asked when the agent's own
    state is not usable: it gets the rules draft and its answer is validated
    like an agent's (distiller "command"); if it fails, the rules draft stands
    and the reason joins `distiller_note`.

    With `handoff` (a Claude Code or Codex agent asked for its own state after
    the stop), its state stands in for a protocol checkpoint (distiller
    "agent"); a failed handoff's reason joins `distiller_note`, and its cost
    goes into `metrics` either way. `sources` lists every source merged in:
    the main one first, then "rules" (the work log, errors, files and todos
    aether keeps are merged into whatever the main source wrote).
    """
    parent = _dict(parent)
    ep = _Episode(
        trigger=trigger,
        objective=objective if objective.strip() else "",
        log=log,
        parent=parent,
        count=count,
        max_tokens=max_tokens,
        constraints=constraints or [],
        carried=carry(log, _dict(parent.get("state")), workspace_changes),
        workdir=workdir,
    )
    agent, reason = _agent_state(ep, prefer_agent, handoff)
    extra = handoff.metrics() if handoff is not None else {}
    if reason is None or command is None:
        return _draft(ep, _body(ep, agent, reason, "agent", note), extra)

    answer, failure = command(_draft(ep, _body(ep, agent, reason, "agent", note), extra))
    if failure is None:
        failure = validate_agent_state(answer, max_tokens=max_tokens, count=count)
    if failure is not None:
        note = "; ".join(p for p in (note, f"distill command: {failure}") if p)
        return _draft(ep, _body(ep, agent, reason, "agent", note), extra)
    return _draft(ep, _body(ep, answer, None, "command", "; ".join(p for p in (reason, note) if p)), extra)


def _agent_state(ep: _Episode, prefer_agent: bool, handoff: HandoffResult | None) -> tuple[Any, str | None]:
    """The agent's own state (its protocol checkpoint, else its handoff), or why there is none."""
    agent: Any = ep.log.agent_checkpoint
    reason: str | None
    if agent is None:
        reason = "agent sent no checkpoint"
    elif not prefer_agent:
        reason = "agent checkpoint not used: the agent kept working after it"
    else:
        reason = validate_agent_state(agent, max_tokens=ep.max_tokens, count=ep.count)
    if reason is not None and handoff is not None:
        if handoff.state is not None:
            return handoff.state, None
        reason = f"agent handoff: {handoff.reason or 'no answer'}"
    return agent, reason


def _body(ep: _Episode, agent: Any, reason: str | None, source: str, note: str) -> _Body:
    """The draft's source-dependent part: `agent`'s state if `reason` is None, else rules."""
    if reason is None and isinstance(agent, dict):
        agent = copy.deepcopy(agent)
        agent_objective = _str(agent.get("objective"))
        base_state = _dict(agent.get("state"))
        if ep.objective and agent_objective != ep.objective:
            base_state["agent_objective"] = agent_objective
        return _Body(
            objective=ep.objective or agent_objective,
            base_state=base_state,
            progress=_strs(agent.get("progress")),
            next_actions=_strs(agent.get("next_actions")),
            errors=_strs(agent.get("errors")),
            resume=_str(agent.get("resume_instructions")),
            distiller=source,
            note_parts=[note],
        )
    log = ep.log
    objective = ep.objective or log.objective or _str(ep.parent.get("objective"))
    return _Body(
        objective=objective,
        base_state={"done": log.done.summary} if log.done is not None else {},
        progress=rules_progress(log, ep.parent, ep.carried.steps)[-MAX_PROGRESS:],
        next_actions=rules_next_actions(log, ep.parent, objective, ep.carried.steps),
        errors=[],
        resume="",
        distiller="rules",
        note_parts=[reason or "", note],
    )


def _draft(ep: _Episode, body: _Body, extra_metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint draft from `body`, with the log's and the parent's facts merged in, trimmed to fit."""
    log = ep.log
    # The errors no later success cleared (this episode's and earlier ones), one line
    # each, and errors not tied to a call (log lines); resolved ones are history.
    errors = _dedupe_last(
        cap(e, MAX_ERROR_CHARS) for e in body.errors + ep.carried.error_lines() + log.other_errors
    )
    draft: dict[str, Any] = {
        "trigger": ep.trigger,
        "objective": body.objective,
        "progress": body.progress,
        "state": _merge_state(
            body.base_state, log=log, parent_state=_dict(ep.parent.get("state")),
            constraints=ep.constraints, carried=ep.carried, workdir=ep.workdir,
        ),
        "next_actions": body.next_actions,
        "errors": errors[-MAX_ERRORS:],
        "tasks": _task_rows(log, ep.carried.todos),
        "resume_instructions": body.resume,
        "distiller": body.distiller,
        "sources": [body.distiller] if body.distiller == "rules" else [body.distiller, "rules"],
        "distiller_note": "; ".join(p for p in body.note_parts if p),
        "metrics": {
            "episode_tokens": None, "checkpoint_tokens": 0,
            "tool_calls": log.tool_calls, "events": log.events, **(extra_metrics or {}),
        },
    }
    if _json_tokens(draft, ep.count) > ep.max_tokens:
        trimmed: list[str] = []
        for label, step in _trim_steps(draft):
            step()
            trimmed.append(label)
            draft["state"]["trimmed"] = trimmed
            if _json_tokens(draft, ep.count) <= ep.max_tokens:
                break
    # Count once more with the figure in place, so it describes the draft as written.
    draft["metrics"]["checkpoint_tokens"] = _json_tokens(draft, ep.count)
    return draft
