"""Benchmark generator agent: floods stdout with protocol-v1 events as fast as it can.

Two sources, both deterministic:

    stream.py --file EVENTS     hello, then the bytes of EVENTS (JSON lines made by the
                                driver: the throughput mix), then done
    stream.py --small N         hello, then N small mixed events (messages, tool calls,
                                tool results, task updates), then done

`--paced AHEAD` makes it wait while it is more than AHEAD events ahead of what aether
has taken in (read from aether's heartbeat), like an agent slower than aether;
`--pause-at N,...` makes it wait, after N events, until aether has taken in all of
them, then touch `paused-N` and wait for the driver's `resume-N` (both in its cwd).
It never reads stdin, so the same command can be piped to `cat >/dev/null` for the
pipe's own limit. `--hwm FILE` writes this process's peak RSS (kB) to FILE at the end,
so the driver can tell the agent's memory from aether's. Stdlib only, like a real agent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20
BATCH_EVENTS = 2000
TASKS = 200


def emit(out: BinaryIO, obj: dict) -> None:
    """Write one event line (no flush: the point is to go as fast as the pipe allows)."""
    out.write((json.dumps(obj) + "\n").encode())


def stream_file(out: BinaryIO, path: Path) -> None:
    """Copy a prepared event file to stdout in large chunks."""
    with path.open("rb") as fh:
        while True:
            block = fh.read(CHUNK)
            if not block:
                return
            out.write(block)


# The small-event cycle as ready JSON templates (plain ASCII, nothing to escape):
# json.dumps per event would make the agent, not aether, the bottleneck.
_SMALL = (
    '{"type": "message", "role": "assistant", "text": "Step %(i)d: reading the next file."}\n',
    '{"type": "tool_call", "id": "c%(i)d", "name": "read_file", "input": {"path": "src/m%(m)d.py"}}\n',
    '{"type": "tool_result", "id": "c%(p)d", "output": '
    "\"def handler_%(i)d(request):\\n    return render(request, 'page_%(pg)d.html')\\n\"}\n",
    # A bounded set of task ids, as a real agent has.
    '{"type": "task", "id": "t%(t)03d", "status": "in_progress", "progress": %(pr)s, '
    '"next_action": "continue at event %(n)d"}\n',
)


def event_line(i: int) -> bytes:
    """Small event number i of a fixed cycle: message, tool_call, tool_result, task update."""
    values = {
        "i": i,
        "m": i % 97,
        "p": i - 1,
        "pg": i % 13,
        "t": i % TASKS,
        "pr": (i % 100) / 100,
        "n": i + 1,
    }
    return (_SMALL[i % 4] % values).encode()


def processed_events() -> int:
    """How many events aether has taken in, from its heartbeat (-1 if it cannot be read)."""
    beat = Path(os.environ.get("AETHER_MEMORY_DIR", ".memory")) / "runs" / "heartbeat.json"
    try:
        return int(json.loads(beat.read_bytes()).get("events", -1))
    except (OSError, ValueError, TypeError, AttributeError):
        return -1


def wait_until_taken(count: int) -> None:
    """Wait until aether's heartbeat shows `count` events taken in (hello included)."""
    while processed_events() < count:
        time.sleep(0.02)


def pause(milestone: int) -> None:
    """Tell the driver that aether has taken in every event so far, and wait for its go."""
    Path(f"paused-{milestone}").touch()
    while not Path(f"resume-{milestone}").exists():
        time.sleep(0.01)


def stream_small(out: BinaryIO, n: int, ahead: int = 0, pauses: tuple[int, ...] = ()) -> None:
    """Write n small events in batches, so the agent's own cost stays small.

    With `ahead` > 0 the agent waits while more than `ahead` of its events are not yet
    taken in by aether (its heartbeat says how many are), as an agent slower than aether
    would: aether's memory then shows what it keeps, not a backlog in its queue. At each
    of `pauses` it waits until aether has taken in everything, then for the driver.
    """
    stops = sorted({*range(BATCH_EVENTS, n, BATCH_EVENTS), *pauses, n})
    start = 0
    for stop in stops:
        if stop > n:
            break
        out.write(b"".join(event_line(i) for i in range(start, stop)))
        start = stop
        if ahead or stop in pauses:
            out.flush()
            wait_until_taken(1 + stop - (0 if stop in pauses else ahead))
        if stop in pauses:
            pause(stop)


def peak_rss_kb() -> int:
    """This process's VmHWM in kB (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> int:
    """Emit hello, the events, done; exit 0."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", type=Path, help="a prepared file of event lines")
    src.add_argument("--small", type=int, help="emit this many small generated events")
    ap.add_argument(
        "--paced", type=int, default=0, metavar="AHEAD", help="stay at most AHEAD events ahead of aether"
    )
    ap.add_argument("--pause-at", default="", metavar="N,N", help="pause after these many events (see pause)")
    ap.add_argument("--hwm", type=Path, help="write this process's peak RSS (kB) here at the end")
    args = ap.parse_args()
    out = sys.stdout.buffer
    emit(out, {"type": "hello", "agent": "bench-stream"})
    if args.file is not None:
        stream_file(out, args.file)
    else:
        pauses = tuple(int(x) for x in args.pause_at.split(",") if x)
        stream_small(out, args.small, args.paced, pauses)
    emit(out, {"type": "done", "summary": "stream finished"})
    out.flush()
    if args.hwm is not None:
        args.hwm.write_text(f"{peak_rss_kb()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
