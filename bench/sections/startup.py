"""6. Start-up: `aether --help` and `aether status` against the interpreter and typer floors.

`aether status` runs in the store the checkpoint section built (its tasks and
checkpoints). Every command runs once to warm the page cache, then the commands
take turns `sizes.startup_runs` times, so a change in machine load hits all alike.
aether_cli is byte-compiled first (see `_compile_aether`).
For context, the fixed cost of a whole `aether run` (an agent that only says hello
and done) is timed too.
"""

from __future__ import annotations

import compileall
import sys
from pathlib import Path
from typing import Any

from bench.common import BenchError, Sizes, aether_argv, agent_argv, ratio, run_proc, summary, workdir


def run(sizes: Sizes, project: Path) -> dict[str, Any]:
    """Wall time of each command (median, min-max) and the ratios between them."""
    from aether_cli.store import MemoryStore

    _compile_aether()
    latest = MemoryStore(project / ".memory").latest_checkpoint_id()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "aether --help": [*aether_argv(), "--help"],
        "aether status": [*aether_argv(), "status"],
        "aether status --json": [*aether_argv(), "status", "--json"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for round_no in range(sizes.startup_runs + 1):
        for name, argv in commands.items():
            proc = run_proc(argv, cwd=project).check(name)
            if name.startswith("aether status") and latest and latest not in proc.stdout:
                raise BenchError(f"{name} does not show the latest checkpoint {latest}")
            if round_no:  # round 0 only warms the caches
                times[name].append(proc.seconds)
    times["aether run (trivial agent, fresh project)"] = _trivial_runs(sizes.startup_runs)
    med = {name: summary(v)["median"] for name, v in times.items()}
    return {
        "seconds": {name: summary(v) for name, v in times.items()},
        "ratios": {
            "status_vs_typer": ratio(med["aether status"], med["python -c 'import typer'"]),
            "help_vs_typer": ratio(med["aether --help"], med["python -c 'import typer'"]),
            "status_vs_python": ratio(med["aether status"], med["python -c pass"]),
            "typer_vs_python": ratio(med["python -c 'import typer'"], med["python -c pass"]),
        },
    }


def _compile_aether() -> None:
    """Write aether_cli's bytecode (`__pycache__/*.pyc`), as `pip install` of a wheel does.

    An editable install (`pip install -e .`, the dev and CI setup) has no bytecode
    until a run writes it, and with PYTHONDONTWRITEBYTECODE=1 (set on some machines)
    no run ever does: every `aether status` would compile the package's source
    again, tens of milliseconds a user with a normal install never pays. Harmless
    when the bytecode is there already (or the folder is read-only: then it came
    with the install).
    """
    import aether_cli

    compileall.compile_dir(Path(aether_cli.__file__).parent, quiet=1)


def _trivial_runs(runs: int) -> list[float]:
    """Wall time of a whole `aether run` whose agent only says hello and done: the fixed cost of a run
    (imports, loading the tokenizer, .memory set-up, one launch, the final checkpoint)."""
    agent = agent_argv("stream.py", "--small", "0")
    out = []
    for _ in range(runs):
        with workdir("trivial") as project:
            argv = [*aether_argv(), "run", "--quiet", "--objective", "trivial", "--", *agent]
            out.append(run_proc(argv, cwd=project).check("aether run (trivial agent)").seconds)
    return out
