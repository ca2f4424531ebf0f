"""Prompt templates: find one, validate it, fill it in.

A template is a Markdown file with `$name` variables. The packaged copies can
be overridden in `.memory/templates/`, which a cloned repository controls, so
an override is read only if it is a regular file in a real folder (never
through a symlink), at most MAX_TEMPLATE_BYTES, in UTF-8. `render` checks
everything up front and names every problem in one error. This module knows
nothing of checkpoints, tasks or token budgets: what goes into a prompt is
`rehydrate`'s business.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import string
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from aether_cli import constants as C
from aether_cli.errors import AetherError

log = logging.getLogger(__name__)

MAX_TEMPLATE_BYTES = 256 * 1024

_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_LONE_VARIABLE = re.compile(r"^\s*\$(?:([_a-zA-Z][_a-zA-Z0-9]*)|\{([_a-zA-Z][_a-zA-Z0-9]*)\})\s*$")


class TemplateError(AetherError):
    """A prompt template cannot be loaded or rendered; the message names every problem at once."""


def _read_override(path: Path) -> str | None:
    """The text of a user's template override, or None if there is none to use.

    A symlink (the folder or the file) is ignored: a cloned repository must
    not be able to point aether's prompt at a file elsewhere on the machine.
    """
    folder = path.parent
    try:
        folder_mode = folder.lstat().st_mode
        if stat.S_ISLNK(folder_mode):
            log.warning("ignoring %s: the templates folder is a symlink", folder)
            return None
        if not stat.S_ISDIR(folder_mode):
            return None
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TemplateError(f"cannot read template {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(mode):
        log.warning("ignoring template override %s: not a regular file", path)
        return None
    # O_NOFOLLOW and O_NONBLOCK: if the file was swapped for a symlink or a
    # FIFO since the lstat, the open fails or returns at once instead of
    # following the link or blocking; fstat then checks what was opened.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            log.warning("ignoring template override %s: it is a symlink", path)
            return None
        raise TemplateError(f"cannot read template {path}: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            log.warning("ignoring template override %s: not a regular file", path)
            return None
        data = fh.read(MAX_TEMPLATE_BYTES + 1)
    if len(data) > MAX_TEMPLATE_BYTES:
        raise TemplateError(f"template {path} is larger than {MAX_TEMPLATE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TemplateError(f"template {path} is not UTF-8: {exc.reason}") from exc


# The templates aether loads (each may be overridden in `.memory/templates/`).
TEMPLATE_NAMES = ("distill.md", "handoff.md", "rehydrate.md", "start.md")


def read_overrides(memory_dir: Path) -> dict[str, str]:
    """Name -> text of each override in `<memory_dir>/templates/` that aether would use.

    What a run would read, read the same way (no symlink, no FIFO); one it
    could not read is given as its error, so a change to it still shows.
    """
    found: dict[str, str] = {}
    for name in TEMPLATE_NAMES:
        try:
            text = _read_override(Path(memory_dir) / C.TEMPLATES_DIR / name)
        except TemplateError as exc:
            text = f"(unreadable: {exc})"
        if text is not None:
            found[name] = text
    return found


def load_template(name: str, memory_dir: Path | None) -> str:
    """The text of template `name`: the user's override, else the packaged copy.

    Looks in `<memory_dir>/templates/<name>` (a regular file, never a
    symlink), then in the package data of an installed wheel, then in the
    repository's top-level `templates/` (an editable install).
    """
    if not _TEMPLATE_NAME.match(name) or ".." in name:
        raise TemplateError(f"bad template name {name!r}")
    looked: list[str] = []
    if memory_dir is not None:
        override = Path(memory_dir) / C.TEMPLATES_DIR / name
        looked.append(str(override))
        text = _read_override(override)
        if text is not None:
            return text
    packaged = resources.files("aether_cli").joinpath("templates").joinpath(name)
    looked.append(f"aether_cli/templates/{name} (package data)")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    # This file is in the package folder: the repository's templates/ is beside that folder.
    repo = Path(__file__).resolve().parent.parent / "templates" / name
    looked.append(str(repo))
    if repo.is_file():
        return repo.read_text(encoding="utf-8")
    raise TemplateError(f"template {name!r} not found; looked in: {', '.join(looked)}")


def _where(template: str, index: int) -> str:
    line = template.count("\n", 0, index) + 1
    col = index - (template.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {col}"


def render(
    template: str, values: Mapping[str, str], *, name: str = "template",
    required: tuple[str, ...] = (),
) -> str:
    """Substitute `$name` / `${name}` variables, after validating everything up front.

    One TemplateError lists every problem: unknown variables (used by the
    template, absent from `values`), values that are not strings, invalid
    `$` placeholders, and `required` variables the template does not use.
    A line holding only a variable whose value is empty disappears, with one
    blank line after it, so empty sections leave no gaps. `$$` is a literal `$`.
    """
    tpl = string.Template(template)
    problems: list[str] = []
    invalid = [
        _where(template, m.start())
        for m in tpl.pattern.finditer(template)
        if m.group("invalid") is not None
    ]
    if invalid:
        problems.append("invalid placeholder ($ not followed by a name) at " + "; ".join(invalid))
    used = tpl.get_identifiers()
    unknown = [v for v in used if v not in values or values[v] is None]
    if unknown:
        known = ", ".join(sorted(k for k, v in values.items() if v is not None)) or "none"
        problems.append(
            "unknown variables " + ", ".join(f"${v}" for v in unknown) + f" (known: {known})"
        )
    not_text = [v for v in used if v in values and values[v] is not None
                and not isinstance(values[v], str)]
    if not_text:
        problems.append("values are not text: " + ", ".join(f"${v}" for v in not_text))
    missing = [v for v in required if v not in used]
    if missing:
        problems.append(
            "template must use " + ", ".join(f"${v}" for v in missing)
        )
    if problems:
        raise TemplateError(f"{name}: " + "; ".join(problems))

    out: list[str] = []
    skip_blank = False
    for line in template.split("\n"):
        if skip_blank and not line.strip():
            skip_blank = False
            continue
        skip_blank = False
        m = _LONE_VARIABLE.match(line)
        if m and values[m.group(1) or m.group(2)] == "":
            skip_blank = True
            continue
        out.append(line)
    return string.Template("\n".join(out)).substitute(values)
