"""Tool-call outcomes and the errors still open: which failures a later success clears.

A failure stays relevant until the same thing succeeds: the same command run
again, the same file written again, or the same tests (or a wider run of the
same test runner) passing. This module reads a finished call's outcome (ok,
exit code, the first informative error line, verbatim) and gives each call
an identity to match failures and successes by. `ErrorBook` keeps one
episode's open failures and what succeeded, so errors of earlier episodes are
carried in a checkpoint's `state["unresolved_errors"]` until a success clears
them. Everything is capped; odd data is skipped, never raised on.

Knows nothing of protocol events, checkpoints or prompts.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from aether_cli.protocol import dumps_compact
from aether_cli.shell_writes import simple_commands

MAX_OPEN = 12
MAX_OK_KEYS = 4096
MAX_OK_TESTS = 512
LINE_CHARS = 300
KEY_CHARS = 200
CALL_CHARS = 160
HEAD_CHARS = 20_000
TAIL_CHARS = 4_000
ELLIPSIS = "…"

_EXIT = re.compile(r"^\s*(?:Exit code|exit code|exit status) (-?\d+)\s*$")
_SUMMARY = re.compile(r"^(?:FAILED|ERROR)\b")
_EXCEPTION = re.compile(r"^\s*[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Failure)\b")
# A compiler's or linter's diagnostic: `path:line[:col]: what` (ruff, mypy, gcc, tsc…).
_DIAGNOSTIC = re.compile(r"^[\w./\\-]+\.\w+:\d+(?::\d+)?:?\s+\S")
# Substring tests on the lowered line: much cheaper than a regex over long lines.
_ERROR_WORDS = (
    "error", "fatal", "panic", "exception", "fail", "denied", "not found", "no such file", "cannot",
    "can't", "unable to", "invalid", "refused", "timed out",
)  # fmt: skip
SCAN_CHARS = 1000  # of a longer line only its start is read
_HEADER = re.compile(r"^[=_\-*\s]*(?:FAILURES|ERRORS)?[=_\-*\s]*$")


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


# ----------------------------------------------------------------- outcome


@dataclass(frozen=True)
class Outcome:
    """A finished call: did it succeed, its exit code if it said one, its first error line."""

    ok: bool
    exit: int | None
    line: str

    def describe(self) -> str:
        """`ok`, `exit 1: <line>` or `error: <line>`, one line."""
        if self.ok:
            return "ok" if self.exit in (None, 0) else f"exit {self.exit}"
        head = f"exit {self.exit}" if self.exit is not None else "error"
        return f"{head}: {self.line}" if self.line else head


def _lines(text: str) -> list[str]:
    # A huge output is read at its head and its tail only: that is where
    # both the error and the exit code are.
    if len(text) > HEAD_CHARS + TAIL_CHARS:
        return text[:HEAD_CHARS].splitlines() + text[-TAIL_CHARS:].splitlines()[1:]
    return text.splitlines()


def _errorish(line: str) -> bool:
    low = line[:SCAN_CHARS].lower()
    return (
        any(w in low for w in _ERROR_WORDS)
        and not low.startswith("traceback (")
        and not _HEADER.match(line[:SCAN_CHARS])
    )


def first_error_line(lines: list[str]) -> str:
    """The line that says best what failed, verbatim (capped); "" if none says anything.

    A test summary line (`FAILED …`) first, then the exception a traceback
    ends with, then a diagnostic naming a file and line (`a.py:20:8: F401 …`,
    not the `Found 1 error.` after it), then the first line that reads like an
    error, then the first line.
    """
    text = [ln.strip() for ln in lines if ln.strip() and not _EXIT.match(ln[:SCAN_CHARS])]
    for pick in (
        next((ln for ln in text if _SUMMARY.match(ln)), None),
        next((ln for ln in text if _EXCEPTION.match(ln[:SCAN_CHARS]) and ":" in ln[:SCAN_CHARS]), None),
        next((ln for ln in text if _DIAGNOSTIC.match(ln[:SCAN_CHARS])), None),
        next((ln for ln in text if _errorish(ln)), None),
        text[0] if text else None,
    ):
        if pick:
            return _cap(pick, LINE_CHARS)
    return ""


def outcome(output: Any, is_error: bool) -> Outcome:
    """The outcome of a call from its result: an exit code line (Claude's first, Codex's last)
    is read and a non-zero one counts as failure even if the result did not say so."""
    if isinstance(output, str):
        text = output
    elif output is None or not is_error:
        text = ""  # structured output says nothing of an exit code; only a failure's is read
    else:
        text = dumps_compact(output)[:HEAD_CHARS]
    lines = _lines(text)
    code = None
    for ln in (lines[:1] + lines[-1:]) if lines else []:
        m = _EXIT.match(ln)
        if m:
            code = int(m.group(1))
            break
    failed = is_error or (code is not None and code != 0)
    return Outcome(ok=not failed, exit=code, line="" if not failed else first_error_line(lines))


# ---------------------------------------------------------------- identity


_RUNNERS = frozenset({
    "pytest", "py.test", "jest", "vitest", "mocha", "rspec", "phpunit", "tox", "nox", "ctest", "ava",
})  # fmt: skip
_SUB_RUNNERS = {
    "cargo": ("test", "nextest"), "go": ("test",), "dotnet": ("test",), "mix": ("test",),
    "npm": ("test", "t"), "yarn": ("test",), "pnpm": ("test",), "bun": ("test",),
    "deno": ("test",), "make": ("test", "check"), "gradle": ("test",), "gradlew": ("test",),
    "mvn": ("test",),
}  # fmt: skip
_LAUNCHERS = frozenset({"uv", "poetry", "pipenv", "npx", "pnpx", "bunx", "hatch", "pdm", "rye"})
_VALUE_SELECTORS = frozenset({"-k", "-m", "-run", "-t", "--testNamePattern", "--grep", "-g"})


def _looks_like_target(word: str) -> bool:
    return any(c in word for c in "/:.=") or word.endswith("...")


def _selectors(args: list[str]) -> list[str]:
    """What a test run selects: paths and test ids, and -k/-m/-run style filters."""
    out: list[str] = []
    after_option = False
    for i, word in enumerate(args):
        if word.startswith("-"):
            if word in _VALUE_SELECTORS and i + 1 < len(args):
                out.append(f"{word} {args[i + 1]}")
            after_option = "=" not in word
            continue
        if (i > 0 and args[i - 1] in _VALUE_SELECTORS) or (after_option and not _looks_like_target(word)):
            after_option = False
            continue
        after_option = False
        out.append(word)
    return sorted(set(out))


def suite_run(argv: list[str]) -> tuple[str, list[str]] | None:
    """(runner, selectors) if `argv` runs a test suite (`pytest tests/a.py`, `npm test` …)."""
    if argv and os.path.basename(argv[0]) in _LAUNCHERS:
        rest = argv[1:]
        if rest and rest[0] in ("run", "exec"):
            rest = rest[1:]
        argv = rest
    if not argv:
        return None
    name = os.path.basename(argv[0])
    if name.startswith("python") and argv[1:2] == ["-m"] and len(argv) > 2:
        name, argv = argv[2], argv[2:]
    if name in _RUNNERS or name == "unittest":
        return name, _selectors(argv[1:])
    subs = _SUB_RUNNERS.get(name)
    if subs and len(argv) > 1:
        sub = argv[1]
        if sub == "run" and len(argv) > 2 and argv[2].startswith("test"):
            return f"{name} run {argv[2]}", _selectors(argv[3:])
        if sub in subs:
            return f"{name} {sub}", _selectors(argv[2:])
    return None


def _covers(wide: str, narrow: str) -> bool:
    if wide == narrow:
        return True
    if wide.endswith("..."):
        return narrow.startswith(wide[:-3])
    base = wide.rstrip("/")
    return narrow.startswith((base + "/", base + "::"))


def clears(success: tuple[str, list[str]], failure: tuple[str, list[str]]) -> bool:
    """True if a passing test run covers every test a failing one selected."""
    (runner, wide), (f_runner, narrow) = success, failure
    if runner != f_runner:
        return False
    if not wide:
        return True
    return bool(narrow) and all(any(_covers(w, n) for w in wide) for n in narrow)


def _digest(key: str) -> str:
    if len(key) <= KEY_CHARS:
        return key
    return key[:40] + "#" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class Identity:
    """What a call is, to match its failures and successes: a key, a test run, a display."""

    key: str
    test: tuple[str, list[str]] | None
    call: str


def shell_identity(tool: str, command: str) -> Identity:
    """A shell command's identity: its text (whitespace collapsed) and the test run it is, if one."""
    flat = " ".join(command.split())
    test = None
    for argv, _writes in simple_commands(command):
        test = suite_run(argv)
        if test is not None:
            break
    return Identity(_digest("sh:" + flat), test, _cap(f"{tool}: {flat}", CALL_CHARS))


