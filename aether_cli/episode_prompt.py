"""The prompt an episode starts from, read from the store: the first one or the rehydrated one.

One function both the supervisor (`supervisor.session`, for a launched agent)
and the in-process engine (`engine`, for a Python agent loop) call, so the
context a relaunched process gets and the one `Engine.context()` returns are
built by the same rules: the window's prompt budget (or the user's), the
project's facts, and the last checkpoint with the task files.

Knows nothing of processes, the terminal or the episode's stop logic.
"""

from __future__ import annotations

from typing import Any

from aether_cli.prompt_fit import Counter, Prompt
from aether_cli.rehydrate import first_prompt, prompt_budget, rehydrate_prompt
from aether_cli.store import MemoryStore


def episode_prompt(
    store: MemoryStore,
    count: Counter,
    *,
    objective: str,
    window: int,
    budget_override: int | None,
    checkpoint: dict[str, Any] | None,
    episode: int,
    session_id: str,
    shrink: int = 0,
    changed: list[str] | None = None,
) -> Prompt:
    """The launch prompt: the first one (no `checkpoint`), else one rehydrated from it.

    `shrink` halves the budget that many times (the supervisor's overflow guard:
    an episode that overflowed at once gets a smaller prompt next time).
    `changed`: what changed since `checkpoint` when a resume starts from it
    (restore_check's lines; none on an ordinary relaunch)."""
    budget = prompt_budget(window, budget_override)
    if shrink:
        budget = max(64, budget >> shrink)
    facts = store.read_project_memory().get("facts", [])
    if checkpoint is None:
        return first_prompt(
            objective=objective,
            facts=facts,
            count=count,
            budget=budget,
            memory_dir=store.root,
            session=session_id,
        )
    return rehydrate_prompt(
        checkpoint=checkpoint,
        tasks=session_tasks(store.list_tasks(), checkpoint.get("session_id")),
        facts=facts,
        episode=episode,
        count=count,
        budget=budget,
        memory_dir=store.root,
        changed=changed,
    )


def session_tasks(tasks: list[dict[str, Any]], session_id: Any) -> list[dict[str, Any]]:
    """The task files that speak for `session_id`: its own, and those that name no session
    (written before task files carried one). After a git merge of two branches a task file
    may hold another session's view of a task of the same id: that session's progress would
    mislead this one, whose checkpoint rows then stand for the task instead."""
    return [t for t in tasks if t.get("session_id") in (None, session_id)]
