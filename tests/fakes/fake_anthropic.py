"""A fake Anthropic Messages API that plays the steps scenario, for running the real Claude Code offline.

    python tests/fakes/fake_anthropic.py --port 0 --workdir DIR [--steps N] [--base-tokens B]
        [--tokens-per-turn T] [--port-file F] [--log F]
        [--reply-delay S] [--tool-sleep S] [--handoff answer|ignore]

`POST /v1/messages` (with or without `?beta=true`) answers an SSE stream when `"stream": true`,
else one JSON message. A request offering tools is an agent turn: a `Bash` tool call appending the
next step, or the final text. A request without tools is a side query (a title, a quota probe):
it gets a short text. `POST /v1/messages/count_tokens` answers the scenario's context size.

Slowing it down, so a client can be interrupted mid-turn: `--reply-delay` waits before each agent
turn's answer, `--tool-sleep` makes each step's command sleep first.

A handoff request (the latest user message asks, in prose, for a handoff as a JSON object) is
answered as a model would: with `--handoff answer` (the default), one JSON object built only from
the conversation it was sent (the first user message, the commands it ran and what came back);
with `--handoff ignore`, the request is ignored and the steps go on, so a client's fail-closed
path can be tested. The fake never reads aether's headings or fields.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

if __package__ in (None, ""):  # run as a script: make the `fakes` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.base import BadRequest, FakeHandler, FakeServer, main, split_in_two
from fakes.base import start_server as _start
from fakes.reading import Reading, read_text
from fakes.scenario import Turn, clean_text, without_reminders

SIDE_TEXT = "Steps task"
TOOL_NAME = "Bash"
HANDOFF_MODES = ("answer", "ignore")
# How a model tells a handoff request from a task: the words of the request, read as prose.
_HANDOFF_ASKED = re.compile(r"\bhand[- ]?off\b", re.I)
_JSON_ASKED = re.compile(r"\bJSON\b")
_STEP_IN_COMMAND = re.compile(r"\bstep (\d+)\b")
_REDIRECT_TARGET = re.compile(r">>?\s*([^\s;&|]+)")
# How Claude Code tells the model a call was stopped (by an interrupt), not that it failed.
_STOPPED = re.compile(r"doesn't want to proceed|stopped while running|interrupted", re.I)
_ALL_DONE = re.compile(r"\bAll \d+ steps done\b")
# The objective a model would restate is the task as the user wrote it, not a truncated log line.
OBJECTIVE_CHARS = 2000


@dataclass(frozen=True)
class Behaviour:
    """How this fake model behaves beyond the steps scenario (all off by default)."""

    reply_delay: float = 0.0  # seconds to wait before answering an agent turn
    tool_sleep: float = 0.0  # seconds each step's command sleeps before appending its step
    handoff: str = "answer"  # "answer": JSON state from the conversation; "ignore": keep working


def _id(prefix: str, size: int) -> str:
    return prefix + uuid.uuid4().hex[:size]


def first_user_text(messages: list[dict[str, Any]]) -> str:
    """The text of the first user message (string content or its text blocks), cleaned for the log."""
    for msg in messages:
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            return clean_text(content)
        if isinstance(content, list):
            texts = [b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"]
            return clean_text(" ".join(t for t in texts if isinstance(t, str)))
    return ""


def _texts(content: Any) -> list[str]:
    """The text of a message's content: the string itself, or its text blocks."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [b["text"] for b in content if isinstance(b, dict) and b.get("type") == "text"
                and isinstance(b.get("text"), str)]
    return []


def asks_for_handoff(messages: list[dict[str, Any]]) -> bool:
    """Whether the latest user message asks, in its own words, for a handoff written as JSON."""
    last = messages[-1] if messages else {}
    if last.get("role") != "user":
        return False
    text = " ".join(clean_text(t, OBJECTIVE_CHARS) for t in _texts(last.get("content")))
    return bool(_HANDOFF_ASKED.search(text) and _JSON_ASKED.search(text))


def _calls_and_results(
    messages: list[dict[str, Any]],
) -> tuple[list[tuple[str, str]], dict[str, tuple[bool, str]]]:
    """The Bash commands asked for, as (id, command) in order, and each answer by id: (is_error, text)."""
    calls: list[tuple[str, str]] = []
    results: dict[str, tuple[bool, str]] = {}
    for msg in messages:
        content = msg.get("content")
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use" and isinstance(block.get("input"), dict):
                command = block["input"].get("command")
                if isinstance(command, str):
                    calls.append((str(block.get("id")), command))
            elif block.get("type") == "tool_result":
                text = " ".join(_texts(block.get("content")))
                results[str(block.get("tool_use_id"))] = (block.get("is_error") is True, text)
    return calls, results


