"""How the store spells time: ISO 8601 in UTC, milliseconds, a `Z` suffix.

Every part of the store takes its clock (a function returning an aware
`datetime`) in its constructor, so tests pin time without patching; `utc_now`
is the real one. Nothing here reads or writes files.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a `Z` suffix, e.g. `2025-01-02T03:04:05.678Z`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utc_now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(UTC)
