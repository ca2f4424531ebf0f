"""A `Session` as the CLIs print it: Claude Code stream-json or `codex exec --json`, one episode a launch.

Line shapes and keys follow the real samples in /work/shared/formats/. Every
episode is a fresh process: Claude starts with `system/init` and a new session
id, Codex with `thread.started` and a new thread. What makes aether checkpoint
at an episode's end differs: Claude reports its context in each assistant
line's `message.usage`, so the episode's last line is a short text whose usage
crosses the threshold; aether counts a Codex stream itself, so the episode ends
with read-only `git log` commands whose outputs cross it a step at a time (they
add no fact). The last episode ends as the CLI ends a finished run (`result`,
`turn.completed`).
"""

from __future__ import annotations

import json
import random
import shlex
import uuid
from typing import Any

from replay.session import Call, Say, Session, UserSays

MODEL_CLAUDE = "claude-opus-5-5"
CLAUDE_VERSION = "2.1.330"
# Claude: the context an episode starts with and reaches before its last line, as
# shares of the window; the last line reports CROSS_AT, past the default 0.8.
START_AT, PEAK_AT, CROSS_AT = 0.06, 0.7, 0.86
PADDING_COMMAND = "git log --stat"
# Each padding output, as a share of the window; together they pass the window.
PADDING_STEP = 0.04
# cl100k characters per token on the padding text (measured: 2.34).
PADDING_CHARS_PER_TOKEN = 2.3


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class Ids:
    """Seeded ids and timestamps, so a rendering is the same bytes every time."""

    def __init__(self, seed: str) -> None:
        self.rng = random.Random(seed)
        self.clock = 0

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def stamp(self) -> str:
        self.clock += self.rng.randint(300, 9000)
        s, ms = divmod(self.clock, 1000)
        m, s = divmod(s, 60)
        h, m = divmod(m, 60)
        return f"2026-11-21T{9 + h:02d}:{m:02d}:{s:02d}.{ms:03d}Z"


# ------------------------------------------------------------------ Claude


class ClaudeEpisode:
    """The lines of one Claude Code launch."""

    def __init__(self, ids: Ids, cwd: str, window: int, messages: int) -> None:
        self.ids, self.cwd, self.window = ids, cwd, window
        self.session = ids.uuid()
        self.messages = max(messages, 1)
        self.index = 0
        self.msg_id = ""
        self.lines: list[str] = []

    def common(self) -> dict[str, Any]:
        return {
            "parent_tool_use_id": None,
            "session_id": self.session,
            "uuid": self.ids.uuid(),
            "timestamp": self.ids.stamp(),
        }

    def init(self) -> None:
        self.lines.append(
            dumps(
                {
                    "type": "system",
                    "subtype": "init",
                    "cwd": self.cwd,
                    "session_id": self.session,
                    "tools": ["Task", "Bash", "Edit", "Glob", "Grep", "Read", "TodoWrite", "Write"],
                    "mcp_servers": [],
                    "model": MODEL_CLAUDE,
                    "permissionMode": "acceptEdits",
                    "apiKeySource": "ANTHROPIC_API_KEY",
                    "claude_code_version": CLAUDE_VERSION,
                    "output_style": "default",
                    "uuid": self.ids.uuid(),
                }
            )
        )

    def new_message(self) -> None:
        self.msg_id = f"msg_{self.ids.hex(24)}"
        self.index += 1

    def usage(self, share: float | None = None) -> dict[str, int]:
        if share is None:
            share = START_AT + (PEAK_AT - START_AT) * min(1.0, self.index / self.messages)
        context = int(self.window * share)
        cached = context * 9 // 10
        return {
            "input_tokens": context - cached,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
            "output_tokens": 1,
        }

    def assistant(self, block: dict[str, Any], share: float | None = None) -> None:
        message = {
            "id": self.msg_id,
            "type": "message",
            "role": "assistant",
            "model": MODEL_CLAUDE,
            "content": [block],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self.usage(share),
            "context_management": None,
        }
        self.lines.append(
            dumps(
                {
                    "type": "assistant",
                    "message": message,
                    **self.common(),
                    "request_id": f"req_{self.ids.hex(12)}",
                }
            )
        )

    def text(self, text: str, share: float | None = None) -> None:
        self.assistant({"type": "text", "text": text}, share)

    def call(self, call: Call) -> None:
        tool_id = f"toolu_{self.ids.hex(24)}"
        self.assistant({"type": "tool_use", "id": tool_id, "name": call.tool, "input": call.input})
        output = call.output
        if call.tool == "Bash" and not call.ok:
            output = f"Exit code 1\n{output}"
        block = {"tool_use_id": tool_id, "type": "tool_result", "content": output, "is_error": not call.ok}
        extra: dict[str, Any] = {}
        if call.tool == "Bash":
            extra = {
                "stdout": call.output if call.ok else "",
                "stderr": "" if call.ok else call.output,
                "interrupted": False,
                "isImage": False,
            }
        self.lines.append(
            dumps(
                {
                    "type": "user",
                    "message": {"role": "user", "content": [block]},
                    **self.common(),
                    "tool_use_result": extra or output,
                }
            )
        )

    def user(self, text: str) -> None:
        self.lines.append(
            dumps(
                {
                    "type": "user",
                    "message": {"role": "user", "content": text},
                    **self.common(),
                    "isReplay": True,
                }
            )
        )

    def result(self, text: str) -> None:
        usage = {
            "input_tokens": int(self.window * PEAK_AT),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 128 * self.index,
        }
        self.lines.append(
            dumps(
                {
                    "duration_api_ms": 100 * self.index,
                    "stop_reason": "end_turn",
                    "session_id": self.session,
                    "total_cost_usd": 0.5,
                    "usage": usage,
                    "modelUsage": {
                        MODEL_CLAUDE: {
                            "inputTokens": usage["input_tokens"],
                            "outputTokens": 128,
                            "contextWindow": self.window,
                            "maxOutputTokens": 128000,
                        }
                    },
                    "permission_denials": [],
                    "terminal_reason": "completed",
                    "is_error": False,
                    "num_turns": self.index,
                    "subtype": "success",
                    "api_error_status": None,
                    "result": text,
                    "type": "result",
                }
            )
        )


