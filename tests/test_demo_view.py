"""`make demo` read at a glance: in a terminal aether's events stand out, the agent is folded
into one live line under a context bar, and one summary ends the run; in a pipe, plain lines."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import orjson
import pytest
from helpers import aether
from rich.console import Console
from screen import scrollback
from test_terminal import run_in_pty

from aether_cli import protocol as P
from aether_cli.live_view import LiveReporter, context_bar, reporter_for, summary_view
from aether_cli.render import TerminalReporter
from aether_cli.run_summary import summarize
from aether_cli.store.memory import MemoryStore

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MARKS = (0.6, 0.8, 0.95)


def terminal() -> Console:
    return Console(file=io.StringIO(), width=100, force_terminal=True, color_system="standard")


def ev(obj: dict) -> P.Event:
    return P.decode_line(orjson.dumps(obj).decode())


def screen(console: Console) -> list[str]:
    return scrollback(console.file.getvalue())  # type: ignore[attr-defined]


def test_a_terminal_gets_the_live_view_and_a_pipe_or_dumb_terminal_plain_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rep = reporter_for(terminal(), quiet=False, marks=MARKS)
    rep.close()
    assert isinstance(rep, LiveReporter) and rep.shows_summary
    plain = reporter_for(Console(file=io.StringIO(), width=100), quiet=False)
    assert type(plain) is TerminalReporter and not plain.shows_summary
    monkeypatch.setenv("TERM", "dumb")
    dumb = reporter_for(Console(file=io.StringIO(), width=100, force_terminal=True), quiet=False)
    assert type(dumb) is TerminalReporter


def test_the_agent_is_folded_and_aethers_notices_stand_out() -> None:
    console = terminal()
    rep = LiveReporter(console, marks=MARKS)
    rep.notice("episode 1: launched pid 7 (fresh, prompt 200 tokens)", "launch")
    for i in range(30):
        rep.event(
            ev({"type": "tool_call", "id": f"r{i}", "name": "read_file", "input": {"path": f"f{i}.py"}})
        )
        rep.event(ev({"type": "message", "role": "assistant", "text": f"f{i}.py: 3 lines"}))
    rep.event(ev({"type": "tool_result", "id": "r9", "output": "no such file", "is_error": True}))
    rep.stderr("a warning on stderr")
    rep.usage(episode=1, used=3000, window=4000, reported=False)
    rep.notice("context at 61%: soft threshold", "info")
    rep.notice("checkpoint chk_000001_aaaaaaaa (budget, agent): 3000 → 600 tokens (5.0x)", "checkpoint")
    rep.close()
    raw = console.file.getvalue()  # type: ignore[attr-defined]
    lines = screen(console)
    assert lines == [
        "aether ▶ episode 1: launched pid 7 (fresh, prompt 200 tokens)",
        "  ┆ 60 agent lines, 30 tool calls",
        "  ✗ no such file",
        "aether context at 61%: soft threshold",
        "  ┆ 1 agent line",
        "aether ● checkpoint chk_000001_aaaaaaaa (budget, agent): 3000 → 600 tokens (5.0x)",
    ], lines
    assert "\x1b[2m  ✗ no such file" in raw or "\x1b[2;31m" in raw  # the kept agent line is dim
    assert "f29.py: 3 lines" not in "\n".join(lines)  # folded: not in the scrollback


def test_the_live_lines_show_the_agents_last_line_and_the_context_bar() -> None:
    console = terminal()
    rep = LiveReporter(console, marks=MARKS)
    rep.event(ev({"type": "task", "id": "a", "status": "done"}))
    rep.event(ev({"type": "task", "id": "b", "status": "in_progress"}))
    rep.event(ev({"type": "tool_call", "id": "1", "name": "read_file", "input": {"path": "x.py"}}))
    rep.event(ev({"type": "message", "role": "assistant", "text": "\x1b[2Jreading x.py"}))
    rep.usage(episode=3, used=2440, window=4000, reported=True)
    out = Console(file=io.StringIO(), width=100)
    out.print(rep._render())
    rep.close()
    drawn = out.file.getvalue()  # type: ignore[attr-defined]
    assert drawn.splitlines()[0] == "  agent ▸ reading x.py", drawn  # cleaned of its escape sequence
    assert re.search(
        r"episode 3 [█░│]{24}  61% 2,440/4,000 tokens \(reported\)  │ steps 1  │ tasks 1/2", drawn
    )


def test_the_bar_marks_each_threshold_where_it_is() -> None:
    bar = context_bar(1200, 4000, MARKS, width=20).plain
    assert len(bar) == 20 and bar[:6] == "█" * 6 and bar[6:12] == "░" * 6
    assert [i for i, c in enumerate(bar) if c == "│"] == [12, 16, 19]
    assert context_bar(9000, 4000, MARKS, width=20).plain.count("█") == 17  # full, the marks stay


def test_quiet_folds_nothing_and_still_draws_the_bar() -> None:
    console = terminal()
    rep = LiveReporter(console, quiet=True, marks=MARKS)
    rep.event(ev({"type": "message", "role": "assistant", "text": "hidden"}))
    rep.stderr("also hidden")
    rep.notice("checkpoint chk_1", "checkpoint")
    assert rep.agent_line == ""
    rep.close()
    assert screen(console) == ["aether ● checkpoint chk_1"]


# ------------------------------------------------------------ the real CLI and the demo agent


def demo_files(root: Path, count: int = 30) -> Path:
    """A folder for the demo agent to index: `count` files, deterministic contents."""
    src = root / "src"
    src.mkdir()
    for i in range(count):
        body = "".join(f"def function_{i}_{j}(value):\n    return value * {j}\n\n" for j in range(40))
        (src / f"module_{i:02d}.py").write_text(f'"""Module {i}."""\n\n{body}', encoding="utf-8")
    return src


def demo_run(project: Path) -> list[str]:
    src = demo_files(project)
    return [
        "run",
        "--objective",
        "Index the files",
        "--context-window",
        "4000",
        "--",
        sys.executable,
        "-m",
        "aether_cli.demo_agent",
        str(src),
        "--report",
        "report.md",
        "--delay",
        "0.05",  # with none, the agent is done before a threshold can stop it
    ]


def stored(project: Path) -> tuple[list[dict], list[dict]]:
    """The run's checkpoints and ledger records, read straight from the files."""
    memory = project / ".memory"
    cks = [orjson.loads(p.read_bytes()) for p in sorted((memory / "checkpoints").glob("chk_*.json"))]
    (ledger,) = (memory / "runs").glob("ses_*.jsonl")
    return cks, [orjson.loads(line) for line in ledger.read_bytes().splitlines()]


