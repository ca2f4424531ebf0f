"""codex_handoff: the `codex exec resume` command line built from the user's, and running it.

`run_handoff` is driven here by a small stand-in `codex` (a real process printing what Codex
0.169.0 prints); the real CLI is checked in tests/e2e_real/check_codex_handoff.py.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aether_cli.codex_handoff import READ_ONLY, handoff_argv, parse_answer, request_text, run_handoff

THREAD = "01a24645-38fe-7c11-989a-3fefb198cf84"
REQ = "Write your handoff as JSON."
TAIL = ["--json", *READ_ONLY, "resume", THREAD, REQ]


def built(argv: list[str]) -> list[str]:
    command, why = handoff_argv(argv, THREAD, REQ)
    assert command is not None, why
    return command


# ------------------------------------------------------------ the command line


def test_provider_settings_model_and_repo_check_are_repeated_and_the_turn_is_read_only() -> None:
    provider = 'model_providers.fake={name="fake", base_url="http://127.0.0.1:1/v1", wire_api="responses"}'
    argv = ["codex", "exec", "--json", "--skip-git-repo-check", "--sandbox", "workspace-write",
            "-m", "gpt-5.5", "-c", "model_provider=fake", "-c", provider, "Do the task"]
    assert built(argv) == ["codex", "exec", "--skip-git-repo-check", "-m", "gpt-5.5",
                           "-c", "model_provider=fake", "-c", provider, *TAIL]


@pytest.mark.parametrize(
    "kept",
    [
        ["-c", "k=v"], ["-ck=v"], ["-c=k=v"], ["--config", "k=v"], ["--config=k=v"],
        ["--enable", "feat"], ["--disable=feat"], ["-m", "gpt-5.5"], ["--model=gpt-5.5"], ["-mgpt-5.5"],
        ["-p", "work"], ["--profile=work"], ["-C", "sub"], ["--cd=sub"], ["--oss"],
        ["--local-provider", "ollama"], ["--skip-git-repo-check"], ["--strict-config"],
        ["--ignore-user-config"], ["--ignore-rules"], ["--dangerously-bypass-hook-trust"],
        ["--some-future-flag"],
    ],
)
def test_every_form_of_a_kept_option_is_repeated_verbatim(kept: list[str]) -> None:
    assert built(["codex", "exec", "--json", *kept, "the prompt"]) == ["codex", "exec", *kept, *TAIL]


@pytest.mark.parametrize(
    "dropped",
    [
        ["-s", "workspace-write"], ["--sandbox", "danger-full-access"], ["--sandbox=workspace-write"],
        ["-sworkspace-write"], ["-s=danger-full-access"], ["--dangerously-bypass-approvals-and-sandbox"],
        ["--yolo"], ["--full-auto"], ["--approve-for-me"], ["--add-dir", "/elsewhere"], ["--add-dir=/x"],
        ["-o", "last.txt"], ["--output-last-message=last.txt"], ["--output-schema", "schema.json"],
        ["-i", "a.png", "b.png"], ["--image=a.png"], ["--color", "never"], ["--worktree"], ["--trust"],
        ["--thread-source", "user"], ["--cyber-access-program", "standard"], ["--experimental-json"],
        ["-c", 'sandbox_mode="workspace-write"'], ["-csandbox_mode=danger-full-access"],
        ["--config=sandbox_workspace_write.network_access=true"], ["-c", " 'sandbox_mode' = x"],
        ["-c", "permissions.default=write"],
    ],
)
def test_options_that_could_write_or_change_the_answer_are_dropped(dropped: list[str]) -> None:
    assert built(["codex", "exec", "--json", *dropped, "the prompt"]) == ["codex", "exec", *TAIL]


def test_root_options_stay_before_exec_minus_the_sandbox_and_approvals() -> None:
    argv = ["codex", "-c", "model=x", "-a", "never", "-s", "danger-full-access", "--search",
            "exec", "--json", "prompt"]
    assert built(argv) == ["codex", "-c", "model=x", "--search", "exec", *TAIL]


@pytest.mark.parametrize(
    "argv",
    [
        ["codex", "exec", "--json", "--", "-prompt that looks like a flag"],
        ["codex", "exec", "--json", "{prompt}"],
        ["codex", "exec", "--json"],
        ["codex", "exec", "--json", "-"],
        ["codex", "exec", "--json", "resume", "0000-old-thread-id", "go on"],
        ["codex", "exec", "--json", "resume", "--last", "go on"],
        ["codex", "exec", "resume", "--all", "--json", "0000-old-thread-id"],
        ["codex", "exec", "--json", "first prompt", "resume", "0000-old-thread-id", "go on"],
    ],
)
def test_the_prompt_and_an_earlier_resume_are_replaced(argv: list[str]) -> None:
    assert built(argv) == ["codex", "exec", *TAIL]


def test_options_given_after_an_earlier_resume_are_repeated_before_the_new_one() -> None:
    argv = ["codex", "exec", "resume", "--json", "-m", "gpt-5.5", "0000-old-thread-id", "go on"]
    assert built(argv) == ["codex", "exec", "-m", "gpt-5.5", *TAIL]


def test_a_value_option_is_not_mistaken_for_the_prompt() -> None:
    argv = ["codex", "exec", "--thread-source", "user", "--json", "-i", "x.png", "--", "prompt"]
    assert built(argv) == ["codex", "exec", *TAIL]


def test_a_request_that_looks_like_an_option_stays_a_value() -> None:
    command, _ = handoff_argv(["codex", "exec", "--json", "p"], THREAD, "--last")
    assert command is not None and command[-1] == " --last"


@pytest.mark.parametrize(
    "where", [["--ephemeral", "exec"], ["exec", "--ephemeral"], ["exec", "resume", "--ephemeral"]]
)
def test_an_ephemeral_thread_is_refused_with_the_reason(where: list[str]) -> None:
    command, why = handoff_argv(["codex", *where, "--json", "p"], THREAD, REQ)
    assert command is None and "--ephemeral" in why


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["codex", "--json", "do it"], "not a `codex exec`"),
        (["codex"], "not a `codex exec`"),
        ([], "not a `codex exec`"),
        (["codex", "exec", "review", "--json"], "codex exec review"),
        (["codex", "exec", "fork", "abc", "--json"], "codex exec fork"),
        (["codex", "exec", "--json", "-c", "instructions={prompt_file}", "p"], "placeholder"),
    ],
)
def test_command_lines_that_cannot_be_resumed_are_refused(argv: list[str], words: str) -> None:
    command, why = handoff_argv(argv, THREAD, REQ)
    assert command is None and words in why


@pytest.mark.parametrize("thread", ["", "--last", "../../x", "a b", "x" * 80, "abc"])
def test_a_thread_id_that_is_not_one_is_refused(thread: str) -> None:
    command, why = handoff_argv(["codex", "exec", "--json", "p"], thread, REQ)
    assert command is None and "thread id" in why


# ------------------------------------------------------------ the answer (handoff.parse_handoff)

STATE = {
    "objective": "Append the steps",
    "progress": ["steps 1-3 appended"],
    "next_actions": ["append step 4"],
    "files": ["steps.txt"],
    "errors": [],
}
# The answer as a checkpoint state: `files` under state.files_modified.
PARSED = {
    "objective": "Append the steps",
    "progress": ["steps 1-3 appended"],
    "next_actions": ["append step 4"],
    "errors": [],
    "resume_instructions": "",
    "state": {"files_modified": ["steps.txt"]},
}


def test_the_request_asks_for_one_json_object_with_the_checkpoint_keys() -> None:
    text = request_text()
    assert "JSON" in text and all(k in text for k in ("objective", "progress", "next_actions"))


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("Sure! I'll keep working.", "answer is not JSON"),
        ("", "empty answer"),
        ("[1, 2]", "answer is not JSON"),
        (json.dumps({**STATE, "files": "x"}), "files is not a list of strings"),
        (json.dumps({**STATE, "objective": ""}), "objective is empty"),
        (json.dumps({**STATE, "progress": [], "next_actions": []}), "no progress and no next_actions"),
        (json.dumps({**STATE, "progress": ["x " * 6_000]}), "oversized"),
        (json.dumps({**STATE, "progress": ["x" * 40_000]}), "answer too big"),
    ],
)
def test_a_bad_answer_is_refused_with_the_reason(answer: str, why: str) -> None:
    state, reason = parse_answer(answer)
    assert state is None and why in reason


def test_a_fenced_answer_is_read() -> None:
    assert parse_answer("Here it is:\n```json\n" + json.dumps(STATE) + "\n```") == (PARSED, "")


# ------------------------------------------------------------ running it (a stand-in codex)

FAKE_CODEX = """\
import json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_ARGS"], "w") as f:
    json.dump({"args": args, "stdin_tty": os.isatty(0), "stdin": sys.stdin.read()}, f)
