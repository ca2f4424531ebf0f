"""aether's public Python API: what `aether_cli` promises to code that imports it.

    from aether_cli import Engine, run

- `Engine` (see `engine`): an aether session inside a Python agent loop, over
  the same `.memory/` files as `aether run`;
- `run(argv, **settings)`: supervise an agent process as `aether run -- ARGV`
  does, with the run's options as keyword arguments checked like its flags;
  `resume_run(checkpoint, **settings)` continues a stored session as `aether
  resume` does. Both return the run's `RunResult`; the CLI's `run` and `resume`
  make the same calls (`commands.prepare_run` / `commands.resume_plan`, then
  `Supervisor.run`). By default they print nothing: pass a `reporter` (see
  `reporter.Reporter`) to hear the run;
- the errors, all `AetherError`s: `LockedError` (a live run holds the folder),
  `EventError` and `SettingError` (also `ValueError`s), `UsageError`,
  `NotFoundError`, `CorruptMemoryError`, `StorageError`.

Everything named in `__all__` is the promise (docs/python.md); the rest of the
package may change. Knows nothing of Typer or Rich.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aether_cli import commands
from aether_cli.api_options import SettingError, run_options
from aether_cli.engine import Engine, EngineEvent, store_at
from aether_cli.engine_events import EventError
from aether_cli.errors import (
    AetherError,
    CorruptMemoryError,
    LockedError,
    NotFoundError,
    StorageError,
    UsageError,
)
from aether_cli.plan import ResumePlan, RunResult
from aether_cli.reporter import Reporter
from aether_cli.settings import Settings
from aether_cli.store import MemoryStore

__all__ = [
    "AetherError",
    "CorruptMemoryError",
    "Engine",
    "EngineEvent",
    "EventError",
    "LockedError",
    "NotFoundError",
    "RunResult",
    "SettingError",
    "StorageError",
    "UsageError",
    "resume_run",
    "run",
]


def _argv(argv: Any) -> list[str]:
    if isinstance(argv, str | bytes) or not isinstance(argv, Sequence):
        raise SettingError(f"argv must be a list of strings (the agent's command line), got {argv!r}")
    if not argv or not all(isinstance(a, str) for a in argv):
        raise SettingError(f"argv must be a non-empty list of strings, got {argv!r}")
    return list(argv)


def run(
    argv: Sequence[str], *, memory_dir: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None, reporter: Reporter | None = None, **settings: Any,
) -> RunResult:
    """Supervise the agent `argv` until it is done, as `aether run -- ARGV` does.

    `settings`: `aether run`'s options by name (`objective`, `context_window`,
    `max_steps`, `checkpoint_on_task_done`, `constraints`…), each checked like
    its flag (`SettingError` names the flag); `.memory/config.toml` and
    `AETHER_*` fill in the rest. `cwd`: where the agent runs (default: here);
    `memory_dir`: default `<cwd>/.memory`. Raises `LockedError` if a live run
    holds the folder. Hooks (`on_checkpoint`, `on_relaunch`, `on_crash`,
    `on_done`, `hook_timeout`) and `events` work as their flags do
    (docs/hooks.md); hooks that come from config.toml run only once `aether
    run` has shown them and they were confirmed on this machine, else
    `UsageError`."""
    where = Path(cwd) if cwd is not None else Path.cwd()
    command = _argv(argv)
    options = run_options(settings, where="run()")
    store = store_at(memory_dir, where)
    s = commands.prepare_run(store, command, options)
    return _supervise(store, s, None, where, reporter, commands.typed_items(options, "command"))


def resume_run(
    checkpoint: str | None = None, *, memory_dir: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None, force: bool = False, strict: bool = False,
    reporter: Reporter | None = None, **settings: Any,
) -> RunResult:
    """Continue the stored session as `aether resume [CHECKPOINT]` does: its command and
    settings, `settings` given now overriding them. A note about recovery and what changed
    since the checkpoint go to `reporter`. `force` resumes a session that ended done;
    `strict` refuses (AetherError) when the workspace changed since the checkpoint."""
    where = Path(cwd) if cwd is not None else Path.cwd()
    options = run_options(settings, where="resume_run()")
    store = store_at(memory_dir, where)
    plan, s, note = commands.resume_plan(store, checkpoint, options.flags(), force=force)
    notes = [(note, "warn"), *commands.restore_guard(store, plan, where, strict=strict)]
    for text, kind in notes:
        if text and reporter is not None:
            reporter.notice(text, kind)
    return _supervise(store, s, plan, where, reporter, commands.typed_items(options))


def _supervise(
    store: MemoryStore, settings: Settings, plan: ResumePlan | None, cwd: Path, reporter: Reporter | None,
    typed: frozenset[str],
) -> RunResult:
    # Before the tokenizer and the supervisor load: a second run fails at once.
    store.ensure_unlocked()
    # No person to ask here: hooks that came with config.toml run only once confirmed.
    commands.refuse_unconfirmed_hooks(store, settings, typed)
    from aether_cli.supervisor import Supervisor

    return Supervisor(settings, store, reporter=reporter, cwd=cwd).run(plan)
