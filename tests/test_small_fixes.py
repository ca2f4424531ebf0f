"""Issue 12, point 9: the smaller findings, each pinned by a test that failed before its fix.

A crash's stderr shown for every crash; the agent's escape sequences kept off
the terminal; one fixed exit code for "the agent kept crashing" (the agent's
own code in the message and in `status --json`); exit 74 documented; `scan`
without `.memory`; `show` one item per line; status after dropping the latest
checkpoint, with no session, and after a clean exit 74; the lock message.
"""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import aether, read_json
from rich.console import Console
from typer.testing import CliRunner

from aether_cli import commands, render
from aether_cli import constants as C
from aether_cli import protocol as P
from aether_cli.cli import app
from aether_cli.errors import LockedError
from aether_cli.render import TerminalReporter, checkpoint_view, checkpoints_view, status_view
from aether_cli.settings import Settings
from aether_cli.store import MemoryStore
from aether_cli.supervisor import Supervisor

runner = CliRunner()
README = Path(__file__).parent.parent / "README.md"


def draft(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "session_id": "ses_1",
        "episode": 1,
        "trigger": "budget",
        "objective": "ship it",
        "progress": ["started"],
        "state": {},
        "next_actions": ["continue"],
        "errors": [],
        "tasks": [],
        "distiller": "rules",
        "distiller_note": "",
        "metrics": {"episode_tokens": 1000, "checkpoint_tokens": 50, "tool_calls": 3, "events": 9},
        "workspace": {"git_head": None, "dirty_hash": None},
        "tokenizer": "cl100k_base",
    }
    base.update(fields)
    return base


def continuity(store: MemoryStore, status: str, last: str | None, **fields: Any) -> None:
    store.write_continuity(
        {
            "session_id": "ses_1",
            "status": status,
            "episode": 2,
            "context_usage_percent": 10.0,
            "last_checkpoint": last,
            "active_tasks": [],
            "memory_locations": [],
            "resume_instructions": "",
            "command": ["python", "agent.py"],
            **fields,
        }
    )


def plain_console() -> Console:
    return Console(file=io.StringIO(), width=120, color_system=None)


def output(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined]


# ------------------------------------------------------------- scan without .memory


def test_scan_without_a_memory_folder_exits_0_with_a_one_line_note(project: Path) -> None:
    res = aether("scan")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("\n") == 1 and "no .memory" in res.stdout and "nothing to scan" in res.stdout
    data = orjson.loads(aether("scan", "--json").stdout)
    assert data["clean"] is True and data["files_scanned"] == 0 and data["absent"] is True
    # Something that is there but is not a folder is still an error a hook must see.
    (project / ".memory").write_text("x")
    res = aether("scan")
    assert res.returncode == 2 and "is not a folder" in res.stderr


# ------------------------------------------------------------- show


def test_show_puts_each_progress_item_next_action_and_task_on_its_own_line(project: Path) -> None:
    store = MemoryStore(project / ".memory")
    store.init()
    ck = store.write_checkpoint(
        draft(
            progress=["read the code", "wrote the tests"],
            next_actions=["fix a", "fix b"],
            tasks=[
                {"id": "t1", "status": "pending", "next_action": "n1"},
                {"id": "t2", "status": "done", "next_action": ""},
            ],
        )
    )
    res = runner.invoke(app, ["show", ck["id"]])
    assert res.exit_code == 0, res.output
    lines = [line.rstrip() for line in res.stdout.splitlines()]
    for expected in (
        "progress",
        "  - read the code",
        "  - wrote the tests",
        "next actions",
        "  - fix a",
        "  - fix b",
        "tasks",
        "  t1 [pending] n1",
        "  t2 [done]",
    ):
        assert expected in lines, (expected, lines)


# ------------------------------------------------------------- status


def test_status_with_no_session_does_not_print_episode_none(project: Path) -> None:
    MemoryStore(project / ".memory").init()
    res = runner.invoke(app, ["status"])
    assert res.exit_code == 0, res.output
    assert "None" not in res.stdout
    assert re.search(r"^episode\s+-\s*$", res.stdout, re.M), res.stdout


