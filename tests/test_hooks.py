"""Hooks (issue 14.2): one hook run for real, the --events writer, and their settings.

Each hook here is a real shell command or a small script in the test's tmp folder;
`run_hook` starts it as a run would. The end-to-end runs are in test_hooks_run.py.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import tracemalloc
from pathlib import Path

import orjson
import pytest

from aether_cli import trust
from aether_cli.errors import UsageError
from aether_cli.event_stream import EventStream, StreamingReporter
from aether_cli.hooks import OUTPUT_HEAD, OUTPUT_TAIL, Capture, hook_env, run_hook
from aether_cli.reporter import NullReporter
from aether_cli.settings import Settings, build_settings

# A hook script: the event on stdin and the AETHER_* variables, written to the file it is given.
HOOK_SCRIPT = """
import json, os, sys
event = json.load(sys.stdin)
env = {k: v for k, v in os.environ.items() if k.startswith("AETHER_")}
with open(sys.argv[1], "a") as f:
    f.write(json.dumps({"stdin": event, "env": env, "cwd": os.getcwd()}) + "\\n")
"""


def script_hook(tmp: Path, out: Path) -> str:
    """The shell command of a hook that records what it got into `out` (one JSON line per run)."""
    script = tmp / "hook.py"
    script.write_text(HOOK_SCRIPT)
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))} {shlex.quote(str(out))}"


def gone(pid: int) -> bool:
    """The process has exited and is not a zombie of ours waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] == "Z"


def wait_for(check, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.01)
    return check()


EVENT = {"ts": "2026-01-01T00:00:00.000Z", "event": "checkpoint", "session": "ses_1", "episode": 2,
         "checkpoint": "chk_000002_abcd", "trigger": "budget", "id": "chk_000002_abcd"}  # fmt: skip


# ------------------------------------------------------------------ one hook


def test_a_hook_gets_the_event_on_stdin_and_in_its_environment(tmp_path: Path) -> None:
    out = tmp_path / "got.jsonl"
    env = hook_env({"PATH": os.environ["PATH"], "AETHER_EXIT_CODE": "stale"}, EVENT, tmp_path / ".memory")
    res = run_hook("checkpoint", script_hook(tmp_path, out), orjson.dumps(EVENT), env=env, timeout=10,
                   cwd=tmp_path)  # fmt: skip
    assert res.ok and res.exit_code == 0 and not res.timed_out and res.error is None, res
    got = orjson.loads(out.read_text())
    assert got["stdin"] == EVENT
    assert got["env"] == {
        "AETHER_EVENT": "checkpoint", "AETHER_SESSION": "ses_1", "AETHER_EPISODE": "2",
        "AETHER_CHECKPOINT": "chk_000002_abcd", "AETHER_TRIGGER": "budget",
        "AETHER_MEMORY_DIR": str(tmp_path / ".memory"),
    }  # fmt: skip  (no stale AETHER_EXIT_CODE: the event has none)
    assert got["cwd"] == str(tmp_path)


def test_a_hook_runs_through_the_shell_and_its_output_is_kept(tmp_path: Path) -> None:
    res = run_hook("done", "echo one | tr o O; echo two >&2", b"{}", env=dict(os.environ), timeout=10)
    assert res.ok
    assert res.output == "One\ntwo\n" and res.output_bytes == 8


def test_a_failing_hook_is_a_result_not_an_error(tmp_path: Path) -> None:
    res = run_hook("done", "echo broken; exit 3", b"{}", env=dict(os.environ), timeout=10)
    assert not res.ok and res.exit_code == 3 and not res.timed_out
    assert res.verdict() == "exit 3" and res.output == "broken\n"


def test_a_hook_that_cannot_start_is_a_result(tmp_path: Path) -> None:
    res = run_hook("done", "true", b"{}", env=dict(os.environ), timeout=10, cwd=tmp_path / "missing")
    assert not res.ok and res.exit_code is None and res.error
    assert res.verdict().startswith("could not start")


def test_a_hook_that_never_reads_stdin_does_not_block(tmp_path: Path) -> None:
    res = run_hook("done", "exit 0", b"x" * (1 << 20), env=dict(os.environ), timeout=10)
    assert res.ok


def test_a_hanging_hook_is_killed_at_its_timeout_with_its_whole_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = f"sleep 60 & echo $! > {shlex.quote(str(pids))}; echo started; sleep 60"
    start = time.monotonic()
    res = run_hook("checkpoint", command, b"{}", env=dict(os.environ), timeout=0.5)
    took = time.monotonic() - start
    assert res.timed_out and not res.ok and "timed out" in res.verdict()
    assert res.output == "started\n"
    assert 0.5 <= took < 3, took
    background = int(pids.read_text())
    assert wait_for(lambda: gone(background)), "the hook's background child outlived it"


