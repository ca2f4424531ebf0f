"""The rollout reader against the real Codex CLI: its figures are the request sizes the fake server saw.

Codex 0.169.0 writes `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<thread id>.jsonl`; the
reader follows it while `codex exec --json` runs, as aether would, and must report each model
request's input tokens (cached ones included: the fake reports half of them as cached), Codex's
window, and the thread's input plus output.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import orjson
from realcli import cli, codex_args, codex_env, fake_server

from aether_cli.codex_rollout import RolloutUsage, RolloutWatcher

STEPS, BASE, PER_TURN = 4, 12_000, 100
PROMPT = f'Append "step K" to steps.txt for K = 1..{STEPS}, one shell command each.'


def reaches(watcher: RolloutWatcher, tokens: int, timeout: float = 20.0) -> int:
    """Poll until the watcher's figure is at least `tokens` (or the timeout); the figure then."""
    deadline = time.monotonic() + timeout
    while True:
        watcher.poll()
        got = watcher.latest.context_tokens if watcher.latest else -1
        if got >= tokens or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def test_the_rollout_figure_is_the_request_the_server_saw(project: Path, tmp_path: Path) -> None:
    home = tmp_path / "codex-home"
    env = codex_env(home)
    watcher: RolloutWatcher | None = None
    live: list[tuple[int, int, int]] = []  # (step started, the server's figure, ours while running)
    with fake_server(
        "fake_openai.py", project, tmp_path, steps=STEPS, base_tokens=BASE, tokens_per_turn=PER_TURN
    ) as fake:
        argv = codex_args(fake.port, PROMPT)
        with (tmp_path / "codex.stderr").open("w") as err, subprocess.Popen(
            [cli(argv[0]), *argv[1:]], cwd=project, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=err, text=True,
        ) as proc:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = orjson.loads(raw)
                if line["type"] == "thread.started":
                    watcher = RolloutWatcher(home, line["thread_id"], rescan_seconds=0.05)
                item = line.get("item") or {}
                if watcher and line["type"] == "item.started" and item.get("type") == "command_execution":
                    # The request that asked for this command is logged; Codex must have written it.
                    step = int(re.search(r"step (\d+)", item["command"]).group(1))  # type: ignore[union-attr]
                    asked = next(r["tokens"] for r in fake.turns() if r["step"] == step)
                    live.append((step, asked, reaches(watcher, asked)))
            assert proc.wait(timeout=120) == 0, (tmp_path / "codex.stderr").read_text()[-2000:]
        requests = fake.turns()
    assert watcher is not None
    final = watcher.catch_up()
    watcher.close()

    assert [s for s, _, _ in live] == list(range(1, STEPS + 1)), live
    assert all(ours >= asked for _, asked, ours in live), live
    assert len(requests) == STEPS + 1
    assert final == RolloutUsage(
        context_tokens=requests[-1]["tokens"],
        window=final.window,
        thread_tokens=sum(r["tokens"] + r["output_tokens"] for r in requests),
    ), (final, requests)
    assert final.window and final.window > 100_000  # Codex's own window for gpt-5.5 (258,400 in 0.169.0)

    files = list((home / "sessions").rglob("*.jsonl"))
    assert len(files) == 1, files
    rel = files[0].relative_to(home / "sessions").parts
    assert re.fullmatch(r"\d{4}", rel[0]), rel
    assert re.fullmatch(r"\d{2}", rel[1]) and re.fullmatch(r"\d{2}", rel[2]), rel
    assert re.fullmatch(rf"rollout-\d{{4}}-\d\d-\d\dT\d\d-\d\d-\d\d-{watcher.thread_id}\.jsonl", rel[3]), rel

    # Cached tokens are inside input_tokens, as the API reports them, not added to it.
    counts = [
        o["payload"]["info"]["last_token_usage"]
        for o in map(orjson.loads, files[0].read_bytes().splitlines())
        if o.get("type") == "event_msg" and o["payload"].get("type") == "token_count" and o["payload"]["info"]
    ]
    assert [c["input_tokens"] for c in counts] == [r["tokens"] for r in requests]
    assert all(c["cached_input_tokens"] == c["input_tokens"] // 2 for c in counts), counts
