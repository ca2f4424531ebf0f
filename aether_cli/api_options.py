"""Settings given as Python keyword arguments, checked like the command line's flags.

`aether_cli.run(argv, context_window=4000, max_steps=5)` and
`Engine.open(objective, window=..., soft_at=...)` take the options of `aether
run` (`options.RunOptions`) by name, with two spellings of the Settings
field allowed too (`constraints` for `constraint`, `format` for
`agent_format`). Each value must have the option's type (an int where the flag
takes an int, a real bool for a switch, a list of strings for a repeatable
option), so a wrong one fails here with the flag's name, before anything is
written; ranges are then checked by `Settings.validate`, as for the CLI.

Knows nothing of the store, processes or the terminal.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from dataclasses import fields
from typing import Any, Union, get_args, get_origin, get_type_hints

from aether_cli.errors import UsageError
from aether_cli.options import OPTION_INFO, RunOptions

# Settings fields spelt as such, for the options whose flag has another name.
ALIASES = {"constraints": "constraint", "format": "agent_format"}


class SettingError(UsageError, ValueError):
    """A setting given as a keyword argument has an unknown name or a wrong type."""


def flag_name(option: str) -> str:
    """The command-line spelling of `option` (`context_window` -> `--context-window`)."""
    info = OPTION_INFO[option]
    long = [f for f in info.flags if f.startswith("--")]
    return long[0].split("/")[0] if long else "--" + option.replace("_", "-")


def _base(hint: Any) -> Any:
    """The type of an optional field's hint (`int | None` -> int)."""
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _checked(option: str, value: Any, hint: Any) -> Any:
    """`value` for `option` if it has the option's type (ints widen to floats), else SettingError."""
    base = _base(hint)
    name = flag_name(option)
    if get_origin(base) is list:
        if isinstance(value, str | bytes) or not isinstance(value, Iterable):
            raise SettingError(f"{name}: expected a list of strings, got {value!r}")
        items = list(value)
        if not all(isinstance(v, str) for v in items):
            raise SettingError(f"{name}: expected a list of strings, got {value!r}")
        return items
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(base, True)
    if not ok:
        raise SettingError(f"{name}: expected {getattr(base, '__name__', base)}, got {value!r}")
    minimum = OPTION_INFO[option].min
    if minimum is not None and value < minimum:
        raise SettingError(f"{name}: must be at least {minimum}, got {value!r}")
    return float(value) if base is float else value


def run_options(
    given: dict[str, Any], *, only: frozenset[str] | None = None, where: str = "run()"
) -> RunOptions:
    """The `RunOptions` of keyword arguments `given` (None values are not given).

    `only`: the options that make sense to the caller; another known one is
    refused with the reason."""
    hints = get_type_hints(RunOptions)
    known = {f.name for f in fields(RunOptions)}
    out: dict[str, Any] = {}
    for key, value in given.items():
        option = ALIASES.get(key, key)
        if option not in known:
            names = ", ".join(sorted(only if only is not None else known))
            raise SettingError(f"{where}: unknown setting {key!r} (known: {names})")
        if only is not None and option not in only:
            raise SettingError(
                f"{where}: {key!r} applies to a supervised agent process (aether_cli.run), "
                "not to an agent loop in this process"
            )
        if value is not None:
            out[option] = _checked(option, value, hints[option])
    return RunOptions(**out)
