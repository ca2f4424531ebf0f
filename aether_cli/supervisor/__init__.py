"""The episode cycle: launch, run an episode, checkpoint, relaunch, until done.

`Supervisor` decides what each episode's end means for the run (finished,
crashed and restarted after a back-off, interrupted, capped, or checkpointed
and relaunched, unless the overflow guard or --max-episodes stops it) and owns
the signal handlers. The session's state and doings live in `session.Session`;
one episode's stop logic in `episode.Episode`; checkpoint writing in
`checkpointing`; the continuity and heartbeat records in `run_state`; the child's
pipes in `streams`; the process in `launcher`. Time, sleeping, spawning and
output go through constructor seams, so tests drive the whole cycle without
waiting.

It knows nothing of Typer or Rich: output goes to a `Reporter`.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aether_cli import constants as C
from aether_cli import protocol as P
from aether_cli.event_stream import EventStream, StreamingReporter
from aether_cli.git_memory import MemoryCommits
from aether_cli.launcher import Child, backoff_delay, describe_status, exit_code_of, signal_name, spawn
from aether_cli.plan import ResumePlan, RunResult
from aether_cli.reporter import NullReporter, Reporter
from aether_cli.settings import Settings
from aether_cli.store import MemoryStore
from aether_cli.supervisor.ends import EpisodeEnd, cap_line
from aether_cli.supervisor.episode import Episode
from aether_cli.supervisor.run_state import Signals
from aether_cli.supervisor.session import Session
from aether_cli.tokens import TokenCounter, load_counter

__all__ = ["ResumePlan", "RunResult", "Supervisor"]

# An episode that crosses the checkpoint threshold within this many steps of
# its launch is an overflow: the prompt or first output is too big.
OVERFLOW_STEPS = 2
OVERFLOW_EVENTS = 8
OVERFLOW_LIMIT = 3
# Relaunch triggers an agent can loop on: a stalled episode is one of these without progress.
STALL_TRIGGERS = ("budget", "emergency", "steps")


class Supervisor:
    """Runs one session of an agent under a context budget."""

    def __init__(
        self,
        settings: Settings,
        store: MemoryStore,
        *,
        reporter: Reporter | None = None,
        counter: TokenCounter | None = None,
        clock: Callable[[], float] = time.monotonic,
        spawn_fn: Callable[..., Child] = spawn,
        environ: dict[str, str] | None = None,
        cwd: Path | None = None,
        sleep: Callable[[float], bool] | None = None,
        rng: random.Random | None = None,
        commits: MemoryCommits | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        # Opened before anything else: a file that cannot be written is an error before any start.
        stream = EventStream.open(settings.events) if settings.events else None
        self.ui: Reporter = reporter or NullReporter()
        if stream is not None:
            self.ui = StreamingReporter(self.ui, stream)
        self.clock = clock
        self.rng = rng or random.Random()
        self.signals = Signals()
        self.session = Session(
            settings,
            store,
            counter or load_counter(),
            self.ui,
            clock=clock,
            spawn_fn=spawn_fn,
            environ=dict(os.environ if environ is None else environ),
            cwd=cwd or Path.cwd(),
            signals=self.signals,
            commits=commits,
            stream=stream,
        )
        self.episodes_run = 0
        self.stalled = 0
        self._sleeper = sleep
        self._wake = threading.Event()

    def run(self, plan: ResumePlan | None = None) -> RunResult:
        """Run until the agent is done, the run is interrupted or a limit stops it."""
        # The layout without config.toml: that file is the user's (and `aether init`'s).
        self.store.init(config=False)
        self.store.acquire(list(self.settings.command))
        old_handlers = self._install_signals()
        try:
            self.session.begin(plan)
            return self._cycle()
        finally:
            # On an internal error the agent must not outlive us.
            self.session.close()
            self._restore_signals(old_handlers)
            self.ui.close()
            self.store.release()

    # ------------------------------------------------------------ the cycle

    def _cycle(self) -> RunResult:
        """Episode after episode until one ends the run."""
        child: Child | None = None
        prompt_tokens = 0
        while True:
            if self.signals.signum:
                # Interrupted while a checkpoint was being written: do not start another agent.
                self.session.write_continuity("stopped")
                self.ui.notice("interrupted; continue with `aether resume`.", "warn")
                return self.session.result(128 + self.signals.signum, "stopped", "interrupted")
            if child is None:
                prompt = self.session.prompt()
                prompt_tokens = prompt.tokens
                child = self.session.launch(prompt)
            ep = self.session.new_episode(child, prompt_tokens)
            self.session.write_continuity("running", ep.budget.fraction)
            end = self.session.run_episode(ep)
            self.episodes_run += 1
            if end.kind != "inplace":
                child.finish()
                child = None
            handler = {
                "finished": self._finished,
                "interrupted": self._interrupted,
                "capped": self._capped,
                "crashed": self._crashed,
            }.get(end.kind, self._checkpointed)
            result = handler(end, ep)
            if result is not None:
                return result
            if end.kind == "inplace" and child is not None:
                prompt_tokens = self._rehydrate_in_place(child)

    def _finished(self, end: EpisodeEnd, ep: Episode) -> RunResult:
        done = ep.log.done is not None
        ck = self.session.checkpoint("done", ep, note=end.note)
        status = "done" if done else "stopped"
        self.session.write_continuity(status)
        msg = "agent reported done" if done else "agent exited with code 0"
        self.ui.notice(f"{msg}; final checkpoint {ck['id']}", "ok")
        return self.session.result(C.EXIT_OK, status, msg)

    def _interrupted(self, end: EpisodeEnd, ep: Episode) -> RunResult:
        ck = self.session.checkpoint("interrupt", ep)
        self.session.write_continuity("stopped")
        self.ui.notice(f"interrupted; checkpoint {ck['id']} written. Continue with `aether resume`.", "warn")
        return self.session.result(128 + end.signum, "stopped", "interrupted")

    def _capped(self, end: EpisodeEnd, ep: Episode) -> RunResult:
        ck = self.session.checkpoint("interrupt", ep, note=end.note)
        self.session.write_continuity("stopped")
        self.ui.notice(f"{end.note}; checkpoint {ck['id']}. Continue with `aether resume`.", "warn")
        return self.session.result(C.EXIT_OK, "stopped", end.note)

    def _crashed(self, end: EpisodeEnd, ep: Episode) -> RunResult | None:
        """Checkpoint a crash, then restart after a back-off, or give up after --max-restarts."""
        s = self.settings
        assert end.status is not None
        what = describe_status(end.status) + (f", {end.note}" if end.note else "")
        ck = self.session.checkpoint("crash", ep, note=f"agent {what}")
        # Every crash says why in brief, even with --quiet: the end of its stderr, a line each.
        said = "".join(f"\n  | {cap_line(line)}" for line in ep.stderr_tail)
        said = f"\n  its stderr ended with:{said}" if said else ""
        if self.clock() - self.session.launched_at >= s.min_uptime:
            # It ran long enough to count as healthy: this crash starts a new count.
            self.session.restarts = 0
        self.session.restarts += 1
        crash = {
            "episode": ep.number, "exit_code": exit_code_of(end.status), "status": "crashed",
            "signal": signal_name(end.status),
            "checkpoint": ck["id"], "restarts": self.session.restarts, "max_restarts": s.max_restarts,
        }  # fmt: skip
        if self.session.restarts > s.max_restarts:
            # The agent's own code (128+n for death by signal n) is told, not passed through:
            # it could be 1 or 3, which mean something else from aether.
            agent_code = exit_code_of(end.status)
            self.session.write_continuity("crashed", agent_exit_code=agent_code)
            msg = (
                f"agent crashed {self.session.restarts} times in a row (last: {what}; the agent's own "
                f"exit code was {agent_code}); stopped after --max-restarts {s.max_restarts}. Memory is "
                f"intact at {ck['id']}: fix the agent, then `aether resume`."
            )
            self.ui.notice(msg + said, "error")
            self.session.events.emit("crash", **crash, gave_up=True)
            return self.session.result(C.EXIT_AGENT_CRASHED, "crashed", msg)
        restarts = self.session.restarts
        delay = backoff_delay(restarts, s.backoff_base, s.backoff_cap, self.rng)
        self.ui.notice(
            f"agent {what}; checkpoint {ck['id']}; restart {restarts}/{s.max_restarts} in {delay:.1f}s"
            + said,
            "warn",
        )
        self.session.events.emit("crash", **crash, gave_up=False)
        self.session.record("backoff", seconds=delay, restarts=self.session.restarts)
        if self.sleep(delay):
            self.session.write_continuity("stopped")
            return self.session.result(128 + self.signals.signum, "stopped", "interrupted during back-off")
        self.session.episode += 1
        return None

    def _checkpointed(self, end: EpisodeEnd, ep: Episode) -> RunResult | None:
        """After a threshold, manual or agent trigger: checkpoint, then go on unless a limit says stop."""
        s = self.settings
        ck = self.session.checkpoint(end.trigger, ep, note=end.note, relaunch=end.kind == "relaunch")
        self.session.restarts = 0
        overflowed = ep.budget.steps <= OVERFLOW_STEPS and ep.log.events <= OVERFLOW_EVENTS
        overflow = end.trigger in ("budget", "emergency") and overflowed
        self.session.overflow_streak = self.session.overflow_streak + 1 if overflow else 0
        progress = self.session.made_progress(ep)
        self.stalled = self.stalled + 1 if end.trigger in STALL_TRIGGERS and not progress else 0
        msg = ""
        if self.stalled >= s.max_stalled_episodes:
            msg = (
                f"the agent made no progress in {self.stalled} episodes in a row (each ended at "
                "the threshold without a new step, file or task): a runaway loop. Stopped; memory "
                f"is intact at {ck['id']}. Check the agent, then `aether resume` "
                "(--max-stalled-episodes sets the limit)."
            )
            code, reason, kind = C.EXIT_CRASH_LOOP, "stalled", "error"
        elif self.session.overflow_streak >= OVERFLOW_LIMIT:
            msg = (
                f"the context overflowed within {OVERFLOW_STEPS} steps of launch in "
                f"{OVERFLOW_LIMIT} episodes in a row, even with a shrunk prompt: the "
                "window is too small for this agent's first output. Stopped; memory "
                f"is intact at {ck['id']}. Raise --context-window, then `aether resume`."
            )
            code, reason, kind = C.EXIT_CRASH_LOOP, "overflow", "error"
        elif s.max_episodes is not None and self.episodes_run >= s.max_episodes:
            msg = f"stopped after {self.episodes_run} episodes (--max-episodes)"
            code, reason, kind = C.EXIT_OK, "max-episodes", "warn"
        if msg:
            if end.kind == "inplace":
                self.session.stop_child(ep, reason)
            self.session.write_continuity("stopped")
            self.ui.notice(msg if kind == "error" else f"{msg}; continue with `aether resume`", kind)
            return self.session.result(code, "stopped", msg)
        self.session.episode += 1
        return None

    def _rehydrate_in_place(self, child: Child) -> int:
        """Hand the live agent its next episode's prompt; the prompt's tokens."""
        ck_id = self.session.checkpoints.last_id
        assert ck_id is not None
        self.session.events.emit(
            "relaunch", episode=self.session.episode, checkpoint=ck_id, in_place=True,
            trigger=(self.session.last_checkpoint or {}).get("trigger"),
        )  # fmt: skip
        prompt = self.session.prompt()
        self.store.write_prompt(prompt.text)
        child.send(P.cmd_rehydrate(episode=self.session.episode, prompt=prompt.text, checkpoint=ck_id))
        self.session.record("command", command="rehydrate", checkpoint=ck_id, prompt_tokens=prompt.tokens)
        self.ui.notice(
            f"episode {self.session.episode}: rehydrated in place from {ck_id} ({prompt.tokens} tokens)",
            "launch",
        )
        return prompt.tokens

    # ------------------------------------------------------------ signals & sleep

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        old: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            old[sig] = signal.signal(sig, self._on_signal)
        return old

    def _restore_signals(self, old: dict[int, Any]) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.signals.signum:
            # A second Ctrl-C: the user wants out now, without the grace periods.
            self.signals.force = True
            return
        self.signals.signum = signum
        self._wake.set()

    def sleep(self, seconds: float) -> bool:
        """Back-off wait that a signal cuts short; True if interrupted."""
        if self._sleeper is not None:
            return self._sleeper(seconds) or bool(self.signals.signum)
        self._wake.wait(seconds)
        return bool(self.signals.signum)
