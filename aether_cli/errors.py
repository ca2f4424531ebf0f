"""Error types that the CLI maps to one-line messages and exit codes."""

from __future__ import annotations

import os
from pathlib import Path

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


class ChecksumMismatchError(CorruptMemoryError):
    """A checkpoint parses but its content no longer matches its recorded sha256 (edited by hand?)."""


class LockedError(AetherError):
    """Another `aether run` holds the .memory lock."""

    exit_code = C.EXIT_LOCKED


class CrashLoopError(AetherError):
    """The agent crashed more often than --max-restarts allows, or kept overflowing."""

    exit_code = C.EXIT_CRASH_LOOP


class NotFoundError(AetherError):
    """A named checkpoint, session or file does not exist."""


class StorageError(AetherError, OSError):
    """A write under .memory/ failed in the filesystem (EIO, ENOSPC, EROFS...).

    Also an `OSError` carrying the original `errno`, `strerror` and the path
    as `filename`, so `except OSError` handlers keep working. The file it
    names still holds its previous complete content (writes are atomic).
    """

    exit_code = C.EXIT_STORAGE

    def __init__(self, path: Path | str, action: str, cause: OSError) -> None:
        strerror = cause.strerror or (os.strerror(cause.errno) if cause.errno else str(cause))
        super().__init__(cause.errno, strerror, str(path))
        self.action = action

    def __str__(self) -> str:
        return f"{self.filename}: {self.action} failed: {self.strerror}"
