"""The run as a person sees it in a terminal: aether's events up front, the agent folded.

A run prints aether's few lines (a launch, a checkpoint and its compression,
a relaunch and its prompt) among hundreds of the agent's. In a terminal this
view lifts them out: the agent's ordinary lines are folded into one live
status line ("agent ▸ <its last line>") replaced in place, and leave one dim
count in the scrollback ("┆ 31 agent lines, 10 tool calls"); its failures,
warnings and its done stay, dimmed. Below that, a live context bar with the
soft, checkpoint and emergency marks, the episode, its steps and tasks. At the
end, one summary of the session (from `run_summary`, so it matches the files).

Only a real terminal gets this view (`reporter_for` chooses); a pipe,
`TERM=dumb` and the tests that read plain lines get `render.TerminalReporter`
unchanged. Imports Rich (it is, with `render` and `cli`, the terminal's edge)
and is imported only by `aether run`/`resume`, so `aether
status` never pays for it. Knows nothing of the supervisor's state: it shows
what the `Reporter` calls hand it.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from aether_cli import protocol as P
from aether_cli.plain_text import clean
from aether_cli.render import STYLES, TerminalReporter

if TYPE_CHECKING:
    from rich.console import RenderableType

BAR_WIDTH = 24
# How each kind of notice stands out: a mark and a style (the plain view prints the same text).
PROMINENT = {
    "checkpoint": ("● ", "bold green"),
    "launch": ("▶ ", "bold cyan"),
    "error": ("✗ ", "bold red"),
    "warn": ("! ", "bold yellow"),
}
MARK_STYLES = ("yellow", "magenta", "bold red")  # soft, checkpoint, emergency


def context_bar(used: int, window: int, marks: tuple[float, ...], width: int = BAR_WIDTH) -> Text:
    """A bar of `width` cells: the used share filled, each threshold a `│` at its place."""
    frac = min(1.0, used / window) if window else 0.0
    filled = round(frac * width)
    colour = "green" if frac < (marks[0] if marks else 0.6) else "yellow" if frac < marks[-1] else "red"
    cells = [Text("█", style=colour) if i < filled else Text("░", style="dim") for i in range(width)]
    for at, style in zip(marks, MARK_STYLES, strict=False):
        i = min(width - 1, int(at * width))
        cells[i] = Text("│", style=style + (" reverse" if i < filled else ""))
    return Text.assemble(*cells)


class LiveReporter(TerminalReporter):
    """The `Reporter` for a terminal: notices prominent, the agent folded, a live context bar."""

    shows_summary = True

    def __init__(self, console: Console, *, quiet: bool = False, marks: tuple[float, ...] = ()) -> None:
        super().__init__(console, quiet=quiet)
        self.marks = tuple(sorted(marks))
        self.agent_line = ""
        self.episode = 0
        self.used = self.window = 0
        self.reported = False
        self.steps = 0
        self.tasks: dict[str, str] = {}
        self.tasks_done = 0
        self.folded = self.folded_calls = 0
        self._live: Live | None = Live(
            console=console, get_renderable=self._render, refresh_per_second=4, transient=True
        )
        self._live.start()

    # ------------------------------------------------------------ the Reporter calls

    def event(self, ev: P.Event) -> None:
        """Count the event; fold its line into the status line, or keep it dimmed if it matters."""
        if isinstance(ev, P.ToolCall):
            self.steps += 1
            self.folded_calls += 0 if self.quiet else 1
        elif isinstance(ev, P.TaskUpdate):
            self.tasks[ev.id] = str(ev.fields.get("status") or self.tasks.get(ev.id, ""))
            self.tasks_done = sum(1 for s in self.tasks.values() if s == "done")
        if self.quiet:
            return
        line = self._line_for(ev)
        if line is None:
            return
        if self._kept(ev):
            self._flush()
            line.stylize("dim")
            self.console.print(line)
        else:
            self.agent_line = line.plain.strip()
            self.folded += 1

    @staticmethod
    def _kept(ev: P.Event) -> bool:
        """The agent's lines worth a line of their own: a failure, a warning, its done."""
        return isinstance(ev, P.ToolResult | P.Log | P.Done)

    def stderr(self, text: str) -> None:
        """The agent's stderr, folded like its output."""
        if not self.quiet and text.strip():
            self.agent_line = "! " + " ".join(clean(text).split())
            self.folded += 1

    def notice(self, text: str, kind: str = "info") -> None:
        """aether's own line; all but an "info" one first count what the agent said since the last
        (an info notice mid-episode, like the soft threshold, would cut the episode's count in two)."""
        if kind != "info":
            self._flush()
        mark, style = PROMINENT.get(kind, ("", "bold " + STYLES.get(kind, "")))
        body_style = "bold" if kind in ("checkpoint", "launch") else "dim" if kind == "hook" else ""
        self.console.print(Text.assemble(("aether ", style), (mark, style), (clean(text), body_style)))

    def usage(self, *, episode: int, used: int, window: int, reported: bool) -> None:
        """Remember the figures; the live bar draws them at its next refresh."""
        self.episode, self.used, self.window, self.reported = episode, used, window, reported

    def close(self) -> None:
        """Print the last fold count and take the live lines away (the scrollback keeps the rest)."""
        self._flush()
        if self._live is not None:
            self._live.stop()
            self._live = None

    def summary(self, data: dict[str, Any]) -> None:
        """The session's figures, once, after the run."""
        self.console.print(summary_view(data))

    # ------------------------------------------------------------ drawing

    def _flush(self) -> None:
        """One dim line for the agent's lines folded since the last line printed."""
        if not self.folded:
            return
        calls = (
            f", {self.folded_calls} tool call{'s' * (self.folded_calls != 1)}" if self.folded_calls else ""
        )
        self.console.print(
            Text(f"  ┆ {self.folded} agent line{'s' * (self.folded != 1)}{calls}", style="dim")
        )
        self.folded = self.folded_calls = 0

    def _render(self) -> RenderableType:
        """The live lines: the agent's last line, then the context bar."""
        lines: list[Text] = []
        if self.agent_line:
            lines.append(
                Text.assemble(
                    ("  agent ▸ ", "dim cyan"), (self.agent_line, "dim"), no_wrap=True, overflow="ellipsis"
                )
            )
        lines.append(self._bar_line())
        return Group(*lines)

    def _bar_line(self) -> Text:
        """`episode 3 ██████░░│░░│░ 61% 2,440/4,000 tokens │ steps 23 │ tasks 3/8 done`."""
        frac = self.used / self.window if self.window else 0.0
        line = Text.assemble(
            (f"  episode {self.episode or '-'} ", "bold"),
            context_bar(self.used, self.window, self.marks),
            (f" {frac:4.0%}", "bold"),
            f" {self.used:,}/{self.window:,} tokens" + (" (reported)" if self.reported else ""),
            ("  │ ", "dim"),
            f"steps {self.steps}",
            no_wrap=True,
            overflow="ellipsis",
        )
        if self.tasks:
            line.append_text(
                Text.assemble(("  │ ", "dim"), f"tasks {self.tasks_done}/{len(self.tasks)} done")
            )
        return line


