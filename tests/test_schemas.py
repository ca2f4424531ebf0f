"""The JSON Schemas of the protocol, the docs that describe it, and the example agent.

A tiny validator for the subset of JSON Schema the schemas use lives here (no
jsonschema dependency); it refuses keywords it does not implement, so a schema
can never be "valid" because a keyword was silently skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from aether_cli import protocol as P

REPO = Path(__file__).resolve().parents[1]
SCHEMA_DIR = REPO / "aether_cli" / "schemas"
DOCS = REPO / "docs" / "protocol.md"
AGENT = REPO / "tests" / "agents" / "minimal_agent.py"
ALL_TYPES = (*P.EVENT_TYPES, *P.COMMAND_TYPES, "text")

# ------------------------------------------------------------- validator

ANNOTATIONS = {"$schema", "$id", "title", "description"}
KEYWORDS = {
    "type", "required", "const", "enum", "properties", "items", "additionalProperties",
    "minimum", "maximum", "minLength", "pattern",
}


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float))
    raise ValueError(f"unknown type {name!r}")


def errors(value: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Every way `value` breaks `schema` (empty when valid)."""
    unknown = set(schema) - ANNOTATIONS - KEYWORDS
    if unknown:
        raise ValueError(f"validator does not implement {sorted(unknown)} (at {path})")
    out: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return [f"{path}: expected {'/'.join(types)}, got {type(value).__name__}"]
    if "const" in schema and not (
        value == schema["const"] and type(value) is type(schema["const"])
    ):
        out.append(f"{path}: expected {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not in {schema['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(f"{path}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(f"{path}: does not match {schema['pattern']}")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}: missing {key!r}")
        props = schema.get("properties", {})
        for key, sub in props.items():
            if key in value:
                out += errors(value[key], sub, f"{path}.{key}")
        if schema.get("additionalProperties") is False:
            out += [f"{path}: unexpected {k!r}" for k in value if k not in props]
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            out += errors(item, schema["items"], f"{path}[{i}]")
    return out


def check(message: dict[str, Any]) -> list[str]:
    return errors(message, P.schema(message["type"]))


def test_validator_catches_each_kind_of_error() -> None:
    schema = {
        "type": "object",
        "required": ["a", "b"],
        "properties": {
            "a": {"const": "x"},
            "b": {"type": "integer", "minimum": 0, "maximum": 3},
            "c": {"enum": ["p", "q"]},
            "d": {"type": "array", "items": {"type": "string", "minLength": 2}},
            "e": {"type": ["string", "null"], "pattern": "^[a-z]+$"},
            "f": {"type": "boolean"},
            "g": {"type": "number"},
        },
    }
    assert errors({"a": "x", "b": 1, "d": ["ok"], "e": None, "f": True, "g": 0.5}, schema) == []
    assert errors([], schema) == ["$: expected object, got list"]
    assert errors({"a": "x"}, schema) == ["$: missing 'b'"]
    assert errors({"a": "y", "b": 1}, schema) == ["$.a: expected 'x'"]
    assert errors({"a": "x", "b": True}, schema) == ["$.b: expected integer, got bool"]
    assert errors({"a": "x", "b": 4}, schema) == ["$.b: 4 > 3"]
    assert errors({"a": "x", "b": -1}, schema) == ["$.b: -1 < 0"]
    assert errors({"a": "x", "b": 1, "c": "r"}, schema) == ["$.c: 'r' not in ['p', 'q']"]
    assert errors({"a": "x", "b": 1, "d": ["ok", "n"]}, schema) == ["$.d[1]: shorter than 2"]
    assert errors({"a": "x", "b": 1, "d": ["ok", 3]}, schema) == [
        "$.d[1]: expected string, got int"
    ]
    assert errors({"a": "x", "b": 1, "e": "A1"}, schema) == ["$.e: does not match ^[a-z]+$"]
    assert errors({"a": "x", "b": 1, "f": 1}, schema) == ["$.f: expected boolean, got int"]
    assert errors({"a": "x", "b": 1, "g": "1"}, schema) == ["$.g: expected number, got str"]
    closed = {"type": "object", "properties": {"a": {}}, "additionalProperties": False}
    assert errors({"a": 1, "z": 2}, closed) == ["$: unexpected 'z'"]
    assert errors(1, {"const": True}) == ["$: expected True"]  # 1 == True, but not the same JSON


