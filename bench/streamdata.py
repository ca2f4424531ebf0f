"""The throughput event stream: a realistic mix of agent events, built from the fixed corpus.

Short assistant messages, tool calls, tool results of 1-4 KB and a few outputs of
about 1 MB, in protocol-v1 JSON lines, until a byte total is reached. The content is
sliced from `bench/corpus/` (code, prose, JSON, a shell log) with a seeded random
generator, so the same size and seed always give the same bytes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import orjson

from aether_cli import protocol as P
from aether_cli.constants import MAX_LINE_BYTES

CORPUS = Path(__file__).resolve().parent / "corpus"
SEED = 20250314
BIG_OUTPUT_BYTES = 1_000_000  # "1 MB": the JSON line stays under aether's 1 MiB line cap
BIG_OUTPUTS_PER_100MB = 5
TOOLS = ("read_file", "grep", "run_tests", "list_dir", "edit_file", "shell")


@dataclass(frozen=True)
class StreamInfo:
    """What was written: total bytes, event lines, and the kinds of events."""

    path: Path
    bytes: int
    events: int
    big_outputs: int
    tool_results: int
    messages: int


def corpus_lines() -> list[str]:
    """Every non-empty line of every corpus file, in a fixed order."""
    lines: list[str] = []
    for path in sorted(CORPUS.iterdir()):
        if path.is_file():
            lines.extend(ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip())
    return lines


def _text(rng: random.Random, lines: list[str], size: int) -> str:
    """Consecutive corpus lines from a random start, about `size` characters."""
    out: list[str] = []
    n = 0
    i = rng.randrange(len(lines))
    while n < size:
        line = lines[i % len(lines)]
        out.append(line)
        n += len(line) + 1
        i += 1
    return "\n".join(out)[:size]


def _line(obj: dict) -> bytes:
    return orjson.dumps(obj) + b"\n"


def build_stream(path: Path, total_bytes: int, seed: int = SEED) -> StreamInfo:
    """Write the event mix to `path` until about `total_bytes`; the done event is the agent's."""
    rng = random.Random(seed)
    lines = corpus_lines()
    prose = [ln for ln in lines if len(ln) > 40 and " " in ln]
    big_total = max(1, round(total_bytes / 100e6 * BIG_OUTPUTS_PER_100MB)) if total_bytes >= 4e6 else 0
    big_every = total_bytes // (big_total + 1) if big_total else 0
    written = events = bigs = results = messages = 0
    next_big = big_every
    step = 0
    with path.open("wb") as fh:
        while written < total_bytes:
            step += 1
            call = f"call-{step}"
            batch = [
                _line({"type": "message", "role": "assistant", "text": rng.choice(prose)[:300]}),
                _line(
                    {
                        "type": "tool_call",
                        "id": call,
                        "name": rng.choice(TOOLS),
                        "input": {"path": f"src/pkg{step % 17}/mod{step % 101}.py", "limit": 200},
                    }
                ),
            ]
            messages += 1
            if big_every and written >= next_big and bigs < big_total:
                next_big += big_every
                bigs += 1
                out = _text(rng, lines, BIG_OUTPUT_BYTES)
                line = _line({"type": "tool_result", "id": call, "output": out})
                while len(line) > MAX_LINE_BYTES - 64:
                    out = out[: len(out) - (len(line) - MAX_LINE_BYTES) - 4096]
                    line = _line({"type": "tool_result", "id": call, "output": out})
                batch.append(line)
            else:
                out = _text(rng, lines, rng.randint(1024, 4096))
                batch.append(_line({"type": "tool_result", "id": call, "output": out}))
            results += 1
            if step % 10 == 0:
                batch.append(
                    _line(
                        {
                            "type": "task",
                            "id": f"task-{step // 100}",
                            "status": "in_progress",
                            "progress": (step % 100) / 100,
                            "next_action": f"continue after {call}",
                        }
                    )
                )
            data = b"".join(batch)
            fh.write(data)
            written += len(data)
            events += len(batch)
    return StreamInfo(path, written, events, bigs, results, messages)


def counted_texts(path: Path) -> list[str]:
    """The text aether counts for each event of the file, decoded exactly as aether decodes it."""
    texts: list[str] = []
    with path.open("rb") as fh:
        for raw in fh:
            text = P.counted_text(P.decode_line(raw.decode("utf-8").rstrip("\n")))
            if text:
                texts.append(text)
    return texts