def test_status_after_dropping_the_latest_checkpoint_shows_the_newest_left(project: Path) -> None:
    store = MemoryStore(project / ".memory")
    store.init()
    first = store.write_checkpoint(draft())
    second = store.write_checkpoint(draft(episode=2, parent=first["id"]))
    continuity(store, "stopped", second["id"])
    store.drop_checkpoint(second["id"], force=True)
    res = runner.invoke(app, ["status"])
    assert res.exit_code == 0, res.output
    assert "None" not in res.stdout, res.stdout
    assert first["id"] in res.stdout and "(budget, rules)" in res.stdout
    assert second["id"] in res.stdout and "dropped" in res.stdout
    data = commands.status(store)
    assert data["last_checkpoint"]["id"] == first["id"]
    assert second["id"] in data["last_checkpoint_note"]


def test_a_checkpoint_that_cannot_be_read_is_named_not_shown_as_none() -> None:
    data = {"state": "stopped", "last_checkpoint": {"id": "chk_000002_deadbeef", "error": "gone"}}
    console = plain_console()
    console.print(*status_view(data))
    out = output(console)
    assert "None" not in out and "chk_000002_deadbeef" in out and "gone" in out


HOLD_AND_EXIT = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from aether_cli.store import MemoryStore
    store = MemoryStore(Path(sys.argv[1]))
    store.acquire(["python", "agent.py"])
    store.open_ledger("ses_1").close()
    store.write_continuity({"session_id": "ses_1", "status": "running", "episode": 1,
                            "last_checkpoint": None, "command": ["python", "agent.py"]})
    if sys.argv[2] == "clean":
        store.release()  # what aether does on its way out, whatever the error
    os._exit(74 if sys.argv[2] == "clean" else 0)  # "killed": no release, lock.json stays
""")


@pytest.mark.parametrize("how", ["clean", "killed"])
def test_status_after_a_clean_exit_74_is_not_stale(project: Path, how: str) -> None:
    store = MemoryStore(project / ".memory")
    store.init()
    proc = subprocess.run([sys.executable, "-c", HOLD_AND_EXIT, str(store.root), how], check=False)
    assert proc.returncode == (74 if how == "clean" else 0)
    data = commands.status(store)
    if how == "killed":
        assert data["state"] == "stale"
    else:
        assert data["state"] == "stopped", data
        assert "resume" in data["state_note"]
    # On a fresh clone (no local ledger of the session) a "running" record is stale either way.
    store.ledger_path("ses_1").unlink()
    assert commands.status(store)["state"] == "stale"


FAILING_RUN = """
import errno, os, sys
from aether_cli.store import files
from aether_cli.cli import main

class Full(files.OsFS):
    calls = 0
    def replace(self, src, dst):
        Full.calls += 1
        if Full.calls > int(os.environ["OK_RENAMES"]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        super().replace(src, dst)

files.FS = Full()
sys.argv = ["aether", *sys.argv[1:]]
main()
"""


@pytest.mark.slow
def test_status_after_a_real_disk_full_exit_74_is_not_stale(project: Path) -> None:
    agent = Path(__file__).parent / "agents" / "minimal_agent.py"
    for ok_renames in range(3, 12):
        res = subprocess.run(
            [sys.executable, "-c", FAILING_RUN, "run", "-q", "--", sys.executable, str(agent)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "OK_RENAMES": str(ok_renames)},
            stdin=subprocess.DEVNULL,
        )
        # Too few renames may fail the run before its first continuity record (the first
        # rename is runs/trusted.json's, the record of what this machine ran).
        path = project / ".memory" / C.CONTINUITY_FILE
        cont = read_json(path) if path.exists() else {}
        if res.returncode == C.EXIT_STORAGE and cont.get("status") == "running":
            break
    else:
        pytest.fail("no disk-full run left the continuity record at 'running'")
    state = orjson.loads(aether("status", "--json").stdout)
    assert state["state"] == "stopped", state
    assert "stale" not in aether("status").stdout


# ------------------------------------------------------------- the lock message

HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from aether_cli.store import MemoryStore
    store = MemoryStore(Path(sys.argv[1]))
    store.acquire(["python", "my_agent.py", "--fast"])
    print("ready", flush=True)
    sys.stdin.read()
    store.release()
""")


@pytest.fixture
def holder(project: Path) -> Iterator[tuple[MemoryStore, int]]:
    store = MemoryStore(project / ".memory")
    store.init()
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            yield store, proc.pid
        finally:
            proc.kill()


