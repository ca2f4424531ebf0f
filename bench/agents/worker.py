"""Benchmark generator agent: does numbered steps of an objective, the way a tool-using agent does.

Each step is a tool call whose result (`--payload` characters sliced from
bench/corpus/) fills the context, then a task update. Steps are grouped into
tasks of `--task-steps`; finishing one opens the next, so the rehydrated prompt
always carries the next step. Every `--fact-every` steps it proposes a memory fact,
so the memory the prompt must fit grows with the run. It resumes from the lowest
"next step #N" in its launch prompt and appends each step number to `--steps-log`.

Cooperative by default: it answers `checkpoint_request` with its own checkpoint and
exits on `stop`. `--silent` answers nothing and ignores `stop`, so aether must wait
out its timeouts and end it with SIGTERM.

For relaunch timing it appends one JSON line per launch to `--times`: when this
process started (from /proc/self/stat, to the 10 ms clock tick), when the script
began running, and when it wrote its first line (hello). Stdlib only.
"""

from __future__ import annotations

import time

SCRIPT_START = time.time()  # before any import: when this interpreter began running the script

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import select  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

MARK = re.compile(r"next step #(\d+)")
CORPUS = Path(__file__).resolve().parent.parent / "corpus"
_buf = b""


def process_start() -> float | None:
    """Wall-clock time this process was created (fork), from /proc; None where there is no /proc.

    /proc gives the start in clock ticks since boot; CLOCK_BOOTTIME says how long ago
    that was. The tick is 10 ms, so the middle of the tick is taken.
    """
    try:
        raw = Path("/proc/self/stat").read_bytes()
        ticks = int(raw[raw.rindex(b")") + 2 :].split()[19])
        hz = os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - (ticks + 0.5) / hz
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def emit(obj: dict) -> None:
    """Write one protocol event and flush it."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def read_cmd(timeout: float) -> dict | None:
    """The next command on stdin, waiting up to `timeout` seconds; {"type": "eof"} at EOF."""
    global _buf
    while b"\n" not in _buf:
        ready, _, _ = select.select([0], [], [], timeout)
        if not ready:
            return None
        chunk = os.read(0, 65536)
        if not chunk:
            return {"type": "eof"}
        _buf += chunk
    line, _buf = _buf.split(b"\n", 1)
    try:
        msg = json.loads(line)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) else None


def corpus_text() -> str:
    """All corpus files as one text: the material tool outputs are cut from."""
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(CORPUS.iterdir()) if p.is_file())


class Worker:
    """The step loop, its tasks and its answers to aether's commands."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.text = corpus_text()
        self.log_fd = os.open(args.steps_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def task_id(self, step: int) -> str:
        return f"t{(step - 1) // self.args.task_steps + 1:04d}"

    def open_task(self, step: int) -> None:
        first = (step - 1) // self.args.task_steps * self.args.task_steps + 1
        last = min(first + self.args.task_steps - 1, self.args.steps)
        emit(
            {
                "type": "task",
                "id": self.task_id(step),
                "title": f"Steps {first} to {last}",
                "status": "in_progress",
                "progress": 0.0,
                "next_action": f"do next step #{step}",
            }
        )

    def payload(self, step: int) -> str:
        size = self.args.payload
        start = (step * 7919) % max(1, len(self.text) - size)
        return self.text[start : start + size]

    def step(self, step: int) -> None:
        call = f"c{step}"
        emit(
            {
                "type": "tool_call",
                "id": call,
                "name": "run_step",
                "input": {"step": step, "path": f"src/s{step}.py"},
            }
        )
        emit({"type": "tool_result", "id": call, "output": self.payload(step)})
        os.write(self.log_fd, f"{step}\n".encode())
        k = self.args.task_steps
        done = step % k == 0 or step == self.args.steps
        emit(
            {
                "type": "task",
                "id": self.task_id(step),
                "status": "done" if done else "in_progress",
                "progress": 1.0 if done else round(((step - 1) % k + 1) / k, 3),
                "next_action": "" if done else f"do next step #{step + 1}",
            }
        )
        if done and step < self.args.steps:
            self.open_task(step + 1)
        if self.args.fact_every and step % self.args.fact_every == 0:
            emit(
                {
                    "type": "memory",
                    "op": "add",
                    "key": f"finding-{step // self.args.fact_every}",
                    "text": f"module s{step} keeps its cache in memory; measured {step % 97} ms per call",
                    "priority": step % 3,
                }
            )

    def checkpoint(self, step: int) -> None:
        emit(
            {
                "type": "checkpoint",
                "state": {
                    "objective": "do the steps",
                    "progress": [f"finished steps 1-{step - 1}"],
                    "state": {"next_step": step},
                    "next_actions": [f"do next step #{step}"],
                },
            }
        )

    def run(self, step: int) -> int:
        silent = self.args.silent
        while step <= self.args.steps:
            cmd = read_cmd(self.args.delay)
            kind = cmd.get("type") if cmd else None
            if kind == "checkpoint_request" and not silent:
                self.checkpoint(step)
                while kind not in ("stop", "eof"):
                    cmd = read_cmd(30.0)
                    kind = cmd.get("type") if cmd else "eof"
                return 0
            if kind in ("stop", "eof") and not silent:
                return 0
            self.step(step)
            step += 1
        emit({"type": "done", "summary": f"all {self.args.steps} steps done"})
        return 0


def main() -> int:
    """Read the start command, say hello (timed), then work through the steps."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--payload", type=int, default=400, help="characters of tool output per step")
    ap.add_argument("--task-steps", type=int, default=50)
    ap.add_argument("--fact-every", type=int, default=0)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds per step (waiting for commands)")
    ap.add_argument("--silent", action="store_true")
    ap.add_argument("--steps-log", default="steps.log")
    ap.add_argument("--times", help="append this launch's timing as a JSON line here")
    args = ap.parse_args()

    start = read_cmd(30.0) or {}
    prompt = start.get("prompt") or ""
    marks = [int(m) for m in MARK.findall(prompt)]
    step = min(marks) if marks else 1
    first_line = time.time()
    emit({"type": "hello", "agent": "bench-worker"})
    if args.times:
        record = {
            "episode": int(os.environ.get("AETHER_EPISODE", "0")),
            "pid": os.getpid(),
            "process_start": process_start(),
            "script_start": SCRIPT_START,
            "first_line": first_line,
            "resumed_at": step,
        }
        with open(args.times, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    worker = Worker(args)
    if step == 1 and not marks:
        emit({"type": "memory", "op": "add", "key": "rule", "text": "Never touch prod.db", "pinned": True})
        worker.open_task(1)
    return worker.run(step)


if __name__ == "__main__":
    sys.exit(main())
