"""Check an existing `.memory/` for secrets: the work behind `aether scan` and a pre-commit hook.

The store redacts everything it writes, so a finding here means something
wrote to `.memory/` behind its back (a person, another tool, an older
aether) or that a rule was added since. The scan applies the same rules as
the store (`redact.py`), file by file:

- a `.json` file is parsed and judged as the store would judge the value it
  holds (so `{"password": "..."}` counts, and JSON escapes cannot fake or hide
  a match); the finding is placed on the line where the string is written;
- a `.jsonl` file (the run ledgers) is judged record by record;
- any other file (`.md`, `.toml`, `.prompt`, ...) line by line.

A finding names the file, the line and the kind of secret, never the secret:
the report is printed to a terminal and a CI log. Symlinks are never
followed (a cloned repository can plant `.memory/x -> ~/.aws/credentials`),
and whatever cannot be read or parsed is reported as a problem, because the
scan cannot vouch for it.
"""

from __future__ import annotations

import os
import re
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from aether_cli import constants as C
from aether_cli.errors import CorruptMemoryError, NotFoundError
from aether_cli.redact import redact_obj, redact_text
from aether_cli.store.files import read_bytes

_MARKER = re.compile(r"\[REDACTED:([a-z0-9_]+)\]")
_JSON_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')


class MissingMemoryError(NotFoundError):
    """The path to scan is there but is not a folder (exit 2, so a hook can tell it from a finding)."""

    exit_code = C.EXIT_USAGE


@dataclass(frozen=True, slots=True)
class Finding:
    """A secret in `path` (relative to the memory folder, `/`-separated) at 1-based `line`."""

    path: str
    line: int
    kind: str


@dataclass(frozen=True, slots=True)
class Problem:
    """A file (or one line of it) the scan could not read or parse, and why."""

    path: str
    line: int | None
    reason: str


@dataclass
class ScanReport:
    """What `scan_memory` found: findings, problems, and how many files it read."""

    root: Path
    files_scanned: int = 0
    findings: list[Finding] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # No folder at `root`: nothing can have leaked, so a repository without aether passes its hook.
    absent: bool = False

    @property
    def clean(self) -> bool:
        """True when there is no finding and no problem."""
        return not self.findings and not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (for `aether scan --json`)."""
        return {
            "memory_dir": str(self.root),
            "clean": self.clean,
            "files_scanned": self.files_scanned,
            "absent": self.absent,
            "findings": [{"path": f.path, "line": f.line, "kind": f.kind} for f in self.findings],
            "problems": [{"path": p.path, "line": p.line, "reason": p.reason} for p in self.problems],
        }

    def lines(self, relative_to: Path | None = None) -> list[str]:
        """One `path:line: kind` line per finding, one per problem, then a summary line.

        Paths are shown under the memory folder as seen from `relative_to`
        (e.g. `.memory/notes.md:3: aws_access_key`), so an editor can open them.
        """
        base = _display(self.root, relative_to)
        if self.absent:
            return [f"no {base} here: nothing to scan"]
        out = [f"{base}/{f.path}:{f.line}: {f.kind}" for f in self.findings]
        for p in self.problems:
            where = f"{base}/{p.path}" + (f":{p.line}" if p.line is not None else "")
            out.append(f"{where}: not scanned: {p.reason}")
        files = len({f.path for f in self.findings})
        if self.clean:
            out.append(f"no secrets found in {_count(self.files_scanned, 'file')} under {base}")
        else:
            summary = (
                f"{_count(len(self.findings), 'possible secret')} in {_count(files, 'file')} under {base}"
            )
            if self.problems:
                summary += f"; {_count(len(self.problems), 'file or line', 'files or lines')} not scanned"
            out.append(summary)
        return out


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _display(root: Path, relative_to: Path | None) -> str:
    if relative_to is not None:
        try:
            return root.relative_to(relative_to).as_posix() or "."
        except ValueError:
            pass
    return str(root)


# ------------------------------------------------------------- judging text


def _new_kinds(before: str, after: str) -> list[str]:
    """The kinds of the markers redaction added (a marker already in `before` is not new)."""
    added = Counter(_MARKER.findall(after)) - Counter(_MARKER.findall(before))
    kinds = [k for k in dict.fromkeys(_MARKER.findall(after)) if added[k] > 0]
    return kinds or ["secret"]


def scan_text(text: str) -> list[tuple[int, str]]:
    """(1-based line, kind) for each secret in plain text, judged line by line."""
    if redact_text(text) == text:
        # What the store would write unchanged is clean; the per-line pass below
        # only places the findings.
        return []
    found: list[tuple[int, str]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        redacted = redact_text(line)
        if redacted != line:
            found.extend((lineno, kind) for kind in _new_kinds(line, redacted))
    return found or [(1, kind) for kind in _new_kinds(text, redact_text(text))]


def _strings_with_secrets(value: Any, key: Any = None) -> Iterator[tuple[str, list[str]]]:
    """(string, kinds) for each string in a parsed JSON value that the store would redact."""
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str) and (rk := redact_text(k)) != k:
                yield k, _new_kinds(k, rk)
            yield from _strings_with_secrets(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _strings_with_secrets(v)
    elif isinstance(value, str):
        # Through redact_obj, so a key like "password" counts as it does in the store.
        redacted = (
            next(iter(redact_obj({key: value}).values())) if isinstance(key, str) else redact_text(value)
        )
        if redacted != value:
            yield value, _new_kinds(value, redacted)


def _string_offsets(text: str) -> list[tuple[str, int]]:
    """(decoded value, offset) of every JSON string token in `text`, in order."""
    out = []
    for m in _JSON_STRING.finditer(text):
        try:
            out.append((orjson.loads(m.group(0)), m.start()))
        except orjson.JSONDecodeError:
            continue
    return out


def scan_json(text: str, doc: Any) -> list[tuple[int, str]]:
    """(line, kind) for each secret in `doc`, the parsed form of the JSON `text`."""
    if redact_obj(doc) == doc:
        return []
    found: list[tuple[int, str]] = []
    cursor = 0
    tokens: list[tuple[str, int]] | None = None
    for string, kinds in _strings_with_secrets(doc):
        # Find where the string is written, in document order. The store writes
        # with orjson, so its encoding is tried first; a hand-written file may
        # escape differently (`\u0041`, `\/`), so then every string token is decoded.
        needle = orjson.dumps(string).decode()
        at = text.find(needle, cursor)
        if at < 0:
            if tokens is None:
                tokens = _string_offsets(text)
            offsets = [o for s, o in tokens if s == string]
            at = next((o for o in offsets if o >= cursor), offsets[0] if offsets else 0)
        cursor = at + 1
        found.extend((text.count("\n", 0, at) + 1, kind) for kind in kinds)
    return found


# ------------------------------------------------------------- files


def _scan_file(data: bytes, suffix: str) -> tuple[list[tuple[int, str]], list[tuple[int | None, str]]]:
    """(findings, problems) for one file's bytes, each as (line, kind or reason)."""
    text = data.decode("utf-8", errors="replace")
    problems: list[tuple[int | None, str]] = []
    if suffix == ".json":
        try:
            return scan_json(text, orjson.loads(data)), problems
        except orjson.JSONDecodeError as exc:
            problems.append((None, f"invalid JSON ({exc})"))
        except RecursionError:
            problems.append((None, "nested too deeply to judge as JSON"))
        return scan_text(text), problems
    if suffix == ".jsonl":
        found: list[tuple[int, str]] = []
        lines = text.split("\n")
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                found.extend((lineno, kind) for _, kind in scan_json(line, orjson.loads(line)))
                continue
            except orjson.JSONDecodeError:
                # A torn last line (a writer killed mid-append) is expected and
                # skipped by every reader; any other bad line is a problem.
                if lineno < len(lines):
                    problems.append((lineno, "invalid JSON line"))
            except RecursionError:
                problems.append((lineno, "nested too deeply to judge as JSON"))
            found.extend((lineno, kind) for _, kind in scan_text(line))
        return found, problems
    return scan_text(text), problems


