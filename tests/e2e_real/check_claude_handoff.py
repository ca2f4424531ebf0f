"""The real Claude Code in stream-json input mode, driven through the whole handoff sequence.

Not through aether's supervisor (the episode state machine wires these pieces in): this check
drives the real CLI with aether's own parts, against the fake Anthropic server slowed so a tool
call is in flight: `claude_input_argv` (input mode), `claude_input` (the stdin lines), the Claude
adapter (its `Ack` and `TurnEnd` events), `handoff_request` and `parse_handoff`.

    prompt -> tool_use -> interrupt -> the interrupted turn's result -> handoff request
           -> the handoff turn's result -> parse_handoff -> close stdin -> exit 0

Once with a fake that answers the handoff from the conversation, once with one that ignores it
and keeps working (the parse fails closed with a reason). The handoff turn's seconds and tokens
are printed (`pytest -s`): they go into the checkpoint's metrics.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from realcli import FAKES, Fake, claude_args, claude_env, cli, steps_done

from aether_cli import protocol as P
from aether_cli.adapters import claude_input as CI
from aether_cli.adapters.base import TURN_HANDOFF, TURN_INTERRUPTED, Ack, TurnEnd
from aether_cli.adapters.claude import ClaudeAdapter
from aether_cli.adapters.prompt_argv import claude_input_argv
from aether_cli.handoff import handoff_request, parse_handoff
from aether_cli.tokens import estimate_tokens

STEPS, BASE, PER_TURN, TOOL_SLEEP = 3, 12_000, 100, 6
MAX_TOKENS = 2000
PROMPT = f'Append "step K" to steps.txt for K = 1..{STEPS}, one Bash command each.'
WAIT = 60.0


@contextmanager
def fake_anthropic(workdir: Path, tmp: Path, handoff: str) -> Iterator[Fake]:
    """tests/fakes/fake_anthropic.py with a slow tool and the given handoff behaviour."""
    port_file, log = tmp / "fake.port", tmp / "fake.requests.jsonl"
    with (tmp / "fake.stderr").open("w") as stderr:
        argv = [
            sys.executable,
            str(FAKES / "fake_anthropic.py"),
            "--port=0",
            f"--workdir={workdir}",
            f"--steps={STEPS}",
            f"--base-tokens={BASE}",
            f"--tokens-per-turn={PER_TURN}",
            f"--tool-sleep={TOOL_SLEEP}",
            f"--handoff={handoff}",
            f"--port-file={port_file}",
            f"--log={log}",
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 20
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"fake server did not start: {(tmp / 'fake.stderr').read_text()}")
                time.sleep(0.05)
            yield Fake(int(port_file.read_text()), log)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


@dataclass
class Driven:
    """The real CLI, its stdin, and the adapter's events as they come (read on a thread)."""

    proc: subprocess.Popen[bytes]
    events: queue.Queue[tuple[float, P.Event] | None] = field(default_factory=queue.Queue)
    seen: list[P.Event] = field(default_factory=list)
    reader: threading.Thread = field(default_factory=threading.Thread)

    def send(self, data: bytes) -> float:
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(data)
        stdin.flush()
        return time.monotonic()

    def wait_for(self, want: Callable[[P.Event], bool], what: str) -> tuple[float, P.Event]:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                item = self.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                pytest.fail(f"claude's stdout ended while waiting for {what}; saw {self.kinds()}")
            self.seen.append(item[1])
            if want(item[1]):
                return item
        pytest.fail(f"no {what} within {WAIT:g}s; saw {self.kinds()}")

    def close(self) -> None:
        """Close the pipes once the process is gone (the reader thread ends on EOF)."""
        for pipe in (self.proc.stdin, self.proc.stderr):
            if pipe is not None and not pipe.closed:
                pipe.close()
        self.reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def kinds(self) -> list[str]:
        return [e.type for e in self.seen]