@pytest.mark.slow
def test_in_a_pipe_the_demo_prints_plain_lines_with_aethers_intact(project: Path) -> None:
    res = aether(*demo_run(project))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "\x1b" not in out and "\r" not in out
    cks, _ = stored(project)
    assert len(cks) >= 3
    for ck in cks:
        m = ck["metrics"]
        assert f"aether checkpoint {ck['id']} ({ck['trigger']}, " in out
        assert f"{m['episode_tokens']} → {m['checkpoint_tokens']} tokens" in out
    for ck in cks[:-1]:
        assert re.search(
            rf"aether episode {ck['episode'] + 1}: launched pid \d+ \(from {ck['id']}, prompt", out
        )
    assert out.rstrip().splitlines()[-1].startswith("aether agent reported done; final checkpoint")
    assert out.count("→ read_file") == 30  # every agent line, one a line
    assert "agent ▸" not in out and "┆" not in out and "aether: done" not in out  # no live view, no summary


def summary_of(lines: list[str]) -> dict[str, str]:
    at = next(i for i, line in enumerate(lines) if "aether: done" in line)
    rows = {}
    for line in lines[at + 1 :]:
        if not line.strip():
            break
        key, _, value = line.partition("  ")
        rows[key.strip()] = value.strip()
    return rows


