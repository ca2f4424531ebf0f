"""The budget and trigger options of a run, declared once.

`RunOptions` is the table: one field per option, its name and type the field's,
its flag names and help in the field's metadata (`OptionInfo`). The CLI turns
each field into a command-line option for `aether run` and `aether resume`;
the core turns the options the user gave into the flags dict that
`settings.build_settings` ranks above the environment and config.toml. An
option not given stays None, so its default never overrides AETHER_* or
config.toml.

This module knows nothing of Typer, the terminal or the store: it is plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class OptionInfo:
    """How one option is spelt and explained on the command line."""

    help: str
    # Flag names; empty means the one derived from the field name (context_window -> --context-window).
    flags: tuple[str, ...] = ()
    # The Settings field it sets, when that differs from the option's own name.
    setting: str | None = None
    # The smallest value the parser accepts (shown in --help as a range).
    min: int | None = None


def _option(help: str, *flags: str, setting: str | None = None, min: int | None = None) -> Any:
    return field(default=None, metadata={"option": OptionInfo(help, flags, setting, min)})


# No generated repr or eq: nothing compares or prints options, and each costs start-up time.
@dataclass(frozen=True, repr=False, eq=False)
class RunOptions:
    """The options given to `aether run` or `aether resume`; None for each one not given.

    The field order is the order `--help` lists them in.
    """

    objective: str | None = _option("What the agent must achieve.", "--objective", "-o")
    context_window: int | None = _option(
        "Context window in tokens [default: from --model, else the agent's hello, else 128000]."
    )
    model: str | None = _option("Model name, to look up its context window.")
    soft_at: float | None = _option("Fraction at which the agent gets a budget advisory [0.6].")
    checkpoint_at: float | None = _option("Fraction at which aether checkpoints and relaunches [0.8].")
    emergency_at: float | None = _option(
        "Fraction at which aether checkpoints at once, without asking [0.95]."
    )
    max_steps: int | None = _option("Checkpoint after this many tool calls in one episode.")
    checkpoint_timeout: float | None = _option(
        "Seconds to wait for the agent's checkpoint answer [10]."
    )
    checkpoint_on_task_done: bool | None = _option(
        "Also checkpoint when a task is done.", "--checkpoint-on-task-done"
    )
    checkpoint_on_error: bool | None = _option(
        "Also checkpoint after a failed tool call or an error log.", "--checkpoint-on-error"
    )
    checkpoint_on_agent: bool | None = _option(
        "Relaunch when the agent sends an unasked checkpoint.", "--checkpoint-on-agent"
    )
    max_restarts: int | None = _option("Crash restarts in a row before giving up [5].")
    max_episodes: int | None = _option("Stop (resumably) after this many episodes.")
    max_stalled_episodes: int | None = _option(
        "Stop (exit 4) after this many relaunches in a row without a new step, file or task [5]."
    )
    max_duration: float | None = _option("Stop (resumably) after this many seconds.")
    prompt_budget: int | None = _option(
        "Token budget of the relaunch prompt [min(2000, 10% of window)]."
    )
    constraint: list[str] | None = _option(  # noqa: RUF009 (a field() whose default is None)
        "A rule the agent must keep (repeatable); kept in every checkpoint.",
        "--constraint",
        "-c",
        setting="constraints",
    )
    agent_format: str | None = _option(
        "How to read the agent's stdout: aether (protocol v1), claude, codex, gemini or text "
        "[default: recognised from the command, else aether].",
        "--format",
        "-f",
        setting="format",
    )
    distill_command: str | None = _option(
        "A model command that gets the distillation prompt on stdin and answers JSON "
        "(e.g. 'claude -p'), used when the agent gives no usable checkpoint."
    )
    native_resume: bool | None = _option(
        "Relaunch through the agent's own resume (claude --resume, codex exec resume).",
        "--native-resume",
    )
    handoff: str | None = _option(
        "Who writes the handoff when Claude Code or Codex is stopped: agent (asked for its "
        "own state, in its own session; rules fill in and stand in if it fails) or rules "
        "(built from what aether saw, no model tokens) [agent].",
    )
    tool_grace: float | None = _option(
        "Seconds a checkpoint waits for a running tool call to finish [30]."
    )
    context_overhead: int | None = _option(
        "Tokens the agent holds that its output never shows (its own instructions and "
        "tools), added to aether's count when the agent does not report its context size "
        "[8500 for codex, else 0].",
        min=0,
    )
    min_uptime: float | None = _option(
        "A crash sooner than this after launch counts toward --max-restarts [10]."
    )
    commit: bool | None = _option(
        "Commit .memory/ at every checkpoint and at the end, onto refs/aether/<session>, "
        "without touching your index, work tree or HEAD [on inside a git repository].",
        "--commit/--no-commit",
    )
    commit_to_branch: bool | None = _option(
        "Commit .memory/ onto the current branch instead, as its own commit (your other "
        "staged changes stay staged).",
        "--commit-to-branch",
    )
    on_checkpoint: str | None = _option(
        "A shell command run after each checkpoint, the event as JSON on stdin and in "
        "AETHER_* variables (docs/hooks.md); a failing hook is warned about, never fatal."
    )
    on_relaunch: str | None = _option("A shell command run before each relaunch (see --on-checkpoint).")
    on_done: str | None = _option(
        "A shell command run once when the run ends, however it ends (see --on-checkpoint)."
    )
    on_crash: str | None = _option("A shell command run when the agent crashes (see --on-checkpoint).")
    hook_timeout: float | None = _option(
        "Seconds a hook may run before its process group is killed; the run waits for it [30]."
    )
    events: str | None = _option(
        "Append aether's own events to FILE as JSON lines (one per event, for dashboards "
        "and CI); - writes them to stderr."
    )
    quiet: bool | None = _option(
        "Hide the agent's output; show only aether's notices.", "--quiet", "-q"
    )

    def flags(self) -> dict[str, Any]:
        """The options given, keyed by Settings field: the flags of `build_settings`."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):
                # A repeatable option given no times is not given: it must not empty the config's list.
                value = tuple(value) or None
            if value is not None:
                out[OPTION_INFO[f.name].setting or f.name] = value
        return out


OPTION_INFO: dict[str, OptionInfo] = {f.name: f.metadata["option"] for f in fields(RunOptions)}
