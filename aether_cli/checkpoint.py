"""The checkpoint: its fields, their defaults, and how a draft becomes one.

A checkpoint is built in three steps, each by its owner: the distiller writes
the state it owns (progress, next actions, errors, tasks…, see `distill`),
`assemble` adds what the run knows (session, episode, parent, workspace,
tokenizer, the episode's figures, the agent stream), and the store adds what
only it can (`seq`, `id`, `sha256`, `created_at`) and fills the defaults of
`DEFAULTS` for anything missing. `FIELDS` is the one list of the contract's
fields (`../shared/memory-layout.md`); tests and renderers use it.

Optional additions, all absent from older checkpoints (docs/handoff.md):
`workspace.start_head` (the commit the session began at, recorded once and
read back from the parent chain), the work log's keys of `state`
(`work_log`, `unresolved_errors`, `todos`, `files_changed`, `announced_calls`),
`sources` (every source merged in, the main one, `distiller`, first) and the
agent handoff's cost in `metrics` (`handoff_seconds`, `handoff_tokens`).

Knows nothing of files, processes or the terminal.
"""

from __future__ import annotations

import copy
from typing import Any, TypedDict


class Checkpoint(TypedDict, total=False):
    """One immutable checkpoint as written to `.memory/checkpoints/chk_*.json`."""

    id: str
    seq: int
    sha256: str
    parent: str | None
    session_id: str
    episode: int
    created_at: str
    trigger: str
    objective: str
    progress: list[str]
    state: dict[str, Any]
    next_actions: list[str]
    errors: list[str]
    tasks: list[dict[str, Any]]
    resume_instructions: str
    distiller: str
    distiller_note: str
    sources: list[str]
    metrics: dict[str, Any]
    workspace: dict[str, Any]
    tokenizer: str
    agent: dict[str, Any]


# The contract's fields: every checkpoint has them (the store fills the defaults).
FIELDS: tuple[str, ...] = (
    "id",
    "parent",
    "session_id",
    "episode",
    "created_at",
    "trigger",
    "objective",
    "progress",
    "state",
    "next_actions",
    "errors",
    "tasks",
    "distiller",
    "distiller_note",
    "metrics",
    "workspace",
    "tokenizer",
)

# What a field holds when the draft did not say (the store's own fields aside).
DEFAULTS: dict[str, Any] = {
    "session_id": "",
    "episode": 0,
    "trigger": "manual",
    "objective": "",
    "progress": [],
    "state": {},
    "next_actions": [],
    "errors": [],
    "tasks": [],
    "distiller": "rules",
    "distiller_note": "",
    "metrics": {"episode_tokens": None, "checkpoint_tokens": None, "tool_calls": 0, "events": 0},
    "workspace": {"git_head": None, "dirty_hash": None},
    "tokenizer": "",
}

# Written by the store when it writes the file, never by a draft.
STORE_FIELDS = ("id", "seq", "sha256")


SOURCES = ("agent", "command", "rules")


def sources_of(checkpoint: dict[str, Any]) -> list[str]:
    """The sources merged into `checkpoint`, main first; an older one (no `sources`), or one
    whose list was tampered with, names its distiller alone."""
    given = checkpoint.get("sources")
    if isinstance(given, list) and given and all(s in SOURCES for s in given):
        return list(dict.fromkeys(given))
    distiller = checkpoint.get("distiller")
    return [distiller if distiller in SOURCES else "rules"]


def with_defaults(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """`checkpoint` with every missing defaulted field filled in (in place; returned)."""
    for key, default in DEFAULTS.items():
        if key not in checkpoint:
            checkpoint[key] = copy.deepcopy(default)
    return checkpoint


def assemble(
    draft: dict[str, Any],
    *,
    parent: str | None,
    session_id: str,
    episode: int,
    workspace: dict[str, Any],
    tokenizer: str,
    episode_tokens: int,
    compactions: int,
    agent_format: str,
    agent_session: str | None,
) -> dict[str, Any]:
    """The distiller's `draft` with what the run knows about its episode added (in place; returned)."""
    draft["parent"] = parent
    draft["session_id"] = session_id
    draft["episode"] = episode
    draft["workspace"] = workspace
    draft["tokenizer"] = tokenizer
    metrics = draft.setdefault("metrics", {})
    metrics["episode_tokens"] = episode_tokens
    metrics["agent_compactions"] = compactions
    # Which agent stream this was, and its own session id for --native-resume.
    draft["agent"] = {"format": agent_format, "session_id": agent_session}
    return draft


def compression(checkpoint: dict[str, Any]) -> float:
    """How many times smaller the checkpoint is than the episode it distils (0 when unknown)."""
    m = checkpoint.get("metrics") or {}
    et, ct = m.get("episode_tokens"), m.get("checkpoint_tokens")
    return et / ct if isinstance(et, int | float) and isinstance(ct, int | float) and ct else 0.0
