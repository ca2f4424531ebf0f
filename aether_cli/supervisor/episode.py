"""One episode of the agent, as an explicit state machine.

An episode starts with a launched (or rehydrated) child and ends with an
`EpisodeEnd` saying what happened: it finished, crashed, was interrupted or
capped, or wants a relaunch (or an in-place rehydrate) after a checkpoint.

    RUNNING ──want──► REQUESTED (checkpoint_request sent, waiting for the answer)
       │                 │ answer / timeout / emergency
       │                 ▼
       ├──want──► SAFE_POINT (no request: wait until no tool call is in flight)
       │                 │ settled / --tool-grace        │ settled, Claude with the agent handoff
       │                 ▼                               ▼
       │                 │                           HANDOFF (turn cut, handoff asked; see
       │                 │                                    claude_handoff) ── answer / timeout ──┐
       │                 ▼                                                                         ▼
       └──done──► STOPPING (stop sent, or stdin closed) ──► SIGTERM ──► SIGKILL ◄──────────────────┘
    any state ──Ctrl-C──► INTERRUPTING (signal forwarded) ──► SIGTERM ──► SIGKILL

Inputs come from outside: `take` gets what the readers queued (events with
their token counts, stderr lines, end of output), `advance(now)` moves the
machine on at time `now` (from an injected clock) and notes the child's exit,
`verdict` judges the ending. Which checkpoint is wanted is decided by
`budget.Triggers`. The episode knows nothing of threads, queues, prompts or
checkpoint writing, so it is driven in tests with a fake child and a fake clock.
"""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from aether_cli import protocol as P
from aether_cli.adapters.base import Compaction, Outcome, StreamStarted
from aether_cli.budget import SOFT, Budget, Triggers
from aether_cli.distill import HandoffResult
from aether_cli.episode_log import EpisodeLog
from aether_cli.launcher import exit_code_of
from aether_cli.redact import redact_text
from aether_cli.reporter import Reporter
from aether_cli.settings import Settings
from aether_cli.supervisor.claude_handoff import ClaudeHandoff
from aether_cli.supervisor.ends import EpisodeEnd, judge_failure
from aether_cli.supervisor.redo import RedoMeter
from aether_cli.supervisor.rollout_follow import RolloutFollower
from aether_cli.supervisor.run_state import AgentFacts, Signals, utc_now
from aether_cli.supervisor.stream_position import StreamPosition
from aether_cli.tokens import estimate_bytes

# How often the manual checkpoint request file is looked at: a file check per
# event would be waste; a few per second is plenty.
REQUEST_POLL = 0.1
# An agent checkpoint followed by more than this many events is stale.
STALE_AFTER_EVENTS = 3
# The last stderr lines an episode keeps, for the notice of a crash.
STDERR_TAIL_LINES = 5


class Phase(Enum):
    """Where the episode's stop stands; the value is what the heartbeat shows."""

    RUNNING = "run"
    REQUESTED = "requested"
    SAFE_POINT = "settling"
    HANDOFF = "handoff"
    STOPPING = "stopping"
    INTERRUPTING = "interrupting"


class ChildLike(Protocol):
    """What an episode needs of the agent process (a `launcher.Child`, or a fake in tests)."""

    @property
    def pid(self) -> int: ...
    @property
    def stdin_closed(self) -> bool: ...
    def send(self, data: bytes) -> None: ...
    def close_stdin(self) -> None: ...
    def signal_group(self, sig: int) -> bool: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float) -> int | None: ...


class EpisodeStore(Protocol):
    """What an episode asks of the memory store."""

    def take_checkpoint_request(self) -> bool: ...
    def valid_task_id(self, task_id: str) -> bool: ...