def claude_episode(ids: Ids, session: Session, actions: list, window: int, last: bool) -> list[str]:
    messages = sum(isinstance(a, Call) for a in actions) + 1
    ep = ClaudeEpisode(ids, session.cwd, window, messages)
    ep.init()
    joined = False  # a text block shares its message with the tool call after it
    for action in actions:
        if isinstance(action, UserSays):
            ep.user(action.text)
            joined = False
        elif isinstance(action, Say):
            ep.new_message()
            ep.text(action.text)
            joined = True
        else:
            if not joined:
                ep.new_message()
            ep.call(action)
            joined = False
    ep.new_message()
    if last:
        ep.text("All done for now; the open todos are listed above.")
        ep.result("All done for now; the open todos are listed above.")
    else:
        # The threshold is crossed on this text; the real CLI then goes on with the turn (a
        # tool call and its result) before aether's step-boundary stop. A read-only look
        # at the tree adds no fact.
        ep.text("Continuing with the next step.", CROSS_AT)
        ep.call(Call("Bash", {"command": "git status --short"}, ""))
    return ep.lines


# ------------------------------------------------------------------ Codex


def bash_command(cmd: str) -> str:
    """How Codex shows a shell command: `/bin/bash -lc '<cmd>'`."""
    return f"/bin/bash -lc {shlex.quote(cmd)}"


def codex_shell(call: Call, cwd: str) -> tuple[str, str]:
    """(command, output) of a Claude-style tool call as the shell command Codex would run."""
    if call.tool == "Read":
        rel = str(call.input["file_path"]).removeprefix(cwd + "/")
        lines = [line.split("\t", 1)[-1] for line in call.output.splitlines()]
        return bash_command(f"sed -n '1,200p' {rel}"), "\n".join(lines) + "\n"
    if call.tool == "Grep":
        return bash_command(f"rg -n {shlex.quote(str(call.input['pattern']))} src"), call.output + "\n"
    return bash_command(str(call.input["command"])), call.output + "\n"


