"""A fake OpenAI Responses API that plays the steps scenario, for running the real Codex CLI offline.

    python tests/fakes/fake_openai.py --port 0 --workdir DIR [--steps N] [--base-tokens B]
        [--tokens-per-turn T] [--port-file F] [--log F]

`POST /v1/responses` answers an SSE stream when `"stream": true` (response.created, then each
output item's added/delta/done events, then response.completed with usage), else the response
object. The shell call takes the shape of the shell tool the request offers, so the fake follows
whatever Codex build drives it: `shell_command` / `exec_command` (a command string), `shell`
(an argv list) or the built-in `local_shell` (a local_shell_call item).

A handoff request (the latest user message asks for the state as JSON, in whatever words) is
answered, as a model would, with a JSON object built only from the conversation it was sent:
the steps its own commands completed, the next one, and the commands that failed. With
FAKE_OPENAI_HANDOFF=ignore in its environment it ignores the request and keeps working. After a
command that failed, it stops and says so instead of retrying.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `fakes` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.base import BadRequest, FakeHandler, FakeServer, main, split_in_two
from fakes.base import start_server as _start
from fakes.reading import Reading, read_text
from fakes.scenario import Turn, clean_text

# The shell tools Codex builds have offered, best first, with how each takes its command.
SHELL_TOOLS = ("shell_command", "exec_command", "shell")
# Codex injects context as user messages: <environment_context>, <user_instructions>, AGENTS.md.
WRAPPERS = ("<", "# AGENTS.md")
HANDOFF_ENV = "FAKE_OPENAI_HANDOFF"  # "answer" (the default) or "ignore"
# What makes a message a request for a handoff, as a reader would take it: JSON, and a handoff.
_ASKS_JSON = re.compile(r"\bJSON\b", re.I)
_ASKS_HANDOFF = re.compile(
    r"hand-?\s?off|hand (?:it )?over|checkpoint|context (?:is|will be)\b.{0,30}reset", re.I
)
_STEP_COMMAND = re.compile(r'echo \\?"step (\d+)\\?" >> steps\.txt')
_OUTPUTS = ("function_call_output", "local_shell_call_output")
_EXIT_CODE = re.compile(r'(?:exited with code|exit code:?|"exit_code":\s*)\s*(-?\d+)')


def _id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _item_text(item: dict[str, Any]) -> str:
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def first_user_text(items: list[Any]) -> str:
    """The first user message that is the prompt, not Codex's injected context, cleaned for the log."""
    for item in items:
        if not isinstance(item, dict) or item.get("role") != "user":
            continue
        text = _item_text(item).strip()
        if text and not text.startswith(WRAPPERS):
            return clean_text(text)
    return ""


def shell_tool(body: dict[str, Any]) -> str | None:
    """The name (or "local_shell") of the shell tool the request offers, None if it offers none."""
    names: set[str] = set()
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict):
            continue
        if tool.get("type") == "local_shell":
            names.add("local_shell")
        elif tool.get("name"):
            names.add(str(tool["name"]))
    for name in (*SHELL_TOOLS, "local_shell"):
        if name in names:
            return name
    return None


def _call_item(tool: str, command: str, status: str) -> dict[str, Any]:
    """The output item calling `tool` to run `command` through bash."""
    call_id = _id("call_")
    if tool == "local_shell":
        action = {"type": "exec", "command": ["bash", "-lc", command], "env": {}}
        return {
            "type": "local_shell_call",
            "id": _id("lsh_"),
            "call_id": call_id,
            "status": status,
            "action": action,
        }
    args: dict[str, Any]
    if tool == "shell":
        args = {"command": ["bash", "-lc", command]}
    elif tool == "exec_command":
        args = {"cmd": command}
    else:
        args = {"command": command}
    return {
        "type": "function_call",
        "id": _id("fc_"),
        "call_id": call_id,
        "name": tool,
        "arguments": json.dumps(args),
        "status": status,
    }


# ------------------------------------------------------------ reading the conversation, as a model would


def _call_command(item: dict[str, Any]) -> str:
    """The shell command a function_call / local_shell_call item of the conversation ran."""
    if item.get("type") == "local_shell_call":
        action = item.get("action") if isinstance(item.get("action"), dict) else {}
        command = action.get("command")
        return " ".join(map(str, command)) if isinstance(command, list) else ""
    return str(item.get("arguments", ""))


def _output_text(item: dict[str, Any]) -> str:
    output = item.get("output")
    if isinstance(output, dict):
        output = output.get("content") or output.get("output") or json.dumps(output)
    return output if isinstance(output, str) else _item_text({"content": output})


def _exit_code(output: str) -> int | None:
    match = _EXIT_CODE.search(output)
    return int(match.group(1)) if match else None