@dataclass
class Episode:
    """The state of one episode and the rules that move it on."""

    settings: Settings
    child: ChildLike
    gen: int
    number: int
    log: EpisodeLog
    budget: Budget
    store: EpisodeStore
    ui: Reporter
    record: Callable[..., None]
    agent: AgentFacts
    signals: Signals
    window: Callable[[], int]
    run_started: float = 0.0
    protocol_format: bool = True  # the format is aether's protocol (else an adapter's events)
    safe_point: str = "calls"  # see stream_position.SAFE_POINTS
    meter: RedoMeter | None = None
    follower: RolloutFollower | None = None  # Codex: its rollout file's context figures
    # Claude Code reading stream-json on stdin: asked for its own handoff at the safe point.
    handoff: ClaudeHandoff | None = None
    handoff_result: HandoffResult | None = None
    position: StreamPosition = field(init=False)
    speaks_protocol: bool = False
    can_rehydrate: bool = False
    triggers: Triggers = field(init=False)
    phase: Phase = Phase.RUNNING
    trigger: str = ""
    note: str = ""
    capped: str = ""
    deadline: float = 0.0
    escalate_at: float = 0.0
    next_signal: int | None = None
    forwarded: int = 0
    request_mark: int = 0
    last_request_poll: float = float("-inf")
    agent_checkpoints: int = 0
    events_at_agent_checkpoint: int = 0
    dirty_tasks: dict[str, str] = field(default_factory=dict)
    warnings: int = 0
    compactions: int = 0
    outcome: Outcome | None = None
    eof: bool = False
    err_eof: bool = False
    # The child's last stderr lines (kept even with --quiet): a crash's notice quotes them.
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))
    status: int | None = None
    exited_at: float | None = None
    _last_intent: str = ""

    def __post_init__(self) -> None:
        s = self.settings
        self.triggers = Triggers(
            on_task_done=s.checkpoint_on_task_done,
            on_error=s.checkpoint_on_error,
            on_agent=s.checkpoint_on_agent,
        )
        self.position = StreamPosition(self.safe_point)
        if self.agent.hello_child is self.child:
            # Rehydrated in place: the same process, which already said hello.
            self.speaks_protocol, self.can_rehydrate = True, self.agent.hello_rehydrate

    # ------------------------------------------------------------ inputs

    def take(self, kind: str, payload: Any, *, show: bool = True) -> None:
        """One item the readers queued for this child."""
        if kind == "events":
            self.position.output()
            self.on_events(*payload)
        elif kind == "stderr":
            self.record("stderr", text=payload)
            if payload.strip():
                self.stderr_tail.append(payload)
            if show:
                self.ui.stderr(payload)
        elif kind == "eof":
            self.eof = True
        elif kind == "stderr-eof":
            self.err_eof = True

    def on_events(self, events: list[P.Event], tokens: list[int] | Future[list[int]], dropped: int) -> None:
        """The events of one stdout line with their token counts, and the bytes it lost."""
        if isinstance(tokens, Future):
            # Lines are handled in the order they came; a long one waits for its count.
            tokens = tokens.result()
        for i, (ev, n) in enumerate(zip(events, tokens, strict=True)):
            self.on_event(ev, n, dropped if i == 0 else 0)

    def on_event(self, ev: P.Event, counted: int, dropped: int = 0) -> None:
        """One event of the live child; `counted` is its text's tokens."""
        # The tokens it cost, as the budget counts them: `aether report` adds them up.
        tokens = counted + (estimate_bytes(dropped) if dropped else 0)
        rec: dict[str, Any] = {"event": ev.raw, "tokens": tokens}
        if dropped:
            rec["dropped_bytes"] = dropped
        if isinstance(ev, P.Invalid):
            rec["warning"] = ev.reason
            self.warnings += 1
        self.record("event", **rec)
        if isinstance(ev, P.Invalid):
            self.ui.notice(
                f"agent sent a malformed {ev.raw.get('type')} event ({ev.reason}); counted as text", "warn"
            )
            ev = P.Text({"type": "text", "text": ev.text}, text=ev.text)
        elif self.protocol_format and not isinstance(ev, P.Text | P.Unknown):
            self.speaks_protocol = True
        self._learn(ev)
        if isinstance(ev, P.TaskUpdate) and not self.store.valid_task_id(ev.id):
            self.record("warning", text=f"refused task id {redact_text(ev.id)[:80]!r}")
            self.ui.notice(
                f"refused task id {redact_text(ev.id)[:80]!r}: ids are letters, digits, _ - . (max 64)",
                "warn",
            )
            return
        self._measure(ev)
        self.log.add(ev)
        if self.position.note(ev, calls_open=bool(self.log.open_calls)) and self.follower is not None:
            self.follower.step_completed()
        if self.phase is Phase.HANDOFF and self.handoff is not None:
            self.handoff.event(ev)
            if self.handoff.cut:
                # A call Claude announced before its turn was cut may have started (the
                # interrupt takes a moment): only one announced after it never ran.
                self.log.mark_stopping()
        self.ui.event(ev)
        self._count(ev, tokens)

    def _learn(self, ev: P.Event) -> None:
        """What an event tells about the agent itself (its stream, window, compactions, verdict)."""
        if isinstance(ev, StreamStarted):
            self.agent.stream_session = ev.session_id or self.agent.stream_session
            if self.follower is not None and ev.session_id:
                self.follower.start(ev.session_id)
                w = self.follower.watcher
                self.record("rollout", thread=ev.session_id, home=str(w.home) if w else None)
        elif isinstance(ev, Compaction):
            self.compactions += 1
            self.agent.compactions += 1
            sizes = f" ({ev.pre_tokens} → {ev.post_tokens} tokens)" if ev.pre_tokens else ""
            self.ui.notice(f"the agent compacted its own context{sizes}", "warn")
        elif isinstance(ev, Outcome):
            self.outcome = ev
        if isinstance(ev, P.Hello):
            if ev.context_window and ev.context_window >= 256:
                self.agent.window = ev.context_window
                self.budget.window = self.window()
            self.can_rehydrate = "rehydrate" in ev.capabilities
            self.agent.hello_child, self.agent.hello_rehydrate = self.child, self.can_rehydrate
        if isinstance(ev, P.CheckpointEvent):
            self.agent_checkpoints += 1
            self.events_at_agent_checkpoint = self.log.events + 1

    def _measure(self, ev: P.Event) -> None:
        """Steps started and finished, for the redo figures (before the log pops the call)."""
        if self.meter is None:
            return
        if isinstance(ev, P.ToolCall):
            self.meter.call(ev.name, ev.input)
        elif isinstance(ev, P.ToolResult) and not ev.is_error:
            call = self.log.open_calls.get(ev.id)
            if call is not None:
                self.meter.finished(call.name, call.input)

    def _count(self, ev: P.Event, tokens: int) -> None:
        """The budget's side of an accepted event, and the checkpoint it may call for."""
        if tokens:
            self.budget.add(tokens)
        if isinstance(ev, P.Usage):
            self.budget.report(ev.context_tokens)
        if isinstance(ev, P.TaskUpdate):
            # Task files are written in batches (heartbeat, checkpoint, episode end): an fsync
            # per event would let a chatty agent outrun us. The ledger already holds every
            # update, and recovery replays it, so a kill loses nothing.
            self.dirty_tasks[ev.id] = utc_now()
        self.triggers.event(ev, self.budget)
        self._thresholds()

    def _thresholds(self) -> None:
        """Tell the agent and the triggers about each threshold the budget just crossed."""
        b = self.budget
        for level in b.crossed():
            self._command(P.cmd_budget(used=b.used, window=b.window, level=level))
            self.record("command", command="budget", level=level, used=b.used)
            self.triggers.crossed(level)
            if level == SOFT:
                self.ui.notice(f"context at {b.fraction:.0%}: soft threshold", "info")
        self.ui.usage(episode=self.number, used=b.used, window=b.window, reported=b.reported)

    # ------------------------------------------------------------ moving on

    def advance(self, now: float) -> EpisodeEnd | None:
        """Move the machine on at time `now`; an ending that needs no exit (in place), else None."""
        self.position.tick(now)
        if self.follower is not None and (usage := self.follower.poll(now)) is not None:
            self._report_context(usage.context_tokens, usage.window)
        self._forward_signal(now)
        if self.phase is Phase.RUNNING:
            self._running(now)
        elif self.phase is Phase.REQUESTED:
            answered = self.agent_checkpoints > self.request_mark
            if answered and self.can_rehydrate and not self.capped:
                return EpisodeEnd("inplace", trigger=self.trigger)
            self._requested(now, answered)
        if self.phase is Phase.SAFE_POINT:
            self._at_safe_point(now)
        if self.phase is Phase.HANDOFF:
            self._handing_off(now)
        if self.phase is Phase.RUNNING and self.position.turn_ended and self.handoff is not None:
            # Claude in input mode waits for another message after its turn: none will come.
            self.position.turn_ended = False
            self.child.close_stdin()
            self.record("command", command="close_stdin", reason="turn ended")
        self._escalate(now)
        self._note_exit(now)
        return None

    def _report_context(self, tokens: int, window: int | None) -> None:
        """The agent's own figure of its context, from outside its stream (Codex's rollout)."""
        if window and window >= 256 and window != self.agent.window:
            self.agent.window = window
            self.budget.window = self.window()
        self.budget.report(tokens)
        self.record("usage", context_tokens=tokens, window=window, source="rollout")
        self._thresholds()

    def _forward_signal(self, now: float) -> None:
        """The user's signal goes to the child's group once; then the stop escalates."""
        signum = self.signals.signum
        if not signum or self.phase is Phase.INTERRUPTING:
            return
        s = self.settings
        self.forwarded = signum
        self.log.mark_stopping()
        self.child.signal_group(signum)
        self.record("signal", signum=signum)
        self.phase, self.escalate_at, self.next_signal = (
            Phase.INTERRUPTING,
            now + s.stop_grace,
            signal.SIGTERM,
        )
        if signum == signal.SIGTERM:
            # The child already has its SIGTERM: the next step is SIGKILL.
            self.escalate_at, self.next_signal = now + s.term_grace, signal.SIGKILL

    def _running(self, now: float) -> None:
        s = self.settings
        if now - self.last_request_poll >= REQUEST_POLL:
            self.last_request_poll = now
            if self.store.take_checkpoint_request():
                self.triggers.manual()
        if self.log.done is not None:
            self.triggers.done()
        if s.max_duration is not None and now - self.run_started >= s.max_duration:
            self.triggers.capped()
            self.capped = f"stopped after --max-duration {s.max_duration:g}s"
        want = self.triggers.want
        if want is None:
            return
        self.trigger = want.trigger
        if want.trigger == "done":
            self._stop(now, now + s.stop_grace)
        elif want.urgent or not self.speaks_protocol or want.trigger == "agent":
            # An agent that never spoke the protocol cannot answer a request; one that just
            # sent its checkpoint needs none. Stop at a safe point: a tool call in flight
            # finishes first, so its result is in the checkpoint instead of half done.
            self.phase, self.deadline = Phase.SAFE_POINT, now + s.tool_grace
        else:
            self.request_mark = self.agent_checkpoints
            deadline_ms = int(s.checkpoint_timeout * 1000)
            self._command(P.cmd_checkpoint_request(reason=want.trigger, deadline_ms=deadline_ms))
            self.record("command", command="checkpoint_request", reason=want.trigger)
            self.phase, self.deadline = Phase.REQUESTED, now + s.checkpoint_timeout

    def _requested(self, now: float, answered: bool) -> None:
        # An emergency while waiting ends the wait, but an answer that already came is
        # still the agent's quiesced state: use it.
        emergency = self.triggers.urgent and not answered
        if not (answered or emergency or now >= self.deadline):
            return
        if emergency:
            self.trigger = "emergency"
            self.note = "agent did not answer before the emergency threshold"
        elif not answered:
            self.note = (
                f"agent did not answer checkpoint_request within {self.settings.checkpoint_timeout:g}s"
            )
        self._stop(now, now + self.settings.stop_grace)

    def _settled(self, now: float) -> bool:
        """Whether the agent is at a safe point to stop (see stream_position)."""
        follower = self.follower
        return self.position.settled(
            now,
            calls_open=bool(self.log.open_calls),
            urgent=self.triggers.urgent,
            recorded=lambda: follower is None or follower.recorded(now),
        )

    def _at_safe_point(self, now: float) -> None:
        open_calls = self.log.open_calls
        settled = self._settled(now)
        if not settled and now < self.deadline:
            return
        grace = self.settings.tool_grace
        if open_calls:
            self.note = (
                f"stopped with {len(open_calls)} tool call(s) still running after "
                f"--tool-grace {grace:g}s: marked interrupted"
            )
            self.record("settle_timeout", calls=list(open_calls))
        elif not settled:
            self.note = f"stopped mid-step after --tool-grace {grace:g}s: the agent was still answering"
            self.record("settle_timeout", calls=[])
        if settled and self._may_hand_off():
            assert self.handoff is not None
            self.phase = Phase.HANDOFF
            self._last_intent = self.log.last_assistant
            self.handoff.start(now, turn_running=self.position.turn_open)
            if self.handoff.cut:
                self.log.mark_stopping()
            self.record("command", command="handoff", turn_running=self.position.turn_open)
            return
        # An agent that cannot read the stop command gets SIGTERM at once; so does Claude
        # (input mode) stopped without a handoff: a closed stdin would let it finish its turn.
        at_once = self.child.stdin_closed or self.handoff is not None
        self._stop(now, now if at_once else now + self.settings.stop_grace)

    def _may_hand_off(self) -> bool:
        """Ask the agent for its handoff: it can be asked, and there is room and reason to."""
        return (
            self.handoff is not None
            and not self.triggers.urgent  # near overflow, a handoff turn could overflow the context
            and not self.capped
            and self.trigger != "done"
            and self.status is None
        )

    def _handing_off(self, now: float) -> None:
        """The handoff exchange: once it is over (answered or not), close stdin and stop."""
        assert self.handoff is not None
        if self.status is not None or self.child.poll() is not None:
            self.handoff.fail(now, "the agent exited before it answered")
        self.handoff.advance(now)
        result = self.handoff.result
        if result is None:
            return
        self.handoff_result = result
        if result.state is not None:
            # The answer is the handoff, not the agent's last intent.
            self.log.last_assistant = self._last_intent
        self.record(
            "handoff", ok=result.state is not None, reason=result.reason,
            seconds=result.seconds, tokens=result.tokens,
        )
        if result.state is None:
            self.ui.notice(f"the agent's handoff failed ({result.reason}): rules stand in", "warn")
        self._stop(now, now + self.settings.stop_grace)

    def _stop(self, now: float, term_at: float) -> None:
        """Send the stop command; SIGTERM follows at `term_at` if the child is still there."""
        self.phase, self.escalate_at, self.next_signal = Phase.STOPPING, term_at, signal.SIGTERM
        # A call the agent announces from now on, in its dying stream, never ran: it is the
        # next action, not an interrupted one.
        self.log.mark_stopping()
        if self.handoff is not None:
            # Claude in input mode ends at the end of its stdin.
            self.child.close_stdin()
        self._command(P.cmd_stop(reason=self.trigger or "stop"))
        self.record("command", command="stop", reason=self.trigger)

    def _command(self, line: bytes) -> None:
        """A protocol command for the agent; a stdin that carries another format gets none."""
        if self.protocol_format:
            self.child.send(line)

    def _escalate(self, now: float) -> None:
        if self.phase is Phase.INTERRUPTING and self.signals.force and self.next_signal is not None:
            # A second Ctrl-C: the user wants out now, without the grace periods.
            self.escalate_at, self.next_signal = now, signal.SIGKILL
        if self.phase not in (Phase.STOPPING, Phase.INTERRUPTING) or self.status is not None:
            return
        if self.next_signal is None or now < self.escalate_at:
            return
        sig = self.next_signal
        self.record("escalate", signal=signal.Signals(sig).name)
        self.child.signal_group(sig)
        if sig == signal.SIGTERM:
            self.escalate_at, self.next_signal = now + self.settings.term_grace, signal.SIGKILL
        else:
            self.next_signal = None

    def _note_exit(self, now: float) -> None:
        if self.status is not None:
            return
        status = self.child.poll()
        if status is None and self.eof:
            # Output closed: the exit is a moment away. Waiting on the process here, not
            # on the idle queue, saves up to a tick per relaunch.
            status = self.child.wait(0.02)
        if status is not None:
            self.status, self.exited_at = status, now

    @property
    def racing(self) -> bool:
        """A stop waits for the agent's own record of a completed step (Codex's rollout file),
        and the agent's next step may start moments later: the machine should advance often."""
        return self.phase is Phase.SAFE_POINT and self.follower is not None and self.position.at_boundary

    # ------------------------------------------------------------ the ending

    @property
    def agent_state_fresh(self) -> bool:
        """The agent's checkpoint is its state at the moment it sent it; work it did after that
        (more than a closing remark or two) would be lost, so rules win then."""
        return self.log.events - self.events_at_agent_checkpoint <= STALE_AFTER_EVENTS

    def verdict(self) -> EpisodeEnd:
        """What the child's exit means, once it exited and its output is read."""
        status = self.status
        assert status is not None, "verdict before the child exited"
        self.record("exit", status=status, code=exit_code_of(status))
        if self.phase is Phase.INTERRUPTING:
            return EpisodeEnd("interrupted", signum=self.forwarded, status=status)
        if self.log.done is not None:
            return EpisodeEnd("finished", status=status)
        if self.phase in (Phase.RUNNING, Phase.SAFE_POINT):
            failure = judge_failure(self.outcome, self.child.poll() or 1)
            if failure is not None:
                return failure
        # An exit we did not ask for is judged by its status, unless the agent handed
        # over its state first (answered the request, then exited).
        answered = self.agent_checkpoints > self.request_mark
        stopping = (Phase.STOPPING, Phase.SAFE_POINT, Phase.HANDOFF)
        if self.phase in stopping or (self.phase is Phase.REQUESTED and answered):
            if self.capped:
                return EpisodeEnd("capped", note=self.capped, status=status)
            # An answer that came late (after the stop) is still the agent's own state.
            return EpisodeEnd(
                "relaunch", trigger=self.trigger, status=status, note="" if answered else self.note
            )
        if status == 0:
            return EpisodeEnd("finished", status=status)
        return EpisodeEnd("crashed", status=status)

    def figures(self) -> dict[str, Any]:
        """The episode's side of the heartbeat."""
        b = self.budget
        return {
            "child_pid": self.child.pid,
            "state": self.phase.value,
            "used": b.used,
            "window": b.window,
            "reported": b.reported,
            "steps": b.steps,
            "events": self.log.events,
            "protocol_warnings": self.warnings,
            "compactions": self.compactions,
        }
