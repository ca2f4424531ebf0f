"""`generate(seed, calls, cwd, fmt)`: a seeded session of about `calls` tool calls, cut into episodes.

Each backlog unit explores (grep, read), edits, runs `pytest -x` until the
failure it provoked is fixed, sometimes writes through the shell, sometimes
leaves a lint or type error for a later unit (or for good), and moves the todo
list on. Outputs are shaped like the real tools' (pytest, mypy, ruff, tracebacks).
"""

from __future__ import annotations

import random

from replay.session import (
    DETAILS,
    FEATURES,
    MODULES,
    OBJECTIVE,
    PKG,
    TODO_DONE_TEXT,
    USER_INSTRUCTIONS,
    Builder,
    Call,
    Session,
    Unit,
)


def numbered(lines: list[str], start: int = 1) -> str:
    return "\n".join(f"{i:>6}\t{line}" for i, line in enumerate(lines, start))


def pytest_out(b: Builder, unit: Unit, test: str, failed: bool, detail: str) -> str:
    passed = b.rng.randint(3, 40)
    head = (
        "============================= test session starts ==============================\n"
        "platform linux -- Python 3.11.9, pytest-8.3.2, pluggy-1.5.0\n"
        f"rootdir: {b.cwd}\nconfigfile: pyproject.toml\ncollected {passed + 1} items\n\n"
    )
    if not failed:
        return (
            head
            + f"{unit.test} {'.' * (passed + 1)} [100%]\n\n"
            + f"{'=' * 25} {passed + 1} passed in 0.{b.rng.randint(10, 99)}s {'=' * 25}"
        )
    line = b.rng.randint(20, 300)
    kind = detail.split(":")[0] if ":" in detail else "AssertionError"
    return head + (
        f"{unit.test} {'.' * min(passed, 9)}F\n\n"
        "=================================== FAILURES ===================================\n"
        f"{'_' * 22} {test} {'_' * 22}\n\n    def {test}():\n>       result = {unit.func}(sample_invoice())\n"
        f"E       {detail}\n\n{unit.test}:{line}: {kind}\n"
        "=========================== short test summary info ============================\n"
        f"FAILED {unit.test}::{test} - {detail}\n"
        "!!!!!!!!!!!!!!!!!!!!!!!!!! stopping after 1 failures !!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        f"{'=' * 22} 1 failed, {passed} passed in 0.{b.rng.randint(10, 99)}s {'=' * 22}"
    )


def run_tests(b: Builder, unit: Unit, failed: bool, test: str, detail: str) -> None:
    cmd = f"pytest -x {unit.test}"
    out = pytest_out(b, unit, test, failed, detail)
    first = f"FAILED {unit.test}::{test} - {detail}"
    b.add(
        Call(
            "Bash",
            {"command": cmd, "description": f"Run the {unit.module} tests"},
            out,
            not failed,
            key=cmd,
            error_line=first if failed else "",
        )
    )


def read(b: Builder, rel: str) -> None:
    n = b.rng.randint(40, 220)
    body = ["from decimal import Decimal", "", *(f"def helper_{i}(value):  # {rel}" for i in range(4))]
    b.add(Call("Read", {"file_path": b.abs(rel)}, numbered([*body, f"# ... {n} lines"])))


def grep(b: Builder, unit: Unit) -> None:
    hits = "\n".join(
        f"{PKG}/{m}.py:{b.rng.randint(5, 300)}:    {unit.func}(" for m in b.rng.sample(MODULES, 3)
    )
    b.add(Call("Grep", {"pattern": unit.func, "path": "src", "output_mode": "content", "-n": True}, hits))


def edit(b: Builder, rel: str, old: str, new: str) -> None:
    out = (
        f"The file {b.abs(rel)} has been updated. "
        "Here's the result of running `cat -n` on a snippet of the edited file:\n"
        + numbered([new], b.rng.randint(10, 200))
    )
    b.add(
        Call(
            "Edit",
            {"file_path": b.abs(rel), "old_string": old, "new_string": new, "replace_all": False},
            out,
            writes=(rel,),
            key=f"edit:{rel}",
        )
    )


def failed_edit(b: Builder, rel: str, old: str) -> None:
    if b.fmt != "claude":  # Codex shows a failed patch without any text to quote
        return
    line = "<tool_use_error>String to replace not found in file."
    out = f"{line}\nString: {old}</tool_use_error>"
    b.add(
        Call(
            "Edit",
            {
                "file_path": b.abs(rel),
                "old_string": old,
                "new_string": old + "  # fixed",
                "replace_all": False,
            },
            out,
            ok=False,
            key=f"edit:{rel}",
            error_line=line,
        )
    )