def test_a_second_ctrl_c_cuts_a_hook_short(tmp_path: Path) -> None:
    start = time.monotonic()
    res = run_hook("done", "sleep 60", b"{}", env=dict(os.environ), timeout=60, cancelled=lambda: True)
    assert res.timed_out and time.monotonic() - start < 3


def test_what_a_finished_hook_left_in_its_group_is_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # The background sleep keeps the output pipe open after the hook exits.
    command = f"sleep 60 & echo $! > {shlex.quote(str(pids))}; exit 0"
    start = time.monotonic()
    res = run_hook("done", command, b"{}", env=dict(os.environ), timeout=30)
    assert res.ok and time.monotonic() - start < 3
    assert wait_for(lambda: gone(int(pids.read_text())))


def test_a_hook_that_prints_a_lot_costs_no_memory(tmp_path: Path) -> None:
    size = 50_000_000
    tracemalloc.start()
    try:
        res = run_hook("done", f"head -c {size} /dev/zero | tr '\\0' x", b"{}", env=dict(os.environ),
                       timeout=60)  # fmt: skip
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert res.ok and res.output_bytes == size
    assert res.output.startswith("x" * OUTPUT_HEAD) and res.output.endswith("x" * OUTPUT_TAIL)
    assert f"[... {size - OUTPUT_HEAD - OUTPUT_TAIL:,} bytes left out ...]" in res.output
    assert len(res.output) < OUTPUT_HEAD + OUTPUT_TAIL + 100
    assert peak < 2 << 20, f"peak {peak} bytes"


def test_capture_keeps_the_head_and_the_tail() -> None:
    c = Capture(head=4, tail=3)
    for chunk in (b"ab", b"cdef", b"", b"ghij", b"k"):
        c.add(chunk)
    assert (bytes(c.head), bytes(c.tail), c.total) == (b"abcd", b"ijk", 11)
    assert c.text() == "abcd\n[... 4 bytes left out ...]\nijk"
    short = Capture(head=4, tail=3)
    short.add(b"abc")
    assert short.text() == "abc"


# ------------------------------------------------------------------ the event stream


def test_events_are_json_lines_appended_to_a_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"event": "earlier"}\n')
    stream = EventStream.open(str(path))
    stream.session = "ses_x"
    stream.emit("checkpoint", id="chk_1", episode=1)
    stream.emit("done", exit_code=0)
    stream.close()
    lines = [orjson.loads(line) for line in path.read_text().splitlines()]
    assert [e["event"] for e in lines] == ["earlier", "checkpoint", "done"]
    assert lines[1]["session"] == "ses_x" and lines[1]["id"] == "chk_1" and lines[1]["ts"].endswith("Z")


@pytest.mark.parametrize("where", ["missing/dir/events.jsonl", "a_dir"])
def test_an_events_file_that_cannot_be_opened_is_a_usage_error(tmp_path: Path, where: str) -> None:
    (tmp_path / "a_dir").mkdir()
    with pytest.raises(UsageError, match="--events: cannot open"):
        EventStream.open(str(tmp_path / where))


def test_a_failing_events_writer_warns_once_and_goes_quiet(tmp_path: Path) -> None:
    r, w = os.pipe()
    os.close(r)
    stream = EventStream(os.fdopen(w, "wb"), name="a pipe", owned=True)
    told: list[str] = []
    stream.on_fail = told.append
    for _ in range(3):
        stream.emit("notice", text="x")
    assert len(told) == 1 and "--events stopped" in told[0] and "the run goes on" in told[0]
    stream.close()