def handoff_answer(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The handoff a careful model would write from this conversation alone.

    The objective is the first user message; a step is done when its command came back
    without an error; a command that was cut or failed is the next action, before the
    step after the last one done. Nothing comes from the workdir or from aether's prompt
    structure: what is not in the conversation is not in the answer.
    """
    objective = clean_text(first_user_raw(messages), OBJECTIVE_CHARS)
    calls, results = _calls_and_results(messages)
    done = [cmd for cid, cmd in calls if cid in results and not results[cid][0]]
    cut = [(cmd, results.get(cid)) for cid, cmd in calls if cid not in results or results[cid][0]]
    redo = [cmd for cmd, _ in cut if cmd not in done]
    errors = [
        (res[1].strip().splitlines() or [""])[0]
        for cmd, res in cut
        if res and cmd not in done and not _STOPPED.search(res[1])
    ]
    numbers = [int(m.group(1)) for cmd in done if (m := _STEP_IN_COMMAND.search(cmd))]
    next_actions = [f"Run again, it did not complete: {cmd}" for cmd in redo]
    said = [t for msg in messages if msg.get("role") == "assistant" for t in _texts(msg.get("content"))]
    if said and _ALL_DONE.search(said[-1]):
        next_actions.append("Nothing is left to do: every step is done.")
    elif numbers:
        next_actions.append(f"Then go on with step {max(numbers) + 1}, one Bash command per step.")
    else:
        next_actions.append("Start with step 1, one Bash command per step.")
    files = list(dict.fromkeys(m.group(1) for cmd in done for m in _REDIRECT_TARGET.finditer(cmd)))
    return {
        "objective": objective,
        "progress": [f"Done: {cmd}" for cmd in done],
        "next_actions": next_actions,
        "errors": errors,
        "files": files,
        "resume_instructions": "Check the files listed, then take the next actions in order.",
    }


def what_it_knows(messages: list[dict[str, Any]]) -> Reading:
    """What the model knows of the steps: its prompt (and any later words of the user) read as prose,
    and the outcome of each command it ran in this conversation (a cut or failed one is not done)."""
    reading = Reading()
    for msg in messages:
        if msg.get("role") == "user":
            for text in _texts(msg.get("content")):
                reading = reading.add(read_text(without_reminders(text)))
    calls, results = _calls_and_results(messages)
    for cid, command in calls:
        match = _STEP_IN_COMMAND.search(command)
        if match:
            result = results.get(cid)
            ok = result is not None and not result[0] and not _STOPPED.search(result[1])
            (reading.done if ok else reading.not_done).add(int(match.group(1)))
    return reading


def first_user_raw(messages: list[dict[str, Any]]) -> str:
    """The text of the first user message that has text (tool results are not the user's words)."""
    for msg in messages:
        if msg.get("role") == "user":
            texts = _texts(msg.get("content"))
            if texts:
                return " ".join(texts)
    return ""


def opening_prompt(messages: list[dict[str, Any]]) -> dict[str, str]:
    """`{"prompt": text}` with the whole prompt, on the request that opens a conversation; else `{}`.

    Logged once per conversation (not per turn), so a check can read or count every prompt an
    agent was started with without the log growing by a prompt per step.
    """
    if any(m.get("role") == "assistant" for m in messages):
        return {}
    return {"prompt": without_reminders(first_user_raw(messages))}


def _tool_names(body: dict[str, Any]) -> list[str]:
    tools = body.get("tools")
    if not isinstance(tools, list):
        return []
    return [str(t.get("name")) for t in tools if isinstance(t, dict) and t.get("name")]


def _validate(body: dict[str, Any]) -> list[dict[str, Any]]:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise BadRequest("model: a non-empty string is required")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: a non-empty list is required")
    for i, msg in enumerate(messages):
        # Claude Code also sends role "system" messages mid-conversation (a beta): any role passes.
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise BadRequest(f"messages.{i}: an object with a string role is required")
    return messages


class AnthropicHandler(FakeHandler):
    """The Messages API endpoints Claude Code calls."""

    behaviour: ClassVar[Behaviour] = Behaviour()

    post_routes = {  # noqa: RUF012 -- class-level routing table, never mutated
        "/v1/messages": "route_messages",
        "/v1/messages/count_tokens": "route_count_tokens",
    }
    get_routes = {"/v1/models": "route_models"}  # noqa: RUF012

    def error_body(self, status: int, message: str) -> dict[str, Any]:
        """Anthropic's error shape."""
        kind = {400: "invalid_request_error", 404: "not_found_error"}.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def route_models(self, _body: None) -> None:
        """A one-model list, for clients that look the model up."""
        self.send_json(200, {"data": [{"type": "model", "id": "claude-fake", "display_name": "Fake"}]})

    def route_count_tokens(self, body: dict[str, Any]) -> None:
        """The context size the scenario reports for these messages."""
        messages = _validate(body)
        tokens = self.server.scenario.context_tokens(len(messages))
        self.server.log.write({"path": self.path, "kind": "count_tokens", "messages": len(messages)})
        self.send_json(200, {"input_tokens": tokens})

    def route_messages(self, body: dict[str, Any]) -> None:
        """One model turn, streamed or whole."""
        messages = _validate(body)
        scenario = self.server.scenario
        tools = _tool_names(body)
        total = scenario.context_tokens(len(messages))
        if not tools:
            turn = Turn("final", 0, "", SIDE_TEXT)
            kind = "side"
        elif TOOL_NAME not in tools:
            turn = Turn("final", 0, "", f"I need the {TOOL_NAME} tool for this task.")
            kind = "no_bash"
        elif self.behaviour.handoff == "answer" and asks_for_handoff(messages):
            turn = Turn("final", 0, "", json.dumps(handoff_answer(messages)))
            kind = "handoff"
        else:
            turn = self._slowed(scenario.turn(what_it_knows(messages).next_step()))
            kind = turn.kind
            if self.behaviour.reply_delay:
                time.sleep(self.behaviour.reply_delay)
        self.server.log.write(
            {
                "path": self.path,
                "kind": kind,
                "messages": len(messages),
                "step": turn.step if kind == "tool" else None,
                "tokens": total,
                "stream": bool(body.get("stream")),
                "model": body["model"],
                "tools": len(tools),
                "first_user": first_user_text(messages),
                **opening_prompt(messages),
            }
        )
        blocks = self._blocks(turn)
        stop = "tool_use" if turn.kind == "tool" else "end_turn"
        # The sum is the context size: a client reading only input_tokens would be wrong.
        cached = total // 2
        usage = {
            "input_tokens": total - cached,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": cached,
            "output_tokens": 1,
        }
        out_tokens = 12 + 8 * len(blocks)
        msg_id = _id("msg_fake_", 20)
        if body.get("stream"):
            self._stream(body["model"], msg_id, blocks, stop, usage, out_tokens)
            return
        self.send_json(
            200,
            {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": blocks,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {**usage, "output_tokens": out_tokens},
            },
        )

    def _slowed(self, turn: Turn) -> Turn:
        """`turn` with its command made to sleep first, when the behaviour says so."""
        if turn.kind != "tool" or not self.behaviour.tool_sleep:
            return turn
        return Turn(turn.kind, turn.step, f"sleep {self.behaviour.tool_sleep:g} && {turn.command}", turn.text)

    @staticmethod
    def _blocks(turn: Turn) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": turn.text}]
        if turn.kind == "tool":
            blocks.append(
                {
                    "type": "tool_use",
                    "id": _id("toolu_fake_", 24),
                    "name": TOOL_NAME,
                    "input": {"command": turn.command, "description": f"Append step {turn.step}"},
                }
            )
        return blocks

    def _stream(
        self,
        model: str,
        msg_id: str,
        blocks: list[dict[str, Any]],
        stop: str,
        usage: dict[str, int],
        out_tokens: int,
    ) -> None:
        self.start_sse()
        start = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        self.send_event("message_start", {"type": "message_start", "message": start})
        self.send_event("ping", {"type": "ping"})
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                self.send_event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                for piece in split_in_two(block["text"]):
                    self.send_event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    )
            else:
                head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                self.send_event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": head},
                )
                # Split mid-JSON, as the real API does: the client must join the pieces before parsing.
                for piece in split_in_two(json.dumps(block["input"])):
                    self.send_event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
            self.send_event("content_block_stop", {"type": "content_block_stop", "index": index})
        self.send_event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": out_tokens},
            },
        )
        self.send_event("message_stop", {"type": "message_stop"})