def file_identity(tool: str, path: str) -> Identity:
    """A file tool's identity: any write to the same path clears a failed write."""
    return Identity(_digest("file:" + path), None, _cap(f"{tool} {path}", CALL_CHARS))


def other_identity(tool: str, shown_input: str) -> Identity:
    """Any other call's identity: its name and compact input."""
    return Identity(_digest(f"{tool}:{shown_input}"), None, _cap(f"{tool} {shown_input}", CALL_CHARS))


# ------------------------------------------------------------------- book


def _test_from_state(test: Any) -> list[Any] | None:
    if not isinstance(test, list) or len(test) != 2:
        return None
    runner, selectors = test
    if not isinstance(runner, str) or not isinstance(selectors, list):
        return None
    if not all(isinstance(s, str) for s in selectors):
        return None
    return [runner, selectors[:50]]


def entry_from_state(value: Any) -> dict[str, Any] | None:
    """A carried unresolved error, validated (a tampered `.memory` is skipped, not raised on)."""
    if not isinstance(value, dict):
        return None
    key, call, error = value.get("key"), value.get("call"), value.get("error")
    if not (isinstance(key, str) and isinstance(call, str) and isinstance(error, str)) or not key:
        return None
    code, n = value.get("exit"), value.get("step")
    return {
        "key": _cap(key, KEY_CHARS + 60),
        "test": _test_from_state(value.get("test")),
        "call": _cap(call, CALL_CHARS),
        "error": _cap(error, LINE_CHARS),
        "exit": code if isinstance(code, int) and not isinstance(code, bool) else None,
        "step": n if isinstance(n, int) and not isinstance(n, bool) else None,
    }


