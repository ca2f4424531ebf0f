"""One episode driven through its state machine: a fake child, an injected clock,
scripted agent events, no sleeping. Covers every way an episode stops."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from aether_cli import protocol as P
from aether_cli.adapters.base import Outcome, StreamStarted
from aether_cli.budget import Budget
from aether_cli.codex_rollout import RolloutWatcher
from aether_cli.episode_log import EpisodeLog
from aether_cli.reporter import NullReporter
from aether_cli.settings import Settings
from aether_cli.store import MemoryStore
from aether_cli.supervisor.claude_handoff import ClaudeHandoff
from aether_cli.supervisor.episode import Episode, Phase
from aether_cli.supervisor.rollout_follow import RolloutFollower
from aether_cli.supervisor.run_state import AgentFacts, Signals

WINDOW = 1000
SETTINGS = Settings(
    command=("agent",),
    objective="o",
    context_window=WINDOW,
    checkpoint_timeout=10.0,
    tool_grace=30.0,
    stop_grace=3.0,
    term_grace=3.0,
)


@dataclass
class FakeChild:
    """Records what the episode sends and signals; exits when told to."""

    pid: int = 4242
    stdin_closed: bool = False
    sent: list[dict[str, Any]] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)
    status: int | None = None

    def send(self, data: bytes) -> None:
        self.sent.append(orjson.loads(data))

    def close_stdin(self) -> None:
        self.stdin_closed = True

    def signal_group(self, sig: int) -> bool:
        self.signals.append(sig)
        return True

    def poll(self) -> int | None:
        return self.status

    def wait(self, timeout: float) -> int | None:
        return self.status

    def commands(self) -> list[str]:
        return [c["type"] for c in self.sent]


@dataclass
class Harness:
    ep: Episode
    child: FakeChild
    records: list[tuple[str, dict[str, Any]]]
    signals: Signals
    now: float = 0.0

    def say(self, *wire: dict[str, Any], tokens: int = 0) -> None:
        """The agent prints one line holding these protocol events (each `tokens` long)."""
        events = [P.decode_obj(w, orjson.dumps(w).decode()) for w in wire]
        self.ep.take("events", (events, [tokens] * len(events), 0))

    def tick(self, seconds: float = 0.1) -> Any:
        self.now += seconds
        return self.ep.advance(self.now)

    def exit(self, status: int) -> Any:
        """The child exits and its output closes; the episode's verdict."""
        self.child.status = status
        self.ep.take("eof", None)
        assert self.tick() is None
        assert self.ep.status == status
        return self.ep.verdict()

    def kinds(self) -> list[str]:
        return [k for k, _ in self.records]

    def commands(self) -> list[str]:
        """The commands the episode gave (sent on a protocol stdin, recorded for every agent)."""
        return [f["command"] for k, f in self.records if k == "command"]

    def stopped(self) -> str | None:
        """The reason of the last stop command, None if there was none."""
        stops = [f.get("reason") for k, f in self.records if k == "command" and f["command"] == "stop"]
        return stops[-1] if stops else None


def make(
    tmp_path: Path,
    settings: Settings = SETTINGS,
    *,
    protocol_format: bool = True,
    safe_point: str = "calls",
    follower: RolloutFollower | None = None,
    handoff: Callable[[FakeChild], ClaudeHandoff] | None = None,
) -> Harness:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    child = FakeChild()
    records: list[tuple[str, dict[str, Any]]] = []
    signals = Signals()
    budget = Budget(window=WINDOW, soft_at=0.6, checkpoint_at=0.8, emergency_at=0.95)
    ep = Episode(
        settings=settings,
        child=child,
        gen=1,
        number=1,
        log=EpisodeLog(objective="o"),
        budget=budget,
        store=store,
        ui=NullReporter(),
        record=lambda kind, **f: records.append((kind, f)),
        agent=AgentFacts(),
        signals=signals,
        window=lambda: WINDOW,
        protocol_format=protocol_format,
        safe_point=safe_point,
        follower=follower,
        handoff=handoff(child) if handoff is not None else None,
    )
    return Harness(ep, child, records, signals)


