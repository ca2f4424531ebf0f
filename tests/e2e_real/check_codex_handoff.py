"""The Codex handoff against the real CLI: `codex exec resume <thread>` asks the thread for its state.

A first `codex exec` does 3 steps of the scenario (the fake then says they are all done); the
handoff then runs against a fake that has 5 steps, so step 4 is pending. In the default mode the
fake answers the handoff request with JSON built from the conversation alone; with
FAKE_OPENAI_HANDOFF=ignore it ignores the request and tries step 4, which the read-only handoff
turn must refuse. What was done is read from steps.txt, never from aether's records.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from realcli import cli, codex_args, codex_env, explain, fake_server, json_lines, run_cli, steps_done

from aether_cli.codex_handoff import HandoffResult, run_handoff
from aether_cli.codex_rollout import RolloutWatcher

BASE, PER_TURN = 12_000, 100
PROMPT = 'Append "step K" to steps.txt for K = 1..5, one shell command each.'


def first_episode(project: Path, tmp_path: Path, *extra: str) -> tuple[str, dict[str, str]]:
    """Run `codex exec --json` to the end of its turn with 3 steps; its thread id and environment."""
    env = codex_env(tmp_path / "codex-home")
    with fake_server(
        "fake_openai.py", project, tmp_path / "first", steps=3, base_tokens=BASE, tokens_per_turn=PER_TURN
    ) as fake:
        argv = codex_args(fake.port, PROMPT)
        proc = run_cli([*argv[:2], *extra, *argv[2:]], env, project)
    assert proc.returncode == 0 and steps_done(project) == [1, 2, 3], explain(proc, fake, project)
    thread = json_lines(proc.stdout)[0]["thread_id"]
    return thread, env


def handoff(
    project: Path, tmp_path: Path, thread: str, env: dict[str, str], *extra: str
) -> tuple[HandoffResult, list[dict[str, Any]]]:
    """The handoff through a fresh fake with 5 steps; the result and the requests the fake got."""
    (tmp_path / "second").mkdir(exist_ok=True)
    with fake_server(
        "fake_openai.py", project, tmp_path / "second", steps=5, base_tokens=BASE, tokens_per_turn=PER_TURN
    ) as fake:
        argv = codex_args(fake.port, PROMPT)
        argv = [cli("codex"), *argv[1:2], *extra, *argv[2:]]
        result = run_handoff(argv, thread, env, project, timeout=120)
        return result, fake.records()


@pytest.fixture(autouse=True)
def _dirs(tmp_path: Path) -> None:
    (tmp_path / "first").mkdir()


def test_codex_writes_its_handoff_from_its_own_thread(project: Path, tmp_path: Path) -> None:
    thread, env = first_episode(project, tmp_path)
    result, requests = handoff(project, tmp_path, thread, env)

    assert result.reason == "" and result.state is not None, (result, requests)
    state = result.state
    assert state["objective"] == PROMPT
    assert [p for p in state["progress"] if "step" in p] == [
        f'Appended "step {k}" to steps.txt (exit code 0).' for k in (1, 2, 3)
    ]
    assert state["next_actions"][0] == 'Append "step 4" to steps.txt with one shell command.'
    assert steps_done(project) == [1, 2, 3]  # the handoff turn did no work

    asked = [r for r in requests if r.get("kind") == "handoff"]
    assert len(asked) == 1 and all(r["handoff_request"] for r in asked), requests
    # Its own cost, from Codex's rollout: the handoff request's input plus output.
    assert result.tokens == sum(r["tokens"] + r["output_tokens"] for r in requests if r.get("kind")), requests
    assert 0 < result.seconds < 120


def test_a_model_that_ignores_the_request_fails_closed_and_cannot_write(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread, env = first_episode(project, tmp_path)
    monkeypatch.setenv("FAKE_OPENAI_HANDOFF", "ignore")  # inherited by the fake server's process
    result, requests = handoff(project, tmp_path, thread, env)

    # Codex 0.169.0 prints no command_execution item for the command the sandbox refused, so
    # the reason cannot say a tool ran; the fake's log and the rollout show it did.
    assert result.state is None and result.reason.startswith("answer is not JSON"), (result, requests)
    assert [r.get("kind") for r in requests] == ["tool", "stopped"], requests
    assert steps_done(project) == [1, 2, 3]  # step 4 was tried, and the sandbox refused it
    rollout = next((tmp_path / "codex-home" / "sessions").rglob(f"*{thread}.jsonl")).read_bytes()
    assert b"Read-only file system" in rollout


def test_an_ephemeral_thread_cannot_be_resumed(project: Path, tmp_path: Path) -> None:
    thread, env = first_episode(project, tmp_path, "--ephemeral")
    assert not list((tmp_path / "codex-home").glob("sessions/**/*.jsonl"))

    refused, requests = handoff(project, tmp_path, thread, env, "--ephemeral")
    assert refused.state is None and "--ephemeral" in refused.reason and refused.seconds == 0
    assert requests == []

    # Without the flag on the command line, Codex itself says there is nothing to resume.
    result, requests = handoff(project, tmp_path, thread, env)
    assert result.state is None and requests == [], result
    assert result.reason.startswith("codex exec resume exited 1: Error: thread/resume"), result
    assert "no rollout found" in result.reason and "--ephemeral" in result.reason


def test_the_handoff_argv_passes_the_real_parser(project: Path, tmp_path: Path) -> None:
    thread, env = first_episode(project, tmp_path)
    extra = ["-o", str(tmp_path / "last.txt"), "--color", "never", "-c", 'sandbox_mode="danger-full-access"']
    result, _ = handoff(project, tmp_path, thread, env, *extra)
    assert result.state is not None, result
    assert not (tmp_path / "last.txt").exists()  # the user's -o was not repeated
    rollout = next((tmp_path / "codex-home").rglob(f"*{thread}.jsonl"))
    lines = [orjson.loads(ln) for ln in rollout.read_bytes().splitlines()]
    policies = [ln["payload"].get("sandbox_policy") for ln in lines if ln.get("type") == "turn_context"]
    assert policies[-1] == {"type": "read-only"}, policies


def stop_after_first_command(
    project: Path, tmp_path: Path, *, wait_for_record: bool
) -> tuple[str, dict[str, str]]:
    """Run Codex on 5 steps and SIGTERM its process group (as aether does) once a command completed.

    `wait_for_record`: first wait until the rollout shows the `token_count` Codex writes right
    after it records the command's output in the thread.
    """
    env = codex_env(tmp_path / "codex-home")
    watcher: RolloutWatcher | None = None
    with fake_server(
        "fake_openai.py", project, tmp_path / "first", steps=5, base_tokens=BASE, tokens_per_turn=PER_TURN
    ) as fake, subprocess.Popen(
        [cli("codex"), *codex_args(fake.port, PROMPT)[1:]], cwd=project, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    ) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = orjson.loads(raw)
            if line["type"] == "thread.started":
                watcher = RolloutWatcher(tmp_path / "codex-home", line["thread_id"], rescan_seconds=0.02)
            if line["type"] == "item.completed" and line["item"]["type"] == "command_execution":
                deadline = time.monotonic() + 20
                while wait_for_record and watcher and watcher.token_counts < 1:
                    assert time.monotonic() < deadline, watcher.note
                    watcher.poll()
                    time.sleep(0.005)
                os.killpg(proc.pid, signal.SIGTERM)
                break
        proc.wait(timeout=30)
    assert watcher is not None
    watcher.close()
    return watcher.thread_id, env


@pytest.mark.parametrize("wait_for_record", [False, True], ids=["at-item-completed", "after-token-count"])
def test_a_thread_stopped_mid_turn_still_writes_its_handoff(
    project: Path, tmp_path: Path, wait_for_record: bool
) -> None:
    thread, env = stop_after_first_command(project, tmp_path, wait_for_record=wait_for_record)
    done = steps_done(project)
    assert 1 <= len(done) < 5, done

    result, requests = handoff(project, tmp_path, thread, env)
    assert result.state is not None, (result, requests)
    said = [int(m) for p in result.state["progress"] for m in re.findall(r"step (\d+)", p)]
    nxt = int(re.findall(r"step (\d+)", result.state["next_actions"][0])[0])
    # What it says is done was done; what it says is next is at most one step back (a redo).
    assert set(said) <= set(done) and len(done) <= nxt <= len(done) + 1, (said, nxt, done)
    assert steps_done(project) == done
    if wait_for_record:
        # Stopped once Codex had recorded the output: the thread knows step 1 ran.
        assert 1 in said, (said, done)
