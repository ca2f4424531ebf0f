"""What each CLI command does, as plain functions over a MemoryStore.

The Typer layer parses arguments and prints; these functions do the work and
return data (or raise an AetherError), so they are tested without a CLI.
`status` in particular must stay cheap: it never loads the tokenizer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aether_cli import constants as C
from aether_cli.checkpoint import sources_of
from aether_cli.errors import (
    AetherError,
    ChecksumMismatchError,
    CorruptMemoryError,
    LockedError,
    NotFoundError,
    UsageError,
)
from aether_cli.retention import parent_note
from aether_cli.store import MemoryStore

if TYPE_CHECKING:  # settings (and tomllib) are imported by the commands that use them, not by status
    from aether_cli.options import RunOptions
    from aether_cli.plan import ResumePlan
    from aether_cli.settings import Settings


def open_store(memory_dir: Path | None) -> MemoryStore:
    """The store for --memory-dir, or ./.memory; inside git, with aether's merge driver
    registered in the clone's local config (a cheap check when it already is)."""
    store = MemoryStore((memory_dir or Path.cwd() / C.MEMORY_DIRNAME).absolute())
    if store.exists():
        register_merge_driver(store)
    return store


def register_merge_driver(store: MemoryStore) -> str:
    """Register `merge.aether.driver` where the folder is inside git; what was done, or ""."""
    from aether_cli.merge_driver import ensure_registered

    return ensure_registered(store.root)


def init(store: MemoryStore) -> list[str]:
    """Create the .memory layout (README, the commented config.toml, .gitignore, .gitattributes,
    folders) and register the merge driver; returns what was created."""
    created = store.init()
    register_merge_driver(store)
    return created


def prepare_run(store: MemoryStore, command: list[str] | None, options: RunOptions) -> Settings:
    """Everything `aether run` does before it launches: the checked settings; it writes nothing.

    Refuse a missing command; build the settings (flags > env > config.toml >
    defaults: never a previous run's, so a new run starts from the flags it is
    given); refuse a known CLI without its JSON flag and an overhead that fills
    the window; fill in a default objective. config.toml is the user's (and
    `aether init`'s): a run never writes it, or the next run would inherit
    this one's flags.
    """
    if not command:
        raise AetherError(
            "no agent command: put it after `--`, e.g. `aether run -- python my_agent.py`"
        )
    settings = run_settings(store, {"command": tuple(command), **options.flags()})
    register_merge_driver(store)
    check_overhead(settings, agent_format(settings))
    check_events(settings)
    if not settings.objective:
        settings = with_default_objective(settings)
    return settings


def run_settings(store: MemoryStore, flags: dict[str, Any]) -> Settings:
    """Settings for a fresh `aether run`: flags > env > config.toml > defaults (no stored session's)."""
    from aether_cli.settings import build_settings

    return build_settings(flags, config_path=store.root / C.CONFIG_FILE)


def with_default_objective(settings: Settings) -> Settings:
    """Settings with an objective when the user gave none: the prompt argument of a
    recognised CLI (claude -p PROMPT, codex exec PROMPT), else one naming the command."""
    from dataclasses import replace

    from aether_cli.adapters.argv import prompt_objective

    prompt = prompt_objective(agent_format(settings), list(settings.command))
    if prompt and prompt.strip():
        return replace(settings, objective=prompt.strip())
    return replace(settings, objective="Carry on the work of: " + " ".join(settings.command))


def agent_format(settings: Settings) -> str:
    """The agent's output format: the user's --format, else recognised from the command.

    A known CLI started without its JSON flag is refused (aether could not follow it, and
    it would wait for stdin), with the flag to add.
    """
    from aether_cli.adapters import detect_format
    from aether_cli.adapters.argv import json_flag_missing

    if settings.format != "auto":
        return settings.format
    hint = json_flag_missing(list(settings.command))
    if hint:
        raise UsageError(f"{hint} (or pass --format text to read it as plain text)")
    return detect_format(list(settings.command))


