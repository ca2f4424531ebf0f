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
from typing import Any

from aether_cli.errors import AetherError
from aether_cli.store.ledger import read_ledger
from aether_cli.store.memory import MemoryStore


def _count(value: Any) -> int:
    """A non-negative count, or 0 for anything else (a bool, a float, a string)."""
    return value if type(value) is int and 0 <= value < 1 << 53 else 0


def _ledger(store: MemoryStore, session_id: str) -> list[dict[str, Any]]:
    """The session's ledger records, or none when it is not here (a clone, a pruned run)."""
    try:
        return list(read_ledger(store.ledger_path(session_id)))
    except (OSError, AetherError):
        return []


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
    records = _ledger(store, session_id)
    kinds = Counter(str(r.get("kind")) for r in records)
    episodes = {r["episode"] for r in records if type(r.get("episode")) is int}
    ckpts = [r["id"] for r in records if r.get("kind") == "checkpoint" and isinstance(r.get("id"), str)]
    relaunches = sum(1 for r in records if r.get("kind") == "launch" and r.get("checkpoint"))
    relaunches += sum(1 for r in records if r.get("kind") == "command" and r.get("command") == "rehydrate")
    steps = sum(
        1
        for r in records
        if r.get("kind") == "event"
        and isinstance(r.get("event"), dict)
        and r["event"].get("type") == "tool_call"
    )
    redone = sum(_count(r.get("redone")) for r in records if r.get("kind") == "continuity")
    end: dict[str, Any] = next((r for r in reversed(records) if r.get("kind") == "end"), {})
    stamps = [r["ts"] for r in records if isinstance(r.get("ts"), str)]
    return {
        "session_id": session_id,
        "status": str(end.get("status") or ""),
        "message": str(end.get("message") or ""),
        "episodes": len(episodes),
        "launches": kinds["launch"],
        "relaunches": relaunches,
        "checkpoints": len(ckpts),
        "last_checkpoint": ckpts[-1] if ckpts else None,
        "steps": steps,
        "steps_redone": redone,
        "started_at": stamps[0] if stamps else None,
        "ended_at": stamps[-1] if stamps else None,
        **_checkpoint_figures(store, ckpts),
        "memory": str(store.root),
    }
