"""Names, defaults and exit codes shared by every module (one place, so they cannot drift)."""

from __future__ import annotations

PROTOCOL_VERSION = 1
# The task statuses of protocol v1 (re-exported by `protocol`; here so the store needs no protocol import).
TASK_STATUSES = ("pending", "in_progress", "blocked", "done")

# .memory layout (the contract in shared/memory-layout.md)
MEMORY_DIRNAME = ".memory"
CONTINUITY_FILE = "session_continuity.json"
PROJECT_MEMORY_FILE = "project_memory.json"
CONTEXT_INDEX_FILE = "context_index.json"
CONFIG_FILE = "config.toml"
README_FILE = "README.md"
TASKS_DIR = "task_states"
CHECKPOINTS_DIR = "checkpoints"
TEMPLATES_DIR = "templates"
RUNS_DIR = "runs"
LOCK_FILE = "aether.lock"
LOCK_INFO_FILE = "lock.json"
HEARTBEAT_FILE = "heartbeat.json"
CHECKPOINT_REQUEST_FILE = "checkpoint.request"
START_PROMPT_FILE = "start.prompt"
# What this machine last ran (trust.py): local, in runs/, never committed.
TRUST_FILE = "trusted.json"

# Budget defaults (fractions of the context window)
DEFAULT_WINDOW = 128_000
DEFAULT_SOFT_AT = 0.60
DEFAULT_CHECKPOINT_AT = 0.80
DEFAULT_EMERGENCY_AT = 0.95
DEFAULT_CHECKPOINT_TIMEOUT = 10.0
DEFAULT_MAX_RESTARTS = 5
DEFAULT_PROMPT_BUDGET_CAP = 2000
DEFAULT_PROMPT_BUDGET_SHARE = 0.10
# Characters of the agent's last words a prompt shows (its "Last intent"); a plain-text
# agent's last lines are chosen to fit it, so its newest line is the one shown.
LAST_INTENT_CHARS = 300

# Reader bounds: what we keep of one line; the rest is counted, not kept.
MAX_LINE_BYTES = 1 << 20
READ_CHUNK = 1 << 16

# Task ids become file names only if they match this (see memory-layout.md).
TASK_ID_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"

# Exit codes (listed in the README)
EXIT_OK = 0
EXIT_USER = 1
EXIT_USAGE = 2
EXIT_BUG = 3
EXIT_CRASH_LOOP = 4  # a runaway: the context overflowed right after every launch, or no progress
EXIT_CORRUPT = 5
# The agent kept crashing (--max-restarts). One fixed code, not the agent's own, which could
# be 1 or 3 and read as aether's; the agent's code is in the message and the continuity record.
EXIT_AGENT_CRASHED = 6
EXIT_STORAGE = 74  # a write under .memory/ failed (EIO, ENOSPC...): sysexits EX_IOERR
EXIT_LOCKED = 75
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