def _error_line(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    after = lines[lines.index("Output:") + 1 :] if "Output:" in lines else lines
    return (after or lines or ["(no output)"])[-1]


def conversation_steps(items: list[Any]) -> tuple[list[int], list[str], list[int]]:
    """What this conversation's commands show: the steps completed (in order), the failed
    commands' errors, and the steps whose command has no exit code to show (Codex answers a call
    it was stopped in with the output "aborted")."""
    commands: dict[str, str] = {}
    done: list[int] = []
    failed: list[str] = []
    unverified: list[int] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("type") in ("function_call", "local_shell_call"):
            commands[str(item.get("call_id"))] = _call_command(item)
        elif item.get("type") in _OUTPUTS:
            command = commands.get(str(item.get("call_id")), "")
            output = _output_text(item)
            code = _exit_code(output)
            step = _STEP_COMMAND.search(command)
            if code == 0 and step:
                done.append(int(step.group(1)))
            elif code is None and step:
                unverified.append(int(step.group(1)))
            elif code not in (0, None):
                failed.append(f"`{command}` failed (exit {code}): {_error_line(output)}")
    return done, failed, unverified


def what_it_knows(items: list[Any]) -> Reading:
    """What the model knows of the steps: the user's messages read as prose (Codex's injected
    context aside), and the outcome of each command it ran in this conversation: exit code 0 is
    done; a failure, or a call answered without an exit code ("aborted") or not at all, is not."""
    reading = Reading()
    commands: dict[str, int] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        if item.get("role") == "user":
            text = _item_text(item).strip()
            if text and not text.startswith(WRAPPERS):
                reading = reading.add(read_text(text))
        elif item.get("type") in ("function_call", "local_shell_call"):
            step = _STEP_COMMAND.search(_call_command(item))
            if step:
                commands[str(item.get("call_id"))] = int(step.group(1))
                reading.not_done.add(int(step.group(1)))
        elif item.get("type") in _OUTPUTS:
            step_n = commands.get(str(item.get("call_id")))
            if step_n is not None and _exit_code(_output_text(item)) == 0:
                reading.done.add(step_n)
    return reading


def opening_prompt(items: list[Any]) -> dict[str, str]:
    """`{"prompt": text}` with the whole prompt, on the request that opens a conversation; else `{}`."""
    answered = (i for i in items if isinstance(i, dict))
    if any(i.get("role") == "assistant" or i.get("type") in _OUTPUTS for i in answered):
        return {}
    text = first_user_raw(items)
    return {"prompt": text} if text else {}


def first_user_raw(items: list[Any]) -> str:
    """The first user message that is the prompt, not Codex's injected context, whole."""
    for item in items:
        if isinstance(item, dict) and item.get("role") == "user":
            text = _item_text(item).strip()
            if text and not text.startswith(WRAPPERS):
                return text
    return ""


def is_handoff_request(items: list[Any]) -> bool:
    """Whether the latest message is the user asking for the state as JSON."""
    last = items[-1] if items else None
    if not isinstance(last, dict) or last.get("role") != "user":
        return False
    text = _item_text(last)
    return bool(_ASKS_JSON.search(text) and _ASKS_HANDOFF.search(text))


def handoff_answer(items: list[Any]) -> str:
    """The state as a JSON object, from what the conversation shows and nothing else."""
    done, failed, unverified = conversation_steps(items)
    last = max(done, default=0)
    progress = [f'Appended "step {k}" to steps.txt (exit code 0).' for k in sorted(set(done))]
    step = f'Append "step {last + 1}" to steps.txt with one shell command.'
    if last + 1 in unverified:
        step += " Its last run was cut off before its result came back: check steps.txt first."
    state = {
        "objective": first_user_text(items) or "the task in the first message",
        "progress": progress,
        "next_actions": [step] if done or unverified else ["Start the task in the first message."],
        "state": {"file": "steps.txt", "last_step_done": last},
        "errors": failed[-3:],
        "resume_instructions": f"Continue at step {last + 1}.",
    }
    return json.dumps(state)


def failed_last_call(items: list[Any]) -> str | None:
    """The error of the command whose output is the conversation's latest item, if it failed."""
    last = items[-1] if items else None
    if not isinstance(last, dict) or last.get("type") not in _OUTPUTS:
        return None
    output = _output_text(last)
    code = _exit_code(output)
    return _error_line(output) if code not in (0, None) else None


def special_turn(items: list[Any]) -> tuple[Turn, str] | None:
    """A turn the conversation itself calls for (a handoff, a failed command), or None."""
    if is_handoff_request(items) and os.environ.get(HANDOFF_ENV, "answer") != "ignore":
        return Turn("final", 0, "", handoff_answer(items)), "handoff"
    error = failed_last_call(items)
    if error is not None:
        return Turn("final", 0, "", f"The last command failed: {error}. Stopping here."), "stopped"
    return None


def _validate(body: dict[str, Any]) -> list[Any]:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("model: a non-empty string is required")
    items = body.get("input")
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list) or not items:
        raise BadRequest("input: a non-empty string or list is required")
    return items