def _handler(behaviour: Behaviour) -> type[AnthropicHandler]:
    if behaviour.handoff not in HANDOFF_MODES:
        raise ValueError(f"handoff must be one of {HANDOFF_MODES}, got {behaviour.handoff!r}")
    return type("AnthropicHandler", (AnthropicHandler,), {"behaviour": behaviour})


def start_server(
    workdir: Path, *, behaviour: Behaviour | None = None, **kwargs: Any
) -> tuple[FakeServer, int]:
    """Serve the fake Anthropic API in a daemon thread; see `fakes.base.start_server` for the options."""
    return _start(_handler(behaviour or Behaviour()), workdir, **kwargs)


def cli(argv: list[str] | None = None) -> int:
    """The command line: this fake's own options, the rest passed to `fakes.base.main`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--reply-delay", type=float, default=0.0)
    parser.add_argument("--tool-sleep", type=float, default=0.0)
    parser.add_argument("--handoff", choices=HANDOFF_MODES, default="answer")
    own, rest = parser.parse_known_args(argv)
    behaviour = Behaviour(max(0.0, own.reply_delay), max(0.0, own.tool_sleep), own.handoff)
    return main(_handler(behaviour), "A fake Anthropic Messages API playing the steps scenario.", rest)


if __name__ == "__main__":
    sys.exit(cli())
