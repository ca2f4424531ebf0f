"""The stdin side of fake_claude.py in `--input-format stream-json` mode, for tests.

A reader thread keeps every stdin line verbatim in stdin.jsonl (in the working
directory: tests assert what aether sent) and queues it as JSON. `Stdin.wait`
is the fake's sleep: it answers control requests as they come, as the real
Claude Code does within milliseconds, and raises `Interrupted` on an interrupt
while a turn runs; user messages wait in `pending` for a step boundary or the
end of the turn. `asks_for_handoff` reads a message the way a model would: by
its words (a handoff, as JSON), never by aether's uuids.

It knows nothing of steps, turns or results: fake_claude.py owns those.
"""

from __future__ import annotations

import json
import queue
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable

# How a model tells a handoff request from a task: the words of the request, read as prose.
HANDOFF_ASKED = re.compile(r"\bhand[- ]?off\b", re.I)
JSON_ASKED = re.compile(r"\bJSON\b")
LOG = "stdin.jsonl"


class Interrupted(Exception):
    """An interrupt cut the running turn; `tools` when a tool call was in flight."""

    def __init__(self, tools: bool) -> None:
        super().__init__("interrupted")
        self.tools = tools


def message_text(msg: dict) -> str:
    """The text of a stdin user message: a string, or its text blocks joined."""
    content = (msg.get("message") or {}).get("content")
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict))
    return content if isinstance(content, str) else ""


def asks_for_handoff(msg: dict) -> bool:
    """Whether a user message asks, in its own words, for a handoff written as JSON."""
    text = message_text(msg)
    return bool(HANDOFF_ASKED.search(text) and JSON_ASKED.search(text))


def replay(msg: dict, session: str) -> dict:
    """A user message echoed back, as `--replay-user-messages` makes the real CLI do."""
    return {
        "type": "user",
        "message": msg.get("message"),
        "session_id": session,
        "parent_tool_use_id": None,
        "uuid": msg.get("uuid") or str(uuid.uuid4()),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "isReplay": True,
    }


def _read(inbox: queue.Queue) -> None:
    with open(LOG, "a") as log:
        for line in sys.stdin:
            if not line.strip():
                continue
            log.write(line.rstrip("\n") + "\n")
            log.flush()
            try:
                inbox.put(json.loads(line))
            except ValueError:
                continue  # the real CLI complains on stderr; nothing to act on
    inbox.put(None)


class Stdin:
    """stdin's messages as they come, read on a thread; control requests answered through `emit`."""

    def __init__(self, emit: Callable[[dict], None]) -> None:
        self.emit = emit
        self.inbox: queue.Queue = queue.Queue()
        self.pending: list[dict] = []  # user messages not taken yet
        self.eof = False
        threading.Thread(target=_read, args=(self.inbox,), daemon=True).start()

    def wait(self, seconds: float) -> None:
        """Sleep `seconds`, answering control requests meanwhile; Interrupted on an interrupt."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self.inbox.get(timeout=left)
            except queue.Empty:
                return
            if self._take(item, running=True):
                raise Interrupted(tools=False)

    def next_message(self) -> dict | None:
        """The next user message, waiting between turns (control requests answered); None at EOF."""
        while not self.pending and not self.eof:
            self._take(self.inbox.get(), running=False)
        return self.pending.pop(0) if self.pending else None

    def _take(self, item: dict | None, *, running: bool) -> bool:
        """One stdin message; whether it interrupts the running turn."""
        if item is None:
            self.eof = True
        elif item.get("type") == "control_request":
            interrupt = (item.get("request") or {}).get("subtype") == "interrupt"
            # 2.1.332 answers an interrupt with still_queued, whether a turn runs or not.
            reply = {
                "subtype": "success",
                "request_id": item.get("request_id"),
                "response": {"still_queued": []} if interrupt else {},
            }
            self.emit({"type": "control_response", "response": reply})
            return running and interrupt
        elif item.get("type") == "user":
            self.pending.append(item)
        return False