def check_overhead(settings: Settings, fmt: str) -> int:
    """The agent's context overhead in tokens; UsageError if it alone would reach the checkpoint threshold."""
    from aether_cli.adapters import context_overhead
    from aether_cli.budget import limit_tokens

    overhead = context_overhead(fmt, settings.context_overhead)
    room = limit_tokens(settings.window, settings.checkpoint_at)
    if overhead >= room:
        raise UsageError(
            f"--context-overhead {overhead} leaves no room: the checkpoint threshold of a "
            f"{settings.window}-token window is at {room} tokens (raise --context-window or "
            "lower --context-overhead)"
        )
    return overhead


def resume_plan(
    store: MemoryStore, ref: str | None, flags: dict[str, Any], *, force: bool = False,
    need_command: bool = True,
) -> tuple[ResumePlan, Settings, str]:
    """Where `aether resume` continues: (ResumePlan, settings, a note about recovery).

    Reuses the stored command and settings; flags given now override them.
    Without `ref`, it starts from the newest intact checkpoint (the recorded
    one, else the latest) and the note names any newer one it had to skip as
    corrupt. A named `ref` that is corrupt is refused (CorruptMemoryError);
    one that only fails its sha256 (edited by hand) is used with `force`.
    A session that ended `done` is refused unless `force` (it would redo
    finished work). `need_command`: False for the in-process engine, which launches nothing.
    """
    from aether_cli.plan import ResumePlan
    from aether_cli.settings import build_settings

    if not store.exists():
        raise NotFoundError(
            f"no session to resume: {store.root} does not exist (start one with `aether run`)"
        )
    notes: list[str] = []
    cont = _session_to_resume(store, notes)
    if ref and (picked := _named_session(cont, ref)) is not None:
        cont, ref = picked, None
    if cont.get("status") == "running":
        notes.append("recovered a session whose supervisor died (status was still 'running')")
    ckpt_id = _resume_checkpoint(store, ref, cont, force=force, notes=notes)
    # After the checkpoint is judged: a corrupt one keeps its own error and exit code.
    if cont.get("status") == "done":
        _refuse_done(cont, force=force, notes=notes)
    if ckpt_id and (gone := parent_note(store, store.read_checkpoint(ckpt_id))):
        notes.append(f"resuming from {ckpt_id}; its {gone}")
    stored = dict(cont.get("settings") or {})
    stored["command"] = cont.get("command") or stored.get("command") or []
    settings = build_settings(flags, config_path=store.root / C.CONFIG_FILE, stored=stored)
    if need_command and not settings.command:
        raise AetherError("the stored session has no agent command; start a new run with `aether run -- CMD`")
    if need_command:
        check_events(settings)
    plan = ResumePlan(
        session_id=str(cont.get("session_id") or ""),
        episode=int(cont.get("episode") or 0) + 1,
        checkpoint_id=ckpt_id,
        recover=cont.get("status") == "running",
        latest=ref is None,
    )
    return plan, settings, "; ".join(notes)


def _session_to_resume(store: MemoryStore, notes: list[str]) -> dict[str, Any]:
    """The continuity record a resume continues, rebuilt from the checkpoints and the ledger
    if it is damaged or missing (the note saying so goes into `notes`); LockedError while a
    run is live, NotFoundError if there is no session at all."""
    holder = store.holder()
    if holder is not None:
        try:
            session = (store.read_continuity() or {}).get("session_id")
        except AetherError:
            session = None  # the live run owns the record, damaged or not
        raise LockedError(
            f"session {session or '?'} is running now: aether (pid {holder.get('pid')}, "
            f"since {holder.get('started_at', '?')}), supervising the agent command: "
            f"{_command_text(holder.get('command'))}; use `aether status` to watch it"
        )
    if note := store.repair_continuity():
        notes.append(note)
    from aether_cli.doctor import resolve_conflicts

    notes.extend(resolve_conflicts(store))
    cont = store.read_continuity()
    if cont is None:
        raise NotFoundError(f"no session to resume in {store.root} (start one with `aether run`)")
    return cont


def _named_session(cont: dict[str, Any], ref: str) -> dict[str, Any] | None:
    """The record of the session `ref` names (its id, or a unique prefix of one starting
    "ses_"), from the top level or `other_sessions`; None if `ref` names no session."""
    from aether_cli.store.continuity import sessions_of

    sessions = sessions_of(cont)
    if ref in sessions:
        return sessions[ref]
    matches = [sid for sid in sessions if ref.startswith("ses_") and sid.startswith(ref)]
    if len(matches) > 1:
        raise UsageError(f"session {ref!r} is ambiguous: {', '.join(sorted(matches))}")
    if not matches and ref.startswith("ses_"):
        raise NotFoundError(f"no session {ref!r} in {C.CONTINUITY_FILE} (`aether status` lists them)")
    return sessions[matches[0]] if matches else None


