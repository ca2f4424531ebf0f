"""Where aether's time goes: py-spy samples of real runs, folded into shares per function.

Optional (`pip install -e '.[bench]'` brings py-spy): without py-spy, or where the
kernel refuses it ptrace, the section says so and the bench goes on. Two runs are
sampled: the throughput mix (big texts) and a flood of small events.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import BenchError, Sizes, agent_argv, run_proc, workdir
from bench.streamdata import build_stream

HUGE_WINDOW = 2_000_000_000
RATE = 100  # samples per second
# Only aether's, tiktoken's and orjson's frames are listed, without the ones that merely
# carry the call down to the work (module, CLI, the supervisor's loop, generator frames).
_OWN = re.compile(r"\((?:aether_cli|tiktoken|orjson)/")
_CALL_PATH = re.compile(
    r"^(?:<module>|main|run|_supervise|Supervisor\.run|Supervisor\._cycle|Session\.run_episode"
    r"|Episode\.take|Episode\.on_events|.*<genexpr>|.*<listcomp>|.*<dictcomp>) \(aether_cli/"
)
_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.is_file() else shutil.which("py-spy")


def fold(raw: str, top: int = 12) -> dict[str, Any]:
    """Shares of samples: per thread, and per function of aether (inclusive and self)."""
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        threads[re.sub(r"\s*\(\d+\)", "", frames[0]).replace("thread", "").strip(" :") or "unnamed"] += n
        names = [_LINE.sub(")", f) for f in frames[1:]]
        for name in {f for f in names if _OWN.search(f) and not _CALL_PATH.match(f)}:
            inclusive[name] += n
        if names:
            own[names[-1]] += n

    def shares(counter: Counter[str]) -> list[list[Any]]:
        return [[name, round(n / total, 3)] for name, n in counter.most_common(top)] if total else []

    return {"samples": total, "threads": shares(threads), "inclusive": shares(inclusive), "self": shares(own)}


def _record(spy: str, argv: list[str], project: Path) -> dict[str, Any]:
    out = project / "profile.txt"
    cmd = [
        spy,
        "record",
        "--format",
        "raw",
        "--threads",
        "--rate",
        str(RATE),
        "--output",
        str(out),
        "--",
        *argv,
    ]
    proc = run_proc(cmd, cwd=project, timeout=900)
    if proc.code != 0 or not out.is_file():
        raise BenchError(f"py-spy failed (exit {proc.code}): {proc.stderr.strip().splitlines()[-1:]}")
    return fold(out.read_text(errors="replace"))


def run(sizes: Sizes, base: Path) -> dict[str, Any]:
    """Profile the throughput mix and a small-event flood; a skip note when py-spy cannot run."""
    spy = py_spy()
    if spy is None:
        return {"skipped": "py-spy is not installed (pip install -e '.[bench]')"}
    aether = [
        sys.executable,
        "-m",
        "aether_cli",
        "run",
        "--quiet",
        "--objective",
        "profile",
        "--context-window",
        str(HUGE_WINDOW),
        "--",
    ]
    stream = base / "profile-stream.jsonl"
    build_stream(stream, int(sizes.stream_mb * 1e6 / 2))
    runs = {
        "stream_mix": agent_argv("stream.py", "--file", str(stream)),
        "small_events": agent_argv("stream.py", "--small", str(max(5000, sizes.flood_events // 3))),
    }
    out: dict[str, Any] = {"rate_hz": RATE}
    for name, agent in runs.items():
        with workdir("profile") as project:
            try:
                out[name] = _record(spy, [*aether, *agent], project)
            except BenchError as exc:
                return {"skipped": f"py-spy could not profile: {exc}"}
    return out
