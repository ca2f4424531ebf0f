"""error_book: outcomes of finished calls, error identity, and which success clears which failure."""

from __future__ import annotations

from typing import Any

import pytest

from aether_cli.error_book import (
    MAX_OPEN,
    ErrorBook,
    clears,
    entry_from_state,
    first_error_line,
    outcome,
    shell_identity,
    suite_run,
)
from aether_cli.shell_writes import simple_commands
from aether_cli.tool_calls import identity

TRACE = 'Traceback (most recent call last):\n  File "imp.py", line 9, in <module>\nKeyError: \'delimiter\''
PYTEST = (
    "============================= FAILURES =============================\n"
    "____________________________ test_parse ____________________________\n"
    "E       assert 1 == 2\n"
    "FAILED tests/test_imp.py::test_parse - assert 1 == 2\n"
    "1 failed, 3 passed in 0.12s"
)


@pytest.mark.parametrize(
    ("output", "is_error", "ok", "code", "line"),
    [
        ("all good", False, True, None, ""),
        ("hi\nexit code 0", False, True, 0, ""),  # Codex, as the adapter writes it
        ("boom\nexit code 2", False, False, 2, "boom"),  # a non-zero exit is a failure
        ("Exit code 1\n" + PYTEST, True, False, 1, "FAILED tests/test_imp.py::test_parse - assert 1 == 2"),
        (TRACE, True, False, None, "KeyError: 'delimiter'"),
        ("Exit code 137", True, False, 137, ""),
        ("npm ERR! missing script: tset\nsee log", True, False, None, "npm ERR! missing script: tset"),
        ("first line\nsecond line", True, False, None, "first line"),
        ("", True, False, None, ""),
        ({"code": 2}, True, False, None, '{"code":2}'),
        ({"code": 2}, False, True, None, ""),
        (None, True, False, None, ""),
        ("x" * 100_000 + "\nerror: at the end\nexit code 3", True, False, 3, "error: at the end"),
        # The diagnostic naming file and line, not the count after it.
        ("src/a.py:20:8: F401 `os` imported but unused\nFound 1 error.\nexit code 1", True, False, 1,
         "src/a.py:20:8: F401 `os` imported but unused"),
    ],
)
def test_outcome(output: Any, is_error: bool, ok: bool, code: int | None, line: str) -> None:
    result = outcome(output, is_error)
    assert (result.ok, result.exit, result.line) == (ok, code, line[:300])


def test_first_error_line_is_capped_and_verbatim() -> None:
    assert first_error_line(["  error: " + "y" * 1000]).endswith("…")
    assert len(first_error_line(["  error: " + "y" * 1000])) == 300
    assert first_error_line(["====== FAILURES ======", "ValueError: bad"]) == "ValueError: bad"
    assert first_error_line([]) == ""


def test_outcome_describe() -> None:
    assert outcome("x", False).describe() == "ok"
    assert outcome("Exit code 2\nfatal: not a git repository", True).describe() == (
        "exit 2: fatal: not a git repository"
    )
    assert outcome(TRACE, True).describe() == "error: KeyError: 'delimiter'"


@pytest.mark.parametrize(
    ("command", "run"),
    [
        ("pytest -x tests/test_a.py", ("pytest", ["tests/test_a.py"])),
        ("cd app && python -m pytest -q tests/ 2>&1 | tail -20", ("pytest", ["tests/"])),
        ("uv run pytest -k parse", ("pytest", ["-k parse"])),
        ("npm test", ("npm test", [])),
        ("npm run test:unit -- --watch=false", ("npm run test:unit", ["--watch=false"][:0])),
        ("go test ./pkg/...", ("go test", ["./pkg/..."])),
        ("cargo test", ("cargo test", [])),
        ("make test", ("make test", [])),
        ("ls -la", None),
        ("python script.py", None),
    ],
)
def test_suite_runs_are_recognised(command: str, run: tuple[str, list[str]] | None) -> None:
    found = next((r for argv, _ in simple_commands(command) if (r := suite_run(argv))), None)
    assert found == run


