"""Error types that the CLI maps to one-line messages and exit codes."""

from __future__ import annotations

from aether_cli import constants as C


class AetherError(Exception):
    """A failure the user can act on: printed as one line, never a traceback."""

    exit_code: int = C.EXIT_USER


class UsageError(AetherError):
    """Bad flags or arguments."""

    exit_code = C.EXIT_USAGE


class CorruptMemoryError(AetherError):
    """A file under .memory/ does not parse or fails its checks."""

    exit_code = C.EXIT_CORRUPT


class LockedError(AetherError):
    """Another `aether run` holds the .memory lock."""

    exit_code = C.EXIT_LOCKED


class CrashLoopError(AetherError):
    """The agent crashed more often than --max-restarts allows, or kept overflowing."""

    exit_code = C.EXIT_CRASH_LOOP


class NotFoundError(AetherError):
    """A named checkpoint, session or file does not exist."""