mode = os.environ.get("FAKE_MODE", "answer")
rollout = os.environ.get("FAKE_ROLLOUT")
def out(obj):
    print(json.dumps(obj), flush=True)
out({"type": "thread.started", "thread_id": args[args.index("resume") + 1]})
if mode == "sleep":
    time.sleep(60)
if mode == "flood":
    line = "x" * 65535 + "\\n"
    for _ in range(200):
        sys.stdout.write(line)
if mode == "fail":
    sys.stderr.write("WARNING: noise\\n")
    sys.stderr.write("Error: thread/resume: thread/resume failed: no rollout found for thread id x\\n")
    sys.exit(1)
if rollout:
    with open(rollout, "a") as f:
        info = {"last_token_usage": {"input_tokens": 900, "output_tokens": 40},
                "total_token_usage": {"input_tokens": 10900, "output_tokens": 140, "total_tokens": 11040},
                "model_context_window": 1000}
        f.write(json.dumps({"type": "event_msg", "payload": {"type": "token_count", "info": info}}) + "\\n")
if mode == "work":
    out({"type": "item.started", "item": {"id": "i1", "type": "command_execution", "command": "echo x >> f",
         "status": "in_progress"}})
    out({"type": "item.completed", "item": {"id": "i1", "type": "command_execution",
         "command": "echo x >> f", "aggregated_output": "Read-only file system", "exit_code": 1,
         "status": "failed"}})
    out({"type": "item.completed", "item": {"id": "i2", "type": "agent_message", "text": "It failed."}})