def _refuse_done(cont: dict[str, Any], *, force: bool, notes: list[str]) -> None:
    """A finished session is resumed only with `force`: its agent would start over on done work.
    The record is untrusted, so what it says is shown as plain, capped text."""
    from aether_cli.restore_check import plain_line

    sid, when = plain_line(str(cont.get("session_id") or "?")), plain_line(str(cont.get("updated_at") or "?"))
    last = plain_line(str(cont.get("last_checkpoint") or "no checkpoint"))
    if not force:
        raise AetherError(
            f"session {sid} finished at {when} with {last}; `aether resume --force` goes on anyway, "
            "or `aether run` starts a new session"
        )
    notes.append(f"resuming session {sid}, which finished at {when} with {last} (--force)")


def restore_guard(
    store: MemoryStore, plan: ResumePlan, cwd: Path, *, strict: bool = False
) -> list[tuple[str, str]]:
    """The restore guardrails of a resume, before its launch: (line, "info" | "warn") to show.

    Compares the checkpoint's workspace with `cwd`'s now and names the session's
    later checkpoints (restore_check); what it finds goes into `plan.changed`,
    the relaunch prompt's "Changed since the checkpoint" section. With
    `strict`, a workspace that changed (or whose recorded commit cannot be
    compared) refuses the resume (AetherError, exit 1), naming what changed.
    """
    from aether_cli.restore_check import later_checkpoints, later_note, prompt_lines, workspace_drift

    if plan.checkpoint_id is None:
        return []
    try:
        ck = store.read_checkpoint(plan.checkpoint_id)
    except AetherError:
        return []  # resume_plan already judged it; its own read reports the trouble
    drift = workspace_drift(cwd, ck.get("workspace"))
    if strict and (drift.changed or drift.uncertain):
        raise AetherError(
            f"the workspace changed since checkpoint {plan.checkpoint_id}: {drift.summary()}; "
            "refusing to resume (--strict)"
        )
    later = later_checkpoints(store, plan.checkpoint_id, plan.session_id)
    plan.changed = prompt_lines(drift, later)
    kind = "warn" if drift.changed or drift.uncertain else "info"
    lines = [(line, kind) for line in drift.lines()]
    if later:
        lines.append((later_note(plan.checkpoint_id, later), "warn"))
    return lines


def _command_text(command: Any) -> str:
    import shlex

    return shlex.join(str(a) for a in command) if isinstance(command, list) else str(command)


def _resume_checkpoint(
    store: MemoryStore, ref: str | None, cont: dict[str, Any], *, force: bool, notes: list[str]
) -> str | None:
    """The checkpoint a resume starts from, after checking it reads back intact."""
    if ref:
        return _named_checkpoint(store, ref, force=force, notes=notes)
    recorded = cont.get("last_checkpoint")
    start = recorded if isinstance(recorded, str) and recorded else store.latest_checkpoint_id()
    if start is None:
        return None
    found, skipped = store.newest_intact_checkpoint(start, accept_modified=force)
    if found is None:
        raise CorruptMemoryError(
            "no intact checkpoint to resume from: "
            + "; ".join(skipped)
            + " (name an older one with `aether resume ID`, or drop the broken ones with `aether drop`)"
        )
    if skipped:
        notes.append("skipped a corrupt checkpoint: " + "; ".join(skipped) + f"; resuming from {found}")
    if store.accepted_modified(found):
        notes.append(f"using {found} although its content no longer matches its sha256 (--force)")
    return found


def _named_checkpoint(store: MemoryStore, ref: str, *, force: bool, notes: list[str]) -> str:
    """The checkpoint `ref` names; a corrupt one is refused, an edited one used only with `force`."""
    ckpt_id = store.resolve_checkpoint(ref)
    try:
        store.read_checkpoint(ckpt_id)
    except ChecksumMismatchError as exc:
        if not force:
            raise ChecksumMismatchError(
                f"{exc}; refusing to resume from it (`aether resume --force {ckpt_id}` uses it anyway)"
            ) from None
        store.trust_checkpoint(ckpt_id)
        notes.append(f"using {ckpt_id} although its content no longer matches its sha256 (--force)")
    return ckpt_id


