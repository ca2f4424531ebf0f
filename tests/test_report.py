"""`aether report`: a real multi-episode demo session checked field by field against its
ledger and checkpoints, bad input, a huge ledger in bounded memory, prices and --apply."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest

from aether_cli import commands
from aether_cli import report as R
from aether_cli import report_advice as A
from tests.helpers import aether, read_json

ROOT = Path(__file__).resolve().parent.parent


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a finished demo session of several episodes (the Makefile's `demo`, smaller)."""
    project = tmp_path_factory.mktemp("demo")
    res = aether(
        "run",
        "--objective",
        "Index the aether package into a Markdown report",
        "--context-window",
        "4000",
        "--",
        sys.executable,
        "-m",
        "aether_cli.demo_agent",
        str(ROOT / "aether_cli"),
        "--report",
        "report.md",
        "--delay",
        "0.02",
        "--max-files",
        "30",
        cwd=project,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return project


def session_files(project: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    memory = project / ".memory"
    [ledger] = (memory / "runs").glob("ses_*.jsonl")
    checkpoints = {p.stem: read_json(p) for p in (memory / "checkpoints").glob("chk_*.json")}
    return jsonl(ledger), checkpoints


@pytest.mark.slow
def test_json_matches_the_ledger_and_checkpoints_field_by_field(demo: Path) -> None:
    res = aether("report", "--json", cwd=demo)
    assert res.returncode == 0, res.stderr
    data = orjson.loads(res.stdout)
    records, checkpoints = session_files(demo)
    launches = [r for r in records if r["kind"] == "launch"]
    assert len(launches) >= 2, "the demo must relaunch at least once"
    [end] = [r for r in records if r["kind"] == "end"]
    events = [r for r in records if r["kind"] == "event"]

    assert data["schema"] == 1
    assert data["session_id"] == next((demo / ".memory" / "runs").glob("ses_*.jsonl")).stem
    assert data["status"] == end["status"] == "done"
    assert data["records"] == len(records)
    assert data["started_at"] == records[0]["ts"] and data["ended_at"] == records[-1]["ts"]
    assert data["window"] == 4000 and data["settings"]["soft_at"] == 0.6

    # Episodes: one per launch, what started and ended each.
    assert [e["episode"] for e in data["episodes"]] == [r["episode"] for r in launches]
    assert data["totals"]["episodes"] == len(launches) and data["totals"]["relaunches"] == len(launches) - 1
    ledger_cks = [r for r in records if r["kind"] == "checkpoint"]
    for ep, launch in zip(data["episodes"], launches, strict=True):
        assert ep["from_checkpoint"] == launch["checkpoint"]
        assert ep["prompt_tokens"] == launch["prompt_tokens"] + launch["context_overhead"]
        [exit_rec] = [r for r in records if r["kind"] == "exit" and r["episode"] == ep["episode"]]
        assert ep["exit_code"] == exit_rec["code"]
        [ck_rec] = [r for r in ledger_cks if r["episode"] == ep["episode"]]
        ck = checkpoints[ck_rec["id"]]
        assert ep["checkpoint"] == ck["id"] and ep["ended_by"] == ck["trigger"] == ck_rec["trigger"]
        # The series adds each event's recorded count to the prompt, as the budget did.
        assert ep["peak_tokens"] == ck["metrics"]["episode_tokens"]
        mine = [r for r in events if r["episode"] == ep["episode"]]
        assert ep["events"] == len(mine) and ep["tokens"] == sum(r["tokens"] for r in mine)
        assert ep["tool_calls"] == sum(r["event"]["type"] == "tool_call" for r in mine)
    triggers: dict[str, int] = {}
    for r in ledger_cks:  # budget, or emergency when the machine is slow to stop the agent
        triggers[r["trigger"]] = triggers.get(r["trigger"], 0) + 1
    assert data["ended_by"] == triggers and triggers["done"] == 1

    # Context over time: at every threshold the budget crossed, the series says what it said.
    at_seq = {p["seq"]: p["tokens"] for p in data["context"]["points"]}
    assert data["context"]["stride"] == 1
    last = None
    crossed = 0
    for r in records:
        last = at_seq.get(r["seq"], last)
        if r["kind"] == "command" and r.get("command") == "budget":
            assert last == r["used"], r
            crossed += 1
    assert crossed >= 2
    markers = data["context"]["markers"]
    assert [m["seq"] for m in markers if m["kind"] == "launch"] == [r["seq"] for r in launches]
    assert [m["seq"] for m in markers if m["kind"] == "checkpoint"] == [r["seq"] for r in ledger_cks]

    # Tokens by kind and by tool.
    assert data["totals"]["tokens"] == sum(r["tokens"] for r in events)
    assert data["totals"]["recounted_events"] == 0
    for row in data["by_kind"]:
        mine = [r for r in events if r["event"]["type"] == row["kind"]]
        assert row["events"] == len(mine) and row["tokens"] == sum(r["tokens"] for r in mine)
    [read] = data["by_tool"]
    calls = [r for r in events if r["event"]["type"] == "tool_call"]
    results = [r for r in events if r["event"]["type"] == "tool_result"]
    assert read["tool"] == "read_file" and read["calls"] == len(calls) == read["results"] == len(results)
    assert read["result_tokens"] == sum(r["tokens"] for r in results)
    assert read["call_tokens"] == sum(r["tokens"] for r in calls)
    assert read["average_result_tokens"] == round(read["result_tokens"] / len(results))
    assert read["share"] == round(read["result_tokens"] / data["totals"]["tokens"], 4)

    # Checkpoints: compression, sources and the handoff from the files.
    assert [c["id"] for c in data["checkpoints"]] == [r["id"] for r in ledger_cks]
    for row in data["checkpoints"]:
        ck = checkpoints[row["id"]]
        m = ck["metrics"]
        assert (
            row["episode_tokens"] == m["episode_tokens"]
            and row["checkpoint_tokens"] == m["checkpoint_tokens"]
        )
        assert row["compression"] == round(m["episode_tokens"] / m["checkpoint_tokens"], 2)
        assert row["sources"] == ck.get("sources", [ck["distiller"]])
        assert row["handoff_seconds"] == m.get("handoff_seconds")
    ratios = [c["compression"] for c in data["checkpoints"]]
    assert data["compression"] == {
        "mean": round(sum(ratios) / len(ratios), 2),
        "min": min(ratios),
        "max": max(ratios),
    }
    sources: dict[str, int] = {}
    for ck in checkpoints.values():
        for s in ck.get("sources", [ck["distiller"]]):
            sources[s] = sources.get(s, 0) + 1
    assert data["handoff"]["sources"] == sources and data["handoff"]["asked"] == 0

    # The redo rate, from the continuity records.
    cont = [r for r in records if r["kind"] == "continuity"]
    assert data["redo"]["relaunches"] == len(cont) == len(launches) - 1
    assert data["redo"]["calls"] == sum(r["calls"] for r in cont)
    assert data["redo"]["redone"] == sum(r["redone"] for r in cont)
    assert data["redo"]["followed_next_action"] == sum(r["followed_next_action"] is True for r in cont)

    # No model, no cost: said so. The one tool dominates: the advice carries its numbers.
    assert data["money"]["usd"] is None and "neither a cost" in data["money"]["note"]
    [cap] = [s for s in data["suggestions"] if s["id"] == "cap_tool_output"]
    assert f"average {read['average_result_tokens']:,} tokens" in cap["text"]
    assert f"{read['share']:.0%} of all" in cap["text"]
    assert data["problems"] == []


@pytest.mark.slow
def test_terminal_report_shows_tables_and_a_chart(demo: Path) -> None:
    res = aether("report", cwd=demo)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for heading in (
        "context usage",
        "episodes",
        "tokens by tool",
        "tokens by event kind",
        "checkpoints",
        "suggestions:",
        "read_file",
    ):
        assert heading in out, heading
    assert any(ch in out for ch in "▁▂▃▄▅▆▇█"), "a sparkline of the context"
    print(out)


@pytest.mark.slow
def test_an_unknown_session_and_a_prefix(demo: Path) -> None:
    [ledger] = (demo / ".memory" / "runs").glob("ses_*.jsonl")
    res = aether("report", "ses_19990101T000000_000000", cwd=demo)
    assert res.returncode != 0
    assert res.stderr.startswith("aether: error: no session 'ses_19990101T000000_000000'")
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1
    res = aether("report", "--json", ledger.stem[:12], cwd=demo)
    assert res.returncode == 0 and orjson.loads(res.stdout)["session_id"] == ledger.stem


# ------------------------------------------------------------------ bad input, made by hand


def write_ledger(memory: Path, session: str, records: list[dict[str, Any]], extra: bytes = b"") -> Path:
    runs = memory / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    path = runs / f"{session}.jsonl"
    lines = [
        orjson.dumps({"seq": i, "ts": f"2026-01-01T00:00:{i % 60:02d}.000Z", **r})
        for i, r in enumerate(records, 1)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n" + extra)
    return path


def small_session(model: str | None = None) -> list[dict[str, Any]]:
    return [
        {"kind": "session", "episode": 1, "settings": {"context_window": 1000, "model": model}},
        {"kind": "launch", "episode": 1, "prompt_tokens": 100, "context_overhead": 0, "checkpoint": None},
        {
            "kind": "event",
            "episode": 1,
            "tokens": 5,
            "event": {"type": "tool_call", "id": "1", "name": "Read", "input": {"path": "a"}},
        },
        {
            "kind": "event",
            "episode": 1,
            "tokens": 700,
            "event": {"type": "tool_result", "id": "1", "output": "x"},
        },
        {
            "kind": "event",
            "episode": 1,
            "tokens": 0,
            "event": {
                "type": "usage",
                "context_tokens": 900,
                "input_tokens": 2_000_000,
                "output_tokens": 100_000,
            },
        },
        {"kind": "end", "episode": 1, "status": "done", "exit_code": 0, "message": "ok"},
    ]


@pytest.mark.parametrize("setup", ["no memory", "no session"])
def test_nothing_to_report_is_one_line(tmp_path: Path, setup: str) -> None:
    if setup == "no session":
        (Path.cwd() / ".memory" / "runs").mkdir(parents=True)
    res = aether("report")
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert res.stderr.startswith("aether: error: no ") and res.stderr.count("\n") == 1


def test_a_corrupt_ledger_line_is_a_problem_not_a_crash() -> None:
    memory = Path.cwd() / ".memory"
    records = small_session()
    path = write_ledger(memory, "ses_20260101T000000_aaaaaa", records[:3])
    with path.open("ab") as f:
        f.write(b"{not json\n")
        f.write(
            b"\n".join(
                orjson.dumps({"seq": 9 + i, "ts": "2026-01-01T00:01:00.000Z", **r})
                for i, r in enumerate(records[3:])
            )
            + b"\n"
        )
        f.write(b'{"kind": "event", "torn')  # a killed writer's last line
    res = aether("report", "--json")
    assert res.returncode == 0, res.stderr
    data = orjson.loads(res.stdout)
    assert data["problems"] == [f"{path}: line 4: " + data["problems"][0].split("line 4: ")[1]]
    assert data["totals"]["tokens"] == 705 and data["status"] == "done"
    assert data["episodes"][0]["peak_tokens"] == 900  # the agent's own usage figure replaced the count


def test_a_ledger_without_token_counts_is_counted_here() -> None:
    memory = Path.cwd() / ".memory"
    records = [dict(r) for r in small_session()]
    for r in records:
        r.pop("tokens", None)
    write_ledger(memory, "ses_20260101T000000_bbbbbb", records)
    data = commands.report(commands.open_store(memory), None)
    assert data["totals"]["recounted_events"] == 2  # the call and its result; usage has no text
    assert data["by_tool"][0]["tool"] == "Read" and data["by_tool"][0]["result_tokens"] == 1


@pytest.mark.slow
def test_a_huge_ledger_is_read_in_bounded_memory() -> None:
    memory = Path.cwd() / ".memory"
    path = memory / "runs" / "ses_20260101T000000_cccccc.jsonl"
    path.parent.mkdir(parents=True)
    n = 200_000
    with path.open("wb") as f:
        f.write(orjson.dumps({"seq": 0, "kind": "launch", "episode": 1, "prompt_tokens": 10}) + b"\n")
        for i in range(1, n + 1):
            ev = (
                {"type": "tool_call", "id": str(i), "name": f"tool{i % 500}", "input": {"i": i}}
                if i % 2
                else {"type": "tool_result", "id": str(i - 1), "output": "y" * 200}
            )
            f.write(
                orjson.dumps(
                    {
                        "seq": i,
                        "ts": "2026-01-01T00:00:00.000Z",
                        "kind": "event",
                        "episode": 1 + i // 50_000,
                        "tokens": 3,
                        "event": ev,
                    }
                )
                + b"\n"
            )
    size = path.stat().st_size
    store = commands.open_store(memory)
    tracemalloc.start()
    try:
        report = R.build(store, "ses_20260101T000000_cccccc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    data = R.to_dict(report)
    assert data["totals"]["events"] == n and data["totals"]["tokens"] == 3 * n
    assert len(data["context"]["points"]) < 2 * R.MAX_POINTS and data["context"]["stride"] > 1
    assert len(data["by_tool"]) == R.MAX_NAMES + 1  # the names past the cap are one row
    assert peak < 16 << 20 < size, f"peak {peak:,} bytes for a {size:,}-byte ledger"


# ------------------------------------------------------------------ money and --apply


def test_money_from_the_agent_then_the_price_table_then_config() -> None:
    memory = Path.cwd() / ".memory"
    store = commands.open_store(memory)
    write_ledger(memory, "ses_20260101T000000_dddddd", small_session("claude-sonnet-4-5"))
    m = commands.report(store, None)["money"]
    prices = A.load_prices(None)
    assert m["source"] == "price_table" and m["prices_date"] == prices["date"]
    assert m["usd"] == round((2 * 3.0 + 0.1 * 15.0), 6) and m["price"]["model"] == "claude-sonnet-4"
    (memory / "config.toml").write_text('[prices]\n"claude-sonnet-4-5" = { input = 1.0, output = 2.0 }\n')
    m = commands.report(store, None)["money"]
    assert m["usd"] == 2.2 and m["prices_date"] is None and "config.toml" in m["note"]
    records = small_session("claude-sonnet-4-5")
    records.insert(
        4,
        {
            "kind": "event",
            "episode": 1,
            "tokens": 0,
            "event": {"type": "outcome", "ok": True, "total_cost_usd": 0.42},
        },
    )
    write_ledger(memory, "ses_20260101T000001_dddddd", records)
    m = commands.report(store, None)["money"]
    assert m == {**m, "usd": 0.42, "source": "agent"}
    (memory / "config.toml").write_text('[prices]\n"x" = { input = "cheap" }\n')
    res = aether("report")
    assert res.returncode != 0 and "[prices] 'x' needs input and output" in res.stderr


def emergency_session() -> list[dict[str, Any]]:
    return [
        {
            "kind": "session",
            "episode": 1,
            "settings": {"context_window": 1000, "soft_at": 0.6, "checkpoint_at": 0.8, "emergency_at": 0.95},
        },
        {"kind": "launch", "episode": 1, "prompt_tokens": 100, "context_overhead": 0, "checkpoint": None},
        {"kind": "event", "episode": 1, "tokens": 860, "event": {"type": "message", "text": "x"}},
        {"kind": "checkpoint", "episode": 1, "id": "chk_000001_00000000", "trigger": "emergency"},
    ]


def test_apply_writes_only_the_learned_keys_and_keeps_every_other_line() -> None:
    memory = Path.cwd() / ".memory"
    write_ledger(memory, "ses_20260101T000000_eeeeee", emergency_session())
    config = memory / "config.toml"
    before = (
        '# my notes: keep me\n[run]\ncommand = ["agent"]\nsoft_at = 0.6  # tuned by hand\n'
        'checkpoint_at = 0.8\n\n[prices]\n"m" = { input = 1.0, output = 2.0 }\n'
    )
    config.write_text(before)
    res = aether("report", "--apply")
    assert res.returncode == 0, res.stderr
    assert "applied to" in res.stdout and "soft_at = 0.5; checkpoint_at = 0.64" in res.stdout
    after = config.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    # 1 of 1 episodes ended in an emergency; it peaked 160 tokens past the 800-token line.
    assert changed == [
        ("soft_at = 0.6  # tuned by hand", "soft_at = 0.5"),
        ("checkpoint_at = 0.8", "checkpoint_at = 0.64"),
    ]
    data = orjson.loads(aether("report", "--json", "--apply").stdout)
    assert data["applied"] == ["soft_at = 0.5", "checkpoint_at = 0.64"] and config.read_text() == after


def test_apply_without_a_run_table_adds_one_at_the_end() -> None:
    memory = Path.cwd() / ".memory"
    write_ledger(memory, "ses_20260101T000000_ffffff", emergency_session())
    config = memory / "config.toml"
    config.write_text('# only prices here\n[prices]\n"m" = { input = 1.0, output = 2.0 }\n')
    assert aether("report", "--apply").returncode == 0
    assert config.read_text().endswith("output = 2.0 }\n\n[run]\nsoft_at = 0.5\ncheckpoint_at = 0.64\n")
    assert config.read_text().startswith("# only prices here\n[prices]\n")


def test_html_without_the_extra_says_how_to_install_it() -> None:
    memory = Path.cwd() / ".memory"
    write_ledger(memory, "ses_20260101T000000_gggggg", small_session())
    code = "import sys; sys.modules['pygal'] = None; from aether_cli.cli import main; main()"
    res = subprocess.run(
        [sys.executable, "-c", code, "report", "--html", "r.html"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 1 and not Path("r.html").exists()
    assert res.stderr == "aether: error: --html needs the charting extra: pip install 'aether-cli[report]'\n"
