"""`aether report` in a terminal: Rich tables, a sparkline of the context and bars of tokens.

It draws the dict `commands.report` returns (the `--json` shape) and nothing
else: every string in it may come from an agent or a `.memory/` that arrived
through git, so each one is cleaned (no markup, no escape sequences) on the
way in. It knows nothing of how the figures were gathered.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from aether_cli.render import _add, _dash, _short, _text

SPARKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 64
BAR_WIDTH = 20
MAX_ROWS = 12


def sparkline(values: list[int], top: int, width: int = SPARK_WIDTH) -> str:
    """`values` squeezed into `width` cells (each the largest of its slice), scaled to `top`."""
    if not values or top <= 0:
        return ""
    cells = min(width, len(values))
    out = []
    for i in range(cells):
        chunk = values[i * len(values) // cells : (i + 1) * len(values) // cells] or [0]
        level = min(1.0, max(chunk) / top)
        out.append(SPARKS[min(len(SPARKS) - 1, int(level * (len(SPARKS) - 1) + 0.5))])
    return "".join(out)


def hbar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A bar of full blocks for a 0..1 fraction."""
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "·" * (width - filled)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _num(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else _dash(value)


def report_view(data: dict[str, Any]) -> list[Any]:
    """The whole report, one renderable after another."""
    out: list[Any] = [_head(data), _context(data), _episodes(data), _tools(data), _kinds(data)]
    if data["checkpoints"]:
        out.append(_checkpoints(data))
    out.append(_suggestions(data))
    if data["problems"]:
        out.append(
            Text("problems: " + "; ".join(_short(p, 120) for p in data["problems"][:5]), style="yellow")
        )
    return out


def _money(m: dict[str, Any]) -> str:
    if m.get("usd") is None:
        return f"unknown ({m.get('note', '')})"
    src = "reported by the agent" if m["source"] == "agent" else m.get("note", "")
    return f"${m['usd']:,.4f} ({src})"


def _head(data: dict[str, Any]) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    tot = data["totals"]
    redo, handoff = data["redo"], data["handoff"]
    ended = ", ".join(f"{k} {v}" for k, v in data["ended_by"].items())
    sources = ", ".join(f"{k} {v}" for k, v in handoff["sources"].items()) or "-"
    asked = f"; asked {handoff['asked']}, answered {handoff['answered']}" if handoff["asked"] else ""
    cost = ""
    if handoff["seconds"] is not None or handoff["tokens"] is not None:
        cost = f"; cost {_dash(handoff['seconds'])} s, {_num(handoff['tokens'])} tokens"
    rows = [
        ("session", data["session_id"]),
        ("status", f"{data['status']} after {_dash(data['duration_seconds'])} s"),
        (
            "episodes",
            f"{tot['episodes']} ({tot['relaunches']} relaunches, {tot['rehydrates']} in place); "
            f"ended by {ended or '-'}",
        ),
        (
            "tokens",
            f"{tot['tokens']:,} in {tot['events']:,} events, {tot['tool_calls']:,} tool calls; "
            f"window {_num(data['window'])}",
        ),
        (
            "compression",
            f"mean {_dash(data['compression']['mean'])}x "
            f"(min {_dash(data['compression']['min'])}, max {_dash(data['compression']['max'])})",
        ),
        (
            "redo",
            f"{redo['redone']} of {redo['calls']} calls after relaunches ({_pct(redo['rate'])}); "
            f"next action followed {redo['followed_next_action']} of {redo['judged']}",
        ),
        ("handoff", f"sources {sources}{asked}{cost}"),
        ("money", _money(data["money"])),
    ]
    for key, value in rows:
        _add(t, key, value)
    return t


def _context(data: dict[str, Any]) -> Table:
    """Each episode's peak as a bar of the window, and the whole session as a sparkline."""
    window = data["window"] or max((e["peak_tokens"] for e in data["episodes"]), default=0)
    t = Table(title="context usage", title_justify="left", show_edge=False, pad_edge=False)
    for col in ("ep", "peak of the window", "", "start"):
        t.add_column(col, no_wrap=True)
    for ep in data["episodes"][:MAX_ROWS]:
        frac = ep["peak_tokens"] / window if window else 0.0
        _add(t, str(ep["episode"]), hbar(frac), f"{frac:.0%} ({ep['peak_tokens']:,})", ep["start"])
    values = [p["tokens"] for p in data["context"]["points"]]
    spark = sparkline(values, window)
    if spark:
        t.caption = f"{spark}  (over the session, top = window {window:,})"
        t.caption_justify = "left"
    return t


def _short_id(ck: Any) -> str:
    """A checkpoint id without its hash (chk_000001): enough to tell them apart in a session."""
    return _dash(ck)[:10] if isinstance(ck, str) and ck.startswith("chk_") else _dash(ck)


def _episodes(data: dict[str, Any]) -> Table:
    t = Table(title="episodes", title_justify="left", show_edge=False, pad_edge=False)
    for col in ("ep", "prompt", "peak", "tokens", "calls", "ended by", "exit", "checkpoint"):
        t.add_column(col, no_wrap=True)
    for ep in data["episodes"][: MAX_ROWS * 4]:
        _add(
            t,
            str(ep["episode"]),
            _num(ep["prompt_tokens"]),
            _num(ep["peak_tokens"]),
            _num(ep["tokens"]),
            _num(ep["tool_calls"]),
            _dash(ep["ended_by"]),
            _dash(ep["exit_code"]),
            _short_id(ep["checkpoint"]),
        )
    return t


def _tools(data: dict[str, Any]) -> Table:
    return _shares(
        "tokens by tool",
        ("tool", "calls", "result tokens"),
        data["by_tool"],
        ("tool", "calls", "result_tokens", "average_result_tokens"),
    )


def _kinds(data: dict[str, Any]) -> Table:
    return _shares(
        "tokens by event kind",
        ("kind", "events", "tokens"),
        data["by_kind"],
        ("kind", "events", "tokens", "average_tokens"),
    )


def _shares(
    title: str, heads: tuple[str, str, str], rows: list[dict[str, Any]], keys: tuple[str, ...]
) -> Table:
    """A table of who took the tokens: name, count, tokens, average, share and a bar."""
    name, count, tokens, average = keys
    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for col in (*heads, "average", "share", ""):
        t.add_column(col, no_wrap=True)
    for row in rows[:MAX_ROWS]:
        _add(
            t,
            _short(row[name], 40),
            _num(row[count]),
            _num(row[tokens]),
            _num(row[average]),
            _pct(row["share"]),
            hbar(row["share"]),
        )
    return t


def _checkpoints(data: dict[str, Any]) -> Table:
    t = Table(title="checkpoints", title_justify="left", show_edge=False, pad_edge=False)
    for col in ("id", "ep", "trigger", "sources", "tokens", "ratio", "handoff"):
        t.add_column(col, no_wrap=True)
    for ck in data["checkpoints"][: MAX_ROWS * 4]:
        handoff = "-"
        if ck.get("handoff_seconds") is not None:
            handoff = f"{ck['handoff_seconds']} s, {_num(ck.get('handoff_tokens'))} tokens"
        ratio = f"{ck['compression']}x" if ck.get("compression") else "-"
        _add(
            t,
            _short_id(ck["id"]),
            str(ck["episode"]),
            _dash(ck["trigger"]),
            "+".join(ck.get("sources") or []) or "-",
            f"{_num(ck['episode_tokens'])} → {_num(ck['checkpoint_tokens'])}",
            ratio,
            handoff,
        )
    return t


def _suggestions(data: dict[str, Any]) -> Text:
    items = data["suggestions"]
    if not items:
        return _text("suggestions: none; the session ran within its budget")
    text = Text("suggestions:\n", style="bold")
    for item in items:
        settings = ", ".join(f"{k} = {v}" for k, v in item["settings"].items())
        text.append_text(
            _text(f"  • {item['text']}" + (f"  [--apply: {settings}]" if settings else "") + "\n")
        )
    return text
