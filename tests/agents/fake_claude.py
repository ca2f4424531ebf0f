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

With `--input-format stream-json` (how aether runs Claude Code for the agent handoff,
docs/adapters.md) there is no prompt argument: it reads JSON lines on stdin, each kept
verbatim in stdin.jsonl. The first user message is the prompt (appended to prompts.jsonl);
with `--replay-user-messages` each user message is echoed back with its uuid. A plain message
starts a work turn (the steps above, to the end); a request for a handoff as JSON (read as
prose, the way a model would) gets a handoff turn, answered per `--handoff-answer MODE`:
`json` (the default: objective, progress of the steps done in this process, next_actions,
errors, files, resume_instructions), `ignore` (one more step, then text that is not JSON),
`garbage` (`not json {`) or `slow S` (json after S seconds). A `control_request` interrupt
is answered with a `control_response`; a running turn then stops at once (a tool call in
flight is cut and its step not appended) and ends with the `result` the real CLI prints
(`error_during_execution`, `terminal_reason` `aborted_tools` or `aborted_streaming`). A
message that comes while a turn runs is taken at the next step boundary, as the real CLI
does. It exits at the end of stdin, 0 unless the last turn failed.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

# A sibling module: run this file by its path (tests/test_wrapped_agents.py's shim does).
from claude_stdin import Interrupted, Stdin, asks_for_handoff, message_text, replay

MODEL = "claude-test-1"
WINDOW = 200000
# What the real CLI (2.1.332) says about a call an interrupt stopped while it ran.
REJECTED = (
    "The user doesn't want to proceed with this tool use. The tool use was rejected: this call was "
    "stopped while running, not refused before it ran. It may have run in part or in full."
)


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def opt(argv: list[str], name: str, default: str) -> str:
    return argv[argv.index(name) + 1] if name in argv else default


