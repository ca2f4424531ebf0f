"""The bench cannot rot: `make bench-quick`'s driver runs real aether processes and writes
well-formed results with no broken run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parent.parent
SECTIONS = {"accuracy", "throughput", "relaunch", "bounded", "memory", "checkpoints", "startup"}
HEADINGS = (
    "## Goals (issue 5)",
    "## 1. Stream throughput",
    "## 2. Relaunch turnaround",
    "## 3. Bounded context",
    "## 4. Compression",
    "## 5. Memory",
    "## 6. Start-up",
    "## 7. Checkpoint cost and .memory size",
    "## 8. Token accuracy",
)


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the bench driver as `make bench-quick` does, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "bench.run", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_quick_bench_writes_well_formed_results(tmp_path: Path) -> None:
    out = tmp_path / "results"
    proc = bench("--quick", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = orjson.loads((out / "results.json").read_bytes())

    assert data["mode"] == "quick"
    assert data["failures"] == []
    assert set(data["sections"]) == SECTIONS
    assert {"cpu", "cores", "python", "date"} <= set(data["machine"])
    s = data["sections"]

    stream = s["throughput"]
    assert stream["stream"]["events"] > 100
    for path in ("aether", "pipe_cat", "tiktoken_alone"):
        assert stream[path]["mb_per_s"]["median"] > 0
        assert stream[path]["mb_per_s"]["n"] == data["sizes"]["repeats"]
    assert stream["headline"] > 0

    for kind in ("cooperative", "silent"):
        runs = s["relaunch"][kind]
        assert runs["relaunches"] == data["sizes"]["relaunches"]
        assert runs["turnaround_ms"]["p50"] is not None
        # Crossing, exit, checkpoint and launch come in that order, each after the last.
        assert runs["agent_exit_ms"]["min"] >= 0 and runs["checkpoint_ms"]["min"] >= 0

    bounded = s["bounded"]
    assert bounded["episodes"] >= 2
    assert bounded["compression"]["median"] > 1
    assert bounded["prompt_tokens"]["last"] > 0

    paced = s["memory"]["paced"]
    assert [m["events"] for m in paced] == data["sizes"]["memory_milestones"]
    assert all(m["rss_mb"] > 0 for m in paced)
    assert s["memory"]["flood"]["peak_rss_mb"] > 0

    assert s["checkpoints"]["write_checkpoint_ms"]["p50"] > 0
    assert s["checkpoints"]["size"]["task_state_bytes_mean"] > 0
    assert s["startup"]["ratios"]["status_vs_typer"] > 0

    accuracy = s["accuracy"]
    assert len(accuracy["rows"]) >= 6
    assert all(r["tiktoken"] > 0 and r["estimate"] > 0 for r in accuracy["rows"])

    assert len(data["goals"]) == 8
    assert all({"goal", "value", "met"} <= set(g) for g in data["goals"])

    md = (out / "results.md").read_text(encoding="utf-8")
    for heading in HEADINGS:
        assert heading in md
    assert "Broken runs" not in md


def test_unknown_section_is_a_one_line_usage_error(tmp_path: Path) -> None:
    proc = bench("--only", "throughput,nope", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "unknown section nope" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results.json").exists()


def test_profile_fold_shares_per_function() -> None:
    from bench.profile import fold

    raw = (
        "thread (1): MainThread;main (aether_cli/cli.py:10);"
        "Supervisor._on_event (aether_cli/supervisor.py:5);count (aether_cli/tokens.py:99) 3\n"
        "thread (1): MainThread;main (aether_cli/cli.py:12);"
        "Supervisor._on_event (aether_cli/supervisor.py:7);append (aether_cli/store.py:5) 1\n"
        "thread (2): aether-stdout;run (threading.py:1);feed (aether_cli/reader.py:7) 4\n"
    )
    folded = fold(raw)
    assert folded["samples"] == 8
    assert dict(map(tuple, folded["threads"])) == {"MainThread": 0.5, "aether-stdout": 0.5}
    inclusive = dict(map(tuple, folded["inclusive"]))
    # Line numbers are folded away: both _on_event frames count as one function.
    assert inclusive["Supervisor._on_event (aether_cli/supervisor.py)"] == 0.5
    assert inclusive["count (aether_cli/tokens.py)"] == 0.375
    # Frames that only carry the call, and other libraries' frames, are not listed.
    assert "main (aether_cli/cli.py)" not in inclusive
    assert "run (threading.py)" not in inclusive
    assert dict(map(tuple, folded["self"]))["feed (aether_cli/reader.py)"] == 0.5
