"""The adapter contract: one agent's stdout lines in, protocol-v1 events out.

An adapter owns the knowledge of one agent's output format and nothing else:
no processes, no files, no token counting. It is stateful (a stream of deltas,
which calls were announced) and lives for one episode, fed from one thread.

This module holds the `Adapter` base class, the events that only adapters
produce (they describe the agent's own stream, not the protocol), and the
small helpers every format needs: read a JSON object from a line, pick a typed
field without trusting it, and turn a todo's text into a task id the store
accepts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from aether_cli import ids
from aether_cli import protocol as P

# A single agent line may be long, but the reason shown for a line we failed on
# only needs its start.
INVALID_TEXT_CHARS = 200


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class StreamStarted(P.Event):
    """The agent announced its own session id (used to resume it natively)."""

    session_id: str = ""
    model: str | None = None
    type = "stream_started"


@dataclass(frozen=True, slots=True)
class Compaction(P.Event):
    """The agent compacted its own context (Claude Code's auto or manual compact)."""

    trigger: str = ""
    pre_tokens: int | None = None
    post_tokens: int | None = None
    type = "compaction"


@dataclass(frozen=True, slots=True)
class Outcome(P.Event):
    """The agent's own end-of-run (or end-of-turn) verdict."""

    ok: bool = False
    reason: str = ""
    text: str = ""
    type = "outcome"


# The phases of a turn of an agent that takes its messages on stdin.
TURN_WORK = "work"  # the agent's own work on a prompt
TURN_INTERRUPTED = "interrupted"  # cut by aether's interrupt request
TURN_HANDOFF = "handoff"  # the answer to aether's handoff request
TURN_PHASES = (TURN_WORK, TURN_INTERRUPTED, TURN_HANDOFF)


@dataclass(frozen=True, slots=True)
class TurnEnd(P.Event):
    """A turn ended (Claude's `result` line), with the phase it belonged to.

    A `work` turn is also reported as an `Outcome` (its verdict); an
    `interrupted` or `handoff` turn is not: aether asked for it, so it is
    neither the agent's verdict nor its failure. `text` is the turn's final
    text (the handoff answer, for a handoff turn); `seconds`, `input_tokens`
    (input plus cache, over the turn's requests) and `output_tokens` are what
    the turn cost, None where the line did not say.
    """

    phase: str = TURN_WORK
    ok: bool = False
    reason: str = ""
    text: str = ""
    seconds: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    type = "turn_end"


@dataclass(frozen=True, slots=True)
class Ack(P.Event):
    """The agent acknowledged something aether wrote on its stdin.

    `what` is "interrupt" (a control response to aether's interrupt request),
    "control" (another control response), or the kind of aether's own user
    message echoed back ("prompt", "handoff", "message"). `ok` and `error`
    only mean something for control responses.
    """

    what: str = ""
    id: str = ""
    ok: bool = True
    error: str = ""
    type = "ack"


# ---------------------------------------------------------------- helpers


def load_object(line: str) -> dict[str, Any] | None:
    """The JSON object on `line`, or None when the line is not one (text, torn JSON, a list…)."""
    s = line.strip()
    if not s.startswith("{"):
        return None
    try:
        obj = orjson.loads(s)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def text_event(line: str) -> P.Text:
    """A line that is not part of the format: shown and counted as plain agent output."""
    return P.Text({"type": "text", "text": line}, text=line)


def unknown(obj: dict[str, Any]) -> P.Unknown:
    """A line of the format that maps to nothing we model: kept in the ledger as received."""
    return P.Unknown(obj)


def get_str(d: Any, key: str) -> str | None:
    """`d[key]` if `d` is a dict and the value is a string, else None."""
    if isinstance(d, dict):
        v = d.get(key)
        if isinstance(v, str):
            return v
    return None


def get_int(d: Any, key: str) -> int | None:
    """`d[key]` if it is a non-negative integer up to `P.MAX_NUMBER` (bools excluded), else None."""
    if isinstance(d, dict):
        v = d.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= P.MAX_NUMBER:
            return v
    return None


def get_dict(d: Any, key: str) -> dict[str, Any] | None:
    """`d[key]` if it is a dict, else None."""
    if isinstance(d, dict):
        v = d.get(key)
        if isinstance(v, dict):
            return v
    return None


def get_list(d: Any, key: str) -> list[Any] | None:
    """`d[key]` if it is a list, else None."""
    if isinstance(d, dict):
        v = d.get(key)
        if isinstance(v, list):
            return v
    return None


def one_line(text: str) -> str:
    """`text` with its whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(text.split())


_SLUG_JUNK = re.compile(r"[^a-z0-9]+")
SLUG_WORDS_CHARS = 36
SLUG_HASH_CHARS = 6


def todo_task_id(text: str) -> str:
    """A stable, file-name-safe task id for a todo item, e.g. "todo-port-tests-to-pytest-3f2a9c".

    The words make the id readable in `.memory/task_states/`; the hash of the
    full text keeps two todos whose words slug alike ("Fix #1" and "Fix #2!")
    apart. The same text always gives the same id, so a todo list sent again
    with new statuses updates the same tasks.
    """
    digest = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:SLUG_HASH_CHARS]
    words = _SLUG_JUNK.sub("-", text.lower()).strip("-")[:SLUG_WORDS_CHARS].strip("-")
    candidate = f"todo-{words}-{digest}" if words else f"todo-{digest}"
    # The store also refuses ids shaped like secrets (a file name cannot be
    # redacted); a todo that mentions a token must still become a task.
    return candidate if ids.valid_task_id(candidate) else f"todo-{digest}"


def tool_call(call_id: str, name: str, inp: dict[str, Any]) -> P.ToolCall:
    """A ToolCall with its protocol-v1 raw dict."""
    raw = {"type": "tool_call", "id": call_id, "name": name, "input": inp}
    return P.ToolCall(raw, id=call_id, name=name, input=inp)


def tool_result(call_id: str, output: Any, is_error: bool) -> P.ToolResult:
    """A ToolResult with its protocol-v1 raw dict."""
    raw = {"type": "tool_result", "id": call_id, "output": output, "is_error": is_error}
    return P.ToolResult(raw, id=call_id, output=output, is_error=is_error)


def message(role: str, text: str) -> P.Message:
    """A Message with its protocol-v1 raw dict."""
    return P.Message({"type": "message", "role": role, "text": text}, role=role, text=text)


def log(level: str, text: str) -> P.Log:
    """A Log with its protocol-v1 raw dict."""
    return P.Log({"type": "log", "level": level, "text": text}, level=level, text=text)


def hello(agent: str, model: str | None = None, context_window: int | None = None) -> P.Hello:
    """A Hello with its protocol-v1 raw dict (absent fields left out of the raw)."""
    raw: dict[str, Any] = {"type": "hello", "agent": agent}
    if model is not None:
        raw["model"] = model
    if context_window is not None:
        raw["context_window"] = context_window
    return P.Hello(raw, agent=agent, model=model, context_window=context_window)


def stream_started(session_id: str, model: str | None) -> StreamStarted:
    """A StreamStarted with its raw dict."""
    raw = {"type": "stream_started", "session_id": session_id, "model": model}
    return StreamStarted(raw, session_id=session_id, model=model)


def task_update(task_id: str, fields: dict[str, Any]) -> P.TaskUpdate:
    """A TaskUpdate with its protocol-v1 raw dict."""
    return P.TaskUpdate({"type": "task", "id": task_id, **fields}, id=task_id, fields=fields)


def outcome_events(
    ok: bool, reason: str, text: str, *, error_text: str, extra: dict[str, Any] | None = None
) -> list[P.Event]:
    """The agent's verdict, plus `done` when it succeeded or an error `log` when it did not.

    The error log is what makes the distiller keep the failure verbatim;
    `error_text` is used when the verdict carries no text of its own.
    """
    raw: dict[str, Any] = {"type": "outcome", "ok": ok, "reason": reason, "text": text, **(extra or {})}
    events: list[P.Event] = [Outcome(raw, ok=ok, reason=reason, text=text)]
    if ok:
        events.append(P.Done({"type": "done", "summary": text}, summary=text))
    else:
        events.append(log("error", text or error_text))
    return events


# ---------------------------------------------------------------- adapter


class Adapter:
    """Turns one agent's stdout lines into protocol events; one instance per episode.

    Subclasses implement `_feed` (and `_finish` when they buffer); the public
    methods guarantee the contract the supervisor relies on: they never raise,
    and every event carries a small protocol-shaped `raw` dict for the ledger.
    """

    name: ClassVar[str] = ""
    # Only an agent that speaks the protocol gets commands on its stdin.
    speaks_protocol: ClassVar[bool] = False
    # Whether this format's Usage events are the real size of the agent's context.
    usage_is_context: ClassVar[bool] = False
    # Tokens the agent keeps in its context that never pass through its stdout (its own
    # instructions and tool schemas): where usage is not the context size, aether adds
    # this to its count. `--context-overhead` overrides it.
    context_overhead: ClassVar[int] = 0

    def feed(self, line: str) -> list[P.Event]:
        """Events for one stdout line (UTF-8 repaired, no newline); never raises."""
        try:
            return self._feed(line)
        except Exception as exc:
            # A format change or a value shape nobody foresaw must cost one
            # line, never the supervisor.
            return [self._invalid(line, exc)]

    def finish(self) -> list[P.Event]:
        """Events still buffered at the end of stdout; never raises."""
        try:
            return self._finish()
        except Exception as exc:
            return [self._invalid("", exc)]

    def _invalid(self, line: str, exc: Exception) -> P.Invalid:
        reason = f"{self.name} adapter: {type(exc).__name__}: {one_line(str(exc))[:INVALID_TEXT_CHARS]}"
        text = line[:INVALID_TEXT_CHARS]
        return P.Invalid({"type": "invalid", "reason": reason, "text": text}, reason=reason, text=text)

    def _feed(self, line: str) -> list[P.Event]:
        raise NotImplementedError

    def _finish(self) -> list[P.Event]:
        return []
