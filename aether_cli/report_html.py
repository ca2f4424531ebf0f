"""`aether report --html FILE`: one self-contained page with the session's charts.

The charts are drawn by pygal (the optional `report` extra, imported here
only): static SVG written into the page, with pygal's own inline script and
style and no external file, so the page needs no network when viewed. The
report's `--json` data is embedded too (`<script type="application/json"
id="aether-report">`), so a reader of the page can check the marks against
it.

Two charts: context usage over the session (one line per episode, with
relaunch and checkpoint markers as their own series), and tokens by tool.
Every chart mark carries its value in pygal's `<desc class="value">`.
Every string in the data may come from an agent: labels are reduced to a
safe alphabet before they reach the SVG (and pygal's inline script), and the
page's text is HTML-escaped. It knows nothing of the terminal.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from aether_cli.errors import AetherError

INSTALL_HINT = "pip install 'aether-cli[report]'"
MAX_TOOLS = 12
_UNSAFE = re.compile(r"[^A-Za-z0-9_ .,:/()+#=-]")


class ChartsUnavailable(AetherError):
    """pygal (the `report` extra) is not installed."""


def label(text: Any, limit: int = 48) -> str:
    """A chart label: agent-made text reduced to characters that are inert in SVG and script."""
    return _UNSAFE.sub("_", str(text))[:limit]


def _pygal() -> Any:
    try:
        import pygal  # type: ignore[import-untyped]  # (no stubs or py.typed)
    except ImportError:
        raise ChartsUnavailable(f"--html needs the charting extra: {INSTALL_HINT}") from None
    return pygal


def _x(point: dict[str, Any]) -> float:
    t = point.get("t")
    return float(t) if isinstance(t, int | float) else float(point.get("seq") or 0)


def context_chart(data: dict[str, Any]) -> str:
    """SVG: context tokens over seconds since the session began, one series per episode,
    then a `relaunch` series (one mark per launch or rehydrate after the first) and a
    `checkpoint` series (one mark per checkpoint, at the tokens the episode reached)."""
    pygal = _pygal()
    chart = pygal.XY(
        js=[],
        disable_xml_declaration=True,
        width=900,
        height=360,
        title="Context usage across the session",
        x_title="seconds since the session began",
        y_title="tokens in context",
        show_x_guides=False,
        dots_size=2,
        legend_at_bottom=True,
        truncate_legend=40,
        range=(0, max(data["window"] or 0, *(p["tokens"] for p in data["context"]["points"]), 1)),
    )
    by_episode: dict[int, list[tuple[float, int]]] = {}
    for p in data["context"]["points"]:
        by_episode.setdefault(p["episode"], []).append((_x(p), p["tokens"]))
    for episode, points in sorted(by_episode.items()):
        chart.add(f"episode {episode}", points)
    peaks = {e["episode"]: e for e in data["episodes"]}
    launches = [m for m in data["context"]["markers"] if m["kind"] in ("launch", "rehydrate")][1:]
    chart.add(
        "relaunch",
        [(_x(m), peaks[m["episode"]]["prompt_tokens"]) for m in launches],
        stroke=False,
        dots_size=6,
    )
    chart.add(
        "checkpoint",
        [(_x(m), _tokens_at(data, m)) for m in data["context"]["markers"] if m["kind"] == "checkpoint"],
        stroke=False,
        dots_size=6,
    )
    if data["window"]:
        end = max((_x(p) for p in data["context"]["points"]), default=1.0)
        limit = round(data["window"] * (data["settings"].get("checkpoint_at") or 0.8))
        chart.add("checkpoint line", [(0.0, limit), (end, limit)], show_dots=False)
    svg: str = chart.render(is_unicode=True)
    return svg


def _tokens_at(data: dict[str, Any], marker: dict[str, Any]) -> int:
    """The episode's checkpoint size as the ledger and checkpoint agree (episode_tokens)."""
    for ck in data["checkpoints"]:
        if ck["seq"] == marker["seq"]:
            return int(ck.get("episode_tokens") or 0)
    return 0


def tools_chart(data: dict[str, Any]) -> str:
    """SVG: tokens (calls and results) by tool, the largest first, one bar each."""
    pygal = _pygal()
    rows = data["by_tool"][:MAX_TOOLS]
    chart = pygal.HorizontalBar(
        js=[],
        disable_xml_declaration=True,
        width=900,
        height=120 + 40 * max(1, len(rows)),
        title="Tokens by tool",
        show_legend=False,
        print_values=False,
    )
    chart.x_labels = [label(r["tool"]) for r in rows]
    chart.add("tokens", [r["tokens"] for r in rows])
    svg: str = chart.render(is_unicode=True)
    return svg


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('-' if c is None else str(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 2px 10px; text-align: left; }
figure { margin: 1em 0; } h1 { font-size: 1.4em; }
"""


def page(data: dict[str, Any]) -> str:
    """The whole page: summary, both charts, the episode and checkpoint tables, suggestions."""
    context, tools = context_chart(data), tools_chart(data)
    tot, money = data["totals"], data["money"]
    cost = "unknown" if money["usd"] is None else f"${money['usd']:,.4f} ({money['source']})"
    summary = _table(
        ["session", "status", "episodes", "tokens", "tool calls", "redo rate", "mean compression", "money"],
        [
            [
                data["session_id"],
                data["status"],
                tot["episodes"],
                tot["tokens"],
                tot["tool_calls"],
                f"{data['redo']['rate']:.0%}",
                data["compression"]["mean"],
                cost,
            ]
        ],
    )
    episodes = _table(
        ["episode", "from", "prompt", "peak", "tokens", "calls", "ended by", "checkpoint"],
        [
            [
                e["episode"],
                e["from_checkpoint"],
                e["prompt_tokens"],
                e["peak_tokens"],
                e["tokens"],
                e["tool_calls"],
                e["ended_by"],
                e["checkpoint"],
            ]
            for e in data["episodes"]
        ],
    )
    checkpoints = _table(
        ["checkpoint", "trigger", "sources", "episode tokens", "checkpoint tokens", "ratio", "handoff s"],
        [
            [
                c["id"],
                c["trigger"],
                "+".join(c.get("sources") or []),
                c["episode_tokens"],
                c["checkpoint_tokens"],
                c["compression"],
                c.get("handoff_seconds"),
            ]
            for c in data["checkpoints"]
        ],
    )
    advice = "".join(f"<li>{html.escape(s['text'])}</li>" for s in data["suggestions"]) or "<li>none</li>"
    # Inside <script>, "</" would end the element: JSON may spell it "<\/" without changing its value.
    embedded = json.dumps(data, ensure_ascii=True).replace("</", "<\\/")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>aether report {html.escape(data['session_id'])}</title><style>{STYLE}</style></head><body>"
        f"<h1>aether report: {html.escape(data['session_id'])}</h1>{summary}"
        f'<figure id="context-chart">{context}</figure>'
        f'<figure id="tools-chart">{tools}</figure>'
        f"<h2>Episodes</h2>{episodes}<h2>Checkpoints</h2>{checkpoints}"
        f"<h2>Suggestions</h2><ul>{advice}</ul>"
        f'<script type="application/json" id="aether-report">{embedded}</script>'
        "</body></html>\n"
    )