@pytest.mark.parametrize(
    ("success", "failure", "cleared"),
    [
        (("pytest", []), ("pytest", ["tests/a.py::t"]), True),  # the whole suite
        (("pytest", ["tests/a.py"]), ("pytest", ["tests/a.py::t"]), True),  # the file
        (("pytest", ["tests"]), ("pytest", ["tests/a.py"]), True),  # the folder
        (("pytest", ["tests/b.py"]), ("pytest", ["tests/a.py"]), False),
        (("pytest", ["tests/a.py::u"]), ("pytest", ["tests/a.py::t"]), False),
        (("pytest", ["tests/a.py"]), ("pytest", []), False),  # narrower than what failed
        (("jest", []), ("pytest", []), False),
        (("go test", ["./..."]), ("go test", ["./pkg/x"]), True),
        (("pytest", ["-k b"]), ("pytest", ["-k a"]), False),
    ],
)
def test_which_test_run_clears_which(
    success: tuple[str, list[str]], failure: tuple[str, list[str]], cleared: bool
) -> None:
    assert clears(success, failure) is cleared


def fail(book: ErrorBook, command: str, output: str, step: int) -> None:
    book.failed(shell_identity("Bash", command), outcome(output, True), step)


def test_the_book_clears_by_the_same_command_or_a_wider_test_run() -> None:
    book = ErrorBook()
    fail(book, "make build", "Exit code 2\nerror: undefined symbol foo", 1)
    fail(book, "pytest tests/a.py::t", "Exit code 1\n" + PYTEST, 2)
    fail(book, "grep -r nothing .", "Exit code 1", 3)  # an answer, not an error
    assert [e["call"] for e in book.open.values()] == ["Bash: make build", "Bash: pytest tests/a.py::t"]
    book.succeeded(shell_identity("Bash", "pytest   tests/b.py"))
    assert len(book.open) == 2
    book.succeeded(shell_identity("Bash", "pytest -q tests/a.py"))
    assert [e["call"] for e in book.open.values()] == ["Bash: make build"]
    book.succeeded(shell_identity("Bash", "make  build"))  # whitespace does not matter
    assert not book.open


def test_a_failed_write_is_cleared_by_any_later_write_of_the_file() -> None:
    book = ErrorBook()
    edit = identity("Edit", {"file_path": "src/a.py", "old_string": "x", "new_string": "y"})
    book.failed(edit, outcome("String to replace not found in file.", True), 4)
    book.succeeded(identity("Read", {"file_path": "src/a.py"}))
    assert len(book.open) == 1
    book.succeeded(identity("Write", {"file_path": "src/a.py", "content": "..."}))
    assert not book.open


def test_the_newest_failure_of_a_command_replaces_the_older_and_the_book_is_bounded() -> None:
    book = ErrorBook()
    fail(book, "make", "error: one", 1)
    fail(book, "make", "error: two", 2)
    assert [(e["error"], e["step"]) for e in book.open.values()] == [("error: two", 2)]
    for i in range(100):
        fail(book, f"cmd{i}", f"error: {i}", i)
    assert len(book.open) == MAX_OPEN
    assert list(book.open.values())[-1]["error"] == "error: 99"
    for i in range(10_000):
        book.succeeded(shell_identity("Bash", f"ok {i}"))
        book.succeeded(shell_identity("Bash", f"pytest tests/t{i}.py"))
    assert len(book._ok_keys) <= 4096 and len(book._ok_tests) <= 512


@pytest.mark.parametrize(
    "value",
    [None, 3, "x", {}, {"key": "", "call": "c", "error": "e"}, {"key": "k", "call": 1, "error": "e"},
     {"key": "k", "call": "c", "error": None}],
)
def test_a_tampered_entry_is_skipped(value: Any) -> None:
    assert entry_from_state(value) is None


def test_a_tampered_entry_is_made_safe() -> None:
    entry = entry_from_state({
        "key": "k" * 10_000, "call": "c" * 10_000, "error": "e" * 10_000,
        "test": ["pytest", ["a", 3]], "exit": True, "step": "7",
    })
    assert entry is not None
    assert len(entry["key"]) <= 260 and len(entry["call"]) <= 160 and len(entry["error"]) <= 300
    assert entry["test"] is None and entry["exit"] is None and entry["step"] is None


def test_deeply_nested_output_is_no_error() -> None:
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert outcome(deep, False).ok
    assert not outcome(deep, True).ok