elif mode in ("answer", "flood"):
    answer = os.environ["FAKE_ANSWER"]
    out({"type": "item.completed", "item": {"id": "i0", "type": "agent_message", "text": answer}})
out({"type": "turn.completed", "usage": {"input_tokens": 99999, "output_tokens": 1}})
"""


@pytest.fixture
def fake_codex(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "codex"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\n" + FAKE_CODEX)
    path.chmod(0o755)
    return path


def run(fake: Path, tmp_path: Path, mode: str, timeout: float = 30, **env: str) -> Any:
    full = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "CODEX_HOME": str(tmp_path / "codex-home"),
        "FAKE_ARGS": str(tmp_path / "args.json"),
        "FAKE_MODE": mode,
        "FAKE_ANSWER": json.dumps(STATE),
        **env,
    }
    argv = [str(fake), "exec", "--json", "-s", "workspace-write", "-c", "model_provider=fake", "prompt"]
    return run_handoff(argv, THREAD, full, tmp_path, timeout=timeout)


def test_a_valid_answer_is_returned_with_its_seconds(fake_codex: Path, tmp_path: Path) -> None:
    result = run(fake_codex, tmp_path, "answer")
    assert result.state == PARSED and result.reason == ""
    assert 0 < result.seconds < 30 and result.tokens is None  # no rollout file to measure with
    seen = json.loads((tmp_path / "args.json").read_text())
    assert seen["args"] == ["exec", "-c", "model_provider=fake", *TAIL[:-1], request_text()]
    assert seen["stdin"] == "" and not seen["stdin_tty"]


def test_the_handoff_tokens_come_from_the_rollout_thread_total(fake_codex: Path, tmp_path: Path) -> None:
    day = tmp_path / "codex-home" / "sessions" / "2026" / "12" / "05"
    day.mkdir(parents=True)
    rollout = day / f"rollout-2026-12-05T12-54-31-{THREAD}.jsonl"
    info = {"last_token_usage": {"input_tokens": 800}, "total_token_usage": {"total_tokens": 10_000}}
    before = {"type": "event_msg", "payload": {"type": "token_count", "info": info}}
    rollout.write_text(json.dumps(before) + "\n")
    result = run(fake_codex, tmp_path, "answer", FAKE_ROLLOUT=str(rollout))
    assert result.state == PARSED and result.tokens == 1_040


def test_an_answer_that_is_not_json_fails_closed_and_says_the_model_worked_instead(
    fake_codex: Path, tmp_path: Path
) -> None:
    result = run(fake_codex, tmp_path, "work")
    assert result.state is None
    assert result.reason == "answer is not JSON (it ran 1 tool call(s) instead of answering)"


def test_a_hanging_codex_is_stopped_at_the_timeout(fake_codex: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    result = run(fake_codex, tmp_path, "sleep", timeout=1.0)
    assert result.state is None and result.reason == "codex exec resume timed out after 1s"
    assert time.monotonic() - start < 10


def test_a_flood_of_output_is_cut_off(
    fake_codex: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("aether_cli.codex_handoff.MAX_STDOUT", 1 << 20)
    result = run(fake_codex, tmp_path, "flood")
    assert result.state is None and "printed more than" in result.reason


def test_a_thread_codex_cannot_find_is_refused_with_its_own_error(fake_codex: Path, tmp_path: Path) -> None:
    result = run(fake_codex, tmp_path, "fail")
    assert result.state is None
    assert result.reason.startswith("codex exec resume exited 1: Error: thread/resume")
    assert "--ephemeral" in result.reason


def test_a_missing_program_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    result = run(tmp_path / "no-such-codex", tmp_path, "answer")
    assert result.state is None and result.reason.startswith("cannot start")


def test_a_refused_command_line_runs_nothing(fake_codex: Path, tmp_path: Path) -> None:
    argv = [str(fake_codex), "exec", "--ephemeral", "--json", "p"]
    result = run_handoff(argv, THREAD, {"FAKE_ARGS": str(tmp_path / "args.json")}, tmp_path)
    assert result.state is None and "--ephemeral" in result.reason and result.seconds == 0
    assert not (tmp_path / "args.json").exists()

