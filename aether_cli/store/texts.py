"""The default texts `aether init` writes into a new `.memory/`.

config.toml (every setting commented out, so the built-in defaults apply
until the user opts in; only `aether init` writes it, a run lays out the
rest), the folder's README, its .gitignore and the README of templates/.
Each is written once, exclusively, and never overwritten.

Plain strings: no I/O, and nothing about how or when they are written.
"""

from __future__ import annotations

from aether_cli import constants as C

DEFAULT_CONFIG_TOML = f"""\
# aether settings for this project (user-editable).
# Precedence: command-line flags, then AETHER_* environment variables, then
# this file, then built-in defaults. Uncomment what you want to change.
# `aether run` never writes this file, and a new run carries over only what is
# here, never a previous run's flags. The agent command is not read from here:
# give it after `--` (`aether run -- my-agent`); `aether resume` reuses the session's.

# objective = "Migrate the API to v2"
# model = "claude-sonnet-4"          # used to look up the window when context_window is not set
# context_window = {C.DEFAULT_WINDOW}       # tokens
# soft_at = {C.DEFAULT_SOFT_AT}                   # fraction: send a budget advisory
# checkpoint_at = {C.DEFAULT_CHECKPOINT_AT}             # fraction: checkpoint and relaunch
# emergency_at = {C.DEFAULT_EMERGENCY_AT}              # fraction: checkpoint at once and relaunch
# checkpoint_timeout = {C.DEFAULT_CHECKPOINT_TIMEOUT}       # seconds to wait for the agent's own checkpoint
# max_restarts = {C.DEFAULT_MAX_RESTARTS}
# distill_command = "claude -p"      # asked once on each machine before it first runs

# Hooks: shell commands run at aether's events, the event as JSON on stdin (docs/hooks.md).
# Like distill_command, each is shown and confirmed on each machine before it first runs.
# [hooks]
# on_checkpoint = 'notify-send "aether: checkpoint $AETHER_CHECKPOINT"'
# on_done = "./ci/report.sh"
# timeout = 30                       # seconds a hook may run
"""

README_TEXT = f"""\
# .memory — aether's memory for this project

aether runs an LLM agent with a bounded context. When the agent's context
fills up, aether distils its state into this folder, stops the agent and
relaunches it with a short prompt rebuilt from what is here. Everything in
this folder except `runs/` is small, readable JSON (sorted keys, 2-space
indent) meant to be committed, reviewed in diffs and carried between machines.
Secrets the agent printed are redacted before anything is written here.

## What each file is

- `{C.CONFIG_FILE}` — this project's settings (model, window, thresholds), as
  you wrote them: `aether init` creates it, `aether run` never writes it.
- `{C.CONTINUITY_FILE}` — pickup instructions: the session, its status,
  the last checkpoint, the open tasks and how to resume. Read first.
- `{C.PROJECT_MEMORY_FILE}` — long-term state: the objective, committed facts,
  finished tasks, learned figures.
- `{C.CONTEXT_INDEX_FILE}` — every checkpoint and task with its size in bytes
  and tokens.
- `{C.TASKS_DIR}/task_<id>_state.json` — one small file per task.
- `{C.CHECKPOINTS_DIR}/chk_<seq>_<hash>.json` — one file per checkpoint, never
  rewritten; the number is the sequence, the suffix a content hash.
- `{C.TEMPLATES_DIR}/` — optional overrides of aether's prompt templates.
- `{C.RUNS_DIR}/` — local only and git-ignored: run ledgers (JSONL), the live
  heartbeat, the start prompt, the lock of a running `aether run`, and
  `{C.TRUST_FILE}`, what this machine last ran (so `aether resume` asks before
  running an agent command, distill command or templates that came through git).

## How to resume

    aether status    # what is in here, and whether a run is live
    aether resume    # continue from the last checkpoint

Do not edit checkpoints by hand; drop one with `aether` instead.
"""

GITIGNORE_TEXT = f"""\
# Local run state (ledgers, heartbeat, lock): never committed.
{C.RUNS_DIR}/
# Leftovers of interrupted atomic writes.
*.tmp
"""

TEMPLATES_README_TEXT = """\
# Prompt template overrides

A file placed here with the same name as one of aether's bundled prompt
templates replaces it for this project. Leave the folder empty to use the
defaults.
"""
