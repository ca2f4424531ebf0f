"""aether: run any LLM agent indefinitely with bounded context.

The public Python API (docs/python.md) is `aether_cli.api`, re-exported here:
`from aether_cli import Engine, run`. It is imported on first use, so the CLI's
start-up does not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from aether_cli.api import (
        AetherError,
        CorruptMemoryError,
        Engine,
        EngineEvent,
        EventError,
        LockedError,
        NotFoundError,
        RunResult,
        SettingError,
        StorageError,
        UsageError,
        resume_run,
        run,
    )

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
    "__version__",
    "resume_run",
    "run",
]


def __getattr__(name: str) -> Any:
    """The API's names, imported from `aether_cli.api` when first asked for."""
    if name in __all__ and name != "__version__":
        from aether_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'aether_cli' has no attribute {name!r}")