def test_the_lock_message_says_which_pid_is_aether_and_which_command_is_the_agent(
    holder: tuple[MemoryStore, int],
) -> None:
    store, pid = holder
    with pytest.raises(LockedError) as info:
        store.acquire(["aether"])
    msg = str(info.value)
    assert f"aether (pid {pid}" in msg, msg
    assert "agent command: python my_agent.py --fast" in msg, msg
    continuity(store, "running", None)
    with pytest.raises(LockedError) as info:
        commands.resume_plan(store, None, {})
    msg = str(info.value)
    assert f"aether (pid {pid}" in msg and "agent command: python my_agent.py --fast" in msg, msg


# ------------------------------------------------------------- exit codes


def readme_exit_codes() -> dict[str, str]:
    text = README.read_text()
    table = text[text.index("## Exit codes") :].split("\n## ")[0]
    rows = re.findall(r"^\| ([^|]+?) \| (.+?) \|$", table, re.M)
    return {code: meaning for code, meaning in rows if code not in ("code", "---")}


def test_every_exit_code_constant_is_in_the_readme_table() -> None:
    table = readme_exit_codes()
    codes = {name: value for name, value in vars(C).items() if name.startswith("EXIT_")}
    shown = {int(c) for cell in table for c in re.findall(r"\d+", cell)}
    missing = {name: value for name, value in codes.items() if value not in shown}
    assert not missing, f"exit codes not in README's table: {missing}"
    assert "other" not in table, "an exit code that is not fixed collides with the documented ones"


def test_the_agent_kept_crashing_code_is_its_own() -> None:
    others = {v for k, v in vars(C).items() if k.startswith("EXIT_") and k != "EXIT_AGENT_CRASHED"}
    assert C.EXIT_AGENT_CRASHED not in others
    assert str(C.EXIT_AGENT_CRASHED) in readme_exit_codes()


