"""A fake Anthropic Messages API that plays the steps scenario, for running the real Claude Code offline.

    python tests/fakes/fake_anthropic.py --port 0 --workdir DIR [--steps N] [--base-tokens B]
        [--tokens-per-turn T] [--port-file F] [--log F]

`POST /v1/messages` (with or without `?beta=true`) answers an SSE stream when `"stream": true`,
else one JSON message. A request offering tools is an agent turn: a `Bash` tool call appending the
next step, or the final text. A request without tools is a side query (a title, a quota probe):
it gets a short text. `POST /v1/messages/count_tokens` answers the scenario's context size.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `fakes` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.base import BadRequest, FakeHandler, FakeServer, main, split_in_two
from fakes.base import start_server as _start
from fakes.scenario import Turn, clean_text

SIDE_TEXT = "Steps task"
TOOL_NAME = "Bash"


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
        else:
            turn = scenario.next_turn()
            kind = turn.kind
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


def start_server(workdir: Path, **kwargs: Any) -> tuple[FakeServer, int]:
    """Serve the fake Anthropic API in a daemon thread; see `fakes.base.start_server` for the options."""
    return _start(AnthropicHandler, workdir, **kwargs)


if __name__ == "__main__":
    sys.exit(main(AnthropicHandler, "A fake Anthropic Messages API playing the steps scenario."))
