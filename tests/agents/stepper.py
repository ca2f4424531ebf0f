"""A configurable protocol-v1 test agent: does numbered steps and logs each to a file.

Each step is a tool call whose result fills the context with `--payload`
bytes, then a line "step N episode E" in `steps.log` (the working
directory), then a task update whose next_action names the next step. It
resumes from the lowest "next step #N" in its launch prompt.

    --steps N        how many steps make the objective (default 20)
    --payload B      bytes of tool output per step (default 400)
    --silent         never answer checkpoint_request, ignore stop (only signals end it)
    --crash-at K     exit 3 at step K, once (a marker file makes it happen only once)
    --junk           print garbage, invalid UTF-8, a huge line and a bad task id first
    --no-stdin       never read stdin at all
    --delay S        sleep per step
    --usage N        report the context size with `usage` events: N tokens more per step
    --rehydrate      offer the `rehydrate` capability: reset in place instead of exiting
    --error-at K     the tool call of step K fails (is_error) once
    --secret         print a fake AWS key and GitHub token in a message
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import sys
import time

MARK = re.compile(r"next step #(\d+)")


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


_buf = b""


def read_cmd(timeout: float) -> dict | None:
    """The next command line, or None after `timeout` seconds.

    Reads the fd itself: select() on a buffered sys.stdin would miss a second
    line that arrived in the same chunk as the first.
    """
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
        return json.loads(line)
    except ValueError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--payload", type=int, default=400)
    ap.add_argument("--silent", action="store_true")
    ap.add_argument("--crash-at", type=int, default=0)
    ap.add_argument("--junk", action="store_true")
    ap.add_argument("--no-stdin", action="store_true")
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--usage", type=int, default=0)
    ap.add_argument("--rehydrate", action="store_true")
    ap.add_argument("--error-at", type=int, default=0)
    ap.add_argument("--secret", action="store_true")
    args = ap.parse_args()

    episode = int(os.environ.get("AETHER_EPISODE", "0"))
    with open(f"env_{episode}.json", "w") as f:
        env = {k: v for k, v in os.environ.items() if k.startswith("AETHER_")}
        with open(os.environ["AETHER_PROMPT_FILE"]) as pf:
            env["prompt_file_text"] = pf.read()
        json.dump(env, f)

    start = {}
    if not args.no_stdin:
        start = read_cmd(10.0) or {}
        with open(f"start_{episode}.json", "w") as f:
            json.dump(start, f)
    prompt = start.get("prompt") or env["prompt_file_text"]
    marks = [int(m) for m in MARK.findall(prompt)]
    step = min(marks) if marks else 1

    emit({"type": "hello", "agent": "stepper", "capabilities": ["rehydrate"] if args.rehydrate else []})
    if args.secret:
        key = "AKIA" + "QWERTYUIOPASDFGH"
        token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
        emit({"type": "message", "role": "assistant", "text": f"using {key} and {token} for the deploy"})
    context = 0
    if episode == 1:
        emit(
            {
                "type": "memory",
                "op": "add",
                "key": "rule",
                "text": "Never touch prod.db",
                "pinned": True,
            }
        )
        emit({"type": "message", "role": "user", "text": "Constraint: keep the public API stable."})
    if args.junk:
        sys.stdout.buffer.write(b"plain text line\n\xff\xfe invalid utf8 \xc3\x28\n")
        sys.stdout.buffer.write(b"{not json\n[1, 2]\n")
        sys.stdout.buffer.write(b"x" * (3 << 20) + b"\n")
        emit({"type": "task", "id": "../../x", "status": "in_progress"})
        emit({"type": "usage", "context_tokens": "lots"})
        sys.stdout.flush()

    while step <= args.steps:
        if not args.no_stdin:
            cmd = read_cmd(args.delay)
            if cmd and cmd.get("type") == "checkpoint_request" and not args.silent:
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
                while True:
                    c = read_cmd(30.0)
                    if c is None or c.get("type") in ("stop", "eof"):
                        return 0
                    if c.get("type") == "rehydrate":
                        episode = c["episode"]
                        with open("rehydrated.log", "a") as f:
                            f.write(f"{episode} {c['checkpoint']}\n")
                        step = min(int(m) for m in MARK.findall(c["prompt"]))
                        context = 0
                        break
                continue
            elif cmd and cmd.get("type") in ("stop", "eof") and not args.silent:
                return 0
        elif args.delay:
            time.sleep(args.delay)
        if args.crash_at and step == args.crash_at and not os.path.exists("crashed.marker"):
            open("crashed.marker", "w").close()
            emit({"type": "log", "level": "error", "text": "simulated crash"})
            return 3
        emit(
            {
                "type": "tool_call",
                "id": f"c{step}",
                "name": "run_step",
                "input": {"step": step, "path": f"src/step_{step}.py"},
            }
        )
        if step == args.error_at and not os.path.exists("errored.marker"):
            open("errored.marker", "w").close()
            emit(
                {
                    "type": "tool_result",
                    "id": f"c{step}",
                    "output": "E: disk full at /tmp/x",
                    "is_error": True,
                }
            )
            continue
        output = f"step {step} output " + "lorem ipsum " * (args.payload // 12)
        emit({"type": "tool_result", "id": f"c{step}", "output": output})
        if args.usage:
            context += args.usage
            emit({"type": "usage", "context_tokens": context})
        with open("steps.log", "a") as f:
            f.write(f"step {step} episode {episode}\n")
        emit(
            {
                "type": "task",
                "id": "work",
                "title": "Do all steps",
                "status": "in_progress",
                "progress": round(step / args.steps, 3),
                "next_action": f"do next step #{step + 1}",
            }
        )
        step += 1
    emit({"type": "task", "id": "work", "status": "done", "progress": 1.0, "next_action": ""})
    emit({"type": "done", "summary": f"all {args.steps} steps done"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
