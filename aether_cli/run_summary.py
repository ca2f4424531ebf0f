"""The end-of-run summary: one session's figures, read back from its ledger and checkpoints.

What the terminal shows when a run ends (episodes, checkpoints, relaunches,
steps, the tokens the checkpoints saved, who wrote each handoff, where the
memory is) is computed here from the files the run wrote, not from what the
terminal happened to see, so the summary and `.memory/` cannot disagree.
Everything read is untrusted (`.memory/` travels through git): a figure that
is not a plain count is left out, never trusted.

Knows nothing of the terminal, Rich or the supervisor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from aether_cli.errors import AetherError
from aether_cli.store.ledger import read_ledger
from aether_cli.store.memory import MemoryStore


def _count(value: Any) -> int:
    """A non-negative count, or 0 for anything else (a bool, a float, a string)."""
    return value if type(value) is int and 0 <= value < 1 << 53 else 0


def _records(store: MemoryStore, session_id: str) -> Iterator[dict[str, Any]]:
    """The session's ledger records, streamed (a ledger may hold 256 MiB); none when it is not
    here (a clone, a pruned run)."""
    try:
        yield from read_ledger(store.ledger_path(session_id))
    except (OSError, AetherError):
        return


def _tally(records: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """Counts over the ledger in one pass: what the summary needs of it, no more."""
    episodes: set[int] = set()
    ckpts: list[str] = []
    launches = relaunches = steps = redone = 0
    end: dict[str, Any] = {}
    first = last = None
    for r in records:
        kind = r.get("kind")
        if type(r.get("episode")) is int:
            episodes.add(r["episode"])
        if isinstance(r.get("ts"), str):
            first, last = first or r["ts"], r["ts"]
        if kind == "event":
            steps += isinstance(r.get("event"), dict) and r["event"].get("type") == "tool_call"
        elif kind == "launch":
            launches += 1
            relaunches += bool(r.get("checkpoint"))
        elif kind == "command" and r.get("command") == "rehydrate":
            relaunches += 1
        elif kind == "checkpoint" and isinstance(r.get("id"), str):
            ckpts.append(r["id"])
        elif kind == "continuity":
            redone += _count(r.get("redone"))
        elif kind == "end":
            end = r
    return {
        "status": str(end.get("status") or ""),
        "message": str(end.get("message") or ""),
        "episodes": len(episodes),
        "launches": launches,
        "relaunches": relaunches,
        "checkpoint_ids": ckpts,
        "steps": steps,
        "steps_redone": redone,
        "started_at": first,
        "ended_at": last,
    }


def _checkpoint_figures(store: MemoryStore, ids: list[str]) -> dict[str, Any]:
    """Token totals and handoff sources over the checkpoints still in `checkpoints/`."""
    before = after = 0
    sources: Counter[str] = Counter()
    for cid in ids:
        try:
            ck = store.read_checkpoint(cid)
        except (OSError, AetherError):
            continue  # pruned or damaged: the summary counts what is there
        metrics = ck.get("metrics")
        m: dict[str, Any] = metrics if isinstance(metrics, dict) else {}
        before += _count(m.get("episode_tokens"))
        after += _count(m.get("checkpoint_tokens"))
        src = ck.get("sources")
        sources["+".join(map(str, src)) if isinstance(src, list) and src else str(ck.get("distiller"))] += 1
    return {
        "episode_tokens": before,
        "checkpoint_tokens": after,
        "tokens_saved": max(0, before - after),
        "handoff_sources": dict(sorted(sources.items())),
    }


def summarize(store: MemoryStore, session_id: str) -> dict[str, Any]:
    """The figures of `session_id` (every run of it, resumes included) as one plain dict."""
    tally = _tally(_records(store, session_id))
    ckpts = tally.pop("checkpoint_ids")
    return {
        "session_id": session_id,
        **tally,
        "checkpoints": len(ckpts),
        "last_checkpoint": ckpts[-1] if ckpts else None,
        **_checkpoint_figures(store, ckpts),
        "memory": str(store.root),
    }