class CodexEpisode:
    """The lines of one `codex exec --json` launch."""

    def __init__(self, ids: Ids, cwd: str) -> None:
        self.ids, self.cwd = ids, cwd
        self.items = 0
        self.todo_id = ""
        self.lines = [
            dumps({"type": "thread.started", "thread_id": ids.uuid()}),
            dumps({"type": "turn.started"}),
        ]

    def item(self, kind: str, item: dict[str, Any]) -> None:
        self.lines.append(dumps({"type": kind, "item": item}))

    def next_id(self) -> str:
        self.items += 1
        return f"item_{self.items - 1}"

    def reasoning(self, text: str) -> None:
        self.item("item.completed", {"id": self.next_id(), "type": "reasoning", "text": f"**{text}**"})

    def command(self, command: str, output: str, code: int) -> None:
        item_id = self.next_id()
        started = {
            "id": item_id,
            "type": "command_execution",
            "command": command,
            "aggregated_output": "",
            "exit_code": None,
            "status": "in_progress",
        }
        self.item("item.started", started)
        self.item(
            "item.completed",
            {
                **started,
                "aggregated_output": output,
                "exit_code": code,
                "status": "completed" if code == 0 else "failed",
            },
        )

    def file_change(self, path: str, kind: str) -> None:
        item = {
            "id": self.next_id(),
            "type": "file_change",
            "changes": [{"path": path, "kind": kind}],
            "status": "in_progress",
        }
        self.item("item.started", item)
        self.item("item.completed", {**item, "status": "completed"})

    def todos(self, todos: list[dict[str, Any]]) -> None:
        items = [{"text": t["content"], "completed": t["status"] == "completed"} for t in todos]
        kind = "item.updated" if self.todo_id else "item.started"
        self.todo_id = self.todo_id or self.next_id()
        self.item(kind, {"id": self.todo_id, "type": "todo_list", "items": items})

    def call(self, call: Call) -> None:
        if call.tool in ("Write", "Edit"):
            self.file_change(str(call.input["file_path"]), "add" if call.tool == "Write" else "update")
        elif call.tool == "TodoWrite":
            self.todos(call.input["todos"])
        else:
            command, output = codex_shell(call, self.cwd)
            self.command(command, output, 0 if call.ok else 1)

    def padding(self, window: int) -> None:
        """Read-only commands whose outputs cross the checkpoint line a step at a time.

        Each output is PADDING_STEP of the window, so the count crosses 0.8 below the
        emergency line; the commands after the crossing add nothing anyone needs.
        """
        chars = int(window * PADDING_STEP * PADDING_CHARS_PER_TOKEN)
        for k in range(int(1 / PADDING_STEP) + 1):
            out: list[str] = []
            size = 0
            while size < chars:
                entry = (
                    f"commit {self.ids.hex(40)}\nAuthor: Dev <dev@example.com>\n\n"
                    f"    tidy {self.ids.hex(8)}\n\n"
                    f" src/ledgerline/{self.ids.hex(6)}.py | {self.ids.rng.randint(1, 90)} +-\n"
                )
                out.append(entry)
                size += len(entry)
            self.command(bash_command(f"{PADDING_COMMAND} --skip={40 * k} -n 40"), "".join(out), 0)

    def finish(self, text: str) -> None:
        self.item("item.completed", {"id": self.next_id(), "type": "agent_message", "text": text})
        self.lines.append(
            dumps(
                {
                    "type": "turn.completed",
                    "usage": {
                        "input_tokens": 39592,
                        "cached_input_tokens": 30000,
                        "cache_write_input_tokens": 0,
                        "output_tokens": 265,
                        "reasoning_output_tokens": 0,
                    },
                }
            )
        )


def codex_episode(ids: Ids, session: Session, actions: list, window: int, last: bool) -> list[str]:
    ep = CodexEpisode(ids, session.cwd)
    for action in actions:
        if isinstance(action, Say):
            ep.reasoning(action.text)
        elif isinstance(action, Call):
            ep.call(action)
    if last:
        ep.finish("All done for now; the open todos are listed in the plan.")
    else:
        ep.padding(window)
    return ep.lines


def render(session: Session, window: int) -> list[list[str]]:
    """Each episode of `session` as the lines its CLI prints."""
    ids = Ids(f"render:{session.fmt}:{session.objective}:{len(session.episodes)}")
    one = claude_episode if session.fmt == "claude" else codex_episode
    last = len(session.episodes) - 1
    return [one(ids, session, actions, window, i == last) for i, actions in enumerate(session.episodes)]
