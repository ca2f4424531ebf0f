"""The time a checkpoint's git commit adds (issue 13.1): a real run with 100 checkpoints.

    python -m bench.commit_time [--checkpoints 100] [--keep DIR]

In a fresh git repository in a temp folder, `aether run` supervises the test
stepper agent (`tests/agents/stepper.py --rehydrate`, reset in place) with
`--max-steps 2` and `--max-episodes 100`, so every two steps make a checkpoint
(100 in all) and each checkpoint a
commit on `refs/aether/<session>`. The ledger's `memory_commit` records carry
the seconds each commit took, measured around the whole commit (list, hash,
tree, commit, ref) in the supervisor's thread, where it delays the run. It
prints their median, 90th percentile and maximum, with the run's wall time
beside the same run under `--no-commit`. It reports; it never fails on a slow
machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
STEPPER = ROOT / "tests" / "agents" / "stepper.py"


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _repo(where: Path) -> Path:
    where.mkdir(parents=True)
    _git(where, "init", "-q", "-b", "main")
    _git(where, "config", "user.name", "bench")
    _git(where, "config", "user.email", "bench@example.com")
    (where / "README").write_text("bench\n")
    _git(where, "add", "README")
    _git(where, "commit", "-q", "-m", "init")
    return where


def _run(project: Path, checkpoints: int, *extra: str) -> tuple[float, list[dict]]:
    argv = [
        sys.executable, "-m", "aether_cli", "run", "--quiet", "--objective", "do the steps",
        "--context-window", "200000", "--max-steps", "2", "--max-episodes", str(checkpoints),
        *extra, "--",
        sys.executable, str(STEPPER), "--steps", str(4 * checkpoints), "--payload", "200",
        "--delay", "0.005", "--rehydrate",
    ]  # fmt: skip
    started = time.perf_counter()
    res = subprocess.run(argv, cwd=project, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - started
    if res.returncode != 0:
        raise SystemExit(f"aether run failed ({res.returncode}): {res.stderr[-2000:]}")
    (ledger,) = (project / ".memory" / "runs").glob("ses_*.jsonl")
    records = [orjson.loads(line) for line in ledger.read_bytes().splitlines() if line.strip()]
    return wall, records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", type=int, default=100)
    ap.add_argument("--keep", type=Path, help="Run in this folder and keep it.")
    args = ap.parse_args()
    base = args.keep or Path(tempfile.mkdtemp(prefix="aether-commit-time-"))
    try:
        wall, records = _run(_repo(base / "with"), args.checkpoints)
        wall_off, off = _run(_repo(base / "without"), args.checkpoints, "--no-commit")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    checkpoints = [r for r in records if r.get("kind") == "checkpoint"]
    commits = [r["seconds"] for r in records if r.get("kind") == "memory_commit" and r["trigger"] != "end"]
    if not commits:
        raise SystemExit("no memory_commit records: was the run inside a git repository?")
    ms = sorted(1000 * s for s in commits)
    p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
    n_off = sum(r.get("kind") == "checkpoint" for r in off)
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; git {_git_version()}")
    print(f"checkpoints: {len(checkpoints)}, commits: {len(commits)} (+1 at the end)")
    print(
        f"commit per checkpoint: median {statistics.median(ms):.1f} ms, "
        f"p90 {p90:.1f} ms, max {ms[-1]:.1f} ms, first {1000 * commits[0]:.1f} ms"
    )
    print(
        f"run wall time: {wall:.2f} s with commits, {wall_off:.2f} s with --no-commit "
        f"({n_off} checkpoints); difference per checkpoint "
        f"{1000 * (wall - wall_off) / max(1, len(checkpoints)):.1f} ms (noisy)"
    )


def _git_version() -> str:
    res = subprocess.run(["git", "--version"], capture_output=True, text=True, check=False)
    return res.stdout.strip().removeprefix("git version ")


if __name__ == "__main__":
    main()
