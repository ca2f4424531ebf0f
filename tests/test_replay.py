"""Replay recorded multi-episode Claude Code and Codex sessions through aether; check the next prompts.

The sessions are generated (seeded, `tests/replay/`), printed as each CLI
prints them, and replayed by `tests/agents/replay_agent.py`, which aether runs
as `claude` / `codex` and which saves every prompt it is launched with. An
extractor written for this test (not aether's detectors) reads the expected
facts of each checkpoint from the recorded lines: files written (every
source), unresolved errors, open todos, the user's instructions; each must
appear in the prompt of the launch after the checkpoint. Recall per category
is printed (`pytest -s`) and held to a floor.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import AGENTS
from replay.extract import (
    CATEGORIES,
    carries_path,
    carries_text,
    expected_per_checkpoint,
    first_error_line,
    shell_writes,
)
from replay.generate import generate
from replay.harness import WINDOWS, Score, load_fixture, replay, score, with_padding
from replay.render import render

GOAL = 0.95  # issue 11: every category, both formats
# Measured on main at 2622f0d (rules handoff, 2,000-token prompt cap), over LONG_SESSIONS:
#   claude: files 27.6%  errors 23.9%  todos 100%  instructions 100%
#   codex:  files 26.4%  errors 22.0%  todos 100%  instructions 100%
# With the rules handoff as a work log (issue 11, point 3), 100% in every category for both.
FLOOR = {fmt: dict.fromkeys(CATEGORIES, GOAL) for fmt in ("claude", "codex")}
# (seed, tool calls): the long sessions each format is replayed with.
LONG_SESSIONS = ((1, 200), (2, 380))


def run_session(project: Path, fmt: str, seed: int, calls: int) -> tuple[Score, int]:
    """Generate, replay and score one session; (its score, its number of episodes)."""
    session = generate(seed, calls, str(project), fmt)
    episodes = render(session, WINDOWS[fmt])
    run = replay(project, fmt, session.objective, episodes)
    assert run.returncode == 0, run.output[-3000:]
    assert len(run.prompts) == len(episodes), "one launch per recorded episode"
    assert run.extra_launches == 0
    assert run.prompts[0] == session.objective, "the first launch gets the user's own prompt"
    expected = expected_per_checkpoint(fmt, session.objective, session.cwd, episodes)
    s = score(expected, run.prompts)
    label = f"{fmt} seed {seed} ({session.calls} calls, {len(episodes)} episodes)"
    print(f"\n{s.line(label)}  {run.seconds:.1f}s")
    show_misses(s)
    return s, len(episodes)


def show_misses(s: Score, examples: int = 2) -> None:
    """Per category, how many distinct facts were lost at some checkpoint, and a few of them."""
    for category in CATEGORIES:
        lost = list(dict.fromkeys(f for m in s.misses for f in m[category]))
        if lost:
            shown = "; ".join(f[:100] for f in lost[:examples])
            print(f"    lost {category}: {len(lost)} distinct, e.g. {shown}")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["claude", "codex"])
def test_long_replays_keep_the_facts_in_the_next_prompt(tmp_path: Path, fmt: str) -> None:
    total = Score()
    for seed, calls in LONG_SESSIONS:
        project = tmp_path / f"{fmt}-{seed}"
        project.mkdir()
        s, _ = run_session(project, fmt, seed, calls)
        total.add(s)
    print(total.line(f"{fmt} all"))
    for category in CATEGORIES:
        assert total.recall(category) >= FLOOR[fmt][category], total.line(fmt)


def test_a_short_replay_runs_through_aether(project: Path) -> None:
    s, episodes = run_session(project, "claude", 3, 60)
    assert episodes >= 2
    assert sum(s.total.values()) > 0
    # The objective (the user's instructions in it) is carried verbatim.
    assert s.recall("instructions") == 1.0


# ------------------------------------------------------------------ hand-labelled fixtures


@pytest.mark.parametrize("name", ["claude_small", "codex_small"])
def test_the_extractor_agrees_with_hand_labels(name: str) -> None:
    labels, episodes = load_fixture(name)
    got = expected_per_checkpoint(labels["fmt"], labels["objective"], labels["cwd"], episodes)
    assert len(got) == len(labels["checkpoints"])
    for e, label in zip(got, labels["checkpoints"], strict=True):
        assert sorted(e.files) == sorted(label["files"]) and sorted(e.errors) == sorted(label["errors"])
        assert e.todos == label["todos"] and e.instructions == label["instructions"]


@pytest.mark.parametrize("name", ["claude_small", "codex_small"])
def test_a_hand_labelled_replay_through_aether(project: Path, name: str) -> None:
    labels, episodes = load_fixture(name)
    fmt = labels["fmt"]
    episodes = with_padding(fmt, episodes, WINDOWS[fmt])
    run = replay(project, fmt, labels["objective"], episodes)
    assert run.returncode == 0, run.output[-3000:]
    assert len(run.prompts) == len(episodes) and run.extra_launches == 0
    # The labels were written for the recording's own cwd; the prompt shows what it shows.
    s = score(expected_per_checkpoint(fmt, labels["objective"], labels["cwd"], episodes), run.prompts)
    print(f"\n{s.line(name)}")
    assert s.recall("instructions") == 1.0


# ------------------------------------------------------------------ the extractor, piece by piece


@pytest.mark.parametrize("fmt", ["claude", "codex"])
@pytest.mark.parametrize("seed", [1, 2, 5])
def test_the_extractor_agrees_with_the_generator(fmt: str, seed: int) -> None:
    # Two derivations: the generator's labels of what it did, the extractor's reading of the lines.
    session = generate(seed, 150, "/home/dev/ledgerline", fmt)
    got = expected_per_checkpoint(fmt, session.objective, session.cwd, render(session, WINDOWS[fmt]))
    assert len(got) == len(session.labels) >= 3
    for e, label in zip(got, session.labels, strict=True):
        assert sorted(e.files) == sorted(label.files)
        assert sorted(e.errors) == sorted(label.errors)
        assert e.todos == label.todos and e.instructions == label.instructions


def test_generated_sessions_are_deterministic_and_realistic() -> None:
    a = render(generate(2, 380, "/p", "claude"), WINDOWS["claude"])
    assert a == render(generate(2, 380, "/p", "claude"), WINDOWS["claude"])
    session = generate(2, 380, "/p", "codex")
    assert 150 <= session.calls <= 400 and len(session.episodes) >= 8
    last = session.labels[-1]
    assert len(last.files) >= 40 and last.errors and last.todos


@pytest.mark.parametrize(
    ("command", "written"),
    [
        ('echo "- x" >> CHANGELOG.md', ["CHANGELOG.md"]),
        ("ls > out.txt 2>&1", ["out.txt"]),
        ("make 2> err.log >/dev/null", ["err.log"]),
        ("sed -i 's/a/b/' src/x.py src/y.py", ["src/x.py", "src/y.py"]),
        ("sed -i.bak -e 's/a/b/' conf.ini", ["conf.ini"]),
        ("sed -n '1,20p' src/x.py", []),
        ("python gen.py | tee -a out/a.json out/b.json", ["out/a.json", "out/b.json"]),
        ("cp -r template/ build/site", ["build/site"]),
        ("mv src/a.py lib/", ["lib/a.py"]),
        ("FOO=1 sudo install -m 644 a.conf /etc/app/a.conf", ["/etc/app/a.conf"]),
        ("cat > run.sh <<'EOF'\necho hi > not-a-file.txt\nEOF\nchmod +x run.sh", ["run.sh"]),
        ("touch a.txt && cat a.txt", ["a.txt"]),
        ("echo 'unclosed > x.txt", []),
        ("grep -r foo . | wc -l", []),
        ("", []),
    ],
)
def test_shell_writes(command: str, written: list[str]) -> None:
    assert shell_writes(command) == written


@pytest.mark.parametrize(
    ("output", "line"),
    [
        (
            "Exit code 1\nE   KeyError: 'x'\nFAILED t.py::test_a - KeyError: 'x'\n1 failed",
            "FAILED t.py::test_a - KeyError: 'x'",
        ),
        (
            "Traceback (most recent call last):\n  File \"a.py\", line 1\nKeyError: 'currency'",
            "KeyError: 'currency'",
        ),
        ("src/a.py:3: error: bad type  [misc]\nFound 1 error", "src/a.py:3: error: bad type  [misc]"),
        ("cat: x: No such file or directory", "cat: x: No such file or directory"),
        ("Exit code 2\n\nsomething odd", "something odd"),
        ("Exit code 1", ""),
        ("", ""),
    ],
)
def test_first_error_line(output: str, line: str) -> None:
    assert first_error_line(output) == line


def test_what_counts_as_carried() -> None:
    prompt = "Modified: /tmp/p/src/x.py, docs/a.md\n- FAILED  t.py::test_a - KeyError: 'x'"
    assert carries_path(prompt, "src/x.py") and carries_path(prompt, "docs/a.md")
    assert not carries_path(prompt, "x.p") and not carries_path(prompt, "src/x.pyc")
    assert not carries_path("src/x.py.orig", "src/x.py") and not carries_path("mysrc/x.py", "src/x.py")
    assert carries_text(prompt, "failed t.py::test_a - KeyError: 'x'")
    assert not carries_text(prompt, "FAILED t.py::test_b")


@pytest.mark.parametrize("fmt", ["claude", "codex"])
def test_the_extractor_survives_hostile_lines(fmt: str) -> None:
    lines = [
        "not json",
        "[1, 2]",
        "null",
        '{"type": 3}',
        '{"type": "assistant", "message": "x"}',
        '{"type": "assistant", "message": {"content": [{"type": "tool_use", "id": 5, "input": []}]}}',
        '{"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "nope"}]}}',
        '{"type": "user", "message": {"content": 7}}',
        '{"type": "item.completed", "item": {"type": "command_execution", "command": 5}}',
        '{"type": "item.completed", "item": {"type": "file_change", "status": "completed", "changes": "x"}}',
        '{"type": "item.started", "item": {"type": "todo_list", "items": [null, {"text": 1}]}}',
        '{"type": "item.completed", "item": {"type": "command_execution", "command": "bash -lc \'x", '
        '"exit_code": 1, "aggregated_output": null}}',
        "x" * 100_000,
    ]
    got = expected_per_checkpoint(fmt, "Do it.", "/p", [lines, []])
    assert got[0].files == [] and got[0].todos == [] and got[0].instructions == ["Do it."]


# ------------------------------------------------------------------ the replay agent


def run_agent(project: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(AGENTS / "replay_agent.py"), *argv],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "REPLAY_WAIT_SECONDS": "0"},
    )


def test_the_replay_agent_without_a_recording_ends_an_empty_run(project: Path) -> None:
    res = run_agent(project, "-p", "-- a prompt that looks like a flag", "--output-format", "stream-json")
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert lines[-1]["type"] == "result" and (project / ".replay" / "extra_launches").read_text() == "1"
    # A prompt argument starting with "--" is an option, not the prompt: the (absent) prompt file is used.
    assert (project / ".replay" / "prompts" / "001.txt").read_text() == ""


def test_the_replay_agent_answers_a_codex_resume_without_spending_an_episode(project: Path) -> None:
    (project / ".replay" / "episodes").mkdir(parents=True)
    (project / ".replay" / "episodes" / "001.jsonl").write_text(
        '{"type": "thread.started", "thread_id": "t"}\n'
    )
    res = run_agent(project, "exec", "--json", "-c", "x=1", "resume", "t-123", "write your handoff")
    assert res.returncode == 0 and json.loads(res.stdout.splitlines()[0])["thread_id"] == "t-123"
    assert (project / ".replay" / "handoff" / "001.txt").read_text() == "write your handoff"
    assert not (project / ".replay" / "launches").exists()
    res = run_agent(project, "exec", "--json", "the prompt")
    assert res.returncode == 0 and res.stdout.strip() == '{"type": "thread.started", "thread_id": "t"}'
    assert (project / ".replay" / "prompts" / "001.txt").read_text() == "the prompt"


def test_the_replay_agent_takes_its_prompt_and_a_handoff_request_on_stream_json_stdin(project: Path) -> None:
    (project / ".replay" / "episodes").mkdir(parents=True)
    (project / ".replay" / "episodes" / "001.jsonl").write_text('{"type": "system", "subtype": "init"}\n')
    stdin = (
        "".join(
            json.dumps(obj) + "\n"
            for obj in (
                {"type": "user", "message": {"role": "user", "content": "the rehydrated prompt"}},
                {"type": "control_request", "request_id": "r1", "request": {"subtype": "interrupt"}},
                {
                    "type": "user",
                    "message": {"role": "user", "content": [{"type": "text", "text": "handoff?"}]},
                },
            )
        )
        + "not json\n"
    )
    res = subprocess.run(
        [sys.executable, str(AGENTS / "replay_agent.py"), "-p", "--input-format", "stream-json"],
        cwd=project, input=stdin, capture_output=True, text=True, timeout=30,
        env={"PATH": "/usr/bin:/bin", "REPLAY_WAIT_SECONDS": "5"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    kinds = [json.loads(line).get("type") for line in res.stdout.splitlines()]
    assert kinds == ["system", "control_response", "result", "assistant", "result"]
    assert (project / ".replay" / "prompts" / "001.txt").read_text() == "the rehydrated prompt"
    assert (project / ".replay" / "handoff" / "001.txt").read_text() == "handoff?"