def write(b: Builder, rel: str, content: str) -> None:
    b.add(
        Call(
            "Write",
            {"file_path": b.abs(rel), "content": content},
            f"File created successfully at: {b.abs(rel)}",
            writes=(rel,),
            key=f"edit:{rel}",
        )
    )


def bash(
    b: Builder, cmd: str, out: str = "", writes: tuple[str, ...] = (), ok: bool = True, line: str = ""
) -> None:
    b.add(
        Call(
            "Bash", {"command": cmd, "description": cmd.split()[0]}, out, ok, writes, key=cmd, error_line=line
        )
    )


def shell_write(b: Builder, unit: Unit) -> None:
    """One file written through the shell, in one of the ways agents do it."""
    m, kind = unit.module, b.rng.randrange(8)
    if kind == 0:
        bash(b, f'echo "- {unit.title}" >> CHANGELOG.md', writes=("CHANGELOG.md",))
    elif kind == 1:
        bash(b, f"sed -i 's/float(amount)/Decimal(amount)/g' {unit.src}", writes=(unit.src,))
    elif kind == 2:
        dst = f"config/settings.{m}.toml"
        bash(b, f"cp config/settings.example.toml {dst}", writes=(dst,))
    elif kind == 3:
        dst = f"tests/fixtures/{m}_{unit.func}.json"
        bash(
            b,
            f"python scripts/make_fixture.py {m} | tee {dst}",
            '{"id": 1, "amount": "10.00"}',
            writes=(dst,),
        )
    elif kind == 4:
        dst = f"{PKG}/legacy/{m}_{unit.func}_v1.py"
        bash(b, f"mkdir -p {PKG}/legacy && mv {PKG}/{m}_{unit.func}.py {dst}", writes=(dst,))
    elif kind == 5:
        dst = f"scripts/check_{m}.sh"
        bash(
            b,
            f"cat > {dst} <<'EOF'\n#!/bin/sh\nset -e\npytest -x {unit.test} > /dev/null\nEOF\nchmod +x {dst}",
            writes=(dst,),
        )
    elif kind == 6:
        dst = f"build/test_{m}_{unit.func}.log"
        bash(
            b,
            f"mkdir -p build && pytest -x {unit.test} > {dst} 2>&1; tail -n 3 {dst}",
            "1 passed",
            writes=(dst,),
        )
    else:
        dst = f"docs/{m}_{unit.func}.md"
        bash(b, f"printf '%s\\n' '# {unit.title}' 'See {unit.src}.' > {dst}", writes=(dst,))


def lint_command(b: Builder, unit: Unit) -> tuple[str, str, str]:
    """(command, its error line, its output when clean): mypy or ruff on the unit's module."""
    if b.rng.random() < 0.5:
        line = (
            f"{unit.src}:{b.rng.randint(20, 400)}: error: Incompatible return value type "
            '(got "Decimal | None", expected "Decimal")  [return-value]'
        )
        return f"mypy {unit.src}", line, "Success: no issues found in 1 source file"
    line = f"{unit.src}:{b.rng.randint(2, 40)}:8: F401 [*] `os` imported but unused"
    return f"ruff check {unit.src}", line, "All checks passed!"


def lint_fails(b: Builder, unit: Unit) -> tuple[str, str]:
    """A lint run that fails and is left for later: (command, clean output) to re-run it."""
    cmd, line, clean = lint_command(b, unit)
    if cmd.startswith("mypy"):
        out = line + "\nFound 1 error in 1 file (checked 1 source file)"
    else:
        out = line + "\nFound 1 error.\n[*] 1 fixable with the `--fix` option."
    bash(b, cmd, out, ok=False, line=line)
    return cmd, clean


def integration_fails(b: Builder, unit: Unit) -> None:
    """An integration test that needs a service the sandbox lacks: it stays failing."""
    test_file = f"tests/integration/test_{unit.module}_sync.py"
    detail = (
        "botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint URL: "
        f'"http://localhost:4566/ledgerline-{unit.module}"'
    )
    out = pytest_out(b, unit, "test_sync_roundtrip", True, detail).replace(unit.test, test_file)
    bash(
        b, f"pytest -x {test_file}", out, ok=False, line=f"FAILED {test_file}::test_sync_roundtrip - {detail}"
    )


