"""The fake `claude` (tests/agents/fake_claude.py) speaks Claude Code's stream-json input mode.

Driven directly, without aether's supervisor, with aether's own parts: the argv
`claude_input_argv` makes, the stdin lines of `claude_input`, the Claude adapter
reading what comes back (its `Ack` and `TurnEnd` events) and `parse_handoff`. The
sequences are those docs/adapters.md records from the real CLI 2.1.332.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import AGENTS

from aether_cli import protocol as P
from aether_cli.adapters import claude_input as CI
from aether_cli.adapters.base import TURN_HANDOFF, TURN_INTERRUPTED, TURN_WORK, Ack, TurnEnd
from aether_cli.adapters.claude import ClaudeAdapter
from aether_cli.adapters.prompt_argv import claude_input_argv
from aether_cli.handoff import handoff_request, parse_handoff
from aether_cli.tokens import estimate_tokens

FAKE = AGENTS / "fake_claude.py"
PROMPT = "Do the numbered steps"
WAIT = 20.0
MAX_TOKENS = 2000


class Driven:
    """The fake in input mode; every stdout line and the adapter's events, read on a thread."""

    def __init__(self, cwd: Path, *opts: str) -> None:
        user = ["claude", "-p", PROMPT, "--output-format", "stream-json", "--verbose", *opts]
        argv = claude_input_argv(user)
        assert PROMPT not in argv and "--input-format" in argv
        self.stderr = cwd / "fake.stderr"
        with self.stderr.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(FAKE), *argv[1:]],
                cwd=cwd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self.items: queue.Queue[tuple[dict, list[P.Event]] | None] = queue.Queue()
        self.lines: list[dict] = []  # every line read so far, through wait_for
        self.events: list[P.Event] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        adapter = ClaudeAdapter()
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            text = raw.decode().rstrip("\n")
            self.items.put((json.loads(text), adapter.feed(text)))
        self.items.put(None)

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def wait_for(self, want: Callable[[P.Event], bool], what: str) -> P.Event:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                item = self.items.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                pytest.fail(f"stdout ended waiting for {what}: {self.lines} {self.stderr.read_text()}")
            self.lines.append(item[0])
            for ev in item[1]:
                self.events.append(ev)
                if want(ev):
                    return ev
        pytest.fail(f"no {what} within {WAIT:g}s: {self.lines} {self.stderr.read_text()}")

    def turn_end(self, phase: str) -> TurnEnd:
        ev = self.wait_for(lambda e: isinstance(e, TurnEnd), f"a {phase} turn's end")
        assert isinstance(ev, TurnEnd) and ev.phase == phase, (ev, self.lines[-3:])
        return ev

    def close(self) -> int:
        """Close stdin; the exit code, once every remaining line was read."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=WAIT)
        while (item := self.items.get(timeout=WAIT)) is not None:
            self.lines.append(item[0])
            self.events.extend(item[1])
        self.shut()
        return code

    def shut(self) -> None:
        """Kill the fake if it still runs, and close its pipes once the reader is done."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=WAIT)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.reader.join(timeout=WAIT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def drive(tmp_path: Path) -> Iterator[Callable[..., Driven]]:
    """Starts the fake in `tmp_path`; whatever still runs at the end is killed."""
    started: list[Driven] = []

    def start(*opts: str) -> Driven:
        started.append(Driven(tmp_path, *opts))
        return started[-1]

    yield start
    for d in started:
        d.shut()


def steps(cwd: Path) -> list[str]:
    path = cwd / "steps.txt"
    return path.read_text().splitlines() if path.exists() else []


