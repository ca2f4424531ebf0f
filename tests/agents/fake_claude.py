#!/usr/bin/env python3
"""A stand-in for `claude -p PROMPT --output-format stream-json --verbose`, for tests.

It prints Claude Code's stream-json line types (system/init, assistant text and
tool_use with a usage snapshot, user tool_result, result) as the real CLI does
(see tests/fixtures/formats/), and does real work: each turn runs one "Bash"
step that appends `step K` to steps.txt in the working directory. Like the fake
model servers, it decides the next step from steps.txt, not from its prompt, so
a relaunched copy continues where the file says. The context it reports grows
by --per-turn tokens each turn from --base, so a threshold is crossed
deterministically.

Options (after the prompt): --steps N (default 30), --base T, --per-turn T,
--tool-seconds S (how long each tool call runs), --think-seconds S (the model's latency),
--block-seconds S (the pause between a turn's text line and its tool_use line, as the model
writes the call),
--todos (a TodoWrite first),
--fail REASON (end with an error result: prompt_too_long, error_max_turns, ...),
--compact-at K (compact its own context once, before step K), --no-text (a turn is only its
tool call, so a threshold is crossed on the tool_use line, with the call in flight).
Every launch appends its prompt argument to prompts.jsonl and its argv to argv.jsonl.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def opt(argv: list[str], name: str, default: str) -> str:
    return argv[argv.index(name) + 1] if name in argv else default


def main() -> int:
    argv = sys.argv[1:]
    prompt = argv[argv.index("-p") + 1] if "-p" in argv else ""
    with open("prompts.jsonl", "a") as fh:
        fh.write(json.dumps(prompt) + "\n")
    with open("argv.jsonl", "a") as fh:
        fh.write(json.dumps(argv) + "\n")
    if sys.stdin is not None and not sys.stdin.closed:
        # The real CLI waits for stdin to close when it is a pipe; aether must give /dev/null.
        sys.stdin.read()
    steps = int(opt(argv, "--steps", "30"))
    base = int(opt(argv, "--base", "3000"))
    per_turn = int(opt(argv, "--per-turn", "1500"))
    tool_seconds = float(opt(argv, "--tool-seconds", "0.05"))
    fail = opt(argv, "--fail", "")
    compact_at = int(opt(argv, "--compact-at", "0"))
    think_seconds = float(opt(argv, "--think-seconds", "0.1"))
    block_seconds = float(opt(argv, "--block-seconds", "0"))
    session = opt(argv, "--resume", str(uuid.uuid4()))
    model = "claude-test-1"
    emit({"type": "system", "subtype": "init", "session_id": session, "model": model, "tools": ["Bash"]})
    done_file = Path("steps.txt")
    turn = 0

    def usage() -> dict:
        context = base + per_turn * turn
        return {
            "input_tokens": 3,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": context - 3,
            "output_tokens": 1,
        }

    def assistant(block: dict) -> None:
        emit(
            {
                "type": "assistant",
                "session_id": session,
                "message": {
                    "id": f"msg_{turn}",
                    "role": "assistant",
                    "model": model,
                    "content": [block],
                    "usage": usage(),
                },
            }
        )

    if "--todos" in argv:
        todos = [
            {"content": f"Do step {k}", "status": "pending", "activeForm": f"Doing step {k}"}
            for k in range(1, min(steps, 5) + 1)
        ]
        todos[0]["status"] = "in_progress"
        assistant({"type": "tool_use", "id": "toolu_todo", "name": "TodoWrite", "input": {"todos": todos}})
        emit(
            {
                "type": "user",
                "message": {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_todo", "content": "Todos updated"}
                    ],
                },
            }
        )
    while True:
        done = done_file.read_text().split("\n")[:-1] if done_file.exists() else []
        k = len(done) + 1
        if k > steps:
            break
        turn += 1
        if compact_at and k == compact_at and not Path("compacted").exists():
            Path("compacted").touch()
            emit(
                {
                    "type": "system",
                    "subtype": "compact_boundary",
                    "session_id": session,
                    "compact_metadata": {
                        "trigger": "auto",
                        "pre_tokens": base + per_turn * turn,
                        "post_tokens": base,
                    },
                }
            )
            turn = 0
        if fail and turn == 3:
            # The shapes of the recorded samples: claude_err.jsonl and claude_maxturns.jsonl.
            subtype, terminal = {
                "prompt_too_long": ("success", "prompt_too_long"),
                "error_max_turns": ("error_max_turns", "max_turns"),
            }.get(fail, ("error_during_execution", fail))
            emit(
                {
                    "type": "result",
                    "subtype": subtype,
                    "is_error": True,
                    "result": f"failed: {fail}",
                    "terminal_reason": terminal,
                    "session_id": session,
                    "num_turns": turn,
                }
            )
            return 1
        time.sleep(think_seconds)  # the model's answer takes a moment, as over a real API
        if "--no-text" not in argv:
            assistant({"type": "text", "text": f"Now step {k}."})
            time.sleep(block_seconds)
        tool_id = f"toolu_{uuid.uuid4().hex[:12]}"
        assistant(
            {
                "type": "tool_use",
                "id": tool_id,
                "name": "Bash",
                "input": {"command": f'echo "step {k}" >> steps.txt'},
            }
        )
        time.sleep(tool_seconds)
        with done_file.open("a") as fh:
            fh.write(f"step {k}\n")
        emit(
            {
                "type": "user",
                "session_id": session,
                "message": {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": tool_id, "content": "", "is_error": False}
                    ],
                },
            }
        )
    turn += 1
    assistant({"type": "text", "text": f"All {steps} steps done."})
    emit(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "result": f"All {steps} steps done.",
            "session_id": session,
            "num_turns": turn,
            "modelUsage": {model: {"contextWindow": 200000}},
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