def scan_memory(memory_dir: Path) -> ScanReport:
    """Scan every file under `memory_dir` (runs/ included) for secrets, never following a symlink.

    Nothing at `memory_dir` is a clean report marked `absent`; something there
    that is not a folder (a dangling symlink included) raises `MissingMemoryError`.
    Findings and problems come sorted by path, then line.
    """
    root = Path(memory_dir)
    if not os.path.lexists(root):
        return ScanReport(root=root, absent=True)
    if not root.is_dir():
        raise MissingMemoryError(
            f"{root} is not a folder; run `aether scan` next to .memory/ or pass --memory-dir"
        )
    report = ScanReport(root=root)
    _walk(root, "", report)
    report.findings.sort(key=lambda f: (f.path, f.line))
    report.problems.sort(key=lambda p: (p.path, p.line or 0))
    return report


def _walk(folder: Path, prefix: str, report: ScanReport) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        report.problems.append(Problem(prefix.rstrip("/") or ".", None, f"cannot list: {exc.strerror}"))
        return
    for entry in entries:
        rel = prefix + entry.name
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except OSError as exc:
            report.problems.append(Problem(rel, None, f"cannot stat: {exc.strerror}"))
            continue
        if stat.S_ISLNK(mode):
            report.problems.append(Problem(rel, None, "a symlink; not followed"))
        elif stat.S_ISDIR(mode):
            _walk(Path(entry.path), rel + "/", report)
        elif not stat.S_ISREG(mode):
            # Never open a FIFO or a device: reading one can block or never end.
            report.problems.append(Problem(rel, None, "not a regular file"))
        else:
            _scan_one(Path(entry.path), rel, report)


def _scan_one(path: Path, rel: str, report: ScanReport) -> None:
    try:
        data = read_bytes(path)  # O_NOFOLLOW: a symlink swapped in after the stat is refused too
    except (OSError, CorruptMemoryError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        reason = reason.removeprefix(f"{path}: ")
        report.problems.append(Problem(rel, None, f"cannot read: {reason}"))
        return
    report.files_scanned += 1
    found, problems = _scan_file(data, path.suffix)
    seen: set[tuple[int, str]] = set()
    for lineno, kind in found:
        if (lineno, kind) not in seen:
            seen.add((lineno, kind))
            report.findings.append(Finding(rel, lineno, kind))
    report.problems.extend(Problem(rel, line, reason) for line, reason in problems)