class StillClock:
    """A clock that only moves when the back-off sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.now += seconds
        return False


def crashing_agent(exit_code: int) -> tuple[str, ...]:
    """Writes noise then a numbered last line to stderr, then exits with `exit_code` at once."""
    code = (
        "import os, pathlib, sys\n"
        "p = pathlib.Path('launches.txt')\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "sys.stderr.write(''.join(f'noise {n}.{i}\\n' for i in range(2000)))\n"
        "sys.stderr.write(f'FATAL crash {n} \\x1b[2J\\n')\n"
        "sys.stderr.flush()\n"
        f"os._exit({exit_code})\n"
    )
    return (sys.executable, "-c", code)


def supervise(project: Path, command: tuple[str, ...], console: Console, *, quiet: bool = True) -> int:
    settings = Settings(
        command=command, objective="x", stop_grace=1, term_grace=1, max_restarts=2, min_uptime=10.0
    )
    clock = StillClock()
    reporter = TerminalReporter(console, quiet=quiet)
    sup = Supervisor(
        settings,
        MemoryStore(project / ".memory"),
        reporter=reporter,
        clock=clock,
        sleep=clock.sleep,
        rng=random.Random(1),
        cwd=project,
    )
    return sup.run().exit_code


@pytest.mark.slow
@pytest.mark.parametrize("agent_code", [1, 3, 9])
def test_the_agent_kept_crashing_exits_with_one_fixed_code_naming_the_agents_own(
    project: Path, agent_code: int
) -> None:
    console = plain_console()
    code = supervise(project, crashing_agent(agent_code), console)
    assert code == C.EXIT_AGENT_CRASHED, "not the agent's code, which may be 1 or 3 (aether's own)"
    out = output(console)
    assert f"the agent's own exit code was {agent_code}" in out, out
    data = commands.status(MemoryStore(project / ".memory"))
    assert data["state"] == "crashed" and data["agent_exit_code"] == agent_code
    cont = read_json(project / ".memory" / C.CONTINUITY_FILE)
    assert cont["agent_exit_code"] == agent_code


@pytest.mark.slow
def test_each_crash_shows_the_end_of_its_stderr_briefly(project: Path) -> None:
    console = plain_console()
    supervise(project, crashing_agent(2), console, quiet=True)
    out = output(console)
    for n in (1, 2, 3):
        assert f"FATAL crash {n}" in out, out
    # Briefly: the last few lines of each, not the 2,000 lines of noise before them.
    assert out.count("noise") <= 3 * 5, out
    assert "\x1b" not in out


@pytest.mark.slow
def test_a_crash_whose_stderr_comes_after_its_stdout_closed_still_shows_it(project: Path) -> None:
    # Shown live (not quiet): each launch's last stderr line, though it is still being
    # read when the child's exit and the end of its stdout are already seen.
    console = plain_console()
    supervise(project, crashing_agent(2), console, quiet=False)
    out = output(console)
    for n in (1, 2, 3):
        assert f"  ! FATAL crash {n}" in out, out
        assert f"  ! noise {n}.1999" in out, out


# ------------------------------------------------------------- escape sequences

HOSTILE = "ok \x1b[2J\x1b]0;pwned\x07\x1b[31mred\x1b[0m \x9b2J\rover\x08\x07\x00 \u202eevil"


def test_clean_keeps_text_and_newlines_and_drops_control_and_escape_sequences() -> None:
    clean = render.clean
    assert clean("plain text, ünïcode ✓ and\nnew lines\tand tabs") == (
        "plain text, ünïcode ✓ and\nnew lines\tand tabs"
    )
    out = clean(HOSTILE)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", out), repr(out)
    assert "ok" in out and "red" in out and "over" in out and "evil" in out
    assert "pwned" not in out, "an OSC sequence (window title) is dropped whole"
    assert clean("a\r\nb") == "a\nb"


def hostile_events() -> list[P.Event]:
    lines = [
        {"type": "message", "role": "assistant", "text": HOSTILE},
        {"type": "message", "role": "user", "text": HOSTILE},
        {"type": "tool_call", "id": "1", "name": "sh\x1b[2J", "input": {"q": HOSTILE}},
        {"type": "tool_result", "id": "1", "output": HOSTILE, "is_error": True},
        {"type": "task", "id": "t1", "title": HOSTILE, "status": "in_progress"},
        {"type": "done", "summary": HOSTILE},
        {"type": "log", "level": "error", "text": HOSTILE},
    ]
    events = [P.decode_line(orjson.dumps(obj).decode()) for obj in lines]
    events.append(P.decode_line(HOSTILE))  # not JSON: plain text
    return events


def test_the_live_view_filters_the_agents_escape_sequences() -> None:
    console = plain_console()
    rep = TerminalReporter(console)
    for ev in hostile_events():
        rep.event(ev)
    rep.stderr(HOSTILE)
    rep.notice(f"agent reported: {HOSTILE}", "error")
    rep.notice("refused task id '[x]'", "warn")
    out = output(console)
    assert "\x1b" not in out and "\x9b" not in out and "\r" not in out and "\x07" not in out, repr(out)
    # Every line but the tool call's (its input is shown as JSON, escapes and all) and the notice.
    assert out.count("ok red") == 9, out
    assert "refused task id '[x]'" in out, "a notice is shown as written, with no markup escape"


def test_the_views_of_stored_memory_filter_escape_sequences() -> None:
    data = {
        "session_id": "ses\x1b[2J",
        "state": "stopped",
        "objective": HOSTILE,
        "episode": 1,
        "tokenizer": "cl100k_base",
        "last_checkpoint": {"id": "chk_1", "trigger": HOSTILE, "distiller": "rules", "created_at": ""},
        "tasks": [{"id": "t\x1b[2J", "status": "pending", "progress": 0, "next_action": HOSTILE}],
    }
    ck = draft(
        id="chk_1",
        objective=HOSTILE,
        progress=[HOSTILE],
        next_actions=[HOSTILE],
        errors=[HOSTILE],
        tasks=[{"id": "t\x1b[2J", "status": "pending", "next_action": HOSTILE}],
        created_at="2026-01-01T00:00:00Z",
    )
    console = plain_console()
    for item in [*status_view(data), checkpoints_view([ck]), *checkpoint_view(ck)]:
        console.print(item)
    out = output(console)
    assert "\x1b" not in out and "\x9b" not in out and "\r" not in out, repr(out)
    assert "ok red" in out


def test_an_error_line_quoting_the_committed_memory_is_filtered(
    project: Path, holder: tuple[MemoryStore, int]
) -> None:
    store, _pid = holder
    continuity(store, "running", None, session_id="ses\x1b[2J\x1b]0;pwned\x07")
    res = aether("resume")
    assert res.returncode == C.EXIT_LOCKED, res.stderr
    assert "is running now" in res.stderr and "\x1b" not in res.stderr and "pwned" not in res.stderr