def drive(argv: list[str], env: dict[str, str], cwd: Path) -> Driven:
    proc = subprocess.Popen(
        [cli(argv[0]), *argv[1:]],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    driven = Driven(proc)

    def read(out: IO[bytes]) -> None:
        adapter = ClaudeAdapter()
        for raw in out:
            for ev in adapter.feed(raw.decode("utf-8", "replace").rstrip("\n")):
                driven.events.put((time.monotonic(), ev))
        driven.events.put(None)

    assert proc.stdout is not None
    driven.reader = threading.Thread(target=read, args=(proc.stdout,), daemon=True)
    driven.reader.start()
    return driven


def run_sequence(project: Path, tmp_path: Path, handoff: str) -> tuple[Driven, TurnEnd, float, Fake]:
    """Drive the sequence up to the handoff turn's end; returns it and its wall-clock seconds."""
    with fake_anthropic(project, tmp_path, handoff) as fake:
        argv = claude_input_argv(claude_args("{prompt}"))
        assert "{prompt}" not in argv and "--input-format" in argv
        driven = drive(argv, claude_env(fake.port), project)
        try:
            driven.send(CI.prompt_message(PROMPT))
            driven.wait_for(lambda e: isinstance(e, Ack) and e.what == "prompt", "the prompt's echo")
            driven.wait_for(lambda e: isinstance(e, P.ToolCall), "a tool_use")
            request_id, line = CI.interrupt_request()
            sent = driven.send(line)
            driven.wait_for(
                lambda e: isinstance(e, Ack) and e.id == request_id, "the interrupt's control_response"
            )
            ended, turn = driven.wait_for(lambda e: isinstance(e, TurnEnd), "the interrupted turn's result")
            assert isinstance(turn, TurnEnd) and turn.phase == TURN_INTERRUPTED, turn.raw
            # The call in flight was cut, not waited for: its sleep alone is TOOL_SLEEP seconds.
            assert ended - sent < TOOL_SLEEP / 2, ended - sent
            asked = driven.send(CI.handoff_message(handoff_request(max_tokens=MAX_TOKENS, memory_dir=None)))
            driven.wait_for(
                lambda e: isinstance(e, Ack) and e.what == "handoff", "the handoff request's echo"
            )
            answered, last = driven.wait_for(lambda e: isinstance(e, TurnEnd), "the handoff turn's result")
            assert isinstance(last, TurnEnd) and last.phase == TURN_HANDOFF, last.raw
            stdin = driven.proc.stdin
            assert stdin is not None
            stdin.close()
            rc = driven.proc.wait(timeout=WAIT)
            stderr = driven.proc.stderr.read() if driven.proc.stderr else b""
            assert rc == 0, (rc, stderr.decode("utf-8", "replace")[-2000:])
        finally:
            if driven.proc.poll() is None:
                driven.proc.kill()
                driven.proc.wait()
            driven.close()
    return driven, last, answered - asked, fake


def report(mode: str, turn: TurnEnd, wall: float, reason: str | None) -> None:
    print(
        f"\nclaude handoff ({mode}): {wall:.2f}s wall, {turn.seconds}s by the CLI, "
        f"{turn.input_tokens} input + {turn.output_tokens} output tokens; parse: {reason or 'ok'}"
    )


def test_claude_interrupts_then_writes_its_handoff(project: Path, tmp_path: Path) -> None:
    driven, turn, wall, fake = run_sequence(project, tmp_path, "answer")
    state, reason = parse_handoff(turn.text, max_tokens=MAX_TOKENS, count=estimate_tokens)
    report("answer", turn, wall, reason)
    assert reason is None and state is not None, (reason, turn.text)
    assert state["objective"] == PROMPT
    # The cut step is not done: it is the next action, and nothing was appended.
    assert state["progress"] == [] and "step 1" in state["next_actions"][0], state
    assert steps_done(project) == []
    # The stopped call got no result: it stays open, the checkpoint lists it as interrupted.
    assert [e.type for e in driven.seen if isinstance(e, P.ToolResult)] == []
    assert [r["kind"] for r in fake.records() if r["kind"] != "side"] == ["tool", "handoff"]
    assert turn.seconds is not None and turn.input_tokens and turn.output_tokens


def test_a_handoff_request_ignored_fails_closed(project: Path, tmp_path: Path) -> None:
    _, turn, wall, fake = run_sequence(project, tmp_path, "ignore")
    state, reason = parse_handoff(turn.text, max_tokens=MAX_TOKENS, count=estimate_tokens)
    report("ignore", turn, wall, reason)
    assert state is None and reason == "answer is not JSON", (reason, turn.text)
    # It kept working through the handoff turn: the steps are done, once each.
    assert steps_done(project) == list(range(1, STEPS + 1))
    assert "handoff" not in [r["kind"] for r in fake.records()]
