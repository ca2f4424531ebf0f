"""The in-process engine: an aether session driven from inside a Python agent loop.

`Engine` does for an agent written in Python what the supervisor does for an
agent process, over the same `.memory/` files and with the same parts: the
agent's events go (checked by `engine_events`) into an `EpisodeLog`, a
`Budget` and the `Triggers`; `should_checkpoint()` answers with the
supervisor's rules; `checkpoint()` distils, assembles and stores through the
supervisor's `Checkpointer` (the agent's own state validated like a protocol
`checkpoint` answer, else rules, with the reason); the next episode's context
is the prompt a relaunched process would get (`episode_prompt`); the ledger,
the continuity record and the heartbeat are written by the same `RunRecords`.
Nothing is relaunched: the loop goes on in process with `context()`.

It holds the `.memory` run lock from `open`/`resume` to `close`/`done`, like
`aether run`: a folder a live run holds is refused with `LockedError`, and
`aether status` and `aether checkpoint` see the engine as the live run.
`subscribe` gets aether's own events (`EngineEvent`) after each change is
written; a callback's exception reaches the caller of the call that fired it.

Knows nothing of processes, signals or the terminal.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from aether_cli import commands
from aether_cli import constants as C
from aether_cli import engine_events as E
from aether_cli import protocol as P
from aether_cli.api_options import SettingError, run_options
from aether_cli.budget import Budget, Triggers
from aether_cli.engine_events import Callback, EngineEvent
from aether_cli.episode_log import EpisodeLog
from aether_cli.episode_prompt import episode_prompt
from aether_cli.errors import AetherError
from aether_cli.git_memory import MemoryGit
from aether_cli.plan import ResumePlan
from aether_cli.restore_check import expected_tokens, rehydration_line
from aether_cli.settings import Settings
from aether_cli.store import MemoryStore
from aether_cli.supervisor.checkpointing import Checkpointer
from aether_cli.supervisor.redo import RedoMeter
from aether_cli.supervisor.run_state import RunFacts, RunRecords, new_session_id, utc_now
from aether_cli.tokens import TokenCounter, load_counter

# The events are protocol v1 events, so the files say so as a process agent's would.
FORMAT = "aether"
# The options of `aether run` that mean something to an agent loop in this process.
ENGINE_OPTIONS = frozenset({
    "objective", "context_window", "model", "soft_at", "checkpoint_at", "emergency_at", "max_steps",
    "checkpoint_on_task_done", "checkpoint_on_error", "prompt_budget", "constraint",
    "distill_command", "commit", "commit_to_branch",
})  # fmt: skip
HEARTBEAT_EVERY = 0.5
REQUEST_POLL = 0.1


def store_at(memory_dir: str | os.PathLike[str] | None, cwd: Path) -> MemoryStore:
    """The store of `memory_dir`, else of `<cwd>/.memory`; SettingError for a value that is no path."""
    try:
        root = Path(memory_dir) if memory_dir is not None else cwd / C.MEMORY_DIRNAME
    except TypeError:
        raise SettingError(f"memory_dir must be a path, got {memory_dir!r}") from None
    return MemoryStore(root.absolute())


class Engine(E.AgentCalls):
    """An aether session inside a Python agent loop (make one with `Engine.open` or `Engine.resume`)."""

    store: MemoryStore

    def __init__(
        self, store: MemoryStore, settings: Settings, *, cwd: Path, on_event: Callback | None = None,
        counter: TokenCounter | None = None, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.settings = store, settings
        self._counter = counter or load_counter()
        self._clock = clock
        self._callbacks = E.Subscribers()
        if on_event is not None:
            self.subscribe(on_event)
        self._records = RunRecords(store, self._notice, max_bytes=settings.ledger_max_bytes)
        commits = MemoryGit(
            store.root, enabled=settings.commit, to_branch=settings.commit_to_branch, notice=self._notice
        )
        self._checkpoints = Checkpointer(
            settings, store, self._counter, cwd=cwd, fmt=FORMAT, record=self._record,
            notice=self._notice, commits=commits,
        )  # fmt: skip
        self._meter = RedoMeter()
        self.session_id, self.episode, self.status = "", 0, "new"
        self._last_beat = self._last_poll = float("-inf")
        self._wanted = False
        # A resume's "Changed since the checkpoint" lines (for contexts built from that
        # checkpoint) and, until the first one is built, the session's last launch record.
        self._changed: tuple[str | None, list[str]] = (None, [])
        self._resume_pending = False
        self._resumed_launch: dict[str, Any] | None = None

    # ------------------------------------------------------------ making one

    @classmethod
    def open(
        cls, objective: str, *, window: int | None = None, model: str | None = None,
        memory_dir: str | os.PathLike[str] | None = None, cwd: str | os.PathLike[str] | None = None,
        on_event: Callback | None = None, **settings: Any,
    ) -> Engine:
        """Start a new session for `objective` over `memory_dir` (default: `<cwd>/.memory`).

        `window` (tokens) or `model` (a known model's window) sizes the budget;
        `settings` are `aether run`'s options by name (soft_at, checkpoint_at,
        max_steps, checkpoint_on_task_done, constraints…), checked like flags;
        `.memory/config.toml` and `AETHER_*` fill in the rest, as for the CLI.
        Raises `LockedError` if a live run holds the folder."""
        if not isinstance(objective, str) or not objective.strip():
            raise SettingError("Engine.open needs an objective: a non-empty string saying what to achieve")
        where = Path(cwd) if cwd is not None else Path.cwd()
        options = run_options(
            {"objective": objective, "context_window": window, "model": model, **settings},
            only=ENGINE_OPTIONS, where="Engine.open",
        )  # fmt: skip
        store = store_at(memory_dir, where)
        store.ensure_unlocked()
        # No command: a config.toml an earlier `aether run` wrote must not name this session's agent.
        s = commands.run_settings(store, {**options.flags(), "command": ()})
        store.init(config=False)  # as `aether run`: config.toml holds only what the user wrote
        commands.register_merge_driver(store)  # as `aether run`: a merge of two branches needs no setup
        engine = cls(store, s, cwd=where, on_event=on_event)
        engine._start(new_session_id(), 1, None)
        return engine

    @classmethod
    def resume(
        cls, checkpoint_id: str | None = None, *, memory_dir: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None, force: bool = False, strict: bool = False,
        on_event: Callback | None = None, **settings: Any,
    ) -> Engine:
        """Continue the stored session from `checkpoint_id` (an id or a unique prefix; default:
        the newest intact one), with its stored settings; `settings` given now override them.

        A session whose run died is first recovered from its ledger, as `aether resume` does;
        what was skipped or recovered, and what changed in `cwd`'s workspace since the
        checkpoint, is said in "notice" events (pass `on_event` to see them), and the first
        `context()` gets a "Changed since the checkpoint" section. A session that ended done
        is refused without `force`; `strict` refuses one whose workspace changed."""
        where = Path(cwd) if cwd is not None else Path.cwd()
        options = run_options(settings, only=ENGINE_OPTIONS, where="Engine.resume")
        store = store_at(memory_dir, where)
        plan, s, note = commands.resume_plan(
            store, checkpoint_id, options.flags(), force=force, need_command=False
        )
        guard = commands.restore_guard(store, plan, where, strict=strict)
        engine = cls(store, s, cwd=where, on_event=on_event)
        for text, kind in [(note, "warn"), *guard]:
            if text:
                engine._notice(text, kind)
        engine._start(plan.session_id, plan.episode, plan.checkpoint_id, plan)
        return engine

    def _start(
        self, session_id: str, episode: int, ckpt_id: str | None, plan: ResumePlan | None = None
    ) -> None:
        """Take the lock and the session, recover a dead run's last episode, begin an episode."""
        self.store.acquire([sys.executable, *sys.argv])
        try:
            self.session_id, self.episode = session_id, episode
            self._checkpoints.last = self.store.read_checkpoint(ckpt_id) if ckpt_id else None
            self._records.open(session_id)
            if plan is not None and plan.recover and plan.latest:
                ck = self._checkpoints.recover(session_id, episode, self.window)
                self._notice(f"recovered the dead run's last episode into checkpoint {ck['id']}", "warn")
            if plan is not None and ckpt_id is not None:
                # As the supervisor's Session._restored: after a recovery the changes listed
                # were against the checkpoint before, and are the dead episode's own work.
                if self._checkpoints.last_id == ckpt_id:
                    self._changed = (ckpt_id, list(plan.changed))
                self._resume_pending, self._resumed_launch = True, self._records.last("launch")
            self._record(
                "session", resumed=plan is not None, checkpoint=ckpt_id, settings=self.settings.to_config(),
                tokenizer=self._counter.name, format=FORMAT, in_process=True,
            )  # fmt: skip
            if self._counter.note:
                self._notice(f"token counts are estimates: {self._counter.note}", "warn")
            self.status = "running"
            self._begin_episode()
        except BaseException:
            self._release()
            raise

    def _begin_episode(self) -> None:
        """A new episode: its context (the first or the rehydrated prompt), budget, triggers and log."""
        s, last = self.settings, self._checkpoints.last
        self._prompt = episode_prompt(
            self.store, self._counter.count, objective=s.objective, window=self.window,
            budget_override=s.prompt_budget, checkpoint=last, episode=self.episode,
            session_id=self.session_id,
            changed=self._changed[1] if self._checkpoints.last_id == self._changed[0] else None,
        )  # fmt: skip
        self._budget = Budget(
            window=self.window, soft_at=s.soft_at, checkpoint_at=s.checkpoint_at,
            emergency_at=s.emergency_at, max_steps=s.max_steps,
        )  # fmt: skip
        self._budget.reset(self._prompt.tokens)
        self._triggers = Triggers(on_task_done=s.checkpoint_on_task_done, on_error=s.checkpoint_on_error)
        tasks = {t["id"]: t for t in self.store.list_tasks()}
        self._log = EpisodeLog(objective=s.objective, prior_tasks=tasks)
        self._dirty: dict[str, str] = {}
        self._wanted = False
        self._meter.start(self.episode, last)
        ckpt = self._checkpoints.last_id
        self._record(
            "launch", argv=[], pid=os.getpid(), checkpoint=ckpt, prompt_tokens=self._prompt.tokens,
            context_overhead=0, prompt_budget=self._prompt.budget, evicted=list(self._prompt.evicted),
            in_process=True,
        )  # fmt: skip
        if self._resume_pending:
            self._rehydrated()
        self._continuity("running", self._budget.fraction)
        self._emit("episode", episode=self.episode, checkpoint=ckpt, prompt_tokens=self._prompt.tokens)

    def _rehydrated(self) -> None:
        """The first context of a resume against what it was expected to cost (as the supervisor)."""
        self._resume_pending = False
        last = self._checkpoints.last
        expected, source = expected_tokens(last, self._resumed_launch, self._prompt.budget)
        text, kind = rehydration_line(self._prompt.tokens, expected, source)
        self._record(
            "rehydrated", checkpoint=self._checkpoints.last_id, prompt_tokens=self._prompt.tokens,
            expected_tokens=expected, expected_from=source or None, changed_lines=len(self._changed[1]),
        )  # fmt: skip
        self._notice(text, kind)

    def _take(self, ev: P.Event) -> None:
        """One accepted event, as the supervisor takes a process agent's (supervisor.episode)."""
        self._check_running()
        self._record("event", event=ev.raw)
        if isinstance(ev, P.ToolCall):
            self._meter.call(ev.name, ev.input)
        elif isinstance(ev, P.ToolResult) and not ev.is_error and (call := self._log.open_calls.get(ev.id)):
            self._meter.finished(call.name, call.input)
        self._log.add(ev)
        text = P.counted_text(ev)
        if text:
            self._budget.add(self._counter.count(text))
        if isinstance(ev, P.Usage):
            self._budget.report(ev.context_tokens)
        if isinstance(ev, P.TaskUpdate):
            self._dirty[ev.id] = utc_now()
        self._triggers.event(ev, self._budget)
        b = self._budget
        levels = b.crossed()
        for level in levels:
            self._record("command", command="budget", level=level, used=b.used)
            self._triggers.crossed(level)
        if self._clock() - self._last_beat >= HEARTBEAT_EVERY:
            self._heartbeat()
        # Callbacks last: the event is fully taken whatever they do.
        for level in levels:
            self._emit("threshold", level=level, used=b.used, window=b.window, fraction=round(b.fraction, 4))
        self._announce_want()

    # ------------------------------------------------------------ checkpoints

    def should_checkpoint(self) -> bool:
        """Whether aether's rules want a checkpoint now (a threshold, --max-steps, a finished
        task or an error when asked for, or `aether checkpoint` from another terminal)."""
        self._check_running()
        now = self._clock()
        if now - self._last_poll >= REQUEST_POLL:
            self._last_poll = now
            if self.store.take_checkpoint_request():
                self._triggers.manual()
                self._announce_want()
        return self._triggers.want is not None

    @property
    def wanted(self) -> str | None:
        """Why a checkpoint is wanted ("budget", "emergency", "steps", "task_done", "error",
        "manual"), or None."""
        return self._triggers.want.trigger if self._triggers.want else None

    def checkpoint(self, state: dict[str, Any] | None = None, *, note: str = "") -> dict[str, Any]:
        """Write a checkpoint and begin the next episode; return the checkpoint as written.

        `state`: the agent's own state (objective, progress, next_actions, state,
        errors, resume_instructions), used if it validates like a protocol checkpoint
        answer; otherwise, and without it, rules distil the episode and
        `distiller_note` says why. Continue from `context()` afterwards."""
        self._check_running()
        if state is not None:
            data = E.json_value(state, "the checkpoint state")
            self._take(P.CheckpointEvent({"type": "checkpoint", "state": data}, state=data))
        want = self._triggers.want
        trigger = want.trigger if want else ("agent" if state is not None else "manual")
        ck = self._write(trigger, note)
        self.episode += 1
        self._begin_episode()
        return ck

    def done(self, summary: str = "") -> dict[str, Any]:
        """The objective is done: a final checkpoint, the session recorded as done, the lock let go."""
        self._check_running()
        if not isinstance(summary, str):
            raise E.EventError("a done summary must be a string")
        self._take(P.Done({"type": "done", "summary": summary}, summary=summary))
        ck = self._write("done", "")
        self._end("done", "agent reported done")
        return ck

    def _write(self, trigger: str, note: str) -> dict[str, Any]:
        """The episode's checkpoint, written by the supervisor's Checkpointer."""
        figures = self._meter.end()
        if figures is not None:
            self._record("continuity", **figures.as_record())
        self._checkpoints.flush_tasks(self._log, self._dirty, self.session_id)
        ck = self._checkpoints.write(
            trigger, self._log, self._budget, session_id=self.session_id, episode=self.episode,
            window=self.window, note=note, prefer_agent=True,
        )  # fmt: skip
        m = ck.get("metrics") or {}
        self._emit(
            "checkpoint", id=ck["id"], trigger=trigger, distiller=ck.get("distiller"),
            note=ck.get("distiller_note", ""), episode=self.episode,
            episode_tokens=m.get("episode_tokens"), checkpoint_tokens=m.get("checkpoint_tokens"),
        )  # fmt: skip
        return ck

    def context(self) -> str:
        """The prompt this episode starts from: the first one, or the one rehydrated from the
        last checkpoint (what a relaunched agent process would be given)."""
        return self._prompt.text

    # ------------------------------------------------------------ ending

    def close(self) -> None:
        """End the session resumably: the work since the last checkpoint is checkpointed
        ("interrupt"), the session recorded as stopped, the lock let go. Safe to call twice."""
        if self.status != "running":
            return
        if self._log.events:
            self._write("interrupt", "")
        self._end("stopped", "closed by the agent loop")

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.status != "running":
            return
        if exc is None:
            self.close()
            return
        try:
            what = exc_type.__name__ if exc_type else "an error"
            self._write("crash", f"the agent loop raised {what}: {exc}")
            self._end("crashed", f"the agent loop raised: {exc}", code=C.EXIT_AGENT_CRASHED)
        except (AetherError, OSError) as err:
            # The loop's own exception is the one to see; this one is only told.
            self._notice(f"could not record the agent loop's crash: {err}", "error")
        finally:
            self._release()

    def _end(self, status: str, message: str, code: int = C.EXIT_OK) -> None:
        """Record the end as the supervisor does (continuity, memory commit, ledger), let go of the lock."""
        try:
            self._continuity(status)
            self._checkpoints.commit_memory(
                "end", session_id=self.session_id, episode=self.episode, status=status
            )
            self._record("end", status=status, exit_code=code, message=message)
        finally:
            self._release()
        self.status = status
        self._emit("end", status=status, checkpoint=self._checkpoints.last_id)

    def _release(self) -> None:
        if self.status == "running":
            self.status = "closed"
        self._records.close()
        self.store.release()

    # ------------------------------------------------------------ aether's side

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call `callback(EngineEvent)` on each of aether's own events; returns the unsubscriber."""
        return self._callbacks.add(callback)

    @property
    def window(self) -> int:
        """The context window in tokens."""
        return self.settings.window

    @property
    def used(self) -> int:
        """Tokens in context now: the episode's prompt and every counted event since (or the
        model's reported figure)."""
        return self._budget.used

    @property
    def fraction(self) -> float:
        """The used share of the window."""
        return self._budget.fraction

    @property
    def last_checkpoint(self) -> dict[str, Any] | None:
        """The last checkpoint written (or resumed from)."""
        return self._checkpoints.last

    def _announce_want(self) -> None:
        want = self._triggers.want
        if want is not None and not self._wanted:
            self._wanted = True
            self._emit("wanted", trigger=want.trigger, urgent=want.urgent)

    def _check_running(self) -> None:
        if self.status != "running":
            raise E.EventError(f"this engine's session is {self.status}: open or resume a new one")

    def _facts(self) -> RunFacts:
        s = self.settings
        return RunFacts(
            session_id=self.session_id, episode=self.episode, restarts=0, window=self.window, fmt=FORMAT,
            tokenizer=self._counter.name, tokenizer_note=self._counter.note, compactions=0,
            command=list(s.command), objective=s.objective, settings=s.to_config(),
            continuity=self._meter.totals(),
        )  # fmt: skip

    def _continuity(self, status: str, fraction: float | None = None) -> None:
        self._records.continuity(self._facts(), status, self._checkpoints.last_id, fraction)
        self._checkpoints.commit_pending()

    def _heartbeat(self) -> None:
        self._last_beat = self._clock()
        b = self._budget
        figures = {
            "child_pid": os.getpid(), "state": "run", "used": b.used, "window": b.window,
            "reported": b.reported, "steps": b.steps, "events": self._log.events,
            "protocol_warnings": 0, "compactions": 0,
        }  # fmt: skip
        self._records.heartbeat(
            self._facts(), figures, fraction=b.fraction, overhead=0,
            flush=lambda: self._checkpoints.flush_tasks(self._log, self._dirty, self.session_id),
        )  # fmt: skip

    def _record(self, kind: str, **fields: Any) -> None:
        self._records.episode = self.episode
        self._records.record(kind, **fields)

    def _notice(self, text: str, kind: str = "info") -> None:
        self._emit("notice", text=text, kind=kind)

    def _emit(self, kind: str, /, **data: Any) -> None:
        self._callbacks.emit(EngineEvent(kind, data))
