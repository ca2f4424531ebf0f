"""Views rendered into a string console, and CLI argument errors through Typer's runner."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
from rich.console import Console
from rich.text import Text
from typer.testing import CliRunner

from aether_cli import protocol as P
from aether_cli.cli import app
from aether_cli.render import (
    TerminalReporter,
    bar,
    checkpoint_view,
    checkpoints_view,
    status_view,
    watch_view,
)

runner = CliRunner()


def render(*items: object) -> str:
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(*items)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_bar() -> None:
    assert bar(0.0, 10) == "[..........]"
    assert bar(0.5, 10) == "[#####.....]"
    assert bar(1.7, 10) == "[##########]"


def test_status_view_shows_agent_text_literally() -> None:
    data = {
        "session_id": "ses_x",
        "state": "running",
        "objective": "fix [bold]this[/bold] [red]",
        "episode": 3,
        "context": {"fraction": 0.5, "window": 4000, "source": "counted"},
        "tokenizer": "estimate",
        "tokenizer_note": "AETHER_TOKENIZER=estimate",
        "restarts": 1,
        "last_checkpoint": {
            "id": "chk_000002_abcdef12",
            "trigger": "budget",
            "distiller": "agent",
            "created_at": "t",
            "episode_tokens": 3000,
            "checkpoint_tokens": 300,
            "compression": 10.0,
        },
        "checkpoints": 2,
        "protocol_warnings": 2,
        "tasks": [{"id": "t1", "status": "in_progress", "progress": 0.25, "next_action": "run [tests]"}],
    }
    out = render(*status_view(data))
    assert "fix [bold]this[/bold] [red]" in out
    assert "[############............] 50.0% of 4,000 tokens" in out
    assert "3000 → 300 tokens (10.0x)" in out
    assert "run [tests]" in out and "25%" in out
    assert "AETHER_TOKENIZER=estimate" in out
    assert "2 malformed protocol lines" in out


def test_checkpoint_views() -> None:
    ck = {
        "id": "chk_000001_00000000",
        "episode": 1,
        "trigger": "crash",
        "distiller": "rules",
        "objective": "o",
        "progress": ["did [a]"],
        "next_actions": ["do b"],
        "errors": ["E: x"],
        "tasks": [{"id": "t", "status": "pending", "next_action": "n"}],
        "created_at": "2026-01-02T03:04:05Z",
        "metrics": {},
    }
    out = render(*checkpoint_view(ck))
    assert "did [a]" in out and "do b" in out and "E: x" in out and "t [pending] n" in out
    table = render(checkpoints_view([{**ck, "episode_tokens": 10, "checkpoint_tokens": 5}]))
    assert "chk_000001_00000000" in table and "01-02 03:04" in table


def test_reporter_in_a_pipe_prints_plain_lines() -> None:
    console = Console(file=io.StringIO(), width=100)
    rep = TerminalReporter(console)
    rep.event(P.decode_line('{"type":"tool_call","id":"1","name":"grep","input":{"q":"x"}}'))
    rep.event(P.decode_line('{"type":"message","role":"assistant","text":"hello [world]"}'))
    rep.usage(episode=1, used=10, window=100, reported=False)
    rep.notice("checkpoint chk_1", "ok")
    rep.close()
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "→ grep" in out and "hello [world]" in out and "aether checkpoint chk_1" in out
    assert "context" not in out and "\x1b[" not in out


def test_quiet_reporter_hides_agent_output() -> None:
    console = Console(file=io.StringIO(), width=100)
    rep = TerminalReporter(console, quiet=True)
    rep.event(P.decode_line('{"type":"message","role":"assistant","text":"hidden"}'))
    rep.stderr("also hidden")
    rep.notice("shown")
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "hidden" not in out and "shown" in out


def test_status_on_a_folder_without_memory(project: Path) -> None:
    res = runner.invoke(app, ["status", "--json"])
    assert res.exit_code == 0
    assert orjson.loads(res.stdout)["state"] == "none"
    assert not (project / ".memory").exists()  # status never creates anything


def test_bad_flag_values_are_usage_errors() -> None:
    res = runner.invoke(app, ["run", "--context-window", "lots", "--", "x"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["run", "--no-such-flag"])
    assert res.exit_code == 2


def test_run_without_a_command_is_a_clear_error(project: Path) -> None:
    res = runner.invoke(app, ["run", "--objective", "x"])
    assert res.exit_code != 0
    assert "no agent command" in str(res.exception)


def test_checkpoint_without_a_live_run(project: Path) -> None:
    runner.invoke(app, ["init"])
    res = runner.invoke(app, ["checkpoint"])
    assert res.exit_code != 0 and "no live" in str(res.exception)


def test_help_lists_every_command() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for name in ("run", "resume", "status", "checkpoints", "show", "drop", "checkpoint", "init"):
        assert name in res.stdout
    assert "--context-window" in runner.invoke(app, ["run", "--help"]).stdout


def test_status_view_cuts_a_long_task_list_unfinished_first() -> None:
    tasks = [{"id": f"done{i:03d}", "status": "done", "progress": 1.0} for i in range(60)]
    tasks += [{"id": f"open{i:03d}", "status": "pending", "progress": 0.0} for i in range(30)]
    tasks.append({"id": "now", "status": "in_progress", "progress": 0.5, "next_action": "write tests"})
    out = render(*status_view({"session_id": "s", "state": "running", "tasks": tasks}))
    rows = [line for line in out.splitlines() if line.strip().startswith(("done", "open", "now"))]
    assert len(rows) == 20
    assert rows[0].strip().startswith("now") and not any(r.strip().startswith("done") for r in rows)
    assert "… and 71 more (91 tasks, 60 done)" in out


def test_status_shows_the_agent_format_and_its_compactions() -> None:
    data = {
        "session_id": "s",
        "state": "running",
        "agent_format": "codex",
        "usage_note": "codex reports usage summed over the whole thread",
        "agent_compactions": 2,
        "tasks": [],
    }
    out = render(*status_view(data))
    assert "codex" in out and "summed over the whole thread" in out
    assert "compacted its own context 2 time(s)" in out


def test_watch_redraws_until_ctrl_c() -> None:
    console = Console(file=io.StringIO(), width=80, color_system=None)
    drawn: list[int] = []
    naps: list[float] = []

    def views() -> list[Text]:
        drawn.append(len(drawn))
        return [Text(f"frame {len(drawn)}")]

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            raise KeyboardInterrupt

    watch_view(console, views, interval=1.0, sleep=sleep)
    assert len(drawn) == 3 and naps == [1.0, 1.0, 1.0]
    assert "frame 3" in console.file.getvalue()  # type: ignore[attr-defined]


def test_ctrl_c_while_the_first_frame_is_drawn_is_a_clean_stop() -> None:
    def views() -> list[Text]:
        raise KeyboardInterrupt

    watch_view(Console(file=io.StringIO()), views)  # returns: no KeyboardInterrupt escapes