class OpenAIHandler(FakeHandler):
    """The Responses API endpoints Codex calls."""

    post_routes = {"/v1/responses": "route_responses", "/responses": "route_responses"}  # noqa: RUF012
    get_routes = {"/v1/models": "route_models", "/models": "route_models"}  # noqa: RUF012

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """OpenAI's error shape."""
        kind = {400: "invalid_request_error", 404: "not_found"}.get(status, "server_error")
        return {"error": {"message": message, "type": kind, "param": None, "code": None}}

    def route_models(self, _body: None) -> None:
        """An empty model list: Codex then keeps its built-in model metadata."""
        self.send_json(200, {"object": "list", "data": [], "models": []})

    def route_responses(self, body: dict[str, Any]) -> None:
        """One model turn, streamed or whole."""
        items = _validate(body)
        scenario = self.server.scenario
        tool = shell_tool(body)
        special = special_turn(items)
        if special is not None:
            turn, kind = special
        elif tool is None:
            turn = Turn("final", 0, "", "I need a shell tool for this task.")
            kind = "no_shell"
        else:
            turn = scenario.turn(what_it_knows(items).next_step())
            kind = turn.kind
        total = scenario.context_tokens(len(items))
        output = [_message_item(turn.text)]
        if turn.kind == "tool" and tool is not None:
            output.append(_call_item(tool, turn.command, "completed"))
        out_tokens = 10 + 10 * len(output)
        self.server.log.write(
            {
                "path": self.path,
                "kind": kind,
                "messages": len(items),
                "step": turn.step if kind == "tool" else None,
                "tokens": total,
                "stream": bool(body.get("stream")),
                "model": body["model"],
                "tool": tool,
                "first_user": first_user_text(items),
                "handoff_request": is_handoff_request(items),
                "output_tokens": out_tokens,
                **opening_prompt(items),
            }
        )
        usage = {
            "input_tokens": total,
            # Cached tokens are part of input_tokens in this API, not added to it.
            "input_tokens_details": {"cached_tokens": total // 2},
            "output_tokens": out_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": total + out_tokens,
        }
        response = {
            "id": _id("resp_"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": body["model"],
            "output": output,
            "usage": usage,
        }
        if body.get("stream"):
            self._stream(response)
        else:
            self.send_json(200, response)

    def _stream(self, response: dict[str, Any]) -> None:
        seq = itertools.count()

        def event(name: str, **fields: Any) -> None:
            self.send_event(name, {"type": name, "sequence_number": next(seq), **fields})

        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        self.start_sse()
        event("response.created", response=pending)
        event("response.in_progress", response=pending)
        for index, item in enumerate(response["output"]):
            if item["type"] == "message":
                self._stream_message(event, index, item)
            elif item["type"] == "function_call":
                event("response.output_item.added", output_index=index, item={**item, "arguments": ""})
                for piece in split_in_two(item["arguments"]):
                    event(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=index,
                        delta=piece,
                    )
                event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    arguments=item["arguments"],
                )
                event("response.output_item.done", output_index=index, item=item)
            else:
                event(
                    "response.output_item.added", output_index=index, item={**item, "status": "in_progress"}
                )
                event("response.output_item.done", output_index=index, item=item)
        event("response.completed", response=response)

    @staticmethod
    def _stream_message(event: Callable[..., None], index: int, item: dict[str, Any]) -> None:
        text = item["content"][0]["text"]
        ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
        event(
            "response.output_item.added",
            output_index=index,
            item={**item, "status": "in_progress", "content": []},
        )
        event(
            "response.content_part.added", **ids, part={"type": "output_text", "text": "", "annotations": []}
        )
        for piece in split_in_two(text):
            event("response.output_text.delta", **ids, delta=piece)
        event("response.output_text.done", **ids, text=text)
        event("response.content_part.done", **ids, part=item["content"][0])
        event("response.output_item.done", output_index=index, item=item)


def _message_item(text: str) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": []}
    return {
        "type": "message",
        "id": _id("msg_"),
        "status": "completed",
        "role": "assistant",
        "content": [part],
    }


def start_server(workdir: Path, **kwargs: Any) -> tuple[FakeServer, int]:
    """Serve the fake Responses API in a daemon thread; see `fakes.base.start_server` for the options."""
    return _start(OpenAIHandler, workdir, **kwargs)


if __name__ == "__main__":
    sys.exit(main(OpenAIHandler, "A fake OpenAI Responses API playing the steps scenario."))
