"""Run settings: one frozen object built once and passed down.

Precedence, highest first: CLI flags, `AETHER_*` environment variables,
`.memory/config.toml`, defaults; a resume ranks its session's own settings
(from the continuity record) between the environment and config.toml. The CLI
hands over only the flags the user actually gave (None for the rest), so a
stored config is not silently overridden by a flag's default.

config.toml is written by `aether init` and the user, never by a run. It never
names the agent command: that is typed after `--` (run) or is the session's own
(resume), so a committed file cannot make `aether run` start a program.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from aether_cli import constants as C
from aether_cli.errors import UsageError

# Context windows of common models, used when --context-window is not given.
# Prefix match on the lower-cased name, longest prefix wins.
MODEL_WINDOWS: dict[str, int] = {
    "claude-opus-4": 200_000,
    "claude-sonnet-4": 200_000,
    "claude-haiku-4": 200_000,
    "claude-3-7-sonnet": 200_000,
    "claude-3-5-sonnet": 200_000,
    "claude-3-5-haiku": 200_000,
    "claude-3-opus": 200_000,
    "claude": 200_000,
    "gpt-5": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4-turbo": 128_000,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "o1": 200_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "codex": 400_000,
    "gemini-2.5": 1_048_576,
    "gemini-2.0": 1_048_576,
    "gemini-1.5-pro": 2_097_152,
    "gemini-1.5-flash": 1_048_576,
    "llama-3": 128_000,
    "mistral-large": 128_000,
    "deepseek": 128_000,
    "qwen": 128_000,
}


HANDOFF_CHOICES = ("agent", "rules")
# Output formats aether can read (see aether_cli/adapters); "auto" picks one from the command.
FORMAT_CHOICES = ("auto", "aether", "claude", "codex", "gemini", "text")


def window_for_model(model: str | None) -> int | None:
    """The context window of a known model name, or None."""
    if not model:
        return None
    name = model.lower()
    best: tuple[int, int] | None = None
    for prefix, window in MODEL_WINDOWS.items():
        if name.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), window)
    return best[1] if best else None


def unknown_model_warning(model: str | None, context_window: int | None) -> str | None:
    """One line for a model name aether has no window for (and no --context-window given), else None.

    Without it the run silently budgets the default window, which may be far from the model's."""
    if not model or context_window is not None or window_for_model(model) is not None:
        return None
    return (
        f"unknown model {model!r}: using the default context window of {C.DEFAULT_WINDOW:,} tokens "
        "(unless the agent reports its own); set --context-window N (or context_window in config.toml)"
    )


