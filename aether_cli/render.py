"""Terminal output: the run's plain lines and the `status`/`checkpoints`/`show` views.

A run in a pipe (or `TERM=dumb`) prints plain lines, one per event, with no
escape codes; a run in a terminal gets `live_view` (the agent folded, a live
context bar, a summary), chosen by `live_view.reporter_for`.
`NO_COLOR` is honoured by Rich itself. Nothing here decides anything: it only shows what
the supervisor and the commands hand it.

Everything of the agent's (its text, stderr, events, and the stored memory it
wrote) passes `plain_text.clean` before it is printed: an agent's `\033[2J`
must not clear the user's screen, retitle the window or move the cursor. Rich
itself lets escape sequences through.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from aether_cli.plain_text import clean

if TYPE_CHECKING:
    from aether_cli import protocol as P

# "checkpoint" and "launch" are "ok" notices the live view lifts out (live_view.PROMINENT).
STYLES = {
    "info": "cyan",
    "ok": "green",
    "warn": "yellow",
    "error": "bold red",
    "checkpoint": "green",
    "launch": "green",
    "hook": "dim",
}
MAX_SHOWN = 240


def make_console(file: TextIO | None = None, *, stderr: bool = False) -> Console:
    """A console on stdout (or stderr); Rich detects TTY, NO_COLOR and TERM=dumb."""
    return Console(file=file or (sys.stderr if stderr else sys.stdout), highlight=False, soft_wrap=True)


def _short(text: str, limit: int = MAX_SHOWN) -> str:
    one = " ".join(clean(text).split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


def bar(fraction: float, width: int = 24) -> str:
    """A text bar like [#########...............] for a 0..1 fraction."""
    filled = max(0, min(width, round(fraction * width)))
    return "[" + "#" * filled + "." * (width - filled) + "]"


class TerminalReporter:
    """Shows the agent's output and the supervisor's notices as plain lines, as the run goes.

    This is the view of a pipe (and of `TERM=dumb`): one line per event, no live
    region, no summary. A terminal gets `live_view.LiveReporter` (see `live_view.reporter_for`).
    """

    shows_summary = False

    def __init__(self, console: Console, *, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet

    def event(self, ev: P.Event) -> None:
        """One line per message, tool call, failed result, task change or done."""
        if self.quiet:
            return
        line = self._line_for(ev)
        if line is not None:
            self.console.print(line)

    def _line_for(self, ev: P.Event) -> Text | None:
        from aether_cli import protocol as P

        if isinstance(ev, P.Message):
            return Text.assemble(
                ("  " if ev.role == "assistant" else f"  [{_short(ev.role, 40)}] ", "dim"),
                _short(ev.text),
            )
        if isinstance(ev, P.ToolCall):
            return Text.assemble(
                ("  → ", "magenta"),
                (_short(ev.name, 80), "bold"),
                " ",
                _short(P.dumps_compact(ev.input), 160),
            )
        if isinstance(ev, P.ToolResult) and ev.is_error:
            return Text.assemble(("  ✗ ", "red"), _short(P.counted_text(ev), 200))
        if isinstance(ev, P.TaskUpdate):
            f = ev.fields
            status = _short(str(f.get("status", "")), 20)
            title = f.get("title") or f.get("next_action") or ""
            return Text.assemble(
                ("  ☐ " if status != "done" else "  ☑ ", "blue"),
                f"task {_short(ev.id, 80)}",
                f" {status}" if status else "",
                f": {_short(str(title), 120)}" if title else "",
            )
        if isinstance(ev, P.Done):
            return Text.assemble(("  ✓ done", "green"), f" {_short(ev.summary)}" if ev.summary else "")
        if isinstance(ev, P.Text):
            return Text("  " + _short(ev.text), style="dim")
        if isinstance(ev, P.Log) and ev.level in ("warning", "error", "critical"):
            return Text.assemble((f"  [{_short(ev.level, 20)}] ", "yellow"), _short(ev.text))
        return None

    def stderr(self, text: str) -> None:
        """The agent's stderr, dimmed (it is diagnostics, not context)."""
        if not self.quiet and text.strip():
            self.console.print(Text("  ! " + _short(text), style="dim red"))

    def notice(self, text: str, kind: str = "info") -> None:
        """A supervisor message: always shown, even with --quiet. It may quote the agent (a
        reason it gave, the end of its stderr), so it is cleaned too; its newlines stay. A
        Text is never read as markup, so nothing is escaped (that printed a stray backslash)."""
        body = "dim" if kind == "hook" else ""
        self.console.print(Text.assemble(("aether ", "bold " + STYLES.get(kind, "")), (clean(text), body)))

    def usage(self, *, episode: int, used: int, window: int, reported: bool) -> None:
        """Nothing: a pipe gets no live context line."""

    def close(self) -> None:
        """Nothing to close."""

    def summary(self, data: dict[str, Any]) -> None:
        """Nothing: the plain view's last lines stay the supervisor's own."""


def _dash(value: Any) -> str:
    """A value as text, or "-" where there is none (never "None")."""
    return "-" if value is None or value == "" else str(value)


def _text(text: str, style: str = "") -> Text:
    """Stored or agent-made text as a cleaned Text (never markup, no escape sequences)."""
    return Text(clean(text), style=style)


def _add(table: Table, *cells: Any) -> None:
    """Add a row; plain strings become cleaned Text, so agent-made text is never read as Rich
    markup nor reaches the terminal with its escape sequences."""
    table.add_row(*(Text(clean(c)) if isinstance(c, str) else c for c in cells))


# Rows of the task table in `aether status`; --json has every task.
MAX_STATUS_TASKS = 20


def status_view(data: dict[str, Any]) -> list[Any]:
    """Renderables for `aether status` from the status dict."""
    return [_status_head(data), *_status_tasks(data.get("tasks") or [])]


def watch_view(
    console: Console,
    views: Callable[[], list[Any]],
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Show `views()` and draw it afresh every `interval` seconds, until Ctrl-C.

    Ctrl-C is a clean stop whenever it comes, even while the first frame is being
    drawn (a person presses it as soon as they have read the screen), and the
    live display is always stopped, so the cursor comes back.
    """
    from rich.console import Group
    from rich.live import Live

    live: Live | None = None
    try:
        live = Live(Group(*views()), console=console, auto_refresh=False)
        live.start(refresh=True)
        while True:
            sleep(interval)
            live.update(Group(*views()), refresh=True)
    except KeyboardInterrupt:
        pass
    finally:
        if live is not None:
            live.stop()


def _status_head(data: dict[str, Any]) -> Table:
    """The key/value grid at the top of `aether status`."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    _add(head, "session", data.get("session_id") or "-")
    state = data.get("state", "-")
    style = {"running": "green", "done": "green", "crashed": "red", "stale": "red"}.get(state, "yellow")
    _add(
        head,
        "state",
        _text(state + (f" ({data['state_note']})" if data.get("state_note") else ""), style),
    )
    if data.get("objective"):
        _add(head, "objective", _short(data["objective"], 200))
    _add(head, "episode", _dash(data.get("episode")))
    _context_rows(head, data)
    _add(head, "tokenizer", data.get("tokenizer", "-"))
    if data.get("tokenizer_note"):
        _add(head, "", _text(data["tokenizer_note"], "yellow"))
    _add(head, "restarts", str(data.get("restarts", 0)))
    if data.get("protocol_warnings"):
        _add(
            head,
            "warnings",
            Text(
                f"{data['protocol_warnings']} malformed protocol lines (see the run ledger)", style="yellow"
            ),
        )
    _checkpoint_rows(head, data.get("last_checkpoint"))
    if data.get("last_checkpoint_note"):
        _add(head, "", _text(data["last_checkpoint_note"], "yellow"))
    _add(head, "checkpoints", str(data.get("checkpoints", 0)))
    return head


def _context_rows(head: Table, data: dict[str, Any]) -> None:
    """The context bar and how the agent's usage is known."""
    ctx = data.get("context") or {}
    if ctx:
        frac = ctx.get("fraction", 0.0)
        _add(
            head,
            "context",
            f"{bar(frac)} {frac:.1%} of {ctx.get('window', 0):,} tokens ({ctx.get('source', 'counted')})",
        )
    if data.get("usage_note"):
        _add(head, "", _text(data["usage_note"], "dim"))
    _add(head, "agent", data.get("agent_format") or "aether")
    if data.get("agent_compactions"):
        _add(
            head,
            "",
            Text(f"the agent compacted its own context {data['agent_compactions']} time(s)", style="yellow"),
        )
    _continuity_row(head, data.get("continuity") or {})


def _continuity_row(head: Table, c: dict[str, Any]) -> None:
    """Steps redone after relaunches: aether's promise, measured."""
    if not c.get("relaunches"):
        return
    text = f"{c.get('steps_redone', 0)} step(s) redone in {c['relaunches']} relaunch(es)"
    if c.get("first_step_judged"):
        followed = f"{c.get('first_step_followed', 0)}/{c['first_step_judged']}"
        text += f"; first step followed the handoff {followed}"
    _add(head, "continuity", Text(text, style="yellow" if c.get("steps_redone") else ""))


def _sources(ck: dict[str, Any]) -> str:
    """Who wrote a checkpoint: `agent+rules`, `rules`; with the agent handoff's seconds."""
    sources = ck.get("sources")
    text = "+".join(sources) if isinstance(sources, list) and sources else str(ck.get("distiller") or "")
    seconds = ck.get("handoff_seconds")
    return f"{text}, handoff {seconds:.1f}s" if isinstance(seconds, int | float) else text


def _checkpoint_rows(head: Table, ck: dict[str, Any] | None) -> None:
    """The last checkpoint and how much it compressed its episode."""
    if not ck:
        _add(head, "checkpoint", "none yet")
        return
    if ck.get("error"):
        _add(head, "checkpoint", _text(f"{ck['id']}: {ck['error']}", "red"))
        return
    _add(
        head,
        "checkpoint",
        f"{ck['id']} ({ck.get('trigger')}, {_sources(ck)}) {ck.get('created_at', '')}",
    )
    if ck.get("compression"):
        _add(
            head,
            "compression",
            f"{ck.get('episode_tokens')} → {ck.get('checkpoint_tokens')} tokens ({ck['compression']:.1f}x)",
        )
    if ck.get("parent_note"):
        _add(head, "", _text(str(ck["parent_note"]), "dim"))


def _status_tasks(tasks: list[dict[str, Any]]) -> list[Any]:
    """The task table, unfinished work first, cut at MAX_STATUS_TASKS rows with a note."""
    if not tasks:
        return []
    t = Table(title=None, show_edge=False, pad_edge=False)
    for col in ("task", "status", "progress", "next action"):
        t.add_column(Text(col))  # Text, not str: a str header is parsed for markup and emoji codes
    order = {"in_progress": 0, "blocked": 1, "pending": 2}
    shown = sorted(tasks, key=lambda x: order.get(str(x.get("status")), 3))[:MAX_STATUS_TASKS]
    for task in shown:
        _add(
            t,
            task["id"],
            task.get("status", ""),
            f"{float(task.get('progress') or 0):.0%}",
            _short(task.get("next_action") or task.get("title") or "", 70),
        )
    if len(tasks) == len(shown):
        return [t]
    done = sum(1 for x in tasks if x.get("status") == "done")
    more = Text(
        f"… and {len(tasks) - len(shown)} more ({len(tasks)} tasks, {done} done): "
        "`aether status --json` lists them all",
        style="dim",
    )
    return [t, more]


def checkpoints_view(rows: list[dict[str, Any]]) -> Table:
    """A table of checkpoints, oldest first."""
    t = Table(show_edge=False, pad_edge=False)
    t.add_column("id", no_wrap=True, min_width=19)
    for col in ("ep", "trigger", "by", "tokens", "created (UTC)"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        created = str(r.get("created_at") or "")
        _add(
            t,
            r["id"],
            str(r.get("episode", "")),
            r.get("trigger", ""),
            _sources(r),
            f"{r.get('episode_tokens', '?')} → {r.get('checkpoint_tokens', '?')}",
            created[5:16].replace("T", " "),
        )
    return t


def checkpoint_view(ck: dict[str, Any], parent_note: str = "") -> list[Any]:
    """One checkpoint in readable form; `parent_note` says what happened to a parent that is gone."""
    out: list[Any] = []
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    for key in (
        "id",
        "parent",
        "session_id",
        "episode",
        "created_at",
        "trigger",
        "distiller",
        "sources",
        "distiller_note",
        "tokenizer",
    ):
        if ck.get(key) not in (None, ""):
            value = ck[key]
            _add(head, key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
            if key == "parent" and parent_note:
                _add(head, "", _text(parent_note, "dim"))
    _add(head, "objective", ck.get("objective", ""))
    out.append(head)
    for key in ("progress", "next_actions", "errors"):
        items = ck.get(key) or []
        if items:
            out.append(Text(key.replace("_", " "), style="bold"))
            out.extend(_text("  - " + str(i)) for i in items)
    tasks = ck.get("tasks") or []
    if tasks:
        out.append(Text("tasks", style="bold"))
        out.extend(_text(f"  {t.get('id')} [{t.get('status')}] {t.get('next_action') or ''}") for t in tasks)
    return out


def gc_lines(report: dict[str, Any]) -> list[str]:
    """`aether gc`'s report: one line per checkpoint removed (or that would be), then the totals."""
    verb = "would remove" if report.get("dry_run") else "removed"
    lines = [
        f"{verb} {r['id']} ({r['bytes']} bytes, session {r.get('session_id') or '?'})"
        for r in report["removed"]
    ]
    freed = "would free" if report.get("dry_run") else "freed"
    lines.append(
        f"{verb} {len(report['removed'])} checkpoints, kept {report['kept']}; "
        f"{freed} {report['bytes_freed']} bytes"
    )
    return [clean(line) for line in lines]