def status(store: MemoryStore) -> dict[str, Any]:
    """Everything `aether status` shows, as a JSON-able dict (cheap: no tokenizer)."""
    if not store.exists():
        return {
            "state": "none",
            "state_note": f"no {C.MEMORY_DIRNAME} here; start with `aether run`",
            "memory_dir": str(store.root),
        }
    cont, record_state, record_note = _status_record(store)
    holder = store.holder()
    beat = (store.read_heartbeat() if holder else None) or {}
    state, note = _run_state(store, cont, holder)
    if record_note:
        # A live run rewrites its record; otherwise the record's trouble is the state to report.
        state, note = (state if holder else record_state), record_note
    ids = store.checkpoint_ids()
    last_id, last_note = _last_checkpoint(cont.get("last_checkpoint"), ids, store.latest_checkpoint_id())
    tokenizer = beat.get("tokenizer") or cont.get("tokenizer") or "-"
    tok_note = beat.get("tokenizer_note") or cont.get("tokenizer_note") or ""
    if tokenizer == "estimate" and not tok_note:
        tok_note = "token counts are estimates: the cl100k_base encoding could not be loaded"
    return {
        "memory_dir": str(store.root),
        "session_id": cont.get("session_id"),
        "state": state,
        "state_note": note,
        "objective": cont.get("objective", ""),
        "episode": beat.get("episode") or cont.get("episode"),
        "pid": holder.get("pid") if holder else None,
        "context": _context_usage(beat, cont),
        "tokenizer": tokenizer,
        "tokenizer_note": tok_note,
        "restarts": beat.get("restarts", cont.get("restarts", 0)),
        "protocol_warnings": beat.get("protocol_warnings", 0),
        "agent_format": beat.get("format") or cont.get("agent_format") or "aether",
        "usage_note": beat.get("usage_note", ""),
        # Tokens added to aether's count for the agent's own instructions and tools.
        "context_overhead": beat.get("context_overhead", 0),
        # Times the agent compacted its own context (Claude Code's compact_boundary).
        "agent_compactions": cont.get("agent_compactions", 0) + beat.get("compactions", 0),
        # Steps redone after relaunches, and first steps that followed the handoff.
        "continuity": _continuity(beat.get("continuity") or cont.get("continuity")),
        "last_checkpoint": _checkpoint_summary(store, last_id) if last_id else None,
        "last_checkpoint_note": last_note,
        "checkpoints": len(ids),
        "tasks": [_task_row(t) for t in store.list_tasks()],
        "command": cont.get("command", []),
        # Every session the record holds (two merged branches leave two); `resume SESSION` picks one.
        "sessions": _sessions(cont),
        # After the agent kept crashing (exit 6): its own last exit code, else null.
        "agent_exit_code": _agent_exit_code(cont) if state == "crashed" else None,
    }