class Fake:
    """One run of the fake CLI: its options, its context size and what it did."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.steps = int(opt(argv, "--steps", "30"))
        self.base = int(opt(argv, "--base", "3000"))
        self.per_turn = int(opt(argv, "--per-turn", "1500"))
        self.tool_seconds = float(opt(argv, "--tool-seconds", "0.05"))
        self.think_seconds = float(opt(argv, "--think-seconds", "0.1"))
        self.block_seconds = float(opt(argv, "--block-seconds", "0"))
        self.fail = opt(argv, "--fail", "")
        self.compact_at = int(opt(argv, "--compact-at", "0"))
        self.answer = opt(argv, "--handoff-answer", "json")
        if self.answer == "slow":  # `--handoff-answer slow S` as two arguments
            self.answer = f"slow {opt(argv, 'slow', '0')}"
        self.session = opt(argv, "--resume", str(uuid.uuid4()))
        self.turn = 0  # the model's answers so far: the context grows --per-turn with each
        self.done_file = Path("steps.txt")
        self.stdin: Stdin | None = None  # stdin's messages, in input mode
        self.done_here: list[int] = []  # the steps this process appended
        self.todos_sent = False
        self.turn_started = time.monotonic()

    # ------------------------------------------------------------ lines

    def usage(self) -> dict:
        context = self.base + self.per_turn * self.turn
        return {
            "input_tokens": 3,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": context - 3,
            "output_tokens": 1,
        }

    def assistant(self, block: dict) -> None:
        message = {
            "id": f"msg_{self.turn}",
            "role": "assistant",
            "model": MODEL,
            "content": [block],
            "usage": self.usage(),
        }
        emit({"type": "assistant", "session_id": self.session, "message": message})

    def user(self, content: list[dict], **extra: Any) -> None:
        emit(
            {
                "type": "user",
                "session_id": self.session,
                "message": {"role": "user", "content": content},
                **extra,
            }
        )

    def init(self) -> None:
        emit(
            {
                "type": "system",
                "subtype": "init",
                "session_id": self.session,
                "model": MODEL,
                "tools": ["Bash"],
            }
        )

    # ------------------------------------------------------------ stdin

    def wait(self, seconds: float) -> None:
        """Sleep; in input mode, watching stdin (Interrupted on an interrupt)."""
        if self.stdin is None:
            time.sleep(seconds)
        else:
            self.stdin.wait(seconds)

    def echo(self, msg: dict) -> None:
        if "--replay-user-messages" in self.argv:
            emit(replay(msg, self.session))

    # ------------------------------------------------------------ work

    def next_step(self) -> int:
        done = self.done_file.read_text().split("\n")[:-1] if self.done_file.exists() else []
        return len(done) + 1

    def todos(self) -> None:
        self.todos_sent = True
        todos = [
            {"content": f"Do step {k}", "status": "pending", "activeForm": f"Doing step {k}"}
            for k in range(1, min(self.steps, 5) + 1)
        ]
        todos[0]["status"] = "in_progress"
        self.assistant(
            {"type": "tool_use", "id": "toolu_todo", "name": "TodoWrite", "input": {"todos": todos}}
        )
        self.user([{"type": "tool_result", "tool_use_id": "toolu_todo", "content": "Todos updated"}])

    def compact(self) -> None:
        Path("compacted").touch()
        meta = {
            "trigger": "auto",
            "pre_tokens": self.base + self.per_turn * self.turn,
            "post_tokens": self.base,
        }
        emit(
            {
                "type": "system",
                "subtype": "compact_boundary",
                "session_id": self.session,
                "compact_metadata": meta,
            }
        )
        self.turn = 0

    def step(self, k: int) -> None:
        """One model answer: a line of text, a Bash call that appends `step K`, its result."""
        self.wait(self.think_seconds)  # the model's answer takes a moment, as over a real API
        if "--no-text" not in self.argv:
            self.assistant({"type": "text", "text": f"Now step {k}."})
            self.wait(self.block_seconds)
        tool_id = f"toolu_{uuid.uuid4().hex[:12]}"
        command = f'echo "step {k}" >> steps.txt'
        self.assistant({"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"command": command}})
        try:
            self.wait(self.tool_seconds)
        except Interrupted:
            # Cut while it ran: the step is not appended; Claude says so in the call's result.
            meta = [{"id": tool_id, "non_execution_kind": "user-rejected"}]
            block = {"type": "tool_result", "tool_use_id": tool_id, "content": REJECTED, "is_error": True}
            self.user([block], tool_use_result="User rejected tool use", tool_result_meta=meta)
            raise Interrupted(tools=True) from None
        with self.done_file.open("a") as fh:
            fh.write(f"step {k}\n")
        self.done_here.append(k)
        self.user([{"type": "tool_result", "tool_use_id": tool_id, "content": "", "is_error": False}])

    def work(self) -> dict:
        """Steps until steps.txt holds them all; the turn's result line."""
        if "--todos" in self.argv and not self.todos_sent:
            self.todos()
        while (k := self.next_step()) <= self.steps:
            self.turn += 1
            if self.compact_at and k == self.compact_at and not Path("compacted").exists():
                self.compact()
            if self.fail and self.turn == 3:
                return self.failed()
            self.step(k)
            if (answer := self.take_pending()) is not None:
                return answer
        self.turn += 1
        text = f"All {self.steps} steps done."
        self.assistant({"type": "text", "text": text})
        return self.success(text)

    def take_pending(self) -> dict | None:
        """Messages that came during the turn, taken at this step boundary as the real CLI does;
        a handoff request among them is answered inside this turn (its result)."""
        while self.stdin is not None and self.stdin.pending:
            msg = self.stdin.pending.pop(0)
            self.echo(msg)
            if asks_for_handoff(msg):
                return self.handoff()
        return None

    def handoff(self) -> dict:
        """The answer to a handoff request, per --handoff-answer; the turn's result line."""
        mode = self.answer.split()[0] if self.answer.split() else "json"
        k = self.next_step()
        if mode == "ignore":
            if k <= self.steps:
                self.turn += 1
                self.step(k)
            text = f"Carrying on with the steps: step {k} is done."
        elif mode == "garbage":
            text = "not json {"
        else:
            if mode == "slow":
                self.wait(float(self.answer.split()[1]))
            text = json.dumps(self.handoff_state())
        self.turn += 1
        self.assistant({"type": "text", "text": text})
        return self.success(text)

    def handoff_state(self) -> dict:
        """What a careful model would write: only the steps it saw done, and the next one."""
        k = self.next_step()
        if k <= self.steps:
            next_actions = [
                f"append step {k} to steps.txt (one Bash command), then go on to step {self.steps}"
            ]
        else:
            next_actions = [f"nothing left: all {self.steps} steps are in steps.txt"]
        return {
            "objective": f"Append steps 1 to {self.steps} to steps.txt, one Bash command per step.",
            "progress": [f"step {n} appended to steps.txt" for n in self.done_here],
            "next_actions": next_actions,
            "errors": [],
            "files": ["steps.txt"],
            "resume_instructions": "Read steps.txt; append the step after its last line, one per command.",
        }

    # ------------------------------------------------------------ results

    def result(self, **fields: Any) -> dict:
        line: dict[str, Any] = {
            "type": "result",
            **fields,
            "session_id": self.session,
            "num_turns": self.turn,
        }
        if self.stdin is not None:
            # Input mode: what the turn cost, as the real CLI reports it.
            line["duration_ms"] = int((time.monotonic() - self.turn_started) * 1000)
            line["usage"] = {"input_tokens": self.base + self.per_turn * self.turn, "output_tokens": 20}
        return line

    def success(self, text: str) -> dict:
        extra = {"terminal_reason": "completed"} if self.stdin is not None else {}
        model_usage = {MODEL: {"contextWindow": WINDOW}}
        return self.result(subtype="success", is_error=False, result=text, **extra, modelUsage=model_usage)

    def failed(self) -> dict:
        # The shapes of the recorded samples: claude_err.jsonl and claude_maxturns.jsonl.
        subtype, terminal = {
            "prompt_too_long": ("success", "prompt_too_long"),
            "error_max_turns": ("error_max_turns", "max_turns"),
        }.get(self.fail, ("error_during_execution", self.fail))
        return self.result(
            subtype=subtype, is_error=True, result=f"failed: {self.fail}", terminal_reason=terminal
        )

    def aborted(self, tools: bool) -> dict:
        """What the real CLI (2.1.332) prints after an interrupt: a marker, then the result."""
        marker = "[Request interrupted by user for tool use]" if tools else "[Request interrupted by user]"
        self.user([{"type": "text", "text": marker}])
        terminal = "aborted_tools" if tools else "aborted_streaming"
        errors = [f"[ede_diagnostic] result_type=user terminal_reason={terminal}"]
        return self.result(
            subtype="error_during_execution", is_error=True, terminal_reason=terminal, errors=errors
        )

    # ------------------------------------------------------------ modes

    def run_prompt(self, prompt: str) -> int:
        """-p PROMPT: one turn to the end of the steps."""
        with open("prompts.jsonl", "a") as fh:
            fh.write(json.dumps(prompt) + "\n")
        if sys.stdin is not None and not sys.stdin.closed:
            # The real CLI waits for stdin to close when it is a pipe; aether must give /dev/null.
            sys.stdin.read()
        self.init()
        line = self.work()
        emit(line)
        return 1 if line["is_error"] else 0

    def run_input(self) -> int:
        """--input-format stream-json: a turn per user message, until stdin ends."""
        self.stdin = Stdin(emit)
        prompted, last_ok = False, True
        while (msg := self.stdin.next_message()) is not None:
            if not prompted:
                prompted = True
                with open("prompts.jsonl", "a") as fh:
                    fh.write(json.dumps(message_text(msg)) + "\n")
            self.turn_started = time.monotonic()
            self.init()  # every turn starts with its own system/init
            self.echo(msg)
            try:
                line = self.handoff() if asks_for_handoff(msg) else self.work()
            except Interrupted as cut:
                line = self.aborted(cut.tools)
            emit(line)
            last_ok = not line["is_error"]
        # The real CLI's exit code is its last turn's: 1 after a turn that was cut or failed.
        return 0 if last_ok else 1


def main() -> int:
    argv = sys.argv[1:]
    with open("argv.jsonl", "a") as fh:
        fh.write(json.dumps(argv) + "\n")
    fake = Fake(argv)
    if opt(argv, "--input-format", "text") == "stream-json":
        return fake.run_input()
    return fake.run_prompt(argv[argv.index("-p") + 1] if "-p" in argv else "")


if __name__ == "__main__":
    sys.exit(main())
