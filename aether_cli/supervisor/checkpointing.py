"""Writing the run's checkpoints: distil an episode, assemble, store, keep project memory.

`Checkpointer` turns an episode's log and budget into an immutable checkpoint:
the distiller drafts it (the agent's own state, a `--distill-command` answer or
rules), `checkpoint.assemble` adds what the run knows, the store writes it; then
the project memory learns the episode's memory operations, finished tasks and
the objective. It also rebuilds the last episode of a supervisor that died,
from the ledger and the task files.

After each checkpoint, once the continuity record names it (`commit_pending`),
it has `.memory/` committed to git through the `commits` object it is given
(`git_memory.MemoryGit`), and records the commit in the ledger
(`memory_commit`); the run's end does the same through `commit_memory`.

It holds the last checkpoint written (the parent of the next one). It knows
nothing of processes, signals or the episode's stop logic; it reports through
the `record` and `notice` callables it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aether_cli import constants as C
from aether_cli import protocol as P
from aether_cli.budget import Budget
from aether_cli.checkpoint import assemble, compression
from aether_cli.distill import HandoffResult, distill
from aether_cli.distill_command import distill_prompt, run_distill_command
from aether_cli.episode_log import EpisodeLog
from aether_cli.errors import AetherError
from aether_cli.git_memory import MemoryCommits
from aether_cli.redact import redact_obj
from aether_cli.rehydrate import prompt_budget
from aether_cli.retention import after_checkpoint, read_policy
from aether_cli.settings import Settings
from aether_cli.store import MemoryStore, read_ledger
from aether_cli.supervisor.run_state import utc_now
from aether_cli.tokens import TokenCounter
from aether_cli.workspace import changed_files, is_commit, session_start, workspace_state

Record = Callable[..., None]
Notice = Callable[[str, str], None]


class Checkpointer:
    """Writes checkpoints for one session and remembers the last one."""

    def __init__(
        self,
        settings: Settings,
        store: MemoryStore,
        counter: TokenCounter,
        *,
        cwd: Path,
        fmt: str,
        record: Record,
        notice: Notice,
        commits: MemoryCommits | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.counter = counter
        self.cwd = cwd
        self.fmt = fmt
        self.record = record
        self.notice = notice
        self.commits = commits
        self._pending: tuple[str, str, int] | None = None
        self.last: dict[str, Any] | None = None
        # The commit the session began at: what the agent changed since is read from git.
        self.start_head = session_start(cwd)
        self._retention = _RunRetention(store)

    def work_started_at(self) -> str | None:
        """The commit the work began at: the parent chain's (recorded once), else this session's."""
        ws = (self.last or {}).get("workspace")
        recorded = ws.get("start_head") if isinstance(ws, dict) else None
        return recorded if isinstance(recorded, str) and is_commit(recorded) else self.start_head

    @property
    def last_id(self) -> str | None:
        """The id of the last checkpoint written or resumed from."""
        return self.last["id"] if self.last else None

    def flush_tasks(self, log: EpisodeLog, dirty: dict[str, str], session_id: str) -> None:
        """Write the task files changed since the last flush, each marked with its session
        (after a git merge, a file may hold another session's view of the same task id)."""
        for task_id, stamp in dirty.items():
            task = log.tasks.get(task_id)
            if task is not None:
                self.store.write_task({**task, "id": task_id, "updated_at": stamp, "session_id": session_id})
        dirty.clear()

    def max_tokens(self, window: int) -> int:
        """The most a checkpoint (and an agent's handoff) may hold: twice the prompt budget."""
        return max(2 * prompt_budget(window, self.settings.prompt_budget), 512)

    def write(
        self,
        trigger: str,
        log: EpisodeLog,
        budget: Budget,
        *,
        session_id: str,
        episode: int,
        window: int,
        note: str = "",
        prefer_agent: bool = True,
        compactions: int = 0,
        agent_session: str | None = None,
        handoff: HandoffResult | None = None,
    ) -> dict[str, Any]:
        """Distil, assemble and store a checkpoint of `log`; return it as written.

        `handoff`: what the agent answered when asked for its own handoff (Claude
        Code, Codex), merged in by `distill`."""
        s = self.settings
        max_tokens = self.max_tokens(window)
        start = self.work_started_at()
        workspace = {**workspace_state(self.cwd), "start_head": start}
        # An emergency or crash checkpoint is made from what aether saw, but an
        # answer the agent did send is still the better summary if it is valid.
        draft = distill(
            trigger=trigger,
            objective=s.objective,
            log=log,
            parent=self.last,
            count=self.counter.count,
            max_tokens=max_tokens,
            constraints=list(s.constraints),
            note=note,
            prefer_agent=prefer_agent,
            command=self._command_distiller(max_tokens, log) if s.distill_command else None,
            workspace_changes=changed_files(self.cwd, start),
            workdir=str(self.cwd),
            handoff=handoff,
        )
        assemble(
            draft,
            parent=self.last_id,
            session_id=session_id,
            episode=episode,
            workspace=workspace,
            tokenizer="reported" if budget.reported else self.counter.name,
            episode_tokens=budget.used,
            compactions=compactions,
            agent_format=self.fmt,
            agent_session=agent_session,
        )
        ck = self.store.write_checkpoint(draft)
        self._learn(ck, log)
        self.last = ck
        self._report(ck, trigger, budget.used)
        self._retention.after(self.notice)
        # Committed once the continuity record names this checkpoint (`commit_pending`): a
        # commit made now would carry the record of before it, and a clone that pulls it
        # would resume one checkpoint back.
        self._pending = (trigger, session_id, episode)
        return ck

    def commit_pending(self) -> None:
        """Commit the checkpoint written last, now that the continuity record names it."""
        if self._pending is not None:
            trigger, session_id, episode = self._pending
            self._pending = None
            self.commit_memory(trigger, session_id=session_id, episode=episode)

    def commit_memory(
        self, trigger: str, *, session_id: str, episode: int, status: str | None = None
    ) -> None:
        """Commit `.memory/` as it is now (if committing is on) and record the commit in the ledger."""
        if self.commits is None:
            return
        progress = (self.last or {}).get("progress") or []
        done = self.commits.commit(
            session=session_id,
            episode=episode,
            trigger=trigger,
            checkpoint=self.last_id,
            progress=str(progress[-1]) if progress else "",
            status=status,
        )
        if done is not None:
            self.record(
                "memory_commit",
                commit=done.sha,
                ref=done.ref,
                trigger=trigger,
                checkpoint=self.last_id,
                files=done.files,
                seconds=round(done.seconds, 4),
            )

    def _learn(self, ck: dict[str, Any], log: EpisodeLog) -> None:
        """Bring project memory up to date: memory operations, newly finished tasks, the objective.

        One read-modify-write under the store's write lock: a person's `aether memory`
        change made while this run is live is read here, never overwritten."""
        s = self.settings
        seq = int(ck["id"].split("_")[1])
        if log.memory_ops:
            self.store.apply_memory_ops(log.memory_ops, seq=seq, source="agent", episode=ck.get("episode"))

        def change(pm: dict[str, Any]) -> None:
            finished = {t.get("id") for t in pm.get("finished_tasks", [])}
            new_done = [
                {"id": t["id"], "title": t.get("title", "")}
                for t in self.store.list_tasks()
                if t.get("status") == "done" and t["id"] not in finished
            ]
            pm["finished_tasks"] = [*pm.get("finished_tasks", []), *new_done]
            if s.objective:
                pm["objective"] = s.objective

        self.store.update_project_memory(change)

    def _report(self, ck: dict[str, Any], trigger: str, episode_tokens: int) -> None:
        self.record(
            "checkpoint",
            id=ck["id"],
            trigger=trigger,
            distiller=ck.get("distiller"),
            note=ck.get("distiller_note", ""),
            tokens=ck["metrics"].get("checkpoint_tokens"),
            episode_tokens=episode_tokens,
        )
        m = ck["metrics"]
        fallback = f", {ck.get('distiller_note')}" if ck.get("distiller_note") else ""
        self.notice(
            f"checkpoint {ck['id']} ({trigger}, {ck.get('distiller')}{fallback}): "
            f"{m['episode_tokens']} → {m['checkpoint_tokens']} tokens ({compression(ck):.1f}x)",
            "checkpoint",
        )

    def _command_distiller(self, max_tokens: int, log: EpisodeLog) -> Any:
        """The --distill-command callback for distill(): the draft and the output tail in, JSON state out."""
        s = self.settings
        command = s.distill_command
        assert command is not None

        def ask(draft: dict[str, Any]) -> tuple[Any, str | None]:
            prompt = distill_prompt(
                draft, objective=s.objective, max_tokens=max_tokens, memory_dir=self.store.root,
                output_tail=log.output_tail(),
            )
            self.notice(f"asking the distill command: {command}", "info")
            answer, failure = run_distill_command(command, prompt, timeout=s.distill_timeout, cwd=self.cwd)
            # Redacted here already, like the agent's own handoff: a secret the model
            # repeats must not depend on the store remembering to redact it.
            redacted = redact_obj(answer)
            extra = {"redacted": True} if redacted != answer else {}
            self.record("distill_command", ok=failure is None, reason=failure or "", **extra)
            return redacted, failure

        return ask

    def recover(self, session_id: str, episode: int, window: int) -> dict[str, Any]:
        """After a supervisor died mid-episode: distil what the ledger and task files hold
        since the last checkpoint into a crash checkpoint, so nothing is lost or redone."""
        log, used, dirty = self._replay(session_id)
        self.flush_tasks(log, dirty, session_id)
        budget = Budget(window=window, soft_at=1, checkpoint_at=1, emergency_at=1)
        budget.reset(used)
        return self.write(
            "crash",
            log,
            budget,
            session_id=session_id,
            episode=max(1, episode - 1),
            window=window,
            note="recovered after the supervisor died: distilled from the run ledger and task files",
        )

    def _fresh_log(self) -> EpisodeLog:
        return EpisodeLog(
            objective=self.settings.objective, prior_tasks={t["id"]: t for t in self.store.list_tasks()}
        )

    def _replay(self, session_id: str) -> tuple[EpisodeLog, int, dict[str, str]]:
        """The log, token count and changed tasks of the ledger's events after its last checkpoint."""
        log = self._fresh_log()
        used = 0
        dirty: dict[str, str] = {}
        path = self.store.ledger_path(session_id)
        if not path.exists():
            return log, used, dirty
        for rec in read_ledger(path):
            kind = rec.get("kind")
            if kind == "checkpoint":
                log, used = self._fresh_log(), 0
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
        return log, used, dirty


class _RunRetention:
    """The run's automatic gc (only with a `[retention]` table; see `retention`).

    A bad table or a failing gc warns; neither ever stops the run."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.written = 0
        self.problem = ""
        try:
            self.policy = read_policy(store.root / C.CONFIG_FILE)
        except AetherError as exc:
            self.policy, self.problem = None, f"automatic gc is off: {exc}"

    def after(self, notice: Notice) -> None:
        """Prune after the run's latest checkpoint, if due; say what went."""
        self.written += 1
        if self.problem:
            notice(self.problem, "warn")
            self.problem = ""
        try:
            report = after_checkpoint(self.store, self.policy, self.written)
        except (AetherError, OSError) as exc:
            notice(f"automatic gc failed (the run goes on): {exc}", "warn")
            return
        if report is not None and report.removed:
            notice(f"gc: removed {len(report.removed)} old checkpoints ({report.bytes_freed} bytes)", "info")
