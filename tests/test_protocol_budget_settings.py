"""Unit tests for protocol decoding, the budget and settings precedence."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aether_cli import protocol as P
from aether_cli.budget import CHECKPOINT, EMERGENCY, SOFT, Budget
from aether_cli.errors import UsageError
from aether_cli.settings import Settings, build_settings, read_config, window_for_model

# ------------------------------------------------------------------ protocol


def test_every_event_type_decodes_to_its_class() -> None:
    lines = {
        '{"type":"hello","agent":"a","capabilities":["rehydrate"]}': P.Hello,
        '{"type":"message","role":"assistant","text":"hi"}': P.Message,
        '{"type":"tool_call","id":"1","name":"read","input":{"path":"a"}}': P.ToolCall,
        '{"type":"tool_result","id":"1","output":"x","is_error":true}': P.ToolResult,
        '{"type":"usage","context_tokens":1200}': P.Usage,
        '{"type":"task","id":"t1","status":"done","progress":2}': P.TaskUpdate,
        '{"type":"memory","op":"add","key":"k","text":"t","pinned":true}': P.MemoryOp,
        '{"type":"checkpoint","state":{"objective":"o"}}': P.CheckpointEvent,
        '{"type":"done","summary":"ok"}': P.Done,
        '{"type":"log","level":"error","text":"bad"}': P.Log,
        '{"type":"future_thing","x":1}': P.Unknown,
    }
    for line, cls in lines.items():
        ev = P.decode_line(line)
        assert type(ev) is cls, line
        assert ev.raw == orjson.loads(line)
    task = P.decode_line('{"type":"task","id":"t1","status":"done","progress":2}')
    assert isinstance(task, P.TaskUpdate) and task.fields == {"status": "done", "progress": 1.0}


@pytest.mark.parametrize(
    "line",
    [
        "plain words",
        "{torn json",
        "[1, 2, 3]",
        '"just a string"',
        '{"no_type": 1}',
        '{"type": 5}',
    ],
)
def test_non_protocol_lines_become_text(line: str) -> None:
    ev = P.decode_line(line)
    assert isinstance(ev, P.Text) and ev.text == line


@pytest.mark.parametrize(
    "line",
    [
        '{"type":"message","role":"robot","text":"x"}',
        '{"type":"message","text":5}',
        '{"type":"tool_call","name":"x","input":[1]}',
        '{"type":"usage","context_tokens":-1}',
        '{"type":"usage","context_tokens":NaN}',
        '{"type":"task","id":"t","status":"finished"}',
        '{"type":"task","id":"t","files":"a.py"}',
        '{"type":"memory","op":"upsert","key":"k"}',
        '{"type":"checkpoint","state":"all good"}',
        '{"type":"tool_result","id":"1","is_error":"yes"}',
    ],
)
def test_wrong_field_types_are_invalid_not_errors(line: str) -> None:
    ev = P.decode_line(line)
    assert isinstance(ev, P.Invalid | P.Text)
    if isinstance(ev, P.Invalid):
        assert ev.reason


@given(st.text(max_size=300))
def test_decode_line_never_raises(text: str) -> None:
    ev = P.decode_line(text)
    assert isinstance(ev, P.Event)
    P.counted_text(ev)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
        max_leaves=20,
    ),
    st.sampled_from([*P.EVENT_TYPES, "x"]),
)
def test_decode_of_any_object_with_a_known_type_never_raises(value: object, etype: str) -> None:
    obj = value if isinstance(value, dict) else {"v": value}
    obj = {**obj, "type": etype}
    ev = P.decode_obj(obj, orjson.dumps(obj).decode())
    assert isinstance(ev, P.Event)


def test_commands_are_single_json_lines() -> None:
    for data in (
        P.cmd_start(
            session="s", episode=1, objective="o", prompt="p\nq", checkpoint=None, window=10, limit=8
        ),
        P.cmd_budget(used=5, window=10, level="soft"),
        P.cmd_checkpoint_request(reason="budget", deadline_ms=1000),
        P.cmd_rehydrate(episode=2, prompt="p", checkpoint="chk_000001_00000000"),
        P.cmd_stop(reason="budget"),
    ):
        assert data.endswith(b"\n") and data.count(b"\n") == 1
        assert orjson.loads(data)["type"] in P.COMMAND_TYPES
    assert orjson.loads(P.cmd_budget(used=5, window=10, level="soft"))["fraction"] == 0.5


def test_counted_text_covers_calls_and_results() -> None:
    call = P.decode_line('{"type":"tool_call","id":"1","name":"grep","input":{"q":"needle"}}')
    assert "grep" in P.counted_text(call) and "needle" in P.counted_text(call)
    res = P.decode_line('{"type":"tool_result","id":"1","output":{"lines":["a"]}}')
    assert P.counted_text(res) == '{"lines":["a"]}'
    assert P.counted_text(P.decode_line('{"type":"log","level":"info","text":"x"}')) == ""
    # A malformed event is counted as the text it was (the supervisor and recovery alike).
    bad = P.decode_line('{"type":"tool_call","id":7,"name":"grep"}')
    assert isinstance(bad, P.Invalid) and P.counted_text(bad) == bad.text != ""


# ------------------------------------------------------------------ budget


def test_thresholds_fire_once_each_in_order() -> None:
    b = Budget(window=1000, soft_at=0.6, checkpoint_at=0.8, emergency_at=0.95)
    b.reset(100)
    assert b.crossed() == []
    b.add(500)
    assert b.crossed() == [SOFT]
    b.add(10)
    assert b.crossed() == []
    b.add(400)
    assert b.crossed() == [CHECKPOINT, EMERGENCY]
    b.reset(50)
    assert b.used == 50 and b.crossed() == []


def test_usage_report_replaces_the_estimate() -> None:
    b = Budget(window=1000, soft_at=0.6, checkpoint_at=0.8, emergency_at=0.95)
    b.reset(100)
    b.add(300)
    b.report(850)
    assert b.used == 850 and b.reported
    b.add(20)
    assert b.used == 870
    assert b.crossed() == [SOFT, CHECKPOINT]


def test_step_limit() -> None:
    b = Budget(window=1000, soft_at=0.6, checkpoint_at=0.8, emergency_at=0.95, max_steps=2)
    assert not b.step()
    assert b.step()


# ------------------------------------------------------------------ settings


def test_precedence_flags_env_config_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("[run]\ncontext_window = 5000\nsoft_at = 0.5\nmax_restarts = 9\nunknown_key = 1\n")
    s = build_settings({"soft_at": 0.55}, config_path=cfg, environ={"AETHER_MAX_RESTARTS": "2"})
    assert (s.context_window, s.soft_at, s.max_restarts, s.checkpoint_at) == (5000, 0.55, 2, 0.8)


def test_config_is_read_but_never_for_the_agent_command(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[run]\ncommand = ["touch", "x"]\nobjective = "Do\\nit"\nconstraints = ["no prod"]\n')
    read = build_settings({}, config_path=cfg)
    assert read.command == () and read.objective == "Do\nit" and read.constraints == ("no prod",)


def test_model_window_lookup() -> None:
    assert window_for_model("claude-sonnet-4-5") == 200_000
    assert window_for_model("gpt-4o-mini") == 128_000
    assert window_for_model("gpt-4") == 8_192
    assert window_for_model("mystery") is None
    assert Settings(model="mystery").window == 128_000
    assert Settings(model="gpt-4o", context_window=1000).window == 1000


@pytest.mark.parametrize(
    "flags",
    [
        {"context_window": 10},
        {"soft_at": 0.0},
        {"checkpoint_at": 1.5},
        {"soft_at": 0.9, "checkpoint_at": 0.8},
        {"max_steps": 0},
        {"max_restarts": -1},
    ],
)
def test_bad_settings_are_usage_errors(flags: dict) -> None:
    with pytest.raises(UsageError):
        build_settings(flags)


def test_bad_config_file_is_a_usage_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("[run\nbroken")
    with pytest.raises(UsageError, match="not valid TOML"):
        read_config(cfg)
    cfg.write_text('[run]\ncontext_window = "big"\n')
    with pytest.raises(UsageError, match="context_window"):
        read_config(cfg)
    with pytest.raises(UsageError, match="AETHER_SOFT_AT"):
        build_settings({}, environ={"AETHER_SOFT_AT": "lots"})


def test_the_default_config_documents_real_keys(tmp_path: Path) -> None:
    from aether_cli.store import DEFAULT_CONFIG_TOML

    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and ("=" in line or line.startswith("# [")) else line
        for line in DEFAULT_CONFIG_TOML.splitlines()
    )
    cfg = tmp_path / "config.toml"
    cfg.write_text(uncommented)
    read = read_config(cfg)
    assert "command" not in read
    assert {
        "objective",
        "model",
        "context_window",
        "soft_at",
        "checkpoint_at",
        "emergency_at",
        "checkpoint_timeout",
        "max_restarts",
        "on_checkpoint",
        "on_done",
        "hook_timeout",
    } <= read.keys()
    assert build_settings({}, config_path=cfg).context_window == 128_000


@pytest.mark.parametrize("value", [2**53, 2**64, 2**64 + 1, 10**30, 1e300])
@pytest.mark.parametrize("field", ["context_tokens", "input_tokens", "output_tokens"])
def test_a_count_out_of_range_makes_the_event_malformed_not_clamped(field: str, value: float) -> None:
    wire = {"type": "usage", "context_tokens": 10, field: value}
    ev = P.decode_line(json.dumps(wire))
    assert isinstance(ev, P.Invalid) and "out of range" in ev.reason


def test_the_largest_count_allowed_still_decodes() -> None:
    ev = P.decode_line(json.dumps({"type": "usage", "context_tokens": 2**53 - 1}))
    assert isinstance(ev, P.Usage) and ev.context_tokens == 2**53 - 1