def test_usage_is_streamed_at_a_modest_rate(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    now = [0.0]
    reporter = StreamingReporter(NullReporter(), EventStream.open(str(path)), clock=lambda: now[0])
    for i in range(100):
        now[0] = i * 0.05  # 20 updates a second for 5 seconds
        reporter.usage(episode=1, used=i, window=100, reported=False)
    reporter.usage(episode=2, used=1, window=100, reported=True)  # a new episode: at once
    reporter.notice("hello", "warn")
    reporter.stream.close()
    events = [orjson.loads(line) for line in path.read_text().splitlines()]
    usage = [e for e in events if e["event"] == "usage"]
    assert 5 <= len(usage) <= 7
    assert usage[-1]["episode"] == 2 and usage[-1]["fraction"] == 0.01
    assert events[-1] == {**events[-1], "event": "notice", "text": "hello", "kind": "warn"}


# ------------------------------------------------------------------ settings


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_hooks_come_from_the_hooks_table_of_config_toml(tmp_path: Path) -> None:
    text = '[hooks]\non_checkpoint = "notify-send ck"\non_done = "make report"\ntimeout = 5\n'
    path = config(tmp_path, text)
    s = build_settings({}, config_path=path, environ={})
    assert (s.hook("checkpoint"), s.hook("done"), s.hook("crash"), s.hook_timeout) == (
        "notify-send ck", "make report", None, 5.0,
    )  # fmt: skip
    # A flag wins, and an empty one switches config.toml's off.
    s = build_settings({"on_done": ""}, config_path=path, environ={"AETHER_ON_CHECKPOINT": "mine"})
    assert (s.hook("checkpoint"), s.hook("done")) == ("mine", None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[hooks]\non_done = 5\n", "on_done must be a string"),
        ("[hooks]\non_done = [\"a\"]\n", "on_done must be a string"),
        ("[hooks]\non_chekpoint = \"x\"\n", "no key 'on_chekpoint'"),
        ("hooks = \"x\"\n", "must be a table"),
        ("[hooks]\ntimeout = \"soon\"\n", "bad value for hook_timeout"),
        ("[hooks]\ntimeout = 0\n", "--hook-timeout must be more than 0"),
        ("[hooks]\ntimeout = 1e9\n", "at most 3600"),
        ("[run]\non_done = \"x\"\n", "on_done belongs in the [hooks] table"),
        ("[hooks]\non_done = \"a\\u0000b\"\n", "NUL"),
    ],
)
def test_bad_hooks_in_config_toml_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build_settings({}, config_path=config(tmp_path, text), environ={})


def test_events_cannot_come_from_config_toml(tmp_path: Path) -> None:
    # A committed file must not choose a file aether appends to.
    s = build_settings({}, config_path=config(tmp_path, 'events = "/home/you/.bashrc"\n'), environ={})
    assert s.events is None
    assert build_settings({}, environ={"AETHER_EVENTS": "-"}).events == "-"


def test_hooks_are_never_stored_with_a_session_nor_carried_over() -> None:
    s = Settings(on_done="curl https://hooks.example/TOKEN", events="ev.jsonl", hook_timeout=4.0)
    stored = s.to_config()
    assert not {"on_done", "on_checkpoint", "events", "hook_timeout"} & set(stored)
    # A hand-edited continuity record that names a hook does not make a resume run it.
    resumed = build_settings({}, environ={}, stored={**stored, "on_done": "rm -rf ~", "events": "/x"})
    assert resumed.hook("done") is None and resumed.events is None


# ------------------------------------------------------------------ trust


def test_hooks_from_config_toml_are_confirmed_like_a_distill_command() -> None:
    launch = trust.Launch(("agent",), None, {}, {"done": "make report"})
    assert trust.unconfirmed(launch, None, typed=frozenset({"command"})) == ["hooks"]
    record = trust.parse_record(trust.record_bytes(launch, (1, 2)), (1, 2))
    assert trust.unconfirmed(launch, record, typed=frozenset()) == []
    changed = trust.Launch(("agent",), None, {}, {"done": "make report; curl evil"})
    assert trust.unconfirmed(changed, record, typed=frozenset()) == ["hooks"]
    lines = trust.explain(changed, ["hooks"], templates_dir="t")
    assert lines == ["  hook on_done:     make report; curl evil"]
    shown = trust.explain(trust.Launch((), None, {}, {"crash": "a\x1b[2Jb"}), ["hooks"], templates_dir="t")
    assert "\\x1b" in shown[0] and "\x1b" not in shown[0]


def test_a_record_from_before_hooks_still_counts_for_the_rest() -> None:
    launch = trust.Launch(("agent",), "distil", {})
    old = orjson.loads(trust.record_bytes(launch, (1, 2)))
    del old["hooks"]
    record = trust.parse_record(orjson.dumps(old), (1, 2))
    assert record is not None
    assert trust.unconfirmed(launch, record, typed=frozenset()) == []
    with_hooks = trust.Launch(("agent",), "distil", {}, {"done": "x"})
    assert trust.unconfirmed(with_hooks, record, typed=frozenset()) == ["hooks"]


def test_hooks_typed_now_are_not_config_toml_s() -> None:
    hooks = {"done": "a", "crash": "b", "checkpoint": None, "relaunch": ""}
    assert trust.config_hooks(hooks, frozenset({"on_crash"})) == {"done": "a"}