def test_validator_refuses_keywords_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="oneOf"):
        errors({}, {"oneOf": []})
    with pytest.raises(ValueError, match="unknown type"):
        errors(1, {"type": "decimal"})


# --------------------------------------------------------------- files


def test_one_schema_file_per_message_type() -> None:
    names = sorted(p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json"))
    assert names == sorted(ALL_TYPES)
    assert sorted(p.name for p in SCHEMA_DIR.iterdir()) == [f"{n}.schema.json" for n in names]


@pytest.mark.parametrize("name", ALL_TYPES)
def test_schema_file_is_well_formed(name: str) -> None:
    raw = (SCHEMA_DIR / f"{name}.schema.json").read_bytes()
    schema = json.loads(raw)
    assert schema == P.schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"urn:aether:protocol:1:{name}"
    assert schema["title"] and schema["description"]
    assert schema["type"] == "object"
    assert schema["properties"]["type"] == {"const": name}
    assert "type" in schema["required"]
    # Forward compatibility: unknown fields are allowed.
    assert schema.get("additionalProperties", True) is not False
    # Every required field is described, and the validator knows every keyword.
    assert set(schema["required"]) <= set(schema["properties"])
    errors({"type": name}, schema)


def test_unknown_schema_name_is_refused() -> None:
    with pytest.raises(KeyError):
        P.schema("nope")


# ------------------------------------------------------------ commands


def _one_line(data: bytes) -> dict[str, Any]:
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    obj = orjson.loads(data)
    assert isinstance(obj, dict)
    return obj


COMMANDS = {
    "start": [
        P.cmd_start(session="ses_1", episode=1, objective="o", prompt="p", checkpoint=None,
                    window=128_000, limit=102_400),
        P.cmd_start(session="ses_1", episode=3, objective="", prompt="line\nline",
                    checkpoint="chk_000002_1a2b3c4d", window=8000, limit=6400),
    ],
    "budget": [
        P.cmd_budget(used=76_800, window=128_000, level="soft"),
        P.cmd_budget(used=10, window=0, level="emergency"),
    ],
    "checkpoint_request": [P.cmd_checkpoint_request(reason="budget", deadline_ms=10_000)],
    "rehydrate": [P.cmd_rehydrate(episode=2, prompt="p", checkpoint="chk_000001_1a2b3c4d")],
    "stop": [P.cmd_stop(reason="done")],
}


def test_every_command_has_an_encoder_case() -> None:
    assert sorted(COMMANDS) == sorted(P.COMMAND_TYPES)


@pytest.mark.parametrize(
    ("name", "line"), [(n, line) for n, lines in COMMANDS.items() for line in lines]
)
def test_command_encoders_satisfy_their_schema(name: str, line: bytes) -> None:
    msg = _one_line(line)
    assert msg["type"] == name
    assert check(msg) == []


@pytest.mark.parametrize(
    "msg",
    [
        {"type": "start", "protocol": 2, "session": "s", "episode": 1, "objective": "",
         "prompt": "", "checkpoint": None, "budget": {"window": 1, "limit": 1}},
        {"type": "start", "protocol": 1, "session": "s", "episode": 0, "objective": "",
         "prompt": "", "checkpoint": None, "budget": {"window": 1}},
        {"type": "budget", "used": 1, "window": 2, "fraction": 0.5, "level": "hard"},
        {"type": "checkpoint_request", "reason": "budget", "deadline_ms": -1},
        {"type": "rehydrate", "episode": 2, "prompt": "p", "checkpoint": None},
        {"type": "stop"},
    ],
    ids=["start-protocol", "start-episode-and-limit", "budget-level", "deadline", "rehydrate",
         "stop"],
)
def test_bad_commands_fail_their_schema(msg: dict[str, Any]) -> None:
    assert check(msg) != []


# --------------------------------------------------------------- events

GOOD_EVENTS: list[dict[str, Any]] = [
    {"type": "hello", "agent": "a"},
    {"type": "hello", "agent": "a", "model": "m", "context_window": 200_000,
     "capabilities": ["rehydrate"], "vendor_field": {"x": 1}},
    {"type": "message", "role": "assistant", "text": "hi"},
    {"type": "message", "role": "user", "text": ""},
    {"type": "tool_call", "id": "c1", "name": "read", "input": {"path": "a.py"}},
    {"type": "tool_result", "id": "c1", "output": "text"},
    {"type": "tool_result", "id": "c1", "output": {"rows": [1, 2]}, "is_error": True},
    {"type": "usage", "context_tokens": 0},
    {"type": "usage", "context_tokens": 5000, "input_tokens": 10, "output_tokens": 2},
    {"type": "task", "id": "task_001", "status": "pending"},
    {"type": "task", "id": "fix-login.v2", "title": "t", "status": "done", "progress": 1,
     "next_action": "", "notes": "n", "files": ["a.py"]},
    {"type": "memory", "op": "add", "key": "k", "text": "fact", "pinned": True, "priority": 3},
    {"type": "memory", "op": "remove", "key": "k"},
    {"type": "checkpoint", "state": {"objective": "o", "progress": [], "state": {},
                                     "next_actions": ["n"]}},
    {"type": "checkpoint", "state": {"objective": "o", "progress": ["p"], "state": {"k": 1},
                                     "next_actions": [], "errors": ["e"],
                                     "resume_instructions": "r", "extra": 1}},
    {"type": "done"},
    {"type": "done", "summary": "s"},
    {"type": "log", "level": "info", "text": "t"},
    {"type": "text", "text": "plain line"},
]

BAD_EVENTS: list[dict[str, Any]] = [
    {"type": "hello"},
    {"type": "hello", "agent": "a", "capabilities": "rehydrate"},
    {"type": "message", "role": "robot", "text": "x"},
    {"type": "message", "role": "assistant"},
    {"type": "tool_call", "id": "c", "name": "n", "input": "not an object"},
    {"type": "tool_result", "id": "c"},
    {"type": "tool_result", "id": "c", "output": "", "is_error": "yes"},
    {"type": "usage", "context_tokens": -1},
    {"type": "usage", "context_tokens": "many"},
    {"type": "task", "id": "../escape", "status": "done"},
    {"type": "task", "id": "t", "status": "finished"},
    {"type": "task", "id": "t", "status": "done", "progress": 1.5},
    {"type": "task", "id": "t", "status": "done", "files": "a.py"},
    {"type": "memory", "op": "upsert", "key": "k"},
    {"type": "memory", "op": "add", "key": "k", "pinned": "yes"},
    {"type": "checkpoint", "state": "all good"},
    {"type": "checkpoint", "state": {"objective": "", "progress": [], "state": {},
                                     "next_actions": []}},
    {"type": "checkpoint", "state": {"objective": "o", "progress": [1], "state": {},
                                     "next_actions": []}},
    {"type": "checkpoint", "state": {"objective": "o", "progress": [], "next_actions": []}},
    {"type": "done", "summary": 3},
    {"type": "log", "text": "no level"},
    {"type": "text"},
]


def test_every_event_type_has_examples() -> None:
    assert {e["type"] for e in GOOD_EVENTS} == {*P.EVENT_TYPES, "text"}
    assert {e["type"] for e in BAD_EVENTS} == {*P.EVENT_TYPES, "text"}


@pytest.mark.parametrize("event", GOOD_EVENTS, ids=lambda e: e["type"])
def test_example_events_validate(event: dict[str, Any]) -> None:
    assert check(event) == []


@pytest.mark.parametrize("event", BAD_EVENTS, ids=lambda e: e["type"])
def test_bad_events_fail(event: dict[str, Any]) -> None:
    assert check(event) != []


@pytest.mark.parametrize(
    "event", [e for e in GOOD_EVENTS if e["type"] != "text"], ids=lambda e: e["type"]
)
def test_schema_valid_events_decode_cleanly(event: dict[str, Any]) -> None:
    """What the schemas accept, the decoder accepts too (never an Invalid event).

    `text` is left out: it is made by aether from non-JSON lines, and an agent
    that sends {"type": "text"} gets an ignored unknown type.
    """
    decoded = P.decode_line(orjson.dumps(event).decode())
    assert decoded.type == event["type"], decoded


# ------------------------------------------------------------------ docs


def _docs() -> str:
    return DOCS.read_text(encoding="utf-8")


def test_docs_example_agent_is_the_tested_file() -> None:
    m = re.search(r"<!-- minimal-agent:[^\n]*-->\n```python\n(.*?)```\n", _docs(), re.S)
    assert m, "the marked python block is missing from docs/protocol.md"
    assert m.group(1) == AGENT.read_text(encoding="utf-8")


def test_docs_json_examples_are_one_line_and_valid() -> None:
    blocks = re.findall(r"```json\n(.*?)```\n", _docs(), re.S)
    seen = set()
    for block in blocks:
        lines = block.strip("\n").split("\n")
        assert len(lines) == 1, block
        msg = json.loads(lines[0])
        assert check(msg) == [], (msg, check(msg))
        seen.add(msg["type"])
    assert seen == set(ALL_TYPES)


def test_docs_list_every_message_and_variable() -> None:
    docs = _docs()
    for name in ALL_TYPES:
        assert f"**`{name}`**" in docs, name
    for var in ("AETHER_PROTOCOL", "AETHER_SESSION", "AETHER_EPISODE", "AETHER_MEMORY_DIR",
                "AETHER_PROMPT_FILE", "AETHER_CHECKPOINT"):
        assert f"`{var}`" in docs, var


# ------------------------------------------------------- the example agent


def run_agent(stdin: bytes, *, close: bool = True) -> tuple[int, list[dict[str, Any]]]:
    """Run the minimal agent, hand it `stdin` in one write, return its exit code and events."""
    proc = subprocess.Popen(
        [sys.executable, str(AGENT)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    os.write(proc.stdin.fileno(), stdin)  # one write: the agent sees all of it at once
    if close:
        proc.stdin.close()
    events = []
    for raw in proc.stdout:
        events.append(orjson.loads(raw))
        if not close and events[-1]["type"] == "checkpoint":
            break
    if not close:
        os.write(proc.stdin.fileno(), P.cmd_stop(reason="relaunch"))
        proc.stdin.close()
        events += [orjson.loads(raw) for raw in proc.stdout]
    proc.stdout.close()
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    code = proc.wait()
    assert err == b"", err
    return code, events


START = P.cmd_start(session="ses_t", episode=1, objective="fix the bug", prompt="go",
                    checkpoint=None, window=1000, limit=800)


def test_minimal_agent_runs_to_done_with_valid_events() -> None:
    r, w = os.pipe()  # stdin stays open (an idle aether), so the agent never sees EOF
    try:
        os.write(w, START)
        proc = subprocess.run(
            [sys.executable, str(AGENT)], stdin=r, capture_output=True, check=False, timeout=60
        )
    finally:
        os.close(r)
        os.close(w)
    assert proc.returncode == 0, proc.stderr
    events = [orjson.loads(line) for line in proc.stdout.splitlines()]
    assert [e["type"] for e in events] == ["hello"] + [
        "task", "message", "tool_call", "tool_result", "task"
    ] * 3 + ["done"]
    for e in events:
        assert check(e) == [], e
        assert not isinstance(P.decode_obj(e, ""), (P.Invalid, P.Text, P.Unknown))


def test_minimal_agent_answers_checkpoint_request_then_waits_for_stop() -> None:
    request = P.cmd_checkpoint_request(reason="budget", deadline_ms=5000)
    code, events = run_agent(START + request, close=False)
    assert code == 0
    assert [e["type"] for e in events] == ["hello", "checkpoint"]
    state = events[1]["state"]
    assert state["objective"] == "fix the bug"
    assert state["next_actions"] == ["read the code", "write the fix", "run the tests"]
    assert check(events[1]) == []
    assert isinstance(P.decode_obj(events[1], ""), P.CheckpointEvent)


def test_minimal_agent_exits_on_stop() -> None:
    code, events = run_agent(START + P.cmd_stop(reason="user"))
    assert code == 0
    assert [e["type"] for e in events] == ["hello"]


def test_minimal_agent_treats_closed_stdin_as_stop() -> None:
    code, events = run_agent(START)
    assert code == 0
    assert [e["type"] for e in events] == ["hello"]