@pytest.mark.slow
def test_in_a_terminal_the_demo_folds_the_agent_and_ends_with_a_true_summary(project: Path) -> None:
    code, raw = run_in_pty(demo_run(project), project)
    assert code == 0, raw
    lines = scrollback(raw.replace("\r\n", "\n"))
    text = "\n".join(lines)
    # The agent's lines are folded: none of its 30 tool calls has a line of its own, its done stays, dim.
    assert "→ read_file" not in text, text
    assert re.search(r"\x1b\[2;32m +✓ done", raw)
    assert re.search(r"^  ┆ \d+ agent lines, \d+ tool calls$", text, re.M)
    # While it ran: the agent's last line in place, the context bar with its marks.
    plain = ESCAPE.sub("", raw)
    assert re.search(r"agent ▸ (→ read_file|module_\d+\.py|☐ task)", plain)
    assert re.search(r"episode \d+ [█░│]{24} +[1-9]\d?% [\d,]+/4,000 tokens  │ steps [1-9]", plain)
    cks, ledger = stored(project)
    for ck in cks:
        assert any(line.startswith(f"aether ● checkpoint {ck['id']}") for line in lines), (
            f"{ck['id']} missing:\n{text}"
        )
    # The summary's figures are the files' figures.
    rows = summary_of(lines)
    before = sum(c["metrics"]["episode_tokens"] for c in cks)
    after = sum(c["metrics"]["checkpoint_tokens"] for c in cks)
    relaunches = sum(1 for r in ledger if r["kind"] == "launch" and r["checkpoint"])
    steps = sum(c["metrics"]["tool_calls"] for c in cks)
    assert rows["episodes"] == f"{len({c['episode'] for c in cks})} ({relaunches} relaunches); {steps} steps"
    assert rows["checkpoints"].startswith(f"{len(cks)} (handoff by ")
    assert rows["tokens saved"].startswith(f"{before - after:,} ({before:,} in episodes → {after:,}")
    assert rows["memory"] == ".memory/"
    session = cks[-1]["session_id"]
    assert rows["details"] == f"aether report {session}"
    assert rows["session"].startswith(f"{session}: agent reported done")
    assert len(lines) < 40, text  # at a glance: the plain run prints over 100


def test_the_summary_reads_an_odd_ledger_without_trusting_it(project: Path) -> None:
    store = MemoryStore(project / ".memory")
    store.init()
    sid = "ses_20260101T000000_abcdef"
    records = [
        {"kind": "launch", "episode": 1, "checkpoint": None, "ts": "2026-01-01T00:00:00.000Z"},
        {"kind": "event", "episode": 1, "event": {"type": "tool_call", "id": "1", "name": "x"}},
        {"kind": "event", "episode": 1, "event": "not an object"},
        {"kind": "checkpoint", "episode": 1, "id": "chk_000001_00000000"},  # its file is gone
        {"kind": "continuity", "redone": "lots"},
        {"kind": "launch", "episode": True, "checkpoint": "chk_000001_00000000"},
        {"kind": "command", "command": "rehydrate", "episode": 2},
        {"kind": "end", "status": "done", "message": "fine", "ts": "2026-01-01T00:00:09.500Z"},
    ]
    path = store.ledger_path(sid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records) + b"{torn")
    data = summarize(store, sid)
    assert {k: data[k] for k in ("episodes", "relaunches", "checkpoints", "steps", "steps_redone")} == {
        "episodes": 2,
        "relaunches": 2,
        "checkpoints": 1,
        "steps": 1,
        "steps_redone": 0,
    }
    assert data["tokens_saved"] == 0 and data["status"] == "done"
    out = Console(file=io.StringIO(), width=100)
    out.print(summary_view(data))
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert "fine, 9.5s" in text and f"aether report {sid}" in text and "tokens saved" not in text
    assert summarize(store, "ses_20260101T000000_000000")["episodes"] == 0  # no ledger here