def describe(entry: dict[str, Any]) -> str:
    """`Bash: pytest -x (call 12, exit 1): FAILED tests/a.py::t - KeyError`."""
    where = [f"call {entry['step']}"] if entry.get("step") else []
    if entry.get("exit") is not None:
        where.append(f"exit {entry['exit']}")
    return f"{entry['call']}" + (f" ({', '.join(where)})" if where else "") + f": {entry['error']}"


class ErrorBook:
    """One episode's open failures, and the successes that may clear older ones."""

    def __init__(self) -> None:
        """Nothing failed or succeeded yet."""
        self.open: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.texts: dict[str, str] = {}  # key → the failure's output, verbatim (capped by the caller)
        self._ok_keys: OrderedDict[str, None] = OrderedDict()
        self._ok_tests: deque[tuple[str, list[str]]] = deque(maxlen=MAX_OK_TESTS)

    def failed(self, ident: Identity, result: Outcome, step: int, text: str = "") -> None:
        """Record a failure (the newest of one identity replaces the older); `text` is its output."""
        # `grep` finding nothing, `test -f` saying no: exit 1 with nothing else said is an
        # answer, not an error to carry.
        if result.exit == 1 and not result.line:
            return
        self.open.pop(ident.key, None)
        self.open[ident.key] = {
            "key": ident.key,
            "test": [ident.test[0], ident.test[1]] if ident.test else None,
            "call": ident.call,
            "error": result.line or (f"exit {result.exit}" if result.exit is not None else "failed"),
            "exit": result.exit,
            "step": step,
        }
        self.texts[ident.key] = text
        while len(self.open) > MAX_OPEN:
            gone, _ = self.open.popitem(last=False)
            self.texts.pop(gone, None)

    def succeeded(self, ident: Identity) -> None:
        """Record a success: it clears this episode's matching failures now, older ones at merge."""
        self._ok_keys.pop(ident.key, None)
        self._ok_keys[ident.key] = None
        while len(self._ok_keys) > MAX_OK_KEYS:
            self._ok_keys.popitem(last=False)
        if ident.test is not None:
            self._ok_tests.append(ident.test)
        for key in [k for k, e in self.open.items() if self._clears(e, ident)]:
            del self.open[key]
            self.texts.pop(key, None)

    @staticmethod
    def _clears(entry: dict[str, Any], ident: Identity) -> bool:
        if entry["key"] == ident.key:
            return True
        test = entry.get("test")
        return test is not None and ident.test is not None and clears(ident.test, (test[0], test[1]))

    def cleared(self, entry: dict[str, Any]) -> bool:
        """True if something that succeeded in this episode clears an earlier episode's `entry`."""
        if entry["key"] in self._ok_keys:
            return True
        test = entry.get("test")
        return test is not None and any(clears(ok, (test[0], test[1])) for ok in self._ok_tests)

    def carry(self, older: list[dict[str, Any]], offset: int) -> list[dict[str, Any]]:
        """The errors open after this episode: `older` ones not cleared (nor failed again),
        then this episode's, with its call numbers moved on by `offset`; the newest MAX_OPEN."""
        kept = [e for e in older if not self.cleared(e) and e["key"] not in self.open]
        mine = [{**e, "step": e["step"] + offset} for e in self.open.values()]
        return (kept + mine)[-MAX_OPEN:]
