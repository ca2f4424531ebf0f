"""What a launch would run that this machine has not run before, and the record of what it last ran.

`.memory/` is committed and shared, so what it names is untrusted input: the
agent command a session resumes with (session_continuity.json), a distill
command and hooks in config.toml, prompt template overrides in templates/. Each of these
is confirmed by a person the first time this machine is to run it (a typed
flag counts as confirmed); `runs/trusted.json`, local and git-ignored, then
records digests of what ran. A record is only believed in the `runs/` folder
it was written in (its device and inode are in it), so one that arrives
through git (`git add -f`) or is copied from another clone counts as none, and
anything that is not a well-formed record (not JSON, too large, wrong types)
counts as none too: the person is asked.

Pure functions: values and bytes in, values and bytes out. The store reads and
writes the file, the CLI asks the question; this module knows nothing of
files, the terminal, Typer or Rich.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

RECORD_VERSION = 1
# A record is a few digests: anything larger is not one (and is not read whole).
MAX_RECORD_BYTES = 4096
# What a launch runs, in the order they are shown.
ITEMS = ("command", "distill_command", "templates", "hooks")
# Items a record written before they existed may lack: then only they are asked about.
LATER_ITEMS = frozenset({"hooks"})
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
# Control characters are shown, not sent to the terminal: what runs must be seen as it is.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Launch:
    """What one launch of a session runs."""

    command: tuple[str, ...]
    distill_command: str | None
    # Name -> text of each prompt template override in `.memory/templates/`.
    templates: Mapping[str, str]
    # Event -> shell command of each hook config.toml sets (not those typed as flags or AETHER_*).
    hooks: Mapping[str, str] = field(default_factory=dict)


def _digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


def digests(launch: Launch) -> dict[str, str]:
    """A sha256 per item: the record keeps these, never the commands (they may hold a key)."""
    return {
        "command": _digest(list(launch.command)),
        "distill_command": _digest(launch.distill_command),
        "templates": _digest(dict(launch.templates)),
        "hooks": _digest(dict(launch.hooks)),
    }


def record_bytes(launch: Launch, folder: tuple[int, int]) -> bytes:
    """The record of `launch`, bound to the `runs/` folder it is written in (device, inode)."""
    return orjson.dumps(
        {"version": RECORD_VERSION, "folder": list(folder), **digests(launch)},
        option=orjson.OPT_SORT_KEYS,
    )


def parse_record(data: bytes | None, folder: tuple[int, int] | None) -> dict[str, str] | None:
    """The item digests of a record written in `folder`; None for anything else, never an error."""
    if data is None or folder is None or len(data) > MAX_RECORD_BYTES:
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or type(value.get("version")) is not int:
        return None
    if value["version"] != RECORD_VERSION or value.get("folder") != list(folder):
        return None
    found: dict[str, str] = {}
    for item in ITEMS:
        digest = value.get(item)
        if digest is None and item in LATER_ITEMS:
            continue
        if not isinstance(digest, str) or not _DIGEST.match(digest):
            return None
        found[item] = digest
    return found


def _empty(launch: Launch, item: str) -> bool:
    """Nothing runs for it: no distill command, no template override."""
    return (
        (item == "distill_command" and launch.distill_command is None)
        or (item == "templates" and not launch.templates)
        or (item == "hooks" and not launch.hooks)
    )


def unconfirmed(launch: Launch, record: dict[str, str] | None, *, typed: frozenset[str]) -> list[str]:
    """The items of `launch` a person must confirm: not typed now, not empty, not what the record holds."""
    now = digests(launch)
    return [
        item
        for item in ITEMS
        if item not in typed
        and not _empty(launch, item)
        and (record is None or record.get(item) != now[item])
    ]


def _visible(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def explain(launch: Launch, items: list[str], *, templates_dir: str) -> list[str]:
    """One line per item to confirm, saying exactly what will run (control characters as \\xNN)."""
    lines: list[str] = []
    if "command" in items:
        lines.append(f"  agent command:    {_visible(shlex.join(launch.command))}")
    if "distill_command" in items and launch.distill_command is not None:
        lines.append(f"  distill command:  {_visible(launch.distill_command)}")
    if "templates" in items:
        for name, text in sorted(launch.templates.items()):
            size = len(text.encode("utf-8", "replace"))
            lines.append(
                f"  prompt template:  {_visible(templates_dir)}/{name} ({size:,} bytes, "
                "replaces the bundled one)"
            )
    if "hooks" in items:
        for event, command in launch.hooks.items():
            lines.append(f"  {'hook on_' + event + ':':<18}{_visible(command)}")
    return lines


def config_hooks(hooks: Mapping[str, str | None], typed: frozenset[str]) -> dict[str, str]:
    """The hooks of a launch that come from config.toml: set, and not typed now (`on_<event>`
    as a flag or AETHER_*: those are the person's own)."""
    return {event: cmd for event, cmd in hooks.items() if cmd and f"on_{event}" not in typed}