HELLO = {"type": "hello", "agent": "t", "capabilities": ["checkpoint"]}
HELLO_REHYDRATE = {"type": "hello", "agent": "t", "capabilities": ["checkpoint", "rehydrate"]}
STATE = {"objective": "o", "progress": ["step 1"], "next_actions": ["step 2"]}


def usage(tokens: int) -> dict[str, Any]:
    return {"type": "usage", "context_tokens": tokens}


def test_threshold_sends_a_checkpoint_request_and_the_answer_relaunches(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.say(HELLO)
    h.say(usage(700))
    h.tick()
    assert h.ep.phase is Phase.RUNNING and "checkpoint_request" not in h.child.commands()
    h.say(usage(820))
    budget = h.child.sent[-1]
    assert (budget["type"], budget["level"], budget["used"], budget["window"]) == (
        "budget",
        "checkpoint",
        820,
        WINDOW,
    )
    h.tick()
    assert h.ep.phase is Phase.REQUESTED
    assert h.child.sent[-1]["type"] == "checkpoint_request" and h.child.sent[-1]["reason"] == "budget"
    h.tick(5)
    assert h.ep.phase is Phase.REQUESTED, "still within --checkpoint-timeout"
    h.say({"type": "checkpoint", "state": STATE})
    h.tick()
    assert h.ep.phase is Phase.STOPPING and h.child.sent[-1] == {"type": "stop", "reason": "budget"}
    end = h.exit(0)
    assert (end.kind, end.trigger, end.note) == ("relaunch", "budget", "")
    assert h.ep.agent_state_fresh  # protocol
    assert h.child.signals == [], "it stopped when asked: no signal needed"


def test_an_agent_that_can_rehydrate_continues_in_place(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.say(HELLO_REHYDRATE)
    h.say(usage(900))
    h.tick()
    h.say({"type": "checkpoint", "state": STATE})
    end = h.tick()
    assert end is not None and (end.kind, end.trigger) == ("inplace", "budget")
    assert "stop" not in h.commands()


def test_an_unanswered_request_stops_the_agent_after_the_timeout(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.say(HELLO)
    h.say(usage(850))
    h.tick()
    h.tick(10.5)
    assert h.ep.phase is Phase.STOPPING
    end = h.exit(0)
    assert end.kind == "relaunch"
    assert end.note == "agent did not answer checkpoint_request within 10s"


def test_emergency_while_waiting_for_the_answer_stops_at_once(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.say(HELLO)
    h.say(usage(850))
    h.tick()
    assert h.ep.phase is Phase.REQUESTED
    h.say(usage(990))
    h.tick()
    assert h.ep.phase is Phase.STOPPING
    assert h.child.sent[-1] == {"type": "stop", "reason": "emergency"}
    end = h.exit(0)
    assert (end.kind, end.trigger) == ("relaunch", "emergency")
    assert end.note == "agent did not answer before the emergency threshold"


def test_threshold_waits_for_the_tool_call_in_flight(tmp_path: Path) -> None:
    h = make(tmp_path, protocol_format=False)  # an adapter's agent: it cannot answer a request
    h.say({"type": "tool_call", "id": "c1", "name": "Bash", "input": {"command": "make"}})
    h.say(usage(850))
    h.tick()
    assert h.ep.phase is Phase.SAFE_POINT
    h.tick(20)
    assert h.ep.phase is Phase.SAFE_POINT and "stop" not in h.commands(), "the call still runs"
    h.say({"type": "tool_result", "id": "c1", "output": "ok"})
    h.tick()
    # An adapter's agent reads no protocol on stdin: the stop is recorded, not sent.
    assert h.ep.phase is Phase.STOPPING and ("command", {"command": "stop", "reason": "budget"}) in h.records
    assert not h.child.sent
    end = h.exit(0)
    assert (end.kind, end.trigger, end.note) == ("relaunch", "budget", "")


def test_a_tool_call_past_the_grace_is_stopped_and_marked(tmp_path: Path) -> None:
    h = make(tmp_path, protocol_format=False)
    h.say({"type": "tool_call", "id": "c1", "name": "Bash", "input": {"command": "sleep 999"}})
    h.say(usage(850))
    h.tick()
    h.tick(30.5)
    assert h.ep.phase is Phase.STOPPING
    assert ("settle_timeout", {"calls": ["c1"]}) in h.records
    end = h.exit(0)
    assert end.kind == "relaunch" and "marked interrupted" in end.note


def test_an_agent_that_ignores_stop_gets_sigterm_then_sigkill(tmp_path: Path) -> None:
    h = make(tmp_path, protocol_format=False)
    h.say(usage(850))
    h.tick()
    assert h.ep.phase is Phase.STOPPING
    h.tick(2.9)
    assert h.child.signals == []
    h.tick(0.2)
    assert h.child.signals == [signal.SIGTERM]
    h.tick(3.1)
    assert h.child.signals == [signal.SIGTERM, signal.SIGKILL]
    h.tick(100)
    assert h.child.signals == [signal.SIGTERM, signal.SIGKILL], "SIGKILL is sent once"
    end = h.exit(-signal.SIGKILL)
    assert end.kind == "relaunch"


def test_a_crash_is_judged_by_the_exit_status(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.say(HELLO)
    h.tick()
    end = h.exit(3)
    assert (end.kind, end.status) == ("crashed", 3)
    assert ("exit", {"status": 3, "code": 3}) in h.records


def test_an_exit_0_without_done_is_finished(tmp_path: Path) -> None:
    h = make(tmp_path)
    assert h.exit(0).kind == "finished"


def test_the_agents_done_stops_it_and_finishes(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.say(HELLO)
    h.say({"type": "done", "summary": "all tests pass"})
    h.tick()
    assert h.ep.phase is Phase.STOPPING and h.child.sent[-1] == {"type": "stop", "reason": "done"}
    assert h.exit(0).kind == "finished"


def test_ctrl_c_is_forwarded_then_escalated(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.say(HELLO)
    h.signals.signum = signal.SIGINT
    h.tick()
    assert h.ep.phase is Phase.INTERRUPTING and h.child.signals == [signal.SIGINT]
    h.tick(3.1)
    assert h.child.signals == [signal.SIGINT, signal.SIGTERM]
    h.tick(3.1)
    assert h.child.signals == [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    end = h.exit(-signal.SIGKILL)
    assert (end.kind, end.signum) == ("interrupted", signal.SIGINT)


def test_a_second_ctrl_c_kills_at_once(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.signals.signum = signal.SIGINT
    h.tick()
    h.signals.force = True
    h.tick()
    assert h.child.signals == [signal.SIGINT, signal.SIGKILL]


def test_sigterm_to_aether_is_followed_by_sigkill_only(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.signals.signum = signal.SIGTERM
    h.tick()
    h.tick(3.1)
    assert h.child.signals == [signal.SIGTERM, signal.SIGKILL]


@pytest.mark.parametrize(
    ("reason", "kind", "trigger"),
    [
        ("prompt_too_long", "relaunch", "emergency"),
        ("error_max_turns", "relaunch", "steps"),
        ("error_during_execution", "crashed", ""),
    ],
)
def test_the_agents_own_failure_verdict(tmp_path: Path, reason: str, kind: str, trigger: str) -> None:
    h = make(tmp_path, protocol_format=False)
    h.ep.take("events", ([Outcome({}, ok=False, reason=reason, text="")], [0], 0))
    end = h.exit(0)
    assert (end.kind, end.trigger) == (kind, trigger)
    assert reason in end.note


def test_a_manual_request_file_asks_for_a_checkpoint(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.say(HELLO)
    MemoryStore(tmp_path / ".memory").request_checkpoint()
    h.tick()
    assert h.ep.phase is Phase.REQUESTED and h.child.sent[-1]["reason"] == "manual"


def test_max_duration_caps_the_run(tmp_path: Path) -> None:
    from dataclasses import replace

    h = make(tmp_path, replace(SETTINGS, max_duration=60.0), protocol_format=False)
    h.tick(61)
    assert h.ep.phase is Phase.STOPPING
    end = h.exit(0)
    assert end.kind == "capped" and "--max-duration 60s" in end.note


def test_a_refused_task_id_is_not_logged_as_a_task(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.say({"type": "task", "id": "../../etc/passwd", "status": "in_progress"})
    assert h.ep.log.tasks == {} and h.ep.dirty_tasks == {}
    assert h.kinds().count("warning") == 1


# ------------------------------------------------------------ step boundaries

TEXT = {"type": "message", "role": "assistant", "text": "Writing s8.txt"}
CALL = {"type": "tool_call", "id": "t8", "name": "Bash", "input": {"command": "echo 8 > s8.txt"}}
RESULT = {"type": "tool_result", "id": "t8", "output": ""}


def test_a_turn_based_cli_is_stopped_after_the_step_it_announced_has_run(tmp_path: Path) -> None:
    # Claude prints a turn's text and its tool_use as separate lines: the threshold came
    # with the text, so stopping there would kill the step before its command ran.
    h = make(tmp_path, protocol_format=False, safe_point="turns")
    h.say(usage(850), TEXT)
    h.tick()
    assert h.ep.phase is Phase.SAFE_POINT and "stop" not in h.commands()
    h.say(CALL)
    h.tick(5)
    assert "stop" not in h.commands(), "the announced step has not run yet"
    h.say(RESULT)
    h.tick()
    assert h.ep.phase is Phase.STOPPING and h.stopped() == "budget"
    end = h.exit(0)
    assert (end.kind, end.note) == ("relaunch", "")


def test_a_turn_that_ends_without_a_tool_call_is_a_safe_point(tmp_path: Path) -> None:
    h = make(tmp_path, protocol_format=False, safe_point="turns")
    h.say(usage(850), TEXT)
    h.tick()
    assert "stop" not in h.commands()
    h.ep.take("events", ([Outcome({}, ok=True, reason="success", text="")], [0], 0))
    h.tick()
    assert h.ep.phase is Phase.STOPPING


def test_an_emergency_does_not_wait_for_the_models_next_step(tmp_path: Path) -> None:
    h = make(tmp_path, protocol_format=False, safe_point="turns")
    h.say(usage(850), TEXT)
    h.tick()
    assert "stop" not in h.commands()
    h.say(usage(990))
    h.tick()
    assert h.ep.phase is Phase.STOPPING and h.stopped() == "budget"


def test_a_model_that_keeps_answering_is_stopped_after_the_grace(tmp_path: Path) -> None:
    h = make(tmp_path, protocol_format=False, safe_point="turns")
    h.say(usage(850), TEXT)
    h.tick()
    h.tick(29)
    assert h.ep.phase is Phase.SAFE_POINT
    h.tick(1.1)
    assert h.ep.phase is Phase.STOPPING
    assert ("settle_timeout", {"calls": []}) in h.records
    assert "stopped mid-step" in h.exit(0).note


def test_a_text_agent_is_stopped_after_two_quiet_seconds(tmp_path: Path) -> None:
    h = make(tmp_path, protocol_format=False, safe_point="quiet")
    h.say({"type": "text", "text": "working"}, tokens=850)
    h.tick()
    for _ in range(5):
        h.say({"type": "text", "text": "still working"}, tokens=1)
        h.tick(1.5)
        assert "stop" not in h.commands(), "output keeps coming"
    h.tick(1.0)
    assert h.ep.phase is Phase.SAFE_POINT
    h.tick(1.1)
    assert h.ep.phase is Phase.STOPPING


def test_a_usage_past_64_bits_is_a_malformed_line_not_a_crash(tmp_path: Path) -> None:
    h = make(tmp_path)
    h.ep.take(
        "events", ([P.decode_line('{"type": "usage", "context_tokens": 18446744073709551616}')], [5], 0)
    )
    assert h.ep.warnings == 1 and not h.ep.budget.reported
    assert h.ep.budget.used == 5, "counted as text, like other malformed lines"
    h.tick()
    assert h.ep.phase is Phase.RUNNING
    assert orjson.dumps(h.ep.figures())  # the heartbeat can be written


# ------------------------------------------------------------ Codex's rollout file

THREAD = "01a24645-38fe-7c11-989a-3fefb198cf84"


def rollout_line(context: int, window: int = 2000) -> bytes:
    info = {
        "last_token_usage": {"input_tokens": context, "output_tokens": 10},
        "model_context_window": window,
    }
    return orjson.dumps({"type": "event_msg", "payload": {"type": "token_count", "info": info}}) + b"\n"


def codex(tmp_path: Path) -> tuple[Harness, Path]:
    home = tmp_path / "codex_home"
    day = home / "sessions" / "2026" / "12" / "05"
    day.mkdir(parents=True)
    path = day / f"rollout-2026-12-05T12-54-31-{THREAD}.jsonl"
    path.write_bytes(b'{"type": "session_meta", "payload": {}}\n')
    follower = RolloutFollower(lambda tid: RolloutWatcher(home, tid, rescan_seconds=0))
    h = make(tmp_path, protocol_format=False, safe_point="turns", follower=follower)
    h.ep.take("events", ([StreamStarted({}, session_id=THREAD)], [0], 0))
    return h, path


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


def test_codexs_own_context_figure_replaces_the_count_and_crosses_the_threshold(tmp_path: Path) -> None:
    h, path = codex(tmp_path)
    h.tick()
    assert not h.ep.budget.reported
    append(path, rollout_line(850, window=2000))
    h.tick(0.3)
    assert h.ep.budget.reported and h.ep.budget.used == 850
    assert h.ep.budget.window == WINDOW, "the user's window (the harness's) stays"
    assert h.ep.phase is Phase.SAFE_POINT, "0.85 of the window: the checkpoint is wanted"
    assert ("usage", {"context_tokens": 850, "window": 2000, "source": "rollout"}) in h.records


def test_codex_is_stopped_only_once_the_completed_steps_output_is_in_its_thread(tmp_path: Path) -> None:
    h, path = codex(tmp_path)
    h.say({"type": "tool_call", "id": "c1", "name": "shell", "input": {"command": "echo 4 >> s"}})
    append(path, rollout_line(850))
    h.tick(0.3)
    assert h.ep.phase is Phase.SAFE_POINT
    assert not h.ep.racing, "mid-step: nothing to race for"
    h.say({"type": "tool_result", "id": "c1", "output": ""})
    h.tick(0.1)
    assert "stop" not in h.commands(), "Codex has not recorded the output yet"
    # Codex's next response may come ~30 ms after it records the step: the loop ticks fast now.
    assert h.ep.racing
    append(path, rollout_line(870))  # written a moment after item.completed
    h.tick(0.3)
    assert h.ep.phase is Phase.STOPPING and not h.ep.racing


def test_without_a_rollout_file_a_completed_step_waits_a_moment_then_stops(tmp_path: Path) -> None:
    h, path = codex(tmp_path)
    path.unlink()
    h.say({"type": "tool_call", "id": "c1", "name": "shell", "input": {"command": "ls"}}, tokens=850)
    h.tick()
    h.say({"type": "tool_result", "id": "c1", "output": ""})
    h.tick(0.1)
    assert h.ep.phase is Phase.SAFE_POINT
    h.tick(0.3)
    assert h.ep.phase is Phase.SAFE_POINT
    h.tick(0.3)
    assert h.ep.phase is Phase.STOPPING


def test_a_lying_rollout_file_cannot_crash_or_blow_the_budget(tmp_path: Path) -> None:
    h, path = codex(tmp_path)
    append(
        path, b"garbage\n" + rollout_line(2**62) + rollout_line(-5) + b'{"type": "event_msg", "payload": 7}\n'
    )
    h.tick(0.3)
    assert not h.ep.budget.reported and h.ep.phase is Phase.RUNNING