def todo_write(b: Builder) -> None:
    todos = [dict(t) for t in b.todos]
    b.add(Call("TodoWrite", {"todos": todos}, TODO_DONE_TEXT))


def fix_cycle(b: Builder, unit: Unit, test: str) -> None:
    """A failing run, then (maybe a patch that misses, a re-read) the fix."""
    detail = b.rng.choice(DETAILS)
    run_tests(b, unit, True, test, detail)
    b.say(f"`{test}` fails with {detail.split(':')[0]}; fixing {unit.func} in {unit.src}.")
    old = f"    return amount  # {unit.func}"
    if b.rng.random() < 0.25:
        failed_edit(b, unit.src, old)
        read(b, unit.src)
    edit(b, unit.src, old, f"    return quantize(amount)  # {unit.func}")


def do_unit(b: Builder, unit: Unit, lints: list[tuple[int, str, str]], index: int) -> None:
    """One backlog unit, start to green; `lints` holds (due unit, command, clean output) left for later."""
    b.say(f"Next: {unit.title[0].lower()}{unit.title[1:]}. Looking at {unit.src} first.")
    if b.rng.random() < 0.7:
        grep(b, unit)
    read(b, unit.src)
    test = f"test_{unit.func}"
    if b.rng.random() < 0.3:
        write(
            b,
            f"tests/test_{unit.module}_{unit.func}.py",
            f"from ledgerline.{unit.module} import {unit.func}\n\n\n"
            f"def {test}():\n    assert {unit.func}(1)\n",
        )
    else:
        read(b, unit.test)
        edit(b, unit.test, "# end of tests", f"def {test}():\n    assert {unit.func}(sample_invoice())")
    for _ in range(b.rng.choice((0, 1, 1, 1, 2))):
        fix_cycle(b, unit, test)
    run_tests(b, unit, False, test, "")
    for _ in range(b.rng.choice((0, 1, 1, 2))):
        shell_write(b, unit)
    if b.rng.random() < 0.3:
        cmd, clean = lint_fails(b, unit)
        b.say(f"`{cmd.split()[0]}` still complains; leaving it for after the next item.")
        due = index + b.rng.randint(1, 4) if b.rng.random() < 0.75 else 10**9
        lints.append((due, cmd, clean))
    if b.rng.random() < 0.06:
        integration_fails(b, unit)
        b.say("The integration test needs localstack, which is not running here; moving on.")
    for due, cmd, clean in [x for x in lints if x[0] <= index]:
        lints.remove((due, cmd, clean))
        bash(b, cmd, clean)


def advance_todos(b: Builder, units: list[Unit], i: int) -> None:
    """Mark unit i-1 done and unit i in progress (adding it when new), then TodoWrite."""
    if not b.todos:
        b.todos = [{"content": u.title, "status": "pending", "activeForm": u.active} for u in units[:6]]
    for todo in b.todos:
        if i and todo["content"] == units[i - 1].title:
            todo["status"] = "completed"
    # Plan ahead as real lists do: a few upcoming items stay listed.
    for unit in units[i : i + 5]:
        if unit.title not in [t["content"] for t in b.todos]:
            b.todos.append({"content": unit.title, "status": "pending", "activeForm": unit.active})
    for todo in b.todos:
        if todo["content"] == units[i].title:
            todo["status"] = "in_progress"
    todo_write(b)


def generate(seed: int, calls: int, cwd: str, fmt: str) -> Session:
    """A session of about `calls` tool calls (it finishes the unit it is in) run in `cwd`."""
    rng = random.Random(f"{seed}:{fmt}")
    b = Builder(rng, cwd.rstrip("/"), fmt)
    pairs = [(f, m) for f in FEATURES for m in MODULES]
    units = [Unit(f, m) for f, m in rng.sample(pairs, 80)]
    said = set(rng.sample(range(1, 12), 4))
    lints: list[tuple[int, str, str]] = []
    b.say("I'll start by looking at the backlog and the failing tests.")
    i = 0
    while b.calls < calls and i < len(units):
        if i in said and b.fmt == "claude":
            b.user(USER_INSTRUCTIONS[(seed + i) % len(USER_INSTRUCTIONS)])
            b.say("Understood, I'll keep to that.")
        advance_todos(b, units, i)
        do_unit(b, units[i], lints, i)
        i += 1
    b.say(f"Done with {i} backlog items; the remaining todos are still open.")
    return b.session(OBJECTIVE)