def reporter_for(console: Console, *, quiet: bool, marks: tuple[float, ...] = ()) -> TerminalReporter:
    """This view in a real terminal; plain lines anywhere else (a pipe, `TERM=dumb`)."""
    if console.is_terminal and not console.is_dumb_terminal:
        return LiveReporter(console, quiet=quiet, marks=marks)
    return TerminalReporter(console, quiet=quiet)


# ------------------------------------------------------------ the summary


def _where(path: str) -> str:
    """A path relative to the working folder when it is under it (shorter to read and copy)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive
        return path
    return path if rel.startswith("..") else rel + os.sep


def _seconds(start: Any, end: Any) -> str:
    try:
        secs = (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds()
    except ValueError:
        return ""
    return f", {secs:.1f}s" if secs < 120 else f", {secs / 60:.1f} min"


def summary_view(data: dict[str, Any]) -> Group:
    """The end summary: what the session did, what the checkpoints saved, where to look next."""
    status = str(data.get("status") or "ended")
    style = {"done": "green", "crashed": "red"}.get(status, "yellow")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    took = _seconds(data.get("started_at"), data.get("ended_at"))
    grid.add_row("session", Text(clean(f"{data.get('session_id')}: {data.get('message') or status}{took}")))
    redone = f", {data['steps_redone']} redone" if data.get("steps_redone") else ""
    grid.add_row(
        "episodes",
        f"{data.get('episodes', 0)} ({data.get('relaunches', 0)} relaunches); "
        f"{data.get('steps', 0)} steps{redone}",
    )
    sources = ", ".join(f"{clean(k)} {v}" for k, v in (data.get("handoff_sources") or {}).items())
    grid.add_row(
        "checkpoints", f"{data.get('checkpoints', 0)}" + (f" (handoff by {sources})" if sources else "")
    )
    before, after = data.get("episode_tokens", 0), data.get("checkpoint_tokens", 0)
    if before:
        ratio = f", {before / after:.1f}x" if after else ""
        grid.add_row(
            "tokens saved",
            f"{data.get('tokens_saved', 0):,} ({before:,} in episodes → {after:,} in checkpoints{ratio})",
        )
    grid.add_row("memory", Text(clean(_where(str(data.get("memory", "")))), style="cyan"))
    session = clean(str(data.get("session_id") or ""))
    grid.add_row("details", Text(f"aether report {session}", style="bold"))
    return Group(Rule(Text(f"aether: {status}", style="bold " + style), style=style), grid)
