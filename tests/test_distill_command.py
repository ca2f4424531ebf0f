"""`--distill-command`: a model command distils the episode; its answer is checked, fail closed."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest
from corpus import expand, leftovers
from helpers import aether, read_json

from aether_cli.distill import CommandDistiller, distill
from aether_cli.distill_command import distill_prompt, extract_json, run_distill_command
from aether_cli.episode_log import EpisodeLog
from aether_cli.protocol import decode_obj

GOOD = {
    "objective": "Port the tests",
    "progress": ["ported tests/test_a.py"],
    "next_actions": ["port tests/test_b.py"],
    "state": {"decisions": ["keep fixtures in conftest.py"]},
    "errors": [],
    "resume_instructions": "run pytest first",
}


def count(text: str) -> int:
    return len(text) // 4 + 1


def model_script(tmp_path: Path, body: str) -> str:
    """A fake model command: a Python script that reads the prompt on stdin."""
    script = tmp_path / "model.py"
    script.write_text("import sys\nprompt = sys.stdin.read()\n" + body)
    return f"{sys.executable} {script}"


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (orjson.dumps(GOOD).decode(), True),
        ("Sure! Here it is:\n```json\n" + orjson.dumps(GOOD).decode() + "\n```\nDone.", True),
        (orjson.dumps({"type": "result", "result": orjson.dumps(GOOD).decode()}).decode(), True),
        ("", False),
        ("not json at all", False),
        ("[1, 2, 3]", False),
        ('{"objective": ', False),
    ],
)
def test_extract_json_takes_an_object_or_says_why_not(text: str, ok: bool) -> None:
    value, reason = extract_json(text)
    if ok:
        assert value == GOOD and reason is None
    else:
        assert value is None and reason


def test_the_command_gets_the_prompt_on_stdin_and_answers(tmp_path: Path) -> None:
    cmd = model_script(
        tmp_path,
        f"import json\nassert 'Port the tests' in prompt\nprint(json.dumps({GOOD!r}))\n",
    )
    value, reason = run_distill_command(cmd, "objective: Port the tests", timeout=30)
    assert reason is None and value == GOOD


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        ("sys.exit(3)\n", "exit 3"),
        ("import time\ntime.sleep(30)\n", "timed out"),
        ("print('I cannot help with that')\n", "not JSON"),
    ],
)
def test_a_failing_command_gives_a_reason_never_an_exception(tmp_path: Path, body: str, expect: str) -> None:
    value, reason = run_distill_command(model_script(tmp_path, body), "p", timeout=1)
    assert value is None and reason is not None and expect in reason


@pytest.mark.parametrize("cmd", ["", "   ", "'unclosed", "/no/such/model --flag"])
def test_a_bad_command_line_gives_a_reason(cmd: str) -> None:
    value, reason = run_distill_command(cmd, "p", timeout=5)
    assert value is None and reason


def episode_log() -> EpisodeLog:
    log = EpisodeLog(objective="Port the tests")
    for raw in (
        {"type": "tool_call", "id": "1", "name": "write_file", "input": {"path": "tests/test_a.py"}},
        {"type": "tool_result", "id": "1", "output": "ok"},
        {"type": "message", "role": "assistant", "text": "Ported test_a."},
    ):
        log.add(decode_obj(raw, ""))
    return log


def distill_episode(command: CommandDistiller | None = None) -> dict:
    """The budget checkpoint of `episode_log()`, asking `command` when one is given."""
    return distill(
        trigger="budget",
        objective="Port the tests",
        log=episode_log(),
        parent=None,
        count=count,
        max_tokens=2000,
        command=command,
    )


def test_distill_uses_a_valid_command_answer_and_keeps_aethers_facts() -> None:
    seen: list[dict] = []

    def ask(draft: dict) -> tuple[object, str | None]:
        seen.append(draft)
        return GOOD, None

    draft = distill_episode(ask)
    assert draft["distiller"] == "command"
    assert draft["next_actions"] == GOOD["next_actions"]
    assert "agent sent no checkpoint" in draft["distiller_note"]
    # What aether saw is merged in whatever the model said.
    assert "tests/test_a.py" in draft["state"]["files_modified"]
    assert seen and seen[0]["distiller"] == "rules"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"objective": "", "progress": ["x"]}, "objective is empty"),
        ({"objective": "x", "progress": [], "next_actions": []}, "no progress and no next_actions"),
        ({"objective": "x", "progress": ["y" * 40000]}, "oversized"),
        (None, "exit 1: boom"),
    ],
)
def test_distill_falls_back_to_rules_with_the_reason(answer: object, reason: str) -> None:
    def ask(_draft: dict) -> tuple[object, str | None]:
        return (answer, None) if answer is not None else (None, "exit 1: boom")

    draft = distill_episode(ask)
    assert draft["distiller"] == "rules"
    assert f"distill command: {reason}" in draft["distiller_note"]


def test_the_prompt_carries_the_objective_and_the_draft() -> None:
    draft = distill_episode()
    prompt = distill_prompt(draft, objective="Port the tests", max_tokens=900, memory_dir=None)
    assert "Port the tests" in prompt and "tests/test_a.py" in prompt and "900" in prompt
    assert "$" not in prompt.replace("$$", "")


@pytest.mark.slow
def test_a_run_with_a_distill_command_writes_command_checkpoints(project: Path, tmp_path: Path) -> None:
    # A text agent cannot answer checkpoint requests; the model command distils for it.
    cmd = model_script(
        tmp_path,
        "import json, re\n"
        "n = max([int(x) for x in re.findall(r'line (\\d+)', prompt)] or [0])\n"
        "print(json.dumps({'objective': 'count lines', 'progress': [f'printed up to line {n}'],"
        " 'next_actions': [f'print line {n + 1}']}))\n",
    )
    agent = (
        "import time\n"
        "for i in range(400):\n"
        "    print(f'line {i} ' + 'x' * 60, flush=True)\n"
        "    time.sleep(0.002)\n"
    )
    res = aether(
        "run",
        "--objective",
        "count lines",
        "--context-window",
        "3000",
        "--max-episodes",
        "2",
        "--format",
        "text",
        "--distill-command",
        cmd,
        "--",
        sys.executable,
        "-c",
        agent,
        env={"AETHER_STOP_GRACE": "1", "AETHER_TERM_GRACE": "1"},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    cks = [read_json(p) for p in sorted((project / ".memory" / "checkpoints").glob("chk_*.json"))]
    assert cks and cks[0]["distiller"] == "command", cks[0]["distiller_note"]
    assert cks[0]["next_actions"][0].startswith("print line ")
    prompt = (project / ".memory" / "runs" / "start.prompt").read_text()
    assert cks[0]["next_actions"][0] in prompt  # episode 2 started from the first checkpoint


def test_nothing_secret_in_the_draft_reaches_the_command() -> None:
    # The draft quotes the agent's words and errors verbatim; the command is another program.
    case = expand("export GITHUB_TOKEN=⟦ghs_{alnum:36}⟧", "aether-distill-draft")
    draft = distill_episode()
    draft["state"]["last_message"] = f"set {case.text}"
    draft["errors"] = [f"auth failed for {case.text}"]
    prompt = distill_prompt(draft, objective=f"Port the tests ({case.text})", max_tokens=900, memory_dir=None)
    assert not leftovers(prompt, case.secrets)
    assert "[REDACTED" in prompt and "tests/test_a.py" in prompt
