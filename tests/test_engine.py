"""aether_cli.Engine: a Python agent loop with relaunch-free checkpoints, its events, its
errors on bad input, its lock, resume and recovery."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import aether_cli
from aether_cli import (
    AetherError,
    Engine,
    EngineEvent,
    EventError,
    LockedError,
    SettingError,
    UsageError,
    commands,
)
from aether_cli.store import MemoryStore

OBJECTIVE = "Read every file of the project"


def ledger(project: Path) -> list[dict]:
    return [
        orjson.loads(line)
        for p in (project / ".memory" / "runs").glob("ses_*.jsonl")
        for line in p.read_bytes().splitlines()
    ]


def checkpoints(project: Path) -> list[dict]:
    paths = sorted((project / ".memory" / "checkpoints").glob("*.json"))
    return [orjson.loads(p.read_bytes()) for p in paths]


def test_a_python_loop_of_300_steps_checkpoints_in_process_and_carries_on(project: Path) -> None:
    seen: list[EngineEvent] = []
    eng = Engine.open(OBJECTIVE, window=2000, on_event=seen.append)
    eng.fact("layout", "sources live under src/", pinned=True)
    eng.task("read", status="in_progress", title="Read 300 files", next_action="read src/f1.py")
    store = MemoryStore(project / ".memory")
    peak, contexts = 0.0, []
    for i in range(1, 301):
        call = eng.tool_call("read_file", {"path": f"src/f{i}.py"})
        eng.tool_result(call, f"def f{i}():\n    return {i}\n" * 6)
        eng.message(f"src/f{i}.py defines f{i}")
        eng.task("read", progress=round(i / 300, 2), next_action=f"read src/f{i + 1}.py")
        peak = max(peak, eng.fraction)
        if eng.should_checkpoint():
            assert eng.wanted == "budget"
            # Every other checkpoint with the agent's own state, the others by rules.
            nxt = f"read src/f{i + 1}.py"
            state = {"objective": OBJECTIVE, "progress": [f"read {i} files"], "next_actions": [nxt]}
            ck = eng.checkpoint(state if len(contexts) % 2 == 0 else None)
            contexts.append((ck, eng.context()))
            assert store.holder()["pid"] == os.getpid()  # the same process, never relaunched
    eng.task("read", status="done", progress=1.0, next_action="")
    final = eng.done("read 300 files")

    assert len(contexts) >= 10
    assert peak < 0.95  # checkpointed when asked: the emergency line was never reached
    for ck, context in contexts:
        assert ck["trigger"] == "budget"
        assert ck["id"] in context and ck["next_actions"][0] in context
        assert "sources live under src/" in context  # the pinned fact, in every prompt
    assert [ck["distiller"] for ck, _ in contexts[:4]] == ["agent", "rules", "agent", "rules"]
    written = checkpoints(project)
    assert [c["episode"] for c in written] == list(range(1, len(contexts) + 2))
    assert [c["parent"] for c in written[1:]] == [c["id"] for c in written[:-1]]
    assert final["trigger"] == "done" and final["id"] == written[-1]["id"]
    records = ledger(project)
    calls = [r for r in records if r["kind"] == "event" and r["event"]["type"] == "tool_call"]
    assert len(calls) == 300
    assert {r["pid"] for r in records if r["kind"] == "launch"} == {os.getpid()}
    cont = orjson.loads((project / ".memory" / "session_continuity.json").read_bytes())
    assert (cont["status"], cont["last_checkpoint"]) == ("done", final["id"])
    assert cont["episode"] == len(contexts) + 1
    assert cont["continuity"]["relaunches"] == len(contexts) and cont["continuity"]["steps_redone"] == 0
    pm = orjson.loads((project / ".memory" / "project_memory.json").read_bytes())
    assert [f["key"] for f in pm["facts"]] == ["layout"] and pm["finished_tasks"][0]["id"] == "read"
    assert store.holder() is None  # done let go of the lock
    kinds = [e.kind for e in seen]
    assert kinds[0] == "episode" and kinds[-1] == "end"
    assert kinds.count("checkpoint") == len(contexts) + 1 and kinds.count("episode") == len(contexts) + 1


def test_aethers_own_events_reach_subscribers_in_order(project: Path) -> None:
    seen: list[tuple[str, dict]] = []
    eng = Engine.open(OBJECTIVE, window=1000)
    unsubscribe = eng.subscribe(lambda e: seen.append((e.kind, e.data)))
    while not eng.should_checkpoint():
        eng.message("x " * 50)
    ck = eng.checkpoint()
    unsubscribe()
    eng.message("not heard")
    eng.close()
    notices = [d["text"] for k, d in seen if k == "notice"]
    seen = [(k, d) for k, d in seen if k != "notice"]
    assert [k for k, _ in seen] == ["threshold", "threshold", "wanted", "checkpoint", "episode"]
    assert [d["level"] for k, d in seen if k == "threshold"] == ["soft", "checkpoint"]
    assert seen[2][1] == {"trigger": "budget", "urgent": False}
    assert seen[3][1]["id"] == ck["id"] and seen[3][1]["distiller"] == "rules"
    assert seen[4][1] == {"episode": 2, "checkpoint": ck["id"], "prompt_tokens": seen[4][1]["prompt_tokens"]}
    assert notices[0].startswith(f"checkpoint {ck['id']} (budget, rules")


def test_a_callback_that_raises_reaches_the_caller_after_the_event_is_taken(project: Path) -> None:
    def boom(event: EngineEvent) -> None:
        if event.kind == "threshold":
            raise RuntimeError("dashboard down")

    eng = Engine.open(OBJECTIVE, window=1000, on_event=boom)
    with pytest.raises(RuntimeError, match="dashboard down"):
        eng.message("x " * 900)
    assert eng.should_checkpoint() and eng.wanted == "emergency"  # every crossed threshold was taken
    eng.close()


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda e: e.message(123), "'text' must be a string"),
        (lambda e: e.message("hi", role="robot"), "unknown role"),
        (lambda e: e.tool_call("read", "src/a.py"), "'input' must be an object"),
        (lambda e: e.tool_call("read", {"path": {1, 2}}), "must be JSON data"),
        (lambda e: e.tool_call(None), "missing 'name'"),
        (lambda e: e.tool_call(7), "'name' must be a string"),
        (lambda e: e.tool_result(None, "out"), "id must be"),
        (lambda e: e.tool_result("c1", object()), "must be JSON data"),
        (lambda e: e.task("../../etc", status="done"), "bad task id"),
        (lambda e: e.task("t1", status="finished"), "unknown task status"),
        (lambda e: e.task("t1", progress="half"), "'progress' must be a number"),
        (lambda e: e.task("t1", files="a.py"), "'files' must be a list of strings"),
        (lambda e: e.fact("", "text"), "key must be a non-empty string"),
        (lambda e: e.fact("k", "  "), "text must be a non-empty string"),
        (lambda e: e.fact("k", "text", pinned="yes"), "'pinned' must be a boolean"),
        (lambda e: e.usage("lots"), "context_tokens must be an int"),
        (lambda e: e.usage(-5), "non-negative"),
        (lambda e: e.event("a line"), "an event is a dict"),
        (lambda e: e.event({"type": "checkpoint", "state": {}}), "Engine.checkpoint"),
        (lambda e: e.event({"type": "teleport"}), "unknown event type"),
        (lambda e: e.event({"text": "no type"}), "needs a string 'type'"),
        (lambda e: e.checkpoint({"when": {1, 2}}), "must be JSON data"),
        (lambda e: e.subscribe("print"), "subscribe takes a callable"),
        (lambda e: e.done(42), "summary must be a string"),
    ],
)
def test_bad_events_are_refused_at_the_call_with_the_reason(project: Path, call, reason: str) -> None:
    eng = Engine.open(OBJECTIVE, window=4000)
    before = len(ledger(project))
    with pytest.raises(EventError, match=re.escape(reason)) as err:
        call(eng)
    assert isinstance(err.value, ValueError) and isinstance(err.value, AetherError)
    assert len(ledger(project)) == before  # nothing recorded
    eng.message("still working")  # the engine goes on
    eng.close()


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"objective": "", "progress": ["a"]}, "objective is empty"),
        ({"objective": "x", "progress": [1, 2]}, "progress is not a list of strings"),
        ({"objective": "x"}, "no progress and no next_actions"),
        (["not", "an", "object"], "checkpoint state is not an object"),
        ({"objective": "x", "progress": ["y" * 40_000]}, "oversized"),
    ],
)
def test_a_state_that_fails_validation_gives_a_rules_checkpoint_with_the_reason(
    project: Path, state: object, reason: str
) -> None:
    eng = Engine.open(OBJECTIVE, window=8000)
    eng.tool_call("read_file", {"path": "a.py"}, id="c1")
    eng.tool_result("c1", "print(1)")
    ck = eng.checkpoint(state)  # type: ignore[arg-type]
    assert ck["distiller"] == "rules" and reason in ck["distiller_note"]
    assert ck["trigger"] == "agent"
    eng.close()


@pytest.mark.parametrize(
    ("kwargs", "error", "reason"),
    [
        ({"window": "big"}, SettingError, "--context-window: expected int"),
        ({"max_steps": 2.5}, SettingError, "--max-steps: expected int"),
        ({"checkpoint_on_error": 1}, SettingError, "--checkpoint-on-error: expected bool"),
        ({"constraints": "be nice"}, SettingError, "--constraint: expected a list of strings"),
        ({"max_restarts": 3}, SettingError, "applies to a supervised agent process"),
        ({"windwo": 4000}, SettingError, "unknown setting 'windwo'"),
        ({"soft_at": 2.0}, UsageError, "--soft-at must be a fraction"),
        ({"window": 100}, UsageError, "--context-window must be at least 256"),
        ({"memory_dir": 42}, SettingError, "memory_dir must be a path"),
    ],
)
def test_bad_settings_are_refused_like_flags_before_anything_is_written(
    project: Path, kwargs: dict, error: type[Exception], reason: str
) -> None:
    with pytest.raises(error, match=re.escape(reason)):
        Engine.open(OBJECTIVE, **kwargs)
    assert not (project / ".memory").exists()


def test_an_empty_objective_is_refused(project: Path) -> None:
    with pytest.raises(SettingError, match="needs an objective"):
        Engine.open("  ")


@pytest.mark.parametrize(
    ("argv", "kwargs", "reason"),
    [
        ("python agent.py", {}, "argv must be a list of strings"),
        ([], {}, "non-empty list of strings"),
        (["python", 3], {}, "non-empty list of strings"),
        (["python", "agent.py"], {"max_steps": "3"}, "--max-steps: expected int"),
        (["python", "agent.py"], {"context_overhead": -1}, "--context-overhead: must be at least 0"),
        (["python", "agent.py"], {"teleport": True}, "unknown setting 'teleport'"),
    ],
)
def test_run_refuses_bad_arguments_before_anything_is_written(
    project: Path, argv: object, kwargs: dict, reason: str
) -> None:
    with pytest.raises(SettingError, match=re.escape(reason)):
        aether_cli.run(argv, **kwargs)  # type: ignore[arg-type]
    assert not (project / ".memory").exists()


def test_a_folder_a_live_run_holds_is_refused_with_the_holder(project: Path) -> None:
    cmd = [sys.executable, "-m", "aether_cli", "run", "--format", "text", "--", sys.executable, "-c",
           "import time; print('working', flush=True); time.sleep(60)"]  # fmt: skip
    live = subprocess.Popen(cmd, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        store = MemoryStore(project / ".memory")
        deadline = time.monotonic() + 30
        while store.holder() is None:
            assert live.poll() is None and time.monotonic() < deadline, "aether run did not take the lock"
            time.sleep(0.05)
        with pytest.raises(LockedError, match=f"pid {live.pid}"):
            Engine.open(OBJECTIVE, window=4000)
        with pytest.raises(LockedError, match="is running now"):
            Engine.resume()
    finally:
        live.terminate()
        live.wait(30)


def test_the_engine_holds_the_lock_like_a_run(project: Path) -> None:
    eng = Engine.open(OBJECTIVE, window=4000)
    store = MemoryStore(project / ".memory")
    assert commands.status(store)["state"] == "running"
    with pytest.raises(LockedError):
        Engine.open(OBJECTIVE, window=4000)
    # `aether checkpoint` from another terminal reaches the engine.
    commands.request_checkpoint(store)
    assert eng.should_checkpoint() and eng.wanted == "manual"
    assert eng.checkpoint()["trigger"] == "manual"
    eng.close()
    assert store.holder() is None
    Engine.open(OBJECTIVE, window=4000).close()


def test_close_checkpoints_unsaved_work_and_resume_carries_on(project: Path) -> None:
    with Engine.open(OBJECTIVE, window=4000) as eng:
        eng.task("a", status="in_progress", title="Part A", next_action="read src/b.py")
        state = {"objective": OBJECTIVE, "progress": ["read a"], "next_actions": ["read src/b.py"]}
        first = eng.checkpoint(state)
        eng.tool_call("read_file", {"path": "src/b.py"}, id="b")
        eng.tool_result("b", "b = 1")
        session = eng.session_id
    last = checkpoints(project)[-1]
    assert last["trigger"] == "interrupt" and last["parent"] == first["id"]
    assert orjson.loads((project / ".memory" / "session_continuity.json").read_bytes())["status"] == "stopped"

    eng = Engine.resume()
    assert (eng.session_id, eng.episode) == (session, 3)
    assert last["id"] in eng.context() and "Part A" in eng.context()
    eng.close()
    older = Engine.resume(first["id"][:11])  # a unique prefix, as `aether resume` takes
    assert older.last_checkpoint is not None and older.last_checkpoint["id"] == first["id"]
    older.close()


def test_an_exception_in_the_loop_leaves_a_crash_checkpoint_and_goes_on_up(project: Path) -> None:
    with pytest.raises(KeyError), Engine.open(OBJECTIVE, window=4000) as eng:
        eng.tool_call("read_file", {"path": "src/a.py"}, id="a")
        raise KeyError("missing")
    ck = checkpoints(project)[-1]
    assert ck["trigger"] == "crash" and "KeyError" in ck["distiller_note"]
    assert "src/a.py" in orjson.dumps(ck["state"]["interrupted_calls"]).decode()  # never got its result
    cont = orjson.loads((project / ".memory" / "session_continuity.json").read_bytes())
    assert cont["status"] == "crashed"
    assert MemoryStore(project / ".memory").holder() is None
    with pytest.raises(EventError, match="session is crashed"):
        eng.message("too late")


DIES = """
import os, sys
from aether_cli import Engine
eng = Engine.open("Read every file of the project", window=4000)
eng.checkpoint({"objective": "x", "progress": ["one"], "next_actions": ["read src/b.py"]})
eng.task("b", status="in_progress", title="Read b", next_action="finish b")
eng.tool_call("read_file", {"path": "src/b.py"}, id="b")
eng.tool_result("b", "b = 1")
os._exit(9)  # dies: no close, no checkpoint of this episode
"""


def test_resume_after_the_process_died_recovers_its_last_episode_from_the_ledger(project: Path) -> None:
    r = subprocess.run([sys.executable, "-c", DIES], cwd=project, capture_output=True, text=True, timeout=60)
    assert r.returncode == 9, r.stderr
    notes: list[str] = []
    eng = Engine.resume(on_event=lambda e: notes.append(e.data.get("text", "")))
    assert any("recovered" in n for n in notes)
    recovered = checkpoints(project)[-1]
    assert recovered["trigger"] == "crash" and "src/b.py" in recovered["state"]["files_read"]
    assert recovered["id"] in eng.context()
    task = orjson.loads((project / ".memory" / "task_states" / "task_b_state.json").read_bytes())
    assert task["status"] == "in_progress"
    eng.close()
