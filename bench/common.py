"""What every bench section shares: sizes, running real processes, reading ledgers, statistics.

Nothing here measures anything by itself. A section that finds a broken run (a
crash, a wrong count, a missing output) raises `BenchError`; the driver records it
and the bench exits non-zero. Slow figures never fail the bench.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
AGENTS = BENCH / "agents"


class BenchError(Exception):
    """A run broke: it crashed, lost or miscounted events, or left no output."""


@dataclass(frozen=True)
class Sizes:
    """How big each section's runs are (full and quick differ only here)."""

    mode: str
    repeats: int  # runs per timed figure (median and min-max over them)
    stream_mb: float  # throughput stream size
    relaunches: int  # per agent kind
    relaunch_window: int
    bounded_steps: int
    bounded_window: int
    memory_milestones: tuple[int, ...]  # events after which RSS is sampled (paced agent)
    flood_events: int  # events from an agent that does not wait for aether
    startup_runs: int
    memory_tasks: int
    memory_checkpoints: int
    checkpoint_samples: int  # full-cost checkpoint writes timed at that size
    large_text_chars: int  # the accuracy section's long text (exercises 64 KB slicing)


FULL = Sizes(
    mode="full",
    repeats=3,
    stream_mb=10.0,
    relaunches=50,
    relaunch_window=2000,
    bounded_steps=10_000,
    bounded_window=8000,
    memory_milestones=(10_000, 100_000, 200_000),
    flood_events=50_000,
    startup_runs=5,
    memory_tasks=1000,
    memory_checkpoints=1000,
    checkpoint_samples=15,
    large_text_chars=1_000_000,
)

QUICK = Sizes(
    mode="quick",
    repeats=1,
    stream_mb=1.0,
    relaunches=2,
    relaunch_window=2000,
    bounded_steps=100,
    bounded_window=2000,
    memory_milestones=(1000, 3000),
    flood_events=3000,
    startup_runs=1,
    memory_tasks=30,
    memory_checkpoints=30,
    checkpoint_samples=5,
    large_text_chars=100_000,
)


# ------------------------------------------------------------------ processes


def aether_argv() -> list[str]:
    """The installed `aether` console script next to this interpreter, else `python -m aether_cli`."""
    script = Path(sys.executable).parent / "aether"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "aether_cli"]


def agent_argv(name: str, *args: str) -> list[str]:
    """argv of a generator agent in bench/agents/ (-I: no user site, no env-driven imports)."""
    return [sys.executable, "-I", str(AGENTS / name), *args]


@dataclass
class Proc:
    """How a finished process went."""

    argv: list[str]
    code: int
    seconds: float
    max_rss_kb: int  # peak RSS of the process and its waited-for descendants
    stdout: str
    stderr: str

    def check(self, what: str) -> Proc:
        """Raise BenchError unless the process exited 0."""
        if self.code != 0:
            tail = (self.stderr or self.stdout).strip().splitlines()[-3:]
            raise BenchError(f"{what}: exit {self.code}: {' | '.join(tail) or 'no output'}")
        return self


def run_proc(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 600.0,
    stdin: Any = subprocess.DEVNULL,
) -> Proc:
    """Run a process to completion; wall time and peak RSS come from wait4, output from files."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    out_path, err_path = cwd / ".bench.out", cwd / ".bench.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), cwd=cwd, env=full_env, stdout=out, stderr=err, stdin=stdin)
        code, rss = _wait(proc, timeout, argv)
        seconds = time.perf_counter() - start
    text = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    out_path.unlink()
    err_path.unlink()
    return Proc(list(argv), code, seconds, rss, *text)


def _wait(proc: subprocess.Popen[bytes], timeout: float, argv: Sequence[str]) -> tuple[int, int]:
    """Wait for `proc` with a blocking os.wait4 (exact end time, and its rusage); kill it past `timeout`."""
    fired = threading.Event()

    def kill() -> None:
        fired.set()
        with contextlib.suppress(ProcessLookupError):
            proc.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if fired.is_set():
        raise BenchError(f"{Path(argv[0]).name}: no exit after {timeout:.0f}s")
    return proc.returncode, usage.ru_maxrss


@contextmanager
def workdir(tag: str) -> Iterator[Path]:
    """A fresh empty project folder, removed afterwards (ledgers of big runs are large)."""
    path = Path(tempfile.mkdtemp(prefix=f"aether-bench-{tag}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------ .memory


def ledger(project: Path) -> list[dict[str, Any]]:
    """The records of the one run ledger in project/.memory/runs/; BenchError if there is none."""
    from aether_cli.store import read_ledger

    paths = sorted((project / ".memory" / "runs").glob("*.jsonl"))
    if not paths:
        raise BenchError(f"no run ledger in {project}/.memory/runs")
    return [rec for path in paths for rec in read_ledger(path)]


def ts(record: dict[str, Any]) -> float:
    """A ledger record's timestamp (ISO 8601, millisecond precision) as epoch seconds."""
    return datetime.fromisoformat(str(record["ts"]).replace("Z", "+00:00")).timestamp()


def last_checkpoint(project: Path) -> dict[str, Any]:
    """The newest checkpoint file of project/.memory; BenchError if there is none."""
    paths = sorted((project / ".memory" / "checkpoints").glob("chk_*.json"))
    if not paths:
        raise BenchError(f"no checkpoint in {project}/.memory/checkpoints")
    return orjson.loads(paths[-1].read_bytes())


# ------------------------------------------------------------------ statistics


def summary(values: Sequence[float], digits: int = 4) -> dict[str, Any]:
    """median, min, max and n of some runs (each figure of the bench is reported this way)."""
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "n": len(values),
    }


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0-100) with linear interpolation between ranks; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    """a / b rounded, or None when either is missing or b is 0."""
    if a is None or not b:
        return None
    return round(a / b, digits)


# ------------------------------------------------------------------ context


def machine() -> dict[str, Any]:
    """The machine and software the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "aether": ver("aether-cli"),
        "tiktoken": ver("tiktoken"),
        "typer": ver("typer"),
        "date": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def sizes_dict(sizes: Sizes) -> dict[str, Any]:
    """The sizes as JSON."""
    return asdict(sizes)
