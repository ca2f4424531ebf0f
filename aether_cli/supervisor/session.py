"""One session's state and doings: who it is, its episodes, and what it writes.

`Session` holds the run's identity and counters (session id, episode number,
restarts, the overflow streak), what the agent taught it (`AgentFacts`), and
the parts that act for it: the `Launcher` (process and prompt), the `Streams`
(reader threads), the `Checkpointer` and the `RunRecords` (ledger, continuity,
heartbeat). It starts a session, builds the prompt, launches, creates and
drives each `Episode` from the stream queue, and writes checkpoints. What to do
when an episode ends (restart, relaunch, stop) is the cycle's call, in
`supervisor/__init__`; signals are the cycle's too (`Signals` is shared).

Knows nothing of Typer or Rich: output goes to a `Reporter`.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aether_cli import codex_handoff, codex_rollout
from aether_cli import constants as C
from aether_cli import protocol as P
from aether_cli.adapters import context_overhead, detect_format, make_adapter
from aether_cli.budget import Budget, decide_window
from aether_cli.distill import HandoffResult
from aether_cli.episode_log import EpisodeLog
from aether_cli.episode_prompt import episode_prompt
from aether_cli.event_stream import EventStream
from aether_cli.git_memory import MemoryCommits, MemoryGit
from aether_cli.handoff import handoff_request
from aether_cli.launcher import Child, become_subreaper, end_session_processes, reap_orphans
from aether_cli.plan import ResumePlan, RunResult
from aether_cli.rehydrate import Prompt
from aether_cli.reporter import Reporter
from aether_cli.restore_check import expected_tokens, rehydration_line
from aether_cli.settings import Settings, window_for_model
from aether_cli.store import MemoryStore
from aether_cli.supervisor.checkpointing import Checkpointer
from aether_cli.supervisor.claude_handoff import ClaudeHandoff
from aether_cli.supervisor.ends import EpisodeEnd
from aether_cli.supervisor.episode import Episode
from aether_cli.supervisor.launching import Launcher, LaunchSpec
from aether_cli.supervisor.redo import RedoMeter
from aether_cli.supervisor.rollout_follow import RolloutFollower
from aether_cli.supervisor.run_events import RunEvents
from aether_cli.supervisor.run_state import AgentFacts, RunFacts, RunRecords, Signals, new_session_id
from aether_cli.supervisor.stream_position import SAFE_POINTS
from aether_cli.supervisor.streams import Streams
from aether_cli.tokens import TokenCounter

TICK = 0.1
# While a stop waits for Codex to record a completed step, its next model response may
# come ~30 ms later: the rollout file is looked at this often then, so the stop lands between.
FAST_TICK = 0.005
# Paths remembered to tell a new file from one written before (bounds memory on a long run).
MAX_FILES_SEEN = 10_000
HEARTBEAT_EVERY = 0.5
# Characters of the newest progress line a "checkpoint" event carries.
PROGRESS_CHARS = 300
REAP_EVERY = 1.0


class Session:
    """The state of one supervised session and the operations on it."""

    def __init__(
        self,
        settings: Settings,
        store: MemoryStore,
        counter: TokenCounter,
        ui: Reporter,
        *,
        clock: Callable[[], float],
        spawn_fn: Callable[..., Child],
        environ: dict[str, str],
        cwd: Path,
        signals: Signals,
        commits: MemoryCommits | None = None,
        stream: EventStream | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.counter = counter
        self.ui = ui
        self.clock = clock
        self.cwd = cwd
        self.signals = signals
        self.fmt = settings.format if settings.format != "auto" else detect_format(list(settings.command))
        self.protocol_format = make_adapter(self.fmt).speaks_protocol
        self.overhead = context_overhead(self.fmt, settings.context_overhead)
        self.streams = Streams(self.fmt, counter.count)
        self.launcher = Launcher(
            settings,
            store,
            self.streams,
            fmt=self.fmt,
            protocol_format=self.protocol_format,
            spawn_fn=spawn_fn,
            environ=environ,
            cwd=cwd,
        )
        self.records = RunRecords(store, ui.notice, max_bytes=settings.ledger_max_bytes)
        self.agent = AgentFacts()
        self.meter = RedoMeter()
        self._files_seen: set[str] = set()
        if commits is None:
            commits = MemoryGit(
                store.root, enabled=settings.commit, to_branch=settings.commit_to_branch, notice=ui.notice
            )
        self.checkpoints = Checkpointer(
            settings,
            store,
            counter,
            cwd=cwd,
            fmt=self.fmt,
            record=self.record,
            notice=ui.notice,
            commits=commits,
        )
        self.events = RunEvents(
            settings, stream, memory_dir=store.root, environ=environ, cwd=cwd, record=self.record,
            notice=ui.notice, cancelled=lambda: signals.force,
        )  # fmt: skip
        self.session_id = ""
        self.episode = 0
        # This run's own counts, for the "done" event.
        self.launches = 0
        self.episodes_run = 0
        self.checkpoints_written = 0
        self.restarts = 0
        self.overflow_streak = 0
        self.started = 0.0
        self.launched_at = 0.0
        self._last_beat = 0.0
        self._last_reap = 0.0
        # A resume's "Changed since the checkpoint" lines, for prompts built from that checkpoint,
        # and the figure its first rehydrated prompt is held against (restore_check).
        self._changed: tuple[str | None, list[str]] = (None, [])
        self._resume_pending = False
        self._last_launch: dict[str, Any] | None = None

    @property
    def window(self) -> int:
        """The context window: the user's (flag or model), else the agent's hello, else the default."""
        s = self.settings
        user = s.context_window or window_for_model(s.model)
        return decide_window(user=user, agent=self.agent.window, default=C.DEFAULT_WINDOW)

    @property
    def last_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint the next prompt is built from."""
        return self.checkpoints.last

    def begin(self, plan: ResumePlan | None) -> None:
        """Take up the session (new or resumed), end what a dead run left, open the ledger."""
        s = self.settings
        if plan is None:
            self.session_id, self.episode, ckpt_id = new_session_id(), 1, None
        else:
            self.session_id, self.episode, ckpt_id = plan.session_id, plan.episode, plan.checkpoint_id
            self.restarts = plan.restarts
        self.checkpoints.last = self.store.read_checkpoint(ckpt_id) if ckpt_id else None
        agent = (self.last_checkpoint or {}).get("agent")
        if isinstance(agent, dict) and isinstance(agent.get("session_id"), str):
            self.agent.stream_session = agent["session_id"]
        become_subreaper()
        self.events.session = self.session_id
        self.records.open(self.session_id)
        self.started = self.clock()
        if plan is None:
            # A damaged record of an earlier session is moved aside (kept under runs/), never
            # left to fail this run's first write; this session writes its own.
            if note := self.store.repair_continuity(missing=False, rebuild=False):
                self.ui.notice(f"{note}; a new session starts", "warn")
            prev = self.store.read_continuity() or {}
            if prev.get("status") == "running" and isinstance(prev.get("session_id"), str):
                self._end_orphans(prev["session_id"])
        recovered: dict[str, Any] | None = None
        if plan is not None and plan.recover:
            self._end_orphans(self.session_id)
            if plan.latest:
                recovered = self.checkpoints.recover(self.session_id, self.episode, self.window)
                self.ui.notice(
                    f"recovered the dead run's last episode into checkpoint {recovered['id']}", "warn"
                )
        self.record(
            "session",
            resumed=plan is not None,
            checkpoint=ckpt_id,
            settings=s.to_config(),
            tokenizer=self.counter.name,
            format=self.fmt,
        )
        if self.counter.note:
            self.ui.notice(f"token counts are estimates: {self.counter.note}", "warn")
        if plan is not None and self.last_checkpoint is not None:
            self._restored(plan, ckpt_id)
        # Before the agent starts: a record that cannot be written must stop the run here,
        # not after the launch (the agent would have started work only to be killed).
        self.write_continuity("running", 0.0)
        self.events.emit(
            "start", resumed=plan is not None, episode=self.episode, checkpoint=ckpt_id,
            window=self.window, format=self.fmt,
        )  # fmt: skip
        if recovered is not None:
            self._checkpoint_event(recovered, "crash")

    def _restored(self, plan: ResumePlan, ckpt_id: str | None) -> None:
        """Keep what the first prompt of a resume needs: the changes since its checkpoint and
        the session's last launch (the figure its prompt size is held against)."""
        if self.checkpoints.last_id == ckpt_id:
            # After a recovery the prompt comes from the recovered checkpoint instead: the
            # changes were listed against the one before it, and are the dead episode's work.
            self._changed = (ckpt_id, list(plan.changed))
        # The expected size is worked out at the launch, once the prompt's budget is known.
        self._resume_pending, self._last_launch = True, self.records.last("launch")

    def _end_orphans(self, session_id: str) -> None:
        """End the agent (and its children) a dead supervisor of `session_id` left running."""
        killed = end_session_processes(session_id)
        if killed:
            self.record("orphan_killed", pids=killed, session=session_id)
            self.ui.notice(
                f"ended {len(killed)} process(es) left running by the dead run of {session_id}", "warn"
            )

    # ------------------------------------------------------------ prompts & launch

    def prompt(self) -> Prompt:
        """The launch prompt: the first one, or one rehydrated from the last checkpoint."""
        return episode_prompt(
            self.store,
            self.counter.count,
            objective=self.settings.objective,
            window=self.window,
            budget_override=self.settings.prompt_budget,
            checkpoint=self.last_checkpoint,
            episode=self.episode,
            session_id=self.session_id,
            shrink=self.overflow_streak,
            changed=self._changed[1] if self.checkpoints.last_id == self._changed[0] else None,
        )

    def launch(self, prompt: Prompt) -> Child:
        """Start the agent for this episode with `prompt`, and its stream readers."""
        ckpt_id = self.checkpoints.last_id
        if self.launches:
            # Before the new agent starts: a hook may want to act between the two.
            trigger = (self.last_checkpoint or {}).get("trigger")
            self.events.emit(
                "relaunch", episode=self.episode, checkpoint=ckpt_id, in_place=False, trigger=trigger,
            )  # fmt: skip
        self.launches += 1
        spec = LaunchSpec(self.session_id, self.episode, ckpt_id, self.window, self.agent.stream_session)
        self.launched_at = self.clock()
        child, argv = self.launcher.launch(prompt, spec)
        self.record(
            "launch",
            argv=argv,
            pid=child.pid,
            checkpoint=ckpt_id,
            prompt_tokens=prompt.tokens,
            context_overhead=self.overhead,
            prompt_budget=prompt.budget,
            evicted=list(prompt.evicted),
        )
        where = f"from {ckpt_id}" if ckpt_id else "fresh"
        self.ui.notice(
            f"episode {self.episode}: launched pid {child.pid} ({where}, prompt {prompt.tokens} tokens)",
            "launch",
        )
        self.events.emit(
            "launch", episode=self.episode, checkpoint=ckpt_id, pid=child.pid, prompt_tokens=prompt.tokens,
        )  # fmt: skip
        if self._resume_pending:
            self._resume_pending = False
            self.rehydrated(prompt)
        return child

    def rehydrated(self, prompt: Prompt) -> None:
        """Say and record the first rehydrated prompt of a resume against what it was expected
        to cost (restore_check.expected_tokens)."""
        expected, source = expected_tokens(self.last_checkpoint, self._last_launch, prompt.budget)
        text, kind = rehydration_line(prompt.tokens, expected, source)
        self.record(
            "rehydrated", checkpoint=self.checkpoints.last_id, prompt_tokens=prompt.tokens,
            expected_tokens=expected, expected_from=source or None,
            changed_lines=len(self._changed[1]),
        )  # fmt: skip
        self.ui.notice(text, kind)

    # ------------------------------------------------------------ one episode

    def new_episode(self, child: Child, prompt_tokens: int) -> Episode:
        """The state machine of the episode about to run in `child`."""
        s = self.settings
        budget = Budget(
            window=self.window,
            soft_at=s.soft_at,
            checkpoint_at=s.checkpoint_at,
            emergency_at=s.emergency_at,
            max_steps=s.max_steps,
        )
        # The agent's own instructions and tools are in its context from the start; a
        # reported usage figure (which includes them) replaces the sum.
        budget.reset(prompt_tokens + self.overhead)
        tasks = {t["id"]: t for t in self.store.list_tasks()}
        self.meter.start(self.episode, self.last_checkpoint)
        self.episodes_run += 1
        return Episode(
            settings=s,
            child=child,
            gen=self.launcher.gen,
            number=self.episode,
            log=EpisodeLog(objective=s.objective, prior_tasks=tasks),
            budget=budget,
            store=self.store,
            ui=self.ui,
            record=self.record,
            agent=self.agent,
            signals=self.signals,
            window=lambda: self.window,
            run_started=self.started,
            protocol_format=self.protocol_format,
            safe_point=SAFE_POINTS.get(self.fmt, "calls"),
            meter=self.meter,
            follower=self._follower(),
            handoff=self._claude_handoff(child),
        )

    def _claude_handoff(self, child: Child) -> ClaudeHandoff | None:
        """For Claude Code reading its messages on stdin, the exchange that asks for its handoff."""
        if not self.launcher.claude_input:
            return None
        max_tokens = self.checkpoints.max_tokens(self.window)
        return ClaudeHandoff(
            child.send,
            request=handoff_request(max_tokens=max_tokens, memory_dir=self.store.root),
            max_tokens=max_tokens,
            count=self.counter.count,
        )

    def _follower(self) -> RolloutFollower | None:
        """For Codex, a follower of its rollout file (in the CODEX_HOME it was launched with)."""
        if self.fmt != "codex":
            return None
        home = codex_rollout.codex_home(self.launcher.env)
        if home is None:
            return None
        # Codex creates the file at its first request, just after it names the thread:
        # look again soon, or a short first episode is over before the file is found.
        return RolloutFollower(
            lambda thread_id: codex_rollout.RolloutWatcher(home, thread_id, rescan_seconds=0.25)
        )

    def run_episode(self, ep: Episode) -> EpisodeEnd:
        """Feed the episode what the child says until it ends."""
        try:
            while True:
                item = self.streams.get(FAST_TICK if ep.racing else TICK)
                if item is not None and item[1] == ep.gen:
                    ep.take(item[0], item[2])
                now = self.clock()
                end = ep.advance(now)
                if end is not None:
                    return end
                # Both pipes: a crash's last stderr lines often come after its stdout closed.
                read = ep.eof and ep.err_eof
                if ep.status is not None and (read or self.streams.gave_up_on_eof(ep.gen, ep.exited_at, now)):
                    if not read:
                        # Gave up on a held pipe: what the readers already queued still counts.
                        for kind, _gen, payload in self.streams.pending(ep.gen):
                            ep.take(kind, payload, show=False)
                    return ep.verdict()
                if now - self._last_beat >= HEARTBEAT_EVERY:
                    self.heartbeat(ep)
                if now - self._last_reap >= REAP_EVERY:
                    # Descendants the agent orphaned are ours now (subreaper): no zombies.
                    self._last_reap = now
                    reap_orphans(keep=ep.child.pid)
        finally:
            if ep.follower is not None:
                ep.follower.close()

    def checkpoint(
        self, trigger: str, ep: Episode, note: str = "", *, relaunch: bool = False
    ) -> dict[str, Any]:
        """Write the checkpoint of episode `ep` (and record its continuity figures).

        `relaunch`: the agent was stopped to be relaunched, so Codex is asked for its
        handoff in its own thread first (Claude was asked before it stopped)."""
        handoff = ep.handoff_result
        if relaunch and handoff is None:
            handoff = self._codex_handoff(trigger)
        figures = self.meter.end()
        if figures is not None:
            self.record("continuity", **figures.as_record())
        self.checkpoints.flush_tasks(ep.log, ep.dirty_tasks, self.session_id)
        ck = self.checkpoints.write(
            trigger,
            ep.log,
            ep.budget,
            session_id=self.session_id,
            episode=self.episode,
            window=self.window,
            note=note,
            prefer_agent=ep.agent_state_fresh,
            compactions=ep.compactions,
            agent_session=self.agent.stream_session,
            handoff=handoff,
        )
        self.checkpoints_written += 1
        self._checkpoint_event(ck, trigger)
        return ck

    def _checkpoint_event(self, ck: dict[str, Any], trigger: str) -> None:
        """The `checkpoint` event (and its hook) of a checkpoint just written."""
        m = ck.get("metrics") or {}
        progress = ck.get("progress") or [""]
        self.events.emit(
            "checkpoint", id=ck["id"], trigger=trigger, distiller=ck.get("distiller"),
            note=ck.get("distiller_note", ""), episode=ck.get("episode", self.episode),
            episode_tokens=m.get("episode_tokens"), checkpoint_tokens=m.get("checkpoint_tokens"),
            progress=str(progress[-1])[:PROGRESS_CHARS],
        )  # fmt: skip

    def _codex_handoff(self, trigger: str) -> HandoffResult | None:
        """Codex's own handoff, by `codex exec resume` of the stopped thread, read-only."""
        if self.fmt != "codex" or self.settings.handoff != "agent":
            return None
        if trigger == "emergency":
            return HandoffResult(None, "not asked: the context is at the emergency line")
        thread = self.agent.stream_session
        if not thread:
            return HandoffResult(None, "not asked: codex named no thread")
        self.ui.notice("asking codex for its handoff in its own thread", "info")
        request = codex_handoff.request_text(self.store.root)
        result = codex_handoff.run_handoff(
            self.launcher.last_argv, thread, self.launcher.env, self.cwd, request=request
        )
        self.record(
            "handoff", ok=result.state is not None, reason=result.reason,
            seconds=result.seconds, tokens=result.tokens,
        )
        if result.state is None:
            self.ui.notice(f"codex's handoff failed ({result.reason}): rules stand in", "warn")
        return result

    def made_progress(self, ep: Episode) -> bool:
        """Whether the episode (already checkpointed) did anything new: a step no earlier
        episode finished, a file not written before in this run, a task changed, or done."""
        files = set(ep.log.files_modified) - self._files_seen
        if len(self._files_seen) < MAX_FILES_SEEN:
            self._files_seen |= files
        return bool(self.meter.last_new_steps or files or ep.log.tasks_touched or ep.log.done)

    def stop_child(self, ep: Episode, reason: str) -> None:
        """Stop a child that is still running (after an in-place checkpoint we do not continue)."""
        ep.child.send(P.cmd_stop(reason=reason or "stop"))
        self.record("command", command="stop", reason=reason)
        child = self.launcher.child
        assert child is not None
        if child.wait(self.settings.stop_grace) is None:
            child.terminate(term_grace=self.settings.term_grace)
        child.finish()

    # ------------------------------------------------------------ state files

    def facts(self) -> RunFacts:
        """The run's side of the continuity record and the heartbeat."""
        s = self.settings
        return RunFacts(
            session_id=self.session_id,
            episode=self.episode,
            restarts=self.restarts,
            window=self.window,
            fmt=self.fmt,
            tokenizer=self.counter.name,
            tokenizer_note=self.counter.note,
            compactions=self.agent.compactions,
            continuity=self.meter.totals(),
            command=list(s.command),
            objective=s.objective,
            settings=s.to_config(),
        )

    def write_continuity(
        self, status: str, fraction: float | None = None, *, agent_exit_code: int | None = None
    ) -> None:
        """Write session_continuity.json with the run's current standing (and, when the agent
        kept crashing, its own last exit code)."""
        facts = self.facts()
        facts.agent_exit_code = agent_exit_code
        self.records.continuity(facts, status, self.checkpoints.last_id, fraction)
        self.checkpoints.commit_pending()

    def heartbeat(self, ep: Episode) -> None:
        """Flush changed task files and write the live heartbeat."""
        self._last_beat = self.clock()
        self.records.heartbeat(
            self.facts(),
            ep.figures(),
            fraction=ep.budget.fraction,
            overhead=self.overhead,
            flush=lambda: self.checkpoints.flush_tasks(ep.log, ep.dirty_tasks, self.session_id),
        )

    def record(self, kind: str, **fields: Any) -> None:
        """Append a record of the current episode to the run ledger."""
        self.records.episode = self.episode
        self.records.record(kind, **fields)
        if kind == "command" and fields.get("command") == "budget":
            used, window = int(fields.get("used") or 0), self.window
            self.events.emit(
                "threshold", episode=self.episode, level=fields.get("level"), used=used, window=window,
                fraction=round(used / window, 4),
            )  # fmt: skip

    def result(self, code: int, status: str, message: str) -> RunResult:
        """The run's result, recorded as its end in the ledger (after `.memory/` is committed)."""
        self.checkpoints.commit_pending()
        self.checkpoints.commit_memory("end", session_id=self.session_id, episode=self.episode, status=status)
        # The hook's record comes before the end's: the end stays the ledger's last line.
        self.events.emit(
            "done", status=status, exit_code=code, message=message, episode=self.episode,
            checkpoint=self.checkpoints.last_id, checkpoints=self.checkpoints_written,
            episodes=self.episodes_run,
        )  # fmt: skip
        self.record("end", status=status, exit_code=code, message=message)
        return RunResult(code, status, message, self.session_id, self.episode, self.checkpoints.last_id)

    def close(self) -> None:
        """After the run: no agent left behind, the ledger closed, counts let go."""
        child = self.launcher.child
        if child is not None and child.poll() is None:
            child.signal_group(signal.SIGKILL)
        self.records.close()
        self.streams.close()
        self.events.close()
