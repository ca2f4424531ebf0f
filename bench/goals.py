"""The goals of issue 5, checked against the figures: met, missed, or not measured.

A missed goal is reported, never a failure: the bench fails only on broken runs.
"""

from __future__ import annotations

from typing import Any


def _get(data: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


def _goal(text: str, value: Any, met: bool | None) -> dict[str, Any]:
    return {"goal": text, "value": value, "met": met}


def check(sections: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per goal of the issue, in its order."""
    rows = []
    headline = _get(sections, "throughput", "headline")
    rows.append(
        _goal(
            "stream throughput: aether / tiktoken alone >= 1.0",
            headline,
            None if headline is None else headline >= 1.0,
        )
    )
    p50 = _get(sections, "relaunch", "cooperative", "turnaround_ms", "p50")
    rows.append(
        _goal("relaunch turnaround p50 < 150 ms (cooperative)", p50, None if p50 is None else p50 < 150)
    )
    share = _get(sections, "bounded", "max_share_of_window")
    first = _get(sections, "bounded", "prompt_tokens_rehydrated", "first_tenth_median")
    last = _get(sections, "bounded", "prompt_tokens_rehydrated", "last_tenth_median")
    rows.append(
        _goal(
            "rehydrated prompt <= 10% of the window (largest share)",
            share,
            None if share is None else share <= 0.10,
        )
    )
    flat = None if not first or last is None else last <= first * 1.1
    rows.append(
        _goal(
            "rehydrated prompt flat (last tenth of episodes <= 1.1x the first tenth)",
            None if flat is None else f"{first:g} -> {last:g} tokens",
            flat,
        )
    )
    samples = _get(sections, "memory", "paced") or []
    if len(samples) >= 2:
        growth = samples[-1]["rss_mb"] - samples[0]["rss_mb"]
        value = f"{samples[0]['rss_mb']} -> {samples[-1]['rss_mb']} MB"
        rows.append(
            _goal(
                "memory flat with the number of events (growth <= 10%)",
                value,
                growth <= 0.10 * samples[0]["rss_mb"],
            )
        )
    else:
        rows.append(_goal("memory flat with the number of events (growth <= 10%)", None, None))
    status = _get(sections, "startup", "ratios", "status_vs_typer")
    rows.append(
        _goal("aether status < 1.5x `import typer`", status, None if status is None else status < 1.5)
    )
    task = _get(sections, "checkpoints", "size", "task_state_bytes_mean")
    rows.append(_goal("task state < 1 KB", task, None if task is None else task < 1024))
    exact = _get(sections, "accuracy", "exact")
    mism = _get(sections, "accuracy", "mismatches")
    rows.append(_goal("exact token count when the encoding is available", "exact" if exact else mism, exact))
    return rows
