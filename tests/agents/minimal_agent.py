#!/usr/bin/env python3
"""A minimal agent that speaks the aether protocol, version 1 (stdlib only, POSIX)."""

from __future__ import annotations

import json
import os
import select
import sys
from typing import Any

STEPS = ["read the code", "write the fix", "run the tests"]
pending = bytearray()  # bytes read from stdin, not yet split into commands


def emit(**event: Any) -> None:
    """Send one event: one JSON object on one line of stdout, flushed at once."""
    print(json.dumps(event), flush=True)


def next_command(wait: bool) -> dict[str, Any] | None:
    """The next command on stdin; None if `wait` is False and none has arrived."""
    while b"\n" not in pending:
        if not wait and not select.select([0], [], [], 0)[0]:
            return None
        data = os.read(0, 65536)
        if not data:  # stdin closed: behave as if told to stop
            return {"type": "stop", "reason": "stdin closed"}
        pending.extend(data)
    end = pending.index(b"\n")
    line = bytes(pending[:end])
    del pending[: end + 1]
    return json.loads(line)


def main() -> int:
    start = next_command(wait=True) or {}  # `start` is always the first line
    emit(type="hello", agent="minimal-agent")
    for i, step in enumerate(STEPS):
        cmd = next_command(wait=False)
        if cmd and cmd["type"] == "checkpoint_request":
            emit(type="checkpoint", state={
                "objective": start.get("objective") or "run the steps",
                "progress": STEPS[:i], "state": {"step": i}, "next_actions": STEPS[i:],
            })
            while cmd["type"] != "stop":  # quiesced: no more work until `stop`
                cmd = next_command(wait=True) or cmd
        if cmd and cmd["type"] == "stop":
            return 0
        task = f"step-{i + 1}"
        emit(type="task", id=task, title=step, status="in_progress")
        emit(type="message", role="assistant", text=f"Next: {step}.")
        emit(type="tool_call", id=task, name="shell", input={"cmd": step})
        emit(type="tool_result", id=task, output=f"{step}: ok")
        emit(type="task", id=task, status="done", progress=1.0)
    emit(type="done", summary="all steps done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
