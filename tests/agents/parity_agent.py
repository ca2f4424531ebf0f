"""A protocol-v1 agent whose every event comes from `script`, shared with an in-process loop.

`tests/test_engine_parity.py` runs it under `aether run --max-steps K` and runs
the same script through `aether_cli.Engine` in process: the same events in the
same order, checkpoints at the same places. It never races aether: after the
K-th step of an episode (where --max-steps fires) it waits for the
checkpoint_request, answers with `script.state`, and waits for the stop; after
the last step it says done and waits for the stop. It resumes from the lowest
"next step #N" in its launch prompt, as an LLM agent would.

    parity_agent.py STEPS MAX_STEPS
"""

from __future__ import annotations

import json
import os
import re
import select
import sys
from typing import Any

MARK = re.compile(r"next step #(\d+)")


class script:
    """The events of the work, the same for a process and for the in-process loop."""

    @staticmethod
    def fresh(steps: int) -> list[dict[str, Any]]:
        return [
            {"type": "message", "role": "assistant", "text": f"Plan: {steps} steps, then a summary."},
            {"type": "memory", "op": "add", "key": "rule", "text": "Never touch prod.db", "pinned": True},
            {"type": "message", "role": "user", "text": "Constraint: keep the public API stable."},
            {"type": "task", "id": "steps", "status": "pending", "title": f"Do {steps} steps",
             "next_action": "do next step #1", "progress": 0.0},
        ]  # fmt: skip

    @staticmethod
    def resumed(step: int) -> list[dict[str, Any]]:
        return [{"type": "message", "role": "assistant", "text": f"Resuming at step {step}."}]

    @staticmethod
    def step(i: int, steps: int) -> list[dict[str, Any]]:
        last = i == steps
        out: list[dict[str, Any]] = [
            {"type": "tool_call", "id": f"s{i}", "name": "read_file", "input": {"path": f"src/file{i}.py"}},
            {"type": "tool_result", "id": f"s{i}", "output": f"def f{i}():\n    return {i}\n" * 5},
            {"type": "message", "role": "assistant", "text": f"Decision: file{i}.py keeps f{i}."},
            {"type": "task", "id": "steps", "status": "done" if last else "in_progress",
             "progress": round(i / steps, 2), "next_action": "" if last else f"do next step #{i + 1}",
             "files": [f"src/file{i}.py"]},
        ]  # fmt: skip
        if i % 4 == 0:
            out.append({"type": "memory", "op": "add", "key": f"seen{i}", "text": f"file{i}.py is pure"})
        return out

    @staticmethod
    def state(next_step: int, steps: int) -> dict[str, Any]:
        return {
            "objective": "do the steps",
            "progress": [f"finished steps 1-{next_step - 1} of {steps}"],
            "state": {"next_step": next_step},
            "next_actions": [f"do next step #{next_step}"],
        }

    @staticmethod
    def first_step(prompt: str) -> int:
        marks = [int(m) for m in MARK.findall(prompt)]
        return min(marks) if marks else 1


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


_buf = b""


def read_cmd() -> dict[str, Any]:
    """The next command line (blocking); {"type": "eof"} at the end of stdin."""
    global _buf
    while b"\n" not in _buf:
        select.select([0], [], [])
        chunk = os.read(0, 65536)
        if not chunk:
            return {"type": "eof"}
        _buf += chunk
    line, _buf = _buf.split(b"\n", 1)
    return json.loads(line)


def wait_for(*kinds: str) -> dict[str, Any]:
    while True:
        cmd = read_cmd()
        if cmd.get("type") in (*kinds, "eof"):
            return cmd


def main() -> int:
    steps, max_steps = int(sys.argv[1]), int(sys.argv[2])
    start = read_cmd()
    step = script.first_step(start.get("prompt") or "")
    for ev in script.fresh(steps) if start.get("episode") == 1 else script.resumed(step):
        emit(ev)
    done_here = 0
    while step <= steps:
        for ev in script.step(step, steps):
            emit(ev)
        step += 1
        done_here += 1
        if done_here == max_steps and step <= steps:
            wait_for("checkpoint_request")
            emit({"type": "checkpoint", "state": script.state(step, steps)})
            wait_for("stop")
            return 0
    emit({"type": "done", "summary": f"did {steps} steps"})
    wait_for("stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