@dataclass(frozen=True)
class Settings:
    """Everything one run needs to know; built by `build_settings`."""

    command: tuple[str, ...] = ()
    objective: str = ""
    context_window: int | None = None
    model: str | None = None
    soft_at: float = C.DEFAULT_SOFT_AT
    checkpoint_at: float = C.DEFAULT_CHECKPOINT_AT
    emergency_at: float = C.DEFAULT_EMERGENCY_AT
    max_steps: int | None = None
    checkpoint_timeout: float = C.DEFAULT_CHECKPOINT_TIMEOUT
    checkpoint_on_task_done: bool = False
    checkpoint_on_error: bool = False
    checkpoint_on_agent: bool = False
    max_restarts: int = C.DEFAULT_MAX_RESTARTS
    max_episodes: int | None = None
    # Relaunches in a row (after a threshold) without a new step, file or task before the
    # run stops as a runaway (exit 4): an agent that loops must not fill the disk.
    max_stalled_episodes: int = 5
    # The run ledger of one session stops recording the agent's events past this size.
    ledger_max_bytes: int = 256 << 20
    max_duration: float | None = None
    prompt_budget: int | None = None
    stop_grace: float = 3.0
    term_grace: float = 3.0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    # Hide the agent's output, show only aether's notices (one of PER_INVOCATION).
    quiet: bool = False
    constraints: tuple[str, ...] = field(default_factory=tuple)
    # How the agent's stdout is read: "auto" recognises claude/codex/gemini by the command.
    format: str = "auto"
    # A model command that distils a checkpoint from the episode when the agent cannot.
    distill_command: str | None = None
    distill_timeout: float = 120.0
    # Relaunch through the agent's own resume (claude --resume, codex exec resume).
    native_resume: bool = False
    # Who writes the handoff of a stopped Claude Code or Codex: "agent" asks the agent
    # itself (rules fill in and stand in when it fails); "rules" never asks.
    handoff: str = "agent"
    # A crash sooner than this after launch counts toward --max-restarts; a later one
    # starts the count again, so a long-lived agent is not stopped by rare crashes.
    min_uptime: float = 10.0
    # Seconds a threshold waits for in-flight tool calls to return before stopping the agent.
    tool_grace: float = 30.0
    # Tokens of the agent's own context that its stdout never shows (None: the format's
    # default, 8,500 for Codex, 0 for the others).
    context_overhead: int | None = None
    # Commit .memory/ at every checkpoint and at the run's end (inside a git repository):
    # onto refs/aether/<session>, or with `commit_to_branch` onto the current branch.
    commit: bool = True
    commit_to_branch: bool = False
    # Hooks (docs/hooks.md): a shell command run at each of aether's events, the event as
    # JSON on stdin. From config.toml they are confirmed before they run (trust.py).
    on_checkpoint: str | None = None
    on_relaunch: str | None = None
    on_done: str | None = None
    on_crash: str | None = None
    hook_timeout: float = 30.0
    # Where aether's own events go as JSON lines: a file (appended to) or "-" for stderr.
    events: str | None = None

    @property
    def window(self) -> int:
        """The effective context window: flag, else model table, else the default."""
        from aether_cli.budget import decide_window

        user = self.context_window or window_for_model(self.model)
        return decide_window(user=user, agent=None, default=C.DEFAULT_WINDOW)

    def validate(self) -> Settings:
        """Raise UsageError for settings that cannot work; return self."""
        if self.context_window is not None and self.context_window < 256:
            raise UsageError(
                f"--context-window must be at least 256 tokens, got {self.context_window}"
            )
        for name in ("soft_at", "checkpoint_at", "emergency_at"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise UsageError(
                    f"--{name.replace('_', '-')} must be a fraction in (0, 1], got {v}"
                )
        if not self.soft_at <= self.checkpoint_at <= self.emergency_at:
            raise UsageError("thresholds must satisfy soft-at <= checkpoint-at <= emergency-at")
        if self.max_steps is not None and self.max_steps < 1:
            raise UsageError("--max-steps must be at least 1")
        if self.checkpoint_timeout < 0:
            raise UsageError("--checkpoint-timeout must not be negative")
        if self.max_restarts < 0:
            raise UsageError("--max-restarts must not be negative")
        if self.max_stalled_episodes < 1:
            raise UsageError("--max-stalled-episodes must be at least 1")
        if self.ledger_max_bytes < 1 << 20:
            raise UsageError("ledger_max_bytes must be at least 1 MiB (1048576)")
        if self.max_episodes is not None and self.max_episodes < 1:
            raise UsageError("--max-episodes must be at least 1")
        if self.max_duration is not None and self.max_duration <= 0:
            raise UsageError("--max-duration must be positive")
        if self.format not in FORMAT_CHOICES:
            raise UsageError(
                f"--format must be one of {', '.join(FORMAT_CHOICES)}, got {self.format!r}"
            )
        if self.handoff not in HANDOFF_CHOICES:
            raise UsageError(f"--handoff must be agent or rules, got {self.handoff!r}")
        if self.distill_command is not None and not self.distill_command.strip():
            raise UsageError("--distill-command must not be empty")
        if self.context_overhead is not None and self.context_overhead < 0:
            raise UsageError("--context-overhead must not be negative")
        if self.min_uptime < 0 or self.tool_grace < 0:
            raise UsageError("--min-uptime and --tool-grace must not be negative")
        if not 0 < self.hook_timeout <= MAX_HOOK_TIMEOUT:
            raise UsageError(
                f"--hook-timeout must be more than 0 and at most {MAX_HOOK_TIMEOUT:g} seconds, "
                f"got {self.hook_timeout:g}"
            )
        for name in HOOK_SETTINGS:
            if "\0" in (getattr(self, name) or ""):
                raise UsageError(f"--{name.replace('_', '-')} must not hold a NUL character")
        if self.events is not None and not self.events.strip():
            raise UsageError("--events needs a file name, or - for stderr")
        return self

    def hook(self, event: str) -> str | None:
        """The hook command of `event` ("checkpoint", "relaunch", "done", "crash"), or None.

        An empty one is none: `--on-done ""` switches off config.toml's."""
        command = getattr(self, "on_" + event)
        return command if isinstance(command, str) and command.strip() else None

    def to_config(self) -> dict[str, Any]:
        """The settings as a plain dict (for the continuity file and the ledger), without the
        hooks and --events: the continuity file is committed, and they are this machine's."""
        d = {k: v for k, v in asdict(self).items() if k not in LOCAL_ONLY}
        d["command"] = list(self.command)
        d["constraints"] = list(self.constraints)
        return {k: v for k, v in d.items() if v is not None}


_FIELD_TYPES = {f.name: f.type for f in fields(Settings)}
# Display choices of one invocation (flag, AETHER_*, or a config.toml line the user
# wrote): aether neither writes them into config.toml nor carries them over from
# a stored session, so a `run -q` does not silence a later `resume`.
PER_INVOCATION = frozenset({"quiet"})
# The hooks and the event stream: never stored with a session (so never carried over
# by a resume: a resumed run has the hooks of its own flags, AETHER_* and config.toml).
HOOK_SETTINGS = ("on_checkpoint", "on_relaunch", "on_done", "on_crash")
LOCAL_ONLY = frozenset({*HOOK_SETTINGS, "hook_timeout", "events"})
# Never read from config.toml (see the module docstring). `events` names a file aether
# appends to: a committed file must not pick where.
NOT_IN_CONFIG = frozenset({"command", "events"})
# config.toml's [hooks] table: its keys and the setting each one is.
HOOK_KEYS = {**{name: name for name in HOOK_SETTINGS}, "timeout": "hook_timeout"}
# A hook holds the run up to this long (docs/hooks.md): longer is a job to start, not wait for.
MAX_HOOK_TIMEOUT = 3600.0


def _coerce(name: str, value: Any, source: str) -> Any:
    kind = str(_FIELD_TYPES[name])
    try:
        if name in ("command", "constraints"):
            if isinstance(value, str):
                raise TypeError
            return tuple(str(v) for v in value)
        if "bool" in kind:
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off", ""):
                return False
            raise ValueError
        if "int" in kind:
            if isinstance(value, bool):
                raise TypeError
            return int(value)
        if "float" in kind:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise UsageError(f"{source}: bad value for {name}: {value!r}") from None


def read_config(path: Path) -> dict[str, Any]:
    """The [run] table of config.toml (or its top level), with unknown keys and `command` ignored."""
    if not path.is_file():
        return {}
    import tomllib  # only when there is a config file to read

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    table = data.get("run", data)
    if not isinstance(table, dict):
        return {}
    misplaced = sorted(set(table) & set(HOOK_KEYS.values()))
    if misplaced:
        raise UsageError(f"{path}: {misplaced[0]} belongs in the [hooks] table (see docs/hooks.md)")
    out = {
        k: _coerce(k, v, str(path))
        for k, v in table.items()
        if k in _FIELD_TYPES and k not in NOT_IN_CONFIG
    }
    out.update(_read_hooks(data.get("hooks"), str(path)))
    return out


def _read_hooks(table: Any, source: str) -> dict[str, Any]:
    """config.toml's [hooks] table, strictly: a typo or a wrong type is an error, not a
    hook that silently never runs."""
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise UsageError(f"{source}: [hooks] must be a table (on_checkpoint = \"...\", ...)")
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = HOOK_KEYS.get(key)
        if name is None:
            raise UsageError(f"{source}: [hooks] has no key {key!r} (known: {', '.join(HOOK_KEYS)})")
        if name != "hook_timeout" and not isinstance(value, str):
            raise UsageError(f"{source}: [hooks] {key} must be a string (a shell command), got {value!r}")
        out[name] = _coerce(name, value, f"{source}: [hooks]")
    return out


def read_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Settings given as AETHER_<NAME> environment variables (e.g. AETHER_CONTEXT_WINDOW)."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name in _FIELD_TYPES:
        if name in ("command", "constraints"):
            continue
        raw = env.get("AETHER_" + name.upper())
        if raw is not None and raw != "":
            out[name] = _coerce(name, raw, "AETHER_" + name.upper())
    return out


def build_settings(
    flags: dict[str, Any],
    *,
    config_path: Path | None = None,
    environ: dict[str, str] | None = None,
    stored: dict[str, Any] | None = None,
) -> Settings:
    """Merge flags > environment > stored > config.toml > defaults.

    `stored` is the resumed session's own settings (its continuity record); only
    `aether resume` passes it: a new run starts from its flags, never a previous run's.
    """
    merged: dict[str, Any] = {}
    if config_path is not None:
        merged.update(read_config(config_path))
    if stored:
        merged.update(
            {
                k: _coerce(k, v, "stored settings")
                for k, v in stored.items()
                if k in _FIELD_TYPES and k not in PER_INVOCATION and k not in LOCAL_ONLY
            }
        )
    merged.update(read_env(environ))
    merged.update({k: v for k, v in flags.items() if v is not None and k in _FIELD_TYPES})
    for k in ("command", "constraints"):
        if k in merged:
            merged[k] = tuple(merged[k])
    return Settings(**merged).validate()
