"""The episode cycle: launch, count, checkpoint, relaunch, until done.

The supervisor wires the other modules together and owns the run's state
(session, episode, restarts, the live child). One main loop receives typed
items from a single queue fed by reader threads (the child's stdout events
and stderr lines), so all state changes happen on one thread and the child's
pipes are always drained. Time, sleeping, spawning and output go through
constructor seams so tests can drive it without waiting.

It knows nothing of Typer or Rich: output goes to a `Reporter`.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import random
import secrets
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from aether_cli import constants as C
from aether_cli import protocol as P
from aether_cli.adapters import context_overhead, detect_format, make_adapter
from aether_cli.adapters.base import Compaction, Outcome, StreamStarted
from aether_cli.adapters.prompt_argv import fill_placeholders, native_resume_argv, render_argv
from aether_cli.budget import CHECKPOINT, EMERGENCY, SOFT, Budget
from aether_cli.distill import distill
from aether_cli.distill_command import distill_prompt, run_distill_command
from aether_cli.episode_log import EpisodeLog, cap
from aether_cli.errors import AetherError, StorageError
from aether_cli.launcher import Child, become_subreaper, describe_status, exit_code_of, reap_orphans, spawn
from aether_cli.reader import iter_lines
from aether_cli.rehydrate import first_prompt, prompt_budget, rehydrate_prompt
from aether_cli.settings import Settings, window_for_model
from aether_cli.store import MemoryStore, read_ledger
from aether_cli.tokens import TokenCounter, estimate_bytes, load_counter
from aether_cli.workspace import workspace_state

# What the reader threads may hold for the main loop; past it they wait, so a
# flood of huge lines holds at most this much memory.
QUEUE_BYTES = 64 << 20
# How long after the child's exit we keep waiting for its stdout to close
# (a grandchild that escaped the process group may hold it open forever).
EOF_AFTER_EXIT = 1.0
TICK = 0.1
# Stdout lines longer than this are counted in the counting pool, shorter ones in
# the reader thread itself (handing a few words to another thread costs more than
# counting them).
COUNT_INLINE_CHARS = 1024
COUNT_THREADS = 2
HEARTBEAT_EVERY = 0.5
# An episode that crosses the checkpoint threshold within this many steps of
# its launch is an overflow: the prompt or first output is too big.
OVERFLOW_STEPS = 2
OVERFLOW_EVENTS = 8
# An agent checkpoint followed by more than this many events is stale.
STALE_AFTER_EVENTS = 3
OVERFLOW_LIMIT = 3
REAP_EVERY = 1.0
# An agent's own failure verdict that means its context overflowed: a budget matter,
# not a crash (Claude's terminal_reason, Codex's error text).
_OVERFLOW_WORDS = (
    "prompt_too_long",
    "prompt is too long",
    "context window",
    "context_length",
    "context length",
    "maximum context",
    "too many tokens",
)
_TURN_LIMIT_WORDS = ("max_turns", "max turns")
# Why the context figure is aether's own count for formats whose usage is not the context size.
USAGE_NOTES = {
    "codex": "codex reports usage summed over the whole thread, not the context it holds: "
    "aether counts the stream itself",
    "gemini": "gemini reports token totals, not the context it holds: aether counts the stream itself",
}


class ByteBoundedQueue:
    """A FIFO whose producers wait while the queued items' sizes exceed a byte budget.

    A single item larger than the budget is still accepted when the queue is
    empty, so a producer can never wait forever.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: deque[tuple[tuple[str, int, Any], int]] = deque()
        self._bytes = 0
        self._cond = threading.Condition()

    def put(self, item: tuple[str, int, Any], size: int) -> None:
        """Append an item of `size` bytes, waiting while the queue is over budget."""
        with self._cond:
            while self._items and self._bytes + size > self.max_bytes:
                self._cond.wait()
            self._items.append((item, size))
            self._bytes += size
            self._cond.notify_all()

    def get(self, timeout: float) -> tuple[str, int, Any]:
        """The oldest item; queue.Empty after `timeout` seconds without one."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout):
                raise queue.Empty
            item, size = self._items.popleft()
            self._bytes -= size
            self._cond.notify_all()
            return item

    def get_nowait(self) -> tuple[str, int, Any]:
        """The oldest item, or queue.Empty."""
        return self.get(0.0)


class Reporter(Protocol):
    """Where the supervisor says what happens (the terminal, or nothing)."""

    def event(self, ev: P.Event) -> None: ...
    def stderr(self, text: str) -> None: ...
    def notice(self, text: str, kind: str = "info") -> None: ...
    def usage(self, *, episode: int, used: int, window: int, reported: bool) -> None: ...
    def close(self) -> None: ...


class NullReporter:
    """Says nothing (for library use and tests)."""

    def event(self, ev: P.Event) -> None:
        """Ignore an agent event."""

    def stderr(self, text: str) -> None:
        """Ignore a stderr line."""

    def notice(self, text: str, kind: str = "info") -> None:
        """Ignore a notice."""

    def usage(self, *, episode: int, used: int, window: int, reported: bool) -> None:
        """Ignore a usage update."""

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class RunResult:
    """How a run ended."""

    exit_code: int
    status: str
    message: str
    session_id: str
    episode: int
    last_checkpoint: str | None


@dataclass
class ResumePlan:
    """Where a resumed run picks up: the session, the next episode and its checkpoint."""

    session_id: str
    episode: int
    checkpoint_id: str | None
    restarts: int = 0
    recover: bool = False
    latest: bool = True


@dataclass
class _Outcome:
    kind: str  # relaunch | inplace | finished | crashed | interrupted | capped
    trigger: str = ""
    status: int | None = None
    signum: int = 0
    note: str = ""


@dataclass
class _EpisodeState:
    child: Child
    gen: int
    log: EpisodeLog
    budget: Budget
    speaks_protocol: bool = False
    can_rehydrate: bool = False
    want: tuple[str, bool] | None = None  # (trigger, urgent)
    agent_checkpoints: int = 0
    events_at_agent_checkpoint: int = 0
    dirty_tasks: dict[str, str] = field(default_factory=dict)
    warnings: int = 0
    compactions: int = 0
    outcome: Outcome | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def session_processes(session_id: str) -> list[int]:
    """Pids of live processes launched for `session_id`: those whose environment holds
    its AETHER_SESSION (inherited by the agent's own children). Matching the environment,
    not a stored pid, means a recycled pid is never taken for the agent."""
    marker = f"AETHER_SESSION={session_id}".encode()
    me = os.getpid()
    found: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for name in entries:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            env = Path(f"/proc/{name}/environ").read_bytes()
        except OSError:
            continue
        if marker in env.split(b"\0"):
            found.append(int(name))
    return found


def end_session_processes(session_id: str) -> list[int]:
    """SIGKILL whatever a dead supervisor of `session_id` left running; the pids signalled."""
    killed = []
    for pid in session_processes(session_id):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def backoff_delay(restarts: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before crash restart number `restarts` (1, 2, …): `base` doubling per
    restart up to `cap`, with ±20% jitter so many supervisors do not retry in step."""
    raw = min(cap, base * (2 ** min(restarts - 1, 62)))
    return min(cap, raw * rng.uniform(0.8, 1.2))


def cap_line(text: str, limit: int = 200) -> str:
    """The first line of `text`, cut to `limit` characters."""
    return cap(text.strip().splitlines()[0] if text.strip() else "", limit)


def new_session_id(now: datetime | None = None) -> str:
    """A sortable, unique session id: ses_YYYYMMDDTHHMMSS_<6 hex>."""
    now = now or datetime.now(UTC)
    return f"ses_{now:%Y%m%dT%H%M%S}_{secrets.token_hex(3)}"


def utc_now() -> str:
    """ISO 8601 UTC timestamp with a Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    ) -> None:
        self.settings = settings
        self.store = store
        self.ui: Reporter = reporter or NullReporter()
        self.counter = counter or load_counter()
        self.clock = clock
        self.spawn_fn = spawn_fn
        self.environ = dict(os.environ if environ is None else environ)
        self.cwd = cwd or Path.cwd()
        self._q = ByteBoundedQueue(QUEUE_BYTES)
        self._gen = 0
        self._signal = 0
        self._wake = threading.Event()
        self.session_id = ""
        self.episode = 0
        self.restarts = 0
        self.last_checkpoint: dict[str, Any] | None = None
        self._ledger: Any = None
        self._started = 0.0
        self._launched_at = 0.0
        self._rng = rng or random.Random()
        self._sleeper = sleep
        self._last_beat = 0.0
        self._overflow_streak = 0
        self._episodes_run = 0
        self._last_fraction = 0.0
        self._hello_child: Child | None = None
        self._hello_rehydrate = False
        self._force = False
        self._child: Child | None = None
        self._agent_window = 0
        self.fmt = settings.format if settings.format != "auto" else detect_format(settings.command)
        self._protocol = make_adapter(self.fmt).speaks_protocol
        self.overhead = context_overhead(self.fmt, settings.context_overhead)
        self._stream_session: str | None = None
        self._compactions = 0
        self._last_reap = 0.0
        self._storage_warned: set[str] = set()
        # Per reader generation: when its stdout reader last finished a line (inf while
        # it works on one), read by the main loop to judge a pipe held open after exit.
        self._reader_active: dict[int, float] = {}
        # Lines longer than COUNT_INLINE_CHARS are counted here, so parsing the next
        # line and counting this one run at once; tiktoken lets go of the GIL while
        # it encodes, so both cores count. Threads start on the first long line.
        self._count_pool = ThreadPoolExecutor(COUNT_THREADS, thread_name_prefix="aether-count")

    @property
    def window(self) -> int:
        """The context window: the user's (flag or model), else the agent's hello, else the default."""
        s = self.settings
        if s.context_window or window_for_model(s.model) or not self._agent_window:
            return s.window
        return self._agent_window

    # ------------------------------------------------------------ public

    def run(self, plan: ResumePlan | None = None) -> RunResult:
        """Run until the agent is done, the run is interrupted or a limit stops it."""
        s = self.settings
        self.store.init()
        self.store.acquire(list(s.command))
        old_handlers = self._install_signals()
        try:
            if plan is None:
                self.session_id = new_session_id()
                self.episode = 1
                ckpt_id = None
            else:
                self.session_id = plan.session_id
                self.episode = plan.episode
                ckpt_id = plan.checkpoint_id
                self.restarts = plan.restarts
            self.last_checkpoint = self.store.read_checkpoint(ckpt_id) if ckpt_id else None
            agent = (self.last_checkpoint or {}).get("agent")
            if isinstance(agent, dict) and isinstance(agent.get("session_id"), str):
                self._stream_session = agent["session_id"]
            become_subreaper()
            self._ledger = self.store.open_ledger(self.session_id)
            self._started = self.clock()
            if plan is None:
                try:
                    prev = self.store.read_continuity() or {}
                except AetherError:
                    prev = {}  # unreadable: nothing to learn about a previous run from it
                if prev.get("status") == "running" and isinstance(prev.get("session_id"), str):
                    self._end_orphans(prev["session_id"])
            if plan is not None and plan.recover:
                self._end_orphans(self.session_id)
                if plan.latest:
                    self._recover()
            self._record(
                "session",
                resumed=plan is not None,
                checkpoint=ckpt_id,
                settings=s.to_config(),
                tokenizer=self.counter.name,
                format=self.fmt,
            )
            if self.counter.note:
                self.ui.notice(f"token counts are estimates: {self.counter.note}", "warn")
            return self._loop()
        finally:
            # On an internal error the agent must not outlive us.
            if self._child is not None and self._child.poll() is None:
                self._child.signal_group(signal.SIGKILL)
            self._restore_signals(old_handlers)
            if self._ledger is not None:
                self._ledger.close()
            self.ui.close()
            self.store.release()
            # Queued counts still finish (the main loop has taken what it needs by now).
            self._count_pool.shutdown(wait=False)

    # ------------------------------------------------------------ the cycle

    def _loop(self) -> RunResult:
        s = self.settings
        child: Child | None = None
        prompt_tokens = 0
        while True:
            if self._signal:
                # Interrupted while a checkpoint was being written: do not start another agent.
                self._write_continuity("stopped")
                self.ui.notice("interrupted; continue with `aether resume`.", "warn")
                return self._result(128 + self._signal, "stopped", "interrupted")
            if child is None:
                prompt = self._prompt()
                prompt_tokens = prompt.tokens
                child = self._launch(prompt)
            st = self._new_episode_state(child, prompt_tokens)
            self._write_continuity("running", st.budget.fraction)
            outcome = self._run_episode(st)
            self._episodes_run += 1
            ended = outcome.kind != "inplace"
            if ended:
                self._finish_child(st)
                child = None

            if outcome.kind == "finished":
                done = st.log.done is not None
                ck = self._checkpoint("done", st, note=outcome.note)
                status = "done" if done else "stopped"
                self._write_continuity(status)
                msg = "agent reported done" if done else "agent exited with code 0"
                self.ui.notice(f"{msg}; final checkpoint {ck['id']}", "ok")
                return self._result(C.EXIT_OK, status, msg)

            if outcome.kind == "interrupted":
                ck = self._checkpoint("interrupt", st)
                self._write_continuity("stopped")
                code = 128 + outcome.signum
                self.ui.notice(
                    f"interrupted; checkpoint {ck['id']} written. Continue with `aether resume`.",
                    "warn",
                )
                return self._result(code, "stopped", "interrupted")

            if outcome.kind == "capped":
                ck = self._checkpoint("interrupt", st, note=outcome.note)
                self._write_continuity("stopped")
                self.ui.notice(
                    f"{outcome.note}; checkpoint {ck['id']}. Continue with `aether resume`.", "warn"
                )
                return self._result(C.EXIT_OK, "stopped", outcome.note)

            if outcome.kind == "crashed":
                assert outcome.status is not None
                what = describe_status(outcome.status)
                if outcome.note:
                    what = f"{what}, {outcome.note}"
                ck = self._checkpoint("crash", st, note=f"agent {what}")
                if self.clock() - self._launched_at >= s.min_uptime:
                    # It ran long enough to count as healthy: this crash starts a new count.
                    self.restarts = 0
                self.restarts += 1
                if self.restarts > s.max_restarts:
                    self._write_continuity("crashed")
                    msg = (
                        f"agent crashed {self.restarts} times in a row (last: {what}); "
                        f"stopped after --max-restarts {s.max_restarts}. Memory is intact at "
                        f"{ck['id']}: fix the agent, then `aether resume`."
                    )
                    self.ui.notice(msg, "error")
                    # The agent's own exit code passes through (128+n for death by signal n).
                    return self._result(exit_code_of(outcome.status) or C.EXIT_CRASH_LOOP, "crashed", msg)
                delay = backoff_delay(self.restarts, s.backoff_base, s.backoff_cap, self._rng)
                self.ui.notice(
                    f"agent {what}; checkpoint {ck['id']}; restart {self.restarts}/"
                    f"{s.max_restarts} in {delay:.1f}s",
                    "warn",
                )
                self._record("backoff", seconds=delay, restarts=self.restarts)
                if self._sleep(delay):
                    self._write_continuity("stopped")
                    return self._result(128 + self._signal, "stopped", "interrupted during back-off")
                self.episode += 1
                continue

            # relaunch or in-place rehydrate after a threshold / manual / agent trigger
            ck = self._checkpoint(outcome.trigger, st, note=outcome.note)
            self.restarts = 0
            overflowed = st.budget.steps <= OVERFLOW_STEPS and st.log.events <= OVERFLOW_EVENTS
            if outcome.trigger in ("budget", "emergency") and overflowed:
                self._overflow_streak += 1
            else:
                self._overflow_streak = 0
            if self._overflow_streak >= OVERFLOW_LIMIT:
                if child is not None:
                    self._stop_child(st, "overflow")
                self._write_continuity("stopped")
                msg = (
                    f"the context overflowed within {OVERFLOW_STEPS} steps of launch in "
                    f"{OVERFLOW_LIMIT} episodes in a row, even with a shrunk prompt: the "
                    "window is too small for this agent's first output. Stopped; memory "
                    f"is intact at {ck['id']}. Raise --context-window, then `aether resume`."
                )
                self.ui.notice(msg, "error")
                return self._result(C.EXIT_CRASH_LOOP, "stopped", msg)
            if s.max_episodes is not None and self._episodes_run >= s.max_episodes:
                if child is not None:
                    self._stop_child(st, "max-episodes")
                self._write_continuity("stopped")
                msg = f"stopped after {self._episodes_run} episodes (--max-episodes)"
                self.ui.notice(f"{msg}; continue with `aether resume`", "warn")
                return self._result(C.EXIT_OK, "stopped", msg)
            self.episode += 1
            if outcome.kind == "inplace" and child is not None:
                prompt = self._prompt()
                prompt_tokens = prompt.tokens
                self.store.write_prompt(prompt.text)
                child.send(P.cmd_rehydrate(episode=self.episode, prompt=prompt.text, checkpoint=ck["id"]))
                self._record("command", command="rehydrate", checkpoint=ck["id"])
                self.ui.notice(
                    f"episode {self.episode}: rehydrated in place from {ck['id']} ({prompt.tokens} tokens)",
                    "ok",
                )

    def _new_episode_state(self, child: Child, prompt_tokens: int) -> _EpisodeState:
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
        log = EpisodeLog(objective=s.objective, prior_tasks=tasks)
        st = _EpisodeState(child=child, gen=self._gen, log=log, budget=budget)
        if self._hello_child is child:
            # Rehydrated in place: the same process, which already said hello.
            st.speaks_protocol, st.can_rehydrate = True, self._hello_rehydrate
        return st

    # ------------------------------------------------------------ prompts & launch

    def _prompt(self) -> Any:
        s = self.settings
        budget = prompt_budget(self.window, s.prompt_budget)
        if self._overflow_streak:
            budget = max(64, budget >> self._overflow_streak)
        facts = self.store.read_project_memory().get("facts", [])
        if self.last_checkpoint is None:
            return first_prompt(
                objective=s.objective,
                facts=facts,
                count=self.counter.count,
                budget=budget,
                memory_dir=self.store.root,
                session=self.session_id,
            )
        return rehydrate_prompt(
            checkpoint=self.last_checkpoint,
            tasks=self.store.list_tasks(),
            facts=facts,
            episode=self.episode,
            count=self.counter.count,
            budget=budget,
            memory_dir=self.store.root,
        )

    def _launch(self, prompt: Any) -> Child:
        s = self.settings
        ckpt_id = self.last_checkpoint["id"] if self.last_checkpoint else None
        prompt_path = self.store.write_prompt(prompt.text)
        env = dict(self.environ)
        env.update(
            {
                "AETHER_PROTOCOL": str(C.PROTOCOL_VERSION),
                "AETHER_SESSION": self.session_id,
                "AETHER_EPISODE": str(self.episode),
                "AETHER_MEMORY_DIR": str(self.store.root),
                "AETHER_PROMPT_FILE": str(prompt_path),
                "AETHER_CHECKPOINT": ckpt_id or "",
            }
        )
        argv = self._argv(prompt.text, prompt_path)
        self._gen += 1
        self._launched_at = self.clock()
        child = self.spawn_fn(argv, env=env, cwd=str(self.cwd), stdin_pipe=self._protocol)
        self._child = child
        self._start_readers(child, self._gen)
        budget_limit = int(self.window * s.checkpoint_at)
        child.send(
            P.cmd_start(
                session=self.session_id,
                episode=self.episode,
                objective=s.objective,
                prompt=prompt.text,
                checkpoint=ckpt_id,
                window=self.window,
                limit=budget_limit,
            )
        )
        self._record(
            "launch",
            argv=argv if argv == list(s.command) else self._argv_for_ledger(argv, prompt.text),
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
            "ok",
        )
        return child

    def _argv(self, prompt: str, prompt_path: Path) -> list[str]:
        """The command line of this launch: the user's, with the prompt put in.

        `{prompt}` and `{prompt_file}` are filled in on every launch. The prompt argument
        of a recognised CLI (claude -p PROMPT, codex exec PROMPT) is the user's own on a
        fresh start and the rehydrated prompt after a checkpoint, or the agent's own
        resume with --native-resume once its session id is known.
        """
        argv = list(self.settings.command)
        if self.last_checkpoint is None:
            return fill_placeholders(self.fmt, argv, prompt=prompt, prompt_file=str(prompt_path))
        if self.settings.native_resume and self._stream_session:
            resumed = native_resume_argv(self.fmt, argv, session_id=self._stream_session, prompt=prompt)
            if resumed is not None:
                return fill_placeholders(self.fmt, resumed, prompt=prompt, prompt_file=str(prompt_path))
        return render_argv(self.fmt, argv, prompt=prompt, prompt_file=str(prompt_path))

    @staticmethod
    def _argv_for_ledger(argv: list[str], prompt: str) -> list[str]:
        # The prompt is in start.prompt already; the ledger needs only where it went.
        return ["<prompt>" if a == prompt else a for a in argv]

    def _start_readers(self, child: Child, gen: int) -> None:
        q = self._q
        assert child.proc.stdout is not None and child.proc.stderr is not None
        # Each reader owns a duplicate of its pipe and closes it at EOF: if the episode
        # ends while a grandchild still holds the pipe, closing the original cannot free
        # the fd number for the next child's pipe under a reader that is still reading.
        out_fd = os.dup(child.proc.stdout.fileno())
        err_fd = os.dup(child.proc.stderr.fileno())

        adapter = make_adapter(self.fmt)
        count = self.counter.count
        pool = self._count_pool

        def tokens_of(events: list[P.Event]) -> list[int]:
            # Off the main loop: in the reader thread for short lines, in the counting
            # pool for long ones.
            out = []
            for ev in events:
                text = P.counted_text(ev)
                out.append(count(text) if text else 0)
            return out

        active = self._reader_active
        active[gen] = time.monotonic()

        def read_out() -> None:
            # Parsing and counting happen here, off the main loop.
            try:
                for line in iter_lines(out_fd):
                    active[gen] = math.inf  # working on a line
                    if not line.text.strip() and not line.dropped_bytes:
                        active[gen] = time.monotonic()
                        continue
                    events = adapter.feed(line.text)
                    if line.dropped_bytes and not events:
                        # The line said nothing we model, but its lost bytes still count.
                        events = [P.Text({"type": "text", "text": ""}, text="")]
                    # One queue item per line: its events (a tool call and the usage
                    # snapshot of the same line, say) are judged together.
                    tokens: list[int] | Future[list[int]]
                    if len(line.text) > COUNT_INLINE_CHARS:
                        tokens = pool.submit(tokens_of, events)
                    else:
                        tokens = tokens_of(events)
                    q.put(("events", gen, (events, tokens, line.dropped_bytes)), len(line.text))
                    active[gen] = time.monotonic()
                last = adapter.finish()
                q.put(("events", gen, (last, tokens_of(last), 0)), 0)
            finally:
                os.close(out_fd)
                q.put(("eof", gen, None), 0)
                active.pop(gen, None)

        def read_err() -> None:
            try:
                for line in iter_lines(err_fd, max_line_bytes=16_384):
                    q.put(("stderr", gen, line.text), len(line.text))
            finally:
                os.close(err_fd)

        threading.Thread(target=read_out, name="aether-stdout", daemon=True).start()
        threading.Thread(target=read_err, name="aether-stderr", daemon=True).start()

    # ------------------------------------------------------------ one episode

    def _run_episode(self, st: _EpisodeState) -> _Outcome:
        s = self.settings
        mode = "run"  # run | requested | settling | stopping | interrupting
        trigger = ""
        deadline = 0.0
        escalate_at = 0.0
        escalation = 0
        eof = False
        exited_at: float | None = None
        status: int | None = None
        request_mark = 0
        forwarded = 0
        last_poll = 0.0
        while True:
            try:
                kind, gen, payload = self._q.get(TICK)
            except queue.Empty:
                kind, gen, payload = "tick", st.gen, None
            if gen == st.gen:
                if kind == "events":
                    self._on_events(st, *payload)
                elif kind == "stderr":
                    self._record("stderr", text=payload)
                    self.ui.stderr(payload)
                elif kind == "eof":
                    eof = True
            now = self.clock()

            # signals: forward to the child's group once, then escalate
            if self._signal and mode != "interrupting":
                forwarded = self._signal
                st.child.signal_group(forwarded)
                self._record("signal", signum=forwarded)
                mode, escalate_at, escalation = "interrupting", now + s.stop_grace, 1
                if forwarded == signal.SIGTERM:
                    # The child already has its SIGTERM: the next step is SIGKILL.
                    escalate_at, escalation = now + s.term_grace, 2

            if mode == "run":
                # A file check per event would be waste; a few per second is plenty.
                if now - last_poll >= TICK:
                    last_poll = now
                    if self.store.take_checkpoint_request():
                        st.want = st.want or ("manual", False)
                if st.log.done is not None:
                    st.want = ("done", True)
                if s.max_duration is not None and now - self._started >= s.max_duration:
                    st.want = ("interrupt", False)
                    st.extra["capped"] = f"stopped after --max-duration {s.max_duration:g}s"
                if st.want is not None:
                    trigger, urgent = st.want
                    # An agent that never spoke the protocol cannot answer a request;
                    # one that just sent its checkpoint or said done needs none.
                    if trigger == "done":
                        mode, escalate_at, escalation = "stopping", now + s.stop_grace, 0
                        self._send_stop(st, trigger)
                    elif urgent or not st.speaks_protocol or trigger == "agent":
                        # Stop at a safe point: a tool call in flight finishes first, so its
                        # result is in the checkpoint instead of being half done.
                        mode, deadline = "settling", now + s.tool_grace
                    else:
                        request_mark = st.agent_checkpoints
                        deadline_ms = int(s.checkpoint_timeout * 1000)
                        st.child.send(P.cmd_checkpoint_request(reason=trigger, deadline_ms=deadline_ms))
                        self._record("command", command="checkpoint_request", reason=trigger)
                        mode, deadline = "requested", now + s.checkpoint_timeout
            elif mode == "requested":
                answered = st.agent_checkpoints > request_mark
                # An emergency while waiting ends the wait, but an answer that already
                # came is still the agent's quiesced state: use it.
                emergency = bool(st.want and st.want[1]) and not answered
                if answered and st.can_rehydrate and "capped" not in st.extra:
                    return _Outcome("inplace", trigger=trigger)
                if answered or emergency or now >= deadline:
                    if emergency:
                        trigger = "emergency"
                        st.extra["note"] = "agent did not answer before the emergency threshold"
                    elif not answered:
                        st.extra["note"] = (
                            f"agent did not answer checkpoint_request within {s.checkpoint_timeout:g}s"
                        )
                    mode, escalate_at, escalation = "stopping", now + s.stop_grace, 0
                    self._send_stop(st, trigger)
            if mode == "settling" and (not st.log.open_calls or now >= deadline):
                if st.log.open_calls:
                    st.extra["note"] = (
                        f"stopped with {len(st.log.open_calls)} tool call(s) still running after "
                        f"--tool-grace {s.tool_grace:g}s: marked interrupted"
                    )
                    self._record("settle_timeout", calls=list(st.log.open_calls))
                mode, escalation = "stopping", 0
                # An agent that cannot read the stop command gets SIGTERM at once.
                escalate_at = now if st.child.stdin_closed else now + s.stop_grace
                self._send_stop(st, trigger)
            if mode == "interrupting" and self._force and escalation < 3:
                escalate_at, escalation = now, 2
            if mode in ("stopping", "interrupting") and status is None and now >= escalate_at:
                if escalation == 0 or (mode == "interrupting" and escalation == 1):
                    self._record("escalate", signal="SIGTERM")
                    st.child.signal_group(signal.SIGTERM)
                    escalate_at, escalation = now + s.term_grace, 2
                elif escalation == 2:
                    self._record("escalate", signal="SIGKILL")
                    st.child.signal_group(signal.SIGKILL)
                    escalate_at, escalation = now + 3600, 3

            # the child's end: exit status plus stdout closed (or a grace after exit)
            if status is None:
                status = st.child.poll()
                if status is None and eof:
                    # Output closed: the exit is a moment away. Waiting on the process
                    # here, not on the idle queue, saves up to a tick per relaunch.
                    status = st.child.wait(0.02)
                if status is not None:
                    exited_at = now
            if status is not None and (eof or self._gave_up_on_eof(st.gen, exited_at, now)):
                if not eof:
                    self._drain(st)
                self._record("exit", status=status, code=exit_code_of(status))
                if mode == "interrupting":
                    return _Outcome("interrupted", signum=forwarded, status=status)
                if st.log.done is not None:
                    return _Outcome("finished", status=status)
                verdict = self._judge_failure(st) if mode in ("run", "settling") else None
                if verdict is not None:
                    return verdict
                # An exit we did not ask for is judged by its status, unless the agent
                # handed over its state first (answered the request, then exited).
                handed_over = mode == "requested" and st.agent_checkpoints > request_mark
                if mode in ("stopping", "settling") or handed_over:
                    if "capped" in st.extra:
                        return _Outcome("capped", note=st.extra["capped"], status=status)
                    # An answer that came late (after the stop) is still the agent's own state.
                    late = st.agent_checkpoints > request_mark
                    note = "" if late else st.extra.get("note", "")
                    return _Outcome("relaunch", trigger=trigger, status=status, note=note)
                if status == 0:
                    return _Outcome("finished", status=status)
                return _Outcome("crashed", status=status)

            if now - self._last_beat >= HEARTBEAT_EVERY:
                self._heartbeat(st, mode)
            if now - self._last_reap >= REAP_EVERY:
                # Descendants the agent orphaned are ours now (subreaper): no zombies.
                self._last_reap = now
                reap_orphans(keep=st.child.pid)

    def _gave_up_on_eof(self, gen: int, exited_at: float | None, now: float) -> bool:
        """After the child's exit, stop waiting for its stdout to close once the reader has
        been idle a while: a grandchild may hold the pipe open forever, but a reader still
        parsing and counting a huge last line is not done."""
        if exited_at is None or now - exited_at < EOF_AFTER_EXIT:
            return False
        busy_since = self._reader_active.get(gen, 0.0)
        return time.monotonic() - busy_since >= EOF_AFTER_EXIT

    def _judge_failure(self, st: _EpisodeState) -> _Outcome | None:
        """The agent's own verdict of failure (Claude's result, Codex's turn.failed) read as
        what it means for the run: an overflow or a turn limit relaunches, anything else is
        a crash even with exit code 0. None when the agent reported no failure."""
        out = st.outcome
        if out is None or out.ok:
            return None
        said = f"{out.reason} {out.text}".lower()
        if any(w in said for w in _OVERFLOW_WORDS):
            return _Outcome("relaunch", trigger="emergency", note=f"agent reported: {out.reason}")
        if any(w in said for w in _TURN_LIMIT_WORDS):
            return _Outcome("relaunch", trigger="steps", note=f"agent reported: {out.reason}")
        status = st.child.poll() or 1
        said = cap_line(out.reason) + (f" ({cap_line(out.text)})" if out.text.strip() else "")
        return _Outcome("crashed", status=status, note=f"agent reported: {said}")

    def _drain(self, st: _EpisodeState) -> None:
        """Process what the readers already queued for this child."""
        while True:
            try:
                kind, gen, payload = self._q.get_nowait()
            except queue.Empty:
                return
            if gen != st.gen:
                continue
            if kind == "events":
                self._on_events(st, *payload)
            elif kind == "stderr":
                self._record("stderr", text=payload)

    def _send_stop(self, st: _EpisodeState, reason: str) -> None:
        st.child.send(P.cmd_stop(reason=reason or "stop"))
        self._record("command", command="stop", reason=reason)

    def _stop_child(self, st: _EpisodeState, reason: str) -> None:
        """Stop a child that is still running (after an in-place checkpoint we do not continue)."""
        self._send_stop(st, reason)
        if st.child.wait(self.settings.stop_grace) is None:
            st.child.terminate(term_grace=self.settings.term_grace)
        self._finish_child(st)

    def _finish_child(self, st: _EpisodeState) -> None:
        st.child.close_stdin()
        # Leftover group members (a backgrounded grandchild) must not outlive the episode.
        st.child.signal_group(signal.SIGKILL)
        with contextlib.suppress(Exception):
            st.child.proc.wait(timeout=1)
        for pipe in (st.child.proc.stdout, st.child.proc.stderr):
            with contextlib.suppress(OSError, ValueError):
                if pipe is not None:
                    pipe.close()

    # ------------------------------------------------------------ events

    def _on_events(
        self,
        st: _EpisodeState,
        events: list[P.Event],
        tokens: list[int] | Future[list[int]],
        dropped: int,
    ) -> None:
        if isinstance(tokens, Future):
            # Lines are handled in the order they came; a long one waits for its count.
            tokens = tokens.result()
        for i, (ev, n) in enumerate(zip(events, tokens, strict=True)):
            self._on_event(st, ev, n, dropped if i == 0 else 0)

    def _on_event(self, st: _EpisodeState, ev: P.Event, counted: int, dropped: int) -> None:
        """One event of the live child; `counted` is its text's tokens (from the reader)."""
        s = self.settings
        rec: dict[str, Any] = {"event": ev.raw}
        if dropped:
            rec["dropped_bytes"] = dropped
        if isinstance(ev, P.Invalid):
            rec["warning"] = ev.reason
            st.warnings += 1
        self._record("event", **rec)

        if isinstance(ev, P.Invalid):
            self.ui.notice(
                f"agent sent a malformed {ev.raw.get('type')} event ({ev.reason}); counted as text",
                "warn",
            )
            ev = P.Text({"type": "text", "text": ev.text}, text=ev.text)
        elif self._protocol and not isinstance(ev, P.Text | P.Unknown):
            st.speaks_protocol = True
        if isinstance(ev, StreamStarted):
            self._stream_session = ev.session_id or self._stream_session
        elif isinstance(ev, Compaction):
            st.compactions += 1
            self._compactions += 1
            sizes = f" ({ev.pre_tokens} → {ev.post_tokens} tokens)" if ev.pre_tokens else ""
            self.ui.notice(f"the agent compacted its own context{sizes}", "warn")
        elif isinstance(ev, Outcome):
            st.outcome = ev
        if isinstance(ev, P.Hello):
            if ev.context_window and ev.context_window >= 256:
                self._agent_window = ev.context_window
                st.budget.window = self.window
            st.can_rehydrate = "rehydrate" in ev.capabilities
            self._hello_child, self._hello_rehydrate = st.child, st.can_rehydrate
        if isinstance(ev, P.CheckpointEvent):
            st.agent_checkpoints += 1
            st.events_at_agent_checkpoint = st.log.events + 1
        if isinstance(ev, P.TaskUpdate) and not self.store.valid_task_id(ev.id):
            self._record("warning", text=f"refused task id {ev.id[:80]!r}")
            self.ui.notice(f"refused task id {ev.id[:80]!r}: ids are letters, digits, _ - . (max 64)", "warn")
            return

        st.log.add(ev)
        self.ui.event(ev)

        tokens = counted + (estimate_bytes(dropped) if dropped else 0)
        if tokens:
            st.budget.add(tokens)
        if isinstance(ev, P.Usage):
            st.budget.report(ev.context_tokens)
        if isinstance(ev, P.TaskUpdate):
            # Task files are written in batches (heartbeat, checkpoint, episode end): an fsync
            # per event would let a chatty agent outrun us. The ledger already holds every
            # update, and recovery replays it, so a kill loses nothing.
            st.dirty_tasks[ev.id] = utc_now()
            if s.checkpoint_on_task_done and ev.fields.get("status") == "done":
                st.want = st.want or ("task_done", False)
        if isinstance(ev, P.ToolCall) and st.budget.step():
            st.want = st.want or ("steps", False)
        if s.checkpoint_on_error and (
            (isinstance(ev, P.ToolResult) and ev.is_error)
            or (isinstance(ev, P.Log) and ev.level in ("error", "critical"))
        ):
            st.want = st.want or ("error", False)
        if isinstance(ev, P.CheckpointEvent) and s.checkpoint_on_agent and st.want is None:
            st.want = ("agent", False)

        for level in st.budget.crossed():
            st.child.send(P.cmd_budget(used=st.budget.used, window=st.budget.window, level=level))
            self._record("command", command="budget", level=level, used=st.budget.used)
            if level == EMERGENCY:
                st.want = ("emergency", True)
            elif level == CHECKPOINT and (st.want is None or not st.want[1]):
                st.want = ("budget", False)
            elif level == SOFT:
                self.ui.notice(f"context at {st.budget.fraction:.0%}: soft threshold", "info")
        self.ui.usage(
            episode=self.episode,
            used=st.budget.used,
            window=st.budget.window,
            reported=st.budget.reported,
        )

    # ------------------------------------------------------------ checkpoints

    def _checkpoint(self, trigger: str, st: _EpisodeState, note: str = "") -> dict[str, Any]:
        self._flush_tasks(st.log, st.dirty_tasks)
        # The agent's checkpoint is its state at the moment it sent it; work it did after
        # that (more than a closing remark or two) would be lost, so rules win then.
        fresh = st.log.events - st.events_at_agent_checkpoint <= STALE_AFTER_EVENTS
        return self._write_checkpoint(
            trigger, st.log, st.budget, note=note, prefer_agent=fresh, compactions=st.compactions
        )

    def _flush_tasks(self, log: EpisodeLog, dirty: dict[str, str]) -> None:
        """Write the task files changed since the last flush."""
        for task_id, stamp in dirty.items():
            task = log.tasks.get(task_id)
            if task is not None:
                self.store.write_task({**task, "id": task_id, "updated_at": stamp})
        dirty.clear()

    def _write_checkpoint(
        self,
        trigger: str,
        log: EpisodeLog,
        budget_state: Budget,
        *,
        note: str = "",
        episode: int | None = None,
        prefer_agent: bool = True,
        compactions: int = 0,
    ) -> dict[str, Any]:
        s = self.settings
        budget = prompt_budget(self.window, s.prompt_budget)
        max_tokens = max(2 * budget, 512)
        # An emergency or crash checkpoint is made from what aether saw, but an
        # answer the agent did send is still the better summary if it is valid.
        draft = distill(
            trigger=trigger,
            objective=s.objective,
            log=log,
            parent=self.last_checkpoint,
            count=self.counter.count,
            max_tokens=max_tokens,
            constraints=list(s.constraints),
            note=note,
            prefer_agent=prefer_agent,
            command=self._command_distiller(max_tokens) if s.distill_command else None,
        )
        draft["parent"] = self.last_checkpoint["id"] if self.last_checkpoint else None
        draft["session_id"] = self.session_id
        draft["episode"] = self.episode if episode is None else episode
        draft["workspace"] = workspace_state(self.cwd)
        draft["tokenizer"] = "reported" if budget_state.reported else self.counter.name
        draft["metrics"]["episode_tokens"] = budget_state.used
        draft["metrics"]["agent_compactions"] = compactions
        # Which agent stream this was, and its own session id for --native-resume.
        draft["agent"] = {"format": self.fmt, "session_id": self._stream_session}
        ck = self.store.write_checkpoint(draft)
        seq = int(ck["id"].split("_")[1])
        pm = self.store.read_project_memory()
        if log.memory_ops:
            pm = self.store.apply_memory_ops(log.memory_ops, seq=seq)
        finished = {t.get("id") for t in pm.get("finished_tasks", [])}
        new_done = [
            {"id": t["id"], "title": t.get("title", "")}
            for t in self.store.list_tasks()
            if t.get("status") == "done" and t["id"] not in finished
        ]
        if new_done or (s.objective and pm.get("objective") != s.objective):
            pm["finished_tasks"] = [*pm.get("finished_tasks", []), *new_done]
            if s.objective:
                pm["objective"] = s.objective
            self.store.write_project_memory(pm)
        self.last_checkpoint = ck
        self._record(
            "checkpoint",
            id=ck["id"],
            trigger=trigger,
            distiller=ck.get("distiller"),
            note=ck.get("distiller_note", ""),
            tokens=ck["metrics"].get("checkpoint_tokens"),
            episode_tokens=budget_state.used,
        )
        m = ck["metrics"]
        ratio = (m["episode_tokens"] / m["checkpoint_tokens"]) if m.get("checkpoint_tokens") else 0
        fallback = f", {ck.get('distiller_note')}" if ck.get("distiller_note") else ""
        self.ui.notice(
            f"checkpoint {ck['id']} ({trigger}, {ck.get('distiller')}{fallback}): "
            f"{m['episode_tokens']} → {m['checkpoint_tokens']} tokens ({ratio:.1f}x)",
            "ok",
        )
        return ck

    def _command_distiller(self, max_tokens: int) -> Any:
        """The --distill-command callback for distill(): prompt in, JSON state out."""
        s = self.settings
        assert s.distill_command is not None

        command = s.distill_command

        def ask(draft: dict[str, Any]) -> tuple[Any, str | None]:
            prompt = distill_prompt(
                draft, objective=s.objective, max_tokens=max_tokens, memory_dir=self.store.root
            )
            self.ui.notice(f"asking the distill command: {command}", "info")
            answer, failure = run_distill_command(command, prompt, timeout=s.distill_timeout, cwd=self.cwd)
            self._record("distill_command", ok=failure is None, reason=failure or "")
            return answer, failure

        return ask

    def _end_orphans(self, session_id: str) -> None:
        """End the agent (and its children) a dead supervisor of `session_id` left running."""
        killed = end_session_processes(session_id)
        if killed:
            self._record("orphan_killed", pids=killed, session=session_id)
            self.ui.notice(
                f"ended {len(killed)} process(es) left running by the dead run of {session_id}", "warn"
            )

    def _recover(self) -> None:
        """After a supervisor died mid-episode: end any orphaned agent and distil what the
        ledger and task files hold since the last checkpoint, so nothing is lost or redone."""
        log = EpisodeLog(
            objective=self.settings.objective, prior_tasks={t["id"]: t for t in self.store.list_tasks()}
        )
        used = 0
        dirty: dict[str, str] = {}
        path = self.store.ledger_path(self.session_id)
        if path.exists():
            for rec in read_ledger(path):
                kind = rec.get("kind")
                if kind == "checkpoint":
                    log = EpisodeLog(
                        objective=self.settings.objective,
                        prior_tasks={t["id"]: t for t in self.store.list_tasks()},
                    )
                    used = 0
                    dirty.clear()
                elif kind == "event" and isinstance(rec.get("event"), dict):
                    ev = P.decode_obj(rec["event"], "")
                    if isinstance(ev, P.TaskUpdate):
                        if not self.store.valid_task_id(ev.id):
                            continue
                        dirty[ev.id] = str(rec.get("ts") or utc_now())
                    log.add(ev)
                    text = P.counted_text(ev)
                    used += self.counter.count(text) if text else 0
        self._flush_tasks(log, dirty)
        budget = Budget(window=self.window, soft_at=1, checkpoint_at=1, emergency_at=1)
        budget.reset(used)
        ck = self._write_checkpoint(
            "crash",
            log,
            budget,
            episode=max(1, self.episode - 1),
            note="recovered after the supervisor died: distilled from the run ledger and task files",
        )
        self.ui.notice(f"recovered the dead run's last episode into checkpoint {ck['id']}", "warn")

    # ------------------------------------------------------------ state files

    def _write_continuity(self, status: str, fraction: float | None = None) -> None:
        s = self.settings
        tasks = self.store.list_tasks()
        active = [
            {
                "id": t["id"],
                "status": t.get("status", "pending"),
                "state_file": self.store.task_file(t["id"]),
                "progress": t.get("progress", 0.0),
                "next_action": t.get("next_action", ""),
            }
            for t in tasks
            if t.get("status") != "done"
        ]
        last = self.last_checkpoint["id"] if self.last_checkpoint else None
        beat = self._last_fraction if fraction is None else fraction
        locations = [
            C.CONTINUITY_FILE,
            C.PROJECT_MEMORY_FILE,
            C.CONTEXT_INDEX_FILE,
            C.TASKS_DIR + "/",
            C.CHECKPOINTS_DIR + "/",
        ]
        if last:
            locations.append(f"{C.CHECKPOINTS_DIR}/{last}.json")
        if status == "done":
            how = "The objective is done. Start a new objective with `aether run`."
        elif last:
            how = (
                f"Run `aether resume` to continue from checkpoint {last} (episode {self.episode + 1}). "
                f"Read {C.CHECKPOINTS_DIR}/{last}.json for progress and next actions, and "
                f"{C.TASKS_DIR}/ for each unfinished task."
            )
        else:
            how = "No checkpoint yet: run `aether run` to start."
        data = {
            "session_id": self.session_id,
            "status": status,
            "episode": self.episode,
            "context_usage_percent": round(beat * 100, 1),
            "last_checkpoint": last,
            "active_tasks": active,
            "memory_locations": locations,
            "resume_instructions": how,
            "command": list(s.command),
            "objective": s.objective,
            "restarts": self.restarts,
            "window": self.window,
            "tokenizer": self.counter.name,
            "tokenizer_note": self.counter.note,
            "agent_format": self.fmt,
            "agent_compactions": self._compactions,
            "settings": s.to_config(),
        }
        self.store.write_continuity(data)

    def _heartbeat(self, st: _EpisodeState, mode: str) -> None:
        self._last_beat = self.clock()
        try:
            self._write_heartbeat(st, mode)
        except StorageError as exc:
            # Task files are written again at the checkpoint; the heartbeat is advisory.
            self._storage_trouble("the heartbeat or task files", exc)

    def _write_heartbeat(self, st: _EpisodeState, mode: str) -> None:
        self._flush_tasks(st.log, st.dirty_tasks)
        self._last_fraction = st.budget.fraction
        self.store.write_heartbeat(
            {
                "pid": os.getpid(),
                "child_pid": st.child.pid,
                "session_id": self.session_id,
                "episode": self.episode,
                "state": mode,
                "used": st.budget.used,
                "window": st.budget.window,
                "reported": st.budget.reported,
                "steps": st.budget.steps,
                "events": st.log.events,
                "protocol_warnings": st.warnings,
                "format": self.fmt,
                "usage_note": "" if st.budget.reported else self._usage_note(),
                "context_overhead": self.overhead,
                "compactions": st.compactions,
                "restarts": self.restarts,
                "tokenizer": self.counter.name,
                "tokenizer_note": self.counter.note,
                "updated_at": utc_now(),
            }
        )

    def _usage_note(self) -> str:
        note = USAGE_NOTES.get(self.fmt, "")
        if self.overhead:
            note = (note + ", " if note else "") + (
                f"plus {self.overhead:,} tokens for the agent's own instructions and tools "
                "(--context-overhead)"
            )
        return note

    def _record(self, kind: str, **fields: Any) -> None:
        if self._ledger is not None:
            try:
                self._ledger.append({"kind": kind, "episode": self.episode, **fields})
            except StorageError as exc:
                # The ledger is a local log: a full or failing disk must not stop the agent.
                # Checkpoints, which resume needs, still fail loudly.
                self._storage_trouble("the run ledger", exc)

    def _storage_trouble(self, what: str, exc: StorageError) -> None:
        """Warn once per kind of file that a write failed, and go on."""
        if what not in self._storage_warned:
            self._storage_warned.add(what)
            self.ui.notice(f"could not write {what} ({exc}); the agent keeps running", "warn")

    def _result(self, code: int, status: str, message: str) -> RunResult:
        last = self.last_checkpoint["id"] if self.last_checkpoint else None
        self._record("end", status=status, exit_code=code, message=message)
        return RunResult(code, status, message, self.session_id, self.episode, last)

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
        if self._signal:
            # A second Ctrl-C: the user wants out now, without the grace periods.
            self._force = True
            return
        self._signal = signum
        self._wake.set()

    def _sleep(self, seconds: float) -> bool:
        """Back-off wait that a signal cuts short; True if interrupted."""
        if self._sleeper is not None:
            return self._sleeper(seconds) or bool(self._signal)
        self._wake.wait(seconds)
        return bool(self._signal)