def jsonl(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def is_call(step: int) -> Callable[[P.Event], bool]:
    return lambda e: isinstance(e, P.ToolCall) and f"step {step}" in e.input.get("command", "")


def cut_at_step_2(d: Driven) -> tuple[str, P.ToolCall]:
    """Prompt, let step 1 finish, interrupt step 2's call while it runs: (request id, the call)."""
    d.send(CI.prompt_message(PROMPT))
    call = d.wait_for(is_call(2), "step 2's tool call")
    request_id, line = CI.interrupt_request()
    d.send(line)
    assert isinstance(call, P.ToolCall)
    return request_id, call


def ask_handoff(d: Driven) -> TurnEnd:
    d.send(CI.handoff_message(handoff_request(max_tokens=MAX_TOKENS, memory_dir=None)))
    d.wait_for(lambda e: isinstance(e, Ack) and e.what == "handoff", "the handoff request's echo")
    return d.turn_end(TURN_HANDOFF)


def parsed(end: TurnEnd) -> tuple[dict | None, str | None]:
    return parse_handoff(end.text, max_tokens=MAX_TOKENS, count=estimate_tokens)


def test_a_prompt_is_echoed_and_worked_then_the_fake_waits_for_stdin_to_end(
    tmp_path: Path, drive: Callable[..., Driven]
) -> None:
    d = drive("--steps", "3")
    d.send(CI.prompt_message(PROMPT))
    ack = d.wait_for(lambda e: isinstance(e, Ack), "the prompt's echo")
    assert isinstance(ack, Ack) and ack.what == "prompt"
    end = d.turn_end(TURN_WORK)
    assert end.ok and end.text == "All 3 steps done."
    assert steps(tmp_path) == ["step 1", "step 2", "step 3"]
    assert d.proc.poll() is None, "the real CLI waits for another message after a turn"
    assert d.close() == 0
    assert jsonl(tmp_path / "prompts.jsonl") == [PROMPT]
    sent = jsonl(tmp_path / "stdin.jsonl")
    assert [m["type"] for m in sent] == ["user"] and CI.message_kind(sent[0]["uuid"]) == "prompt"


def test_an_interrupt_cuts_the_tool_call_in_flight_and_ends_the_turn_as_interrupted(
    tmp_path: Path, drive: Callable[..., Driven]
) -> None:
    d = drive("--steps", "5", "--tool-seconds", "1")
    start = time.monotonic()
    request_id, call = cut_at_step_2(d)
    ack = d.wait_for(lambda e: isinstance(e, Ack) and e.what == "interrupt", "the control_response")
    assert isinstance(ack, Ack) and ack.ok and ack.id == request_id
    end = d.turn_end(TURN_INTERRUPTED)
    assert not end.ok and end.reason == "error_during_execution"
    assert d.lines[-1]["terminal_reason"] == "aborted_tools"
    # The call stays open (the checkpoint lists it as interrupted) and its step never ran.
    assert not any(isinstance(e, P.ToolResult) and e.id == call.id for e in d.events)
    assert steps(tmp_path) == ["step 1"]
    # Closing right after the cut turn: exit 1, as the real CLI does.
    assert d.close() == 1
    assert steps(tmp_path) == ["step 1"], "the cut step must not be appended later"
    assert time.monotonic() - start < 1 + 5 * 1, "cut at once, not after the remaining steps"
    assert [m["type"] for m in jsonl(tmp_path / "stdin.jsonl")] == ["user", "control_request"]


def test_an_interrupt_while_the_model_answers_ends_the_turn_as_streaming(
    drive: Callable[..., Driven],
) -> None:
    d = drive("--steps", "3", "--think-seconds", "30")
    d.send(CI.prompt_message(PROMPT))
    d.wait_for(lambda e: isinstance(e, Ack) and e.what == "prompt", "the prompt's echo")
    d.send(CI.interrupt_request()[1])
    d.turn_end(TURN_INTERRUPTED)
    assert d.lines[-1]["terminal_reason"] == "aborted_streaming"
    assert d.close() == 1


def test_an_interrupt_between_turns_gets_only_its_control_response(drive: Callable[..., Driven]) -> None:
    d = drive("--steps", "1")
    d.send(CI.prompt_message(PROMPT))
    d.turn_end(TURN_WORK)
    request_id, line = CI.interrupt_request()
    d.send(line)
    d.wait_for(lambda e: isinstance(e, Ack) and e.id == request_id, "the control_response")
    assert d.close() == 0, "the last turn succeeded"
    assert d.lines[-1]["type"] == "control_response" and d.lines[-1]["response"]["request_id"] == request_id


def test_the_handoff_request_after_the_cut_turn_is_answered_with_json_state(
    tmp_path: Path, drive: Callable[..., Driven]
) -> None:
    d = drive("--steps", "5", "--tool-seconds", "1")
    cut_at_step_2(d)
    d.turn_end(TURN_INTERRUPTED)
    end = ask_handoff(d)
    assert end.ok and end.input_tokens and end.seconds is not None
    state, reason = parsed(end)
    assert state is not None, reason
    assert state["progress"] == ["step 1 appended to steps.txt"], "only what it saw done"
    assert state["next_actions"][0].startswith("append step 2 ")
    assert state["state"]["files_modified"] == ["steps.txt"]
    assert d.close() == 0, "the last turn (the handoff) succeeded"
    assert steps(tmp_path) == ["step 1"]
    assert jsonl(tmp_path / "prompts.jsonl") == [PROMPT], "the handoff request is not a prompt"


@pytest.mark.parametrize("mode", ["ignore", "garbage"])
def test_a_handoff_answer_that_is_not_json_fails_to_parse(
    tmp_path: Path, drive: Callable[..., Driven], mode: str
) -> None:
    d = drive("--steps", "5", "--tool-seconds", "1", "--handoff-answer", mode)
    cut_at_step_2(d)
    d.turn_end(TURN_INTERRUPTED)
    end = ask_handoff(d)
    state, reason = parsed(end)
    assert state is None and reason
    if mode == "ignore":  # it kept working: step 2 ran, inside the handoff turn
        assert steps(tmp_path) == ["step 1", "step 2"] and "step 2" in end.text
    else:
        assert end.text == "not json {" and steps(tmp_path) == ["step 1"]
    assert d.close() == 0


def test_a_slow_handoff_answer_comes_after_its_delay(drive: Callable[..., Driven]) -> None:
    d = drive("--steps", "1", "--handoff-answer", "slow 0.5")
    d.send(CI.prompt_message(PROMPT))
    d.turn_end(TURN_WORK)
    asked = time.monotonic()
    end = ask_handoff(d)
    assert time.monotonic() - asked >= 0.5
    state, reason = parsed(end)
    assert state is not None, reason
    assert state["next_actions"] == ["nothing left: all 1 steps are in steps.txt"]
    assert d.close() == 0


def test_a_message_sent_while_a_turn_runs_is_taken_at_the_next_step_boundary(
    tmp_path: Path, drive: Callable[..., Driven]
) -> None:
    d = drive("--steps", "30", "--tool-seconds", "0.2")
    d.send(CI.prompt_message(PROMPT))
    d.wait_for(is_call(1), "step 1's tool call")
    end = ask_handoff(d)  # no interrupt: answered inside the running turn
    assert parsed(end)[0] is not None
    assert not any(isinstance(e, TurnEnd) and e.phase == TURN_WORK for e in d.events)
    echo = next(i for i, line in enumerate(d.lines) if line.get("isReplay") and i > 1)
    assert d.lines[echo - 1]["type"] == "user", "echoed after a tool_result, at a step boundary"
    assert len(steps(tmp_path)) < 30
    assert d.close() == 0


def test_a_plain_message_after_a_turn_starts_a_new_work_turn(
    tmp_path: Path, drive: Callable[..., Driven]
) -> None:
    d = drive("--steps", "2")
    d.send(CI.prompt_message(PROMPT))
    d.turn_end(TURN_WORK)
    d.send(CI.user_message("Carry on, please."))
    end = d.turn_end(TURN_WORK)
    assert end.ok and end.text == "All 2 steps done."
    assert sum(1 for line in d.lines if line.get("subtype") == "init") == 2, "each turn has its init"
    assert d.close() == 0
    assert jsonl(tmp_path / "prompts.jsonl") == [PROMPT]


def test_stdin_closed_before_any_message_exits_zero(drive: Callable[..., Driven]) -> None:
    d = drive()
    assert d.close() == 0 and d.lines == []


def test_the_prompt_argument_mode_is_unchanged(tmp_path: Path) -> None:
    argv = [sys.executable, str(FAKE), "-p", PROMPT, "--output-format", "stream-json", "--verbose"]
    res = subprocess.run(
        [*argv, "--steps", "2"], cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, timeout=WAIT
    )
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert lines[0]["subtype"] == "init" and lines[-1]["type"] == "result"
    assert lines[-1]["result"] == "All 2 steps done." and "terminal_reason" not in lines[-1]
    assert steps(tmp_path) == ["step 1", "step 2"]
    assert jsonl(tmp_path / "prompts.jsonl") == [PROMPT]
    assert not (tmp_path / "stdin.jsonl").exists()