def _sessions(cont: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per session in the record, the current (top-level) one first, then newest first."""
    from aether_cli.store.continuity import sessions_of

    found = sessions_of(cont)
    top = cont.get("session_id")
    order = sorted(found, key=lambda sid: (sid == top, str(found[sid].get("updated_at", ""))), reverse=True)
    keys = ("status", "episode", "last_checkpoint", "updated_at", "objective")
    return [
        {"session_id": sid, "current": sid == top, **{k: found[sid].get(k) for k in keys}} for sid in order
    ]


def _status_record(store: MemoryStore) -> tuple[dict[str, Any], str, str]:
    """The record status shows and, if it is damaged or missing, a state and a note on how to
    recover; a damaged record never stops `status`: it shows what a rebuild would give."""
    found = store.diagnose_continuity()
    return found.record or found.rebuilt or {}, found.state, found.note()


def _run_state(store: MemoryStore, cont: dict[str, Any], holder: dict[str, Any] | None) -> tuple[str, str]:
    """The session's state and a note: a record saying "running" with no live holder is a run
    that ended without recording its end. If it exited itself (an error it reported, such as a
    full disk: exit 74), it removed runs/lock.json on its way out; a killed one left it."""
    state = str(cont.get("status", "none"))
    if holder is not None:
        return "running", ""
    if state == "crashed" and (code := _agent_exit_code(cont)) is not None:
        return state, f"the agent kept crashing; its own last exit code was {code}"
    if state != "running":
        return state, ""
    if not os.path.lexists(store.lock_info_path) and _ran_here(store, cont.get("session_id")):
        return "stopped", (
            "the last run exited on an error before it could record its end (see its last "
            "message); `aether resume` continues"
        )
    return "stale", "supervisor is gone; `aether resume` recovers"


def _agent_exit_code(cont: dict[str, Any]) -> int | None:
    """The agent's own last exit code from the (committed, untrusted) record, if it is a sane one."""
    code = cont.get("agent_exit_code")
    return code if type(code) is int and 0 <= code < 1 << 16 else None


def _ran_here(store: MemoryStore, session_id: Any) -> bool:
    """Whether the session ran on this machine (its local ledger is here; a fresh clone has none)."""
    if not isinstance(session_id, str):
        return False
    try:
        return os.path.lexists(store.ledger_path(session_id))
    except AetherError:
        return False


def _last_checkpoint(recorded: Any, ids: list[str], newest: str | None) -> tuple[str | None, str]:
    """The checkpoint status shows: the one the session recorded as its last, or, when that one
    is gone (`aether drop --force`), the newest left, with a note saying so."""
    if not isinstance(recorded, str) or not recorded:
        return newest, ""
    if recorded in ids:
        return recorded, ""
    left = f"the newest left is {newest}" if newest else "none is left"
    return newest, f"{recorded}, the session's last, was dropped; {left}"


CONTINUITY_FIGURES = ("relaunches", "steps_redone", "first_step_judged", "first_step_followed")


def _continuity(figures: Any) -> dict[str, Any]:
    """The run's continuity figures, each a count (the record is committed: anything else is dropped)."""
    if not isinstance(figures, dict):
        return {}
    out: dict[str, Any] = {
        k: v for k in CONTINUITY_FIGURES if type(v := figures.get(k)) is int and 0 <= v < 1 << 53
    }
    if out.get("relaunches"):
        out["redo_rate"] = round(out.get("steps_redone", 0) / out["relaunches"], 2)
    return out


def _context_usage(beat: dict[str, Any], cont: dict[str, Any]) -> dict[str, Any]:
    """How full the context is: live from the heartbeat, else the last known figure, else {}."""
    window = beat.get("window") or cont.get("window") or 0
    if beat:
        used = beat.get("used", 0)
        return {
            "used": used,
            "window": window,
            "fraction": round(used / window, 4) if window else 0.0,
            "source": "reported" if beat.get("reported") else "counted",
            "live": True,
        }
    if cont:
        frac = float(cont.get("context_usage_percent") or 0) / 100
        return {
            "used": int(frac * window),
            "window": window,
            "fraction": round(frac, 4),
            "source": "last known",
            "live": False,
        }
    return {}


def _checkpoint_summary(store: MemoryStore, ckpt_id: str) -> dict[str, Any]:
    """The status line of one checkpoint, or its id and why it could not be read."""
    try:
        ck = store.read_checkpoint(ckpt_id)
    except AetherError as exc:
        return {"id": ckpt_id, "error": str(exc)}
    m = ck.get("metrics") or {}
    et, ct = m.get("episode_tokens"), m.get("checkpoint_tokens")
    return {
        "id": ck["id"],
        "trigger": ck.get("trigger"),
        "distiller": ck.get("distiller"),
        "sources": sources_of(ck),
        "handoff_seconds": m.get("handoff_seconds"),
        "created_at": ck.get("created_at"),
        "episode": ck.get("episode"),
        "episode_tokens": et,
        "checkpoint_tokens": ct,
        "compression": round(et / ct, 2) if et and ct else None,
        "parent": ck.get("parent"),
        # "" while the parent is on disk; else "parent ... pruned by `aether gc`" (or missing).
        "parent_note": parent_note(store, ck),
    }


def _task_row(task: dict[str, Any]) -> dict[str, Any]:
    keys = ("status", "progress", "next_action", "title")
    return {"id": task["id"], **{k: task.get(k) for k in keys}}


def checkpoints(store: MemoryStore) -> list[dict[str, Any]]:
    """One summary row per checkpoint, oldest first."""
    rows = []
    for cid in store.checkpoint_ids():
        ck = store.read_checkpoint(cid)
        m = ck.get("metrics") or {}
        rows.append(
            {
                "id": cid,
                "parent": ck.get("parent"),
                "session_id": ck.get("session_id"),
                "episode": ck.get("episode"),
                "trigger": ck.get("trigger"),
                "distiller": ck.get("distiller"),
                "sources": sources_of(ck),
                "created_at": ck.get("created_at"),
                "episode_tokens": m.get("episode_tokens"),
                "checkpoint_tokens": m.get("checkpoint_tokens"),
            }
        )
    return rows


def request_checkpoint(store: MemoryStore) -> dict[str, Any]:
    """Ask the live run to checkpoint now; returns the holder's lock info."""
    holder = store.holder() if store.exists() else None
    if holder is None:
        raise AetherError(f"no live `aether run` on {store.root}; nothing to checkpoint")
    store.request_checkpoint()
    return holder


def report(store: MemoryStore, session: str | None) -> dict[str, Any]:
    """`aether report`: a session's figures (the latest by default), its cost and what they suggest."""
    from aether_cli import report as R
    from aether_cli import report_advice as A

    data = R.to_dict(R.build(store, R.pick_session(store, session)))
    config = store.root / C.CONFIG_FILE
    data["money"] = A.money(data, A.load_prices(config))
    data["suggestions"] = A.suggestions(data)
    return data


def apply_report(store: MemoryStore, data: dict[str, Any]) -> list[str]:
    """`aether report --apply`: the suggested settings written to config.toml; the lines written."""
    from aether_cli import report_advice as A

    return A.apply(store.root / C.CONFIG_FILE, A.learned(data["suggestions"]))


def typed_items(options: RunOptions, *given: str, environ: dict[str, str] | None = None) -> frozenset[str]:
    """What of a launch the person gave now, as an option or AETHER_* (so nothing to confirm):
    `given`, plus the distill command and each hook (`on_<event>`) given that way."""
    env = os.environ if environ is None else environ
    from aether_cli.settings import HOOK_SETTINGS

    names = ("distill_command", *HOOK_SETTINGS)
    typed = {n for n in names if getattr(options, n) is not None or env.get("AETHER_" + n.upper())}
    return frozenset(given) | typed


def unconfirmed_hooks(store: MemoryStore, settings: Settings, typed: frozenset[str]) -> dict[str, str]:
    """The hooks config.toml sets (not typed now) that differ from what this machine last
    confirmed; `aether run`/`resume` ask about them, the Python `run()` refuses them."""
    from aether_cli import trust
    from aether_cli.hooks import HOOK_EVENTS

    hooks = trust.config_hooks({e: settings.hook(e) for e in HOOK_EVENTS}, typed)
    record = trust.parse_record(*store.trust_record(trust.MAX_RECORD_BYTES))
    launch = trust.Launch(settings.command, settings.distill_command, {}, hooks)
    return hooks if trust.unconfirmed(launch, record, typed=frozenset(trust.ITEMS) - {"hooks"}) else {}


def refuse_unconfirmed_hooks(store: MemoryStore, settings: Settings, typed: frozenset[str]) -> None:
    """UsageError if config.toml sets hooks this machine has not confirmed (no person to ask)."""
    hooks = unconfirmed_hooks(store, settings, typed)
    if hooks:
        names = ", ".join(f"on_{e}" for e in hooks)
        raise UsageError(
            f"{store.root / C.CONFIG_FILE} sets hooks this machine has not confirmed ({names}): "
            "confirm them once with `aether run --yes` (it shows them), or pass your own as "
            "keyword arguments (on_done=... , or on_done='' to switch one off)"
        )


def check_events(settings: Settings) -> None:
    """UsageError now if the --events file cannot be opened for appending (before anything starts)."""
    if settings.events and settings.events != "-":
        from aether_cli.event_stream import EventStream

        EventStream.open(settings.events).close()
