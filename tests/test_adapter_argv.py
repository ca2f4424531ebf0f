"""The agent's command line: format detection, the prompt argument, placeholders, native resume."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aether_cli.adapters import detect_format
from aether_cli.adapters.argv import find_prompt_arg, json_flag_missing, prompt_objective
from aether_cli.adapters.prompt_argv import fill_placeholders, native_resume_argv, render_argv

PORT = "Port the test suite to pytest"
CLAUDE_ISSUE = [
    "claude", "-p", PORT, "--output-format", "stream-json", "--verbose", "--permission-mode", "acceptEdits",
]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "fmt"),
    [
        (CLAUDE_ISSUE, "claude"),
        (["/usr/local/bin/claude", "--output-format=stream-json", "--verbose", "-p", "x"], "claude"),
        (["claude", "-p", "x", "--output-format", "json"], "aether"),
        (["claude", "-p", "x"], "aether"),
        (["claude", "-p", "x", "--output-format"], "aether"),
        (["codex", "exec", "--json", PORT], "codex"),
        (["codex", "-c", "x=y", "exec", "--json", "P"], "codex"),
        (["codex", "exec", "--experimental-json", "P"], "codex"),
        (["codex", "exec", "--json", "resume", "ID", "P"], "codex"),
        (["codex", "exec", "P"], "aether"),
        (["codex", "--json", "P"], "aether"),
        (["codex", "exec", "--json"], "codex"),
        (["codex", "exec", "--", "--json"], "aether"),
        (["gemini", "-p", "x", "-o", "stream-json"], "gemini"),
        (["gemini", "--output-format", "stream-json", "x"], "gemini"),
        (["gemini", "--output-format=stream-json"], "gemini"),
        (["gemini", "-p", "x"], "aether"),
        (["python", "agent.py", "--output-format", "stream-json"], "aether"),
        (["node", "/x/claude/cli.js", "-p", "x", "--output-format", "stream-json"], "aether"),
        (["npx", "claude", "--output-format", "stream-json"], "aether"),
        ([], "aether"),
        ([""], "aether"),
    ],
)
def test_detect_format(argv: list[str], fmt: str) -> None:
    assert detect_format(argv) == fmt


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        ([*CLAUDE_ISSUE], None),
        (["claude", "-p", "x"], "claude needs --output-format stream-json --verbose to be supervised"),
        (["claude", "-p", "x", "--output-format", "stream-json"], "claude needs --verbose to be supervised"),
        (["claude", "--output-format", "stream-json", "--verbose"], "claude needs -p to be supervised"),
        (["codex", "exec", "--json", "P"], None),
        (["codex", "exec", "P"], "codex exec needs --json to be supervised"),
        (["codex", "P"], "codex needs `exec --json` to be supervised (codex exec --json PROMPT)"),
        (["gemini", "-p", "x"], "gemini needs --output-format stream-json to be supervised"),
        (["gemini", "-p", "x", "-o", "stream-json"], None),
        (["python", "agent.py"], None),
        ([], None),
    ],
)
def test_json_flag_missing(argv: list[str], hint: str | None) -> None:
    assert json_flag_missing(argv) == hint


@pytest.mark.parametrize(
    ("fmt", "argv", "index"),
    [
        # The issue's examples.
        ("claude", CLAUDE_ISSUE, 2),
        ("claude", [*CLAUDE_ISSUE, "--allowedTools", "Bash"], 2),
        (
            "claude",
            ["claude", "--output-format", "stream-json", "--allowedTools", "Bash", "Edit", "-p", "P"],
            7,
        ),
        ("claude", ["claude", "--allowedTools", "Bash", "Edit", "--verbose", "P"], 5),
        ("codex", ["codex", "exec", "--json", PORT], 3),
        ("codex", ["codex", "exec", "--json", "-m", "gpt-5.5", "-c", "x=y", "--skip-git-repo-check", "P"], 8),
        # claude: options and their values are not the prompt.
        ("claude", ["claude", "--model", "opus", "-p", "P"], 4),
        ("claude", ["claude", "-p", "--verbose", "P"], 3),
        ("claude", ["claude", "--allowedTools=Bash", "P", "--output-format", "stream-json"], 2),
        ("claude", ["claude", "--resume", "abc", "P"], 3),
        ("claude", ["claude", "--continue", "P"], 2),
        ("claude", ["claude", "--", "-odd prompt"], 2),
        # commander would take "P" as one more allowed tool: there is no prompt.
        ("claude", ["claude", "--allowedTools", "Bash", "P"], None),
        ("claude", ["claude", "--output-format", "stream-json", "--verbose", "-p"], None),
        ("claude", ["claude"], None),
        # codex
        ("codex", ["codex", "-c", "a=b", "exec", "--json", "P"], 5),
        ("codex", ["codex", "exec", "--json", "resume", "ID", "P"], 5),
        ("codex", ["codex", "exec", "--json", "resume", "--last", "P"], 5),
        ("codex", ["codex", "exec", "--json", "resume", "ID"], None),
        ("codex", ["codex", "exec", "--json", "P", "resume", "--last"], 3),
        ("codex", ["codex", "exec", "--json", "-"], 3),
        ("codex", ["codex", "exec", "-i", "a.png", "b.png", "--json", "P"], 6),
        ("codex", ["codex", "exec", "--json"], None),
        ("codex", ["codex", PORT], None),
        # gemini
        ("gemini", ["gemini", "-p", "P", "-o", "stream-json"], 2),
        ("gemini", ["gemini", "-o", "stream-json", "P"], 3),
        ("gemini", ["gemini", "--prompt=P", "-o", "stream-json"], 1),
        ("gemini", ["gemini", "-m", "x", "-o", "stream-json"], None),
        # formats without a known prompt argument
        ("aether", ["python", "agent.py", "P"], None),
        ("text", ["python", "agent.py", "P"], None),
        ("claude", [], None),
    ],
)
def test_find_prompt_arg(fmt: str, argv: list[str], index: int | None) -> None:
    assert find_prompt_arg(fmt, argv) == index


def test_render_placeholders_everywhere() -> None:
    argv = ["python", "agent.py", "--task", "{prompt}", "--file={prompt_file}", "again: {prompt}"]
    out = render_argv("aether", argv, prompt="do it", prompt_file="/tmp/p.md")
    assert out == ["python", "agent.py", "--task", "do it", "--file=/tmp/p.md", "again: do it"]
    assert argv[3] == "{prompt}", "the input list is left alone"


def test_render_does_not_expand_placeholders_inside_the_prompt() -> None:
    out = render_argv(
        "aether", ["a", "{prompt}", "{prompt_file}"], prompt="see {prompt_file}", prompt_file="/f"
    )
    assert out == ["a", "see {prompt_file}", "/f"]



def test_the_first_launch_fills_placeholders_the_same_way() -> None:
    # The first launch only fills placeholders (the user's own prompt argument stays).
    argv = ["claude", "-p", "{prompt}", "--append-system-prompt", "{prompt_file}", "--verbose"]
    out = fill_placeholders("claude", argv, prompt="see {prompt_file}", prompt_file="/f")
    assert out[2] == "see {prompt_file}" and out[4] == "/f"
    assert fill_placeholders("claude", ["claude", "-p", "Port it"], prompt="x", prompt_file="/f") == [
        "claude",
        "-p",
        "Port it",
    ]


def test_render_replaces_the_prompt_argument_without_placeholders() -> None:
    out = render_argv("claude", CLAUDE_ISSUE, prompt="NEW", prompt_file="/f")
    assert out == ["claude", "-p", "NEW", *CLAUDE_ISSUE[3:]]
    codex = render_argv("codex", ["codex", "exec", "--json", "-"], prompt="NEW", prompt_file="/f")
    assert codex == ["codex", "exec", "--json", "NEW"]
    gemini = render_argv(
        "gemini", ["gemini", "--prompt=old", "-o", "stream-json"], prompt="NEW", prompt_file="/f"
    )
    assert gemini == ["gemini", "--prompt=NEW", "-o", "stream-json"]


def test_render_a_prompt_file_placeholder_keeps_the_prompt_argument() -> None:
    argv = ["claude", "-p", "Read {prompt_file} and go on", "--output-format", "stream-json", "--verbose"]
    out = render_argv("claude", argv, prompt="NEW", prompt_file="/tmp/p.md")
    assert out[2] == "Read /tmp/p.md and go on"


def test_render_keeps_a_dash_prompt_from_reading_as_an_option() -> None:
    out = render_argv("claude", CLAUDE_ISSUE, prompt="- fix the tests", prompt_file="/f")
    assert out[2] == " - fix the tests"
    assert render_argv("claude", ["claude", "-p", "{prompt}"], prompt="-x", prompt_file="/f")[2] == " -x"
    # A prompt that is a subcommand's name would run it: `codex exec resume`.
    codex = render_argv("codex", ["codex", "exec", "--json", "P"], prompt="resume", prompt_file="/f")
    assert codex[3] == " resume" and find_prompt_arg("codex", codex) == 3
    # Only known CLIs get the guard; another program receives the prompt unchanged.
    assert render_argv("aether", ["agent", "{prompt}"], prompt="-x", prompt_file="/f") == ["agent", "-x"]


@pytest.mark.parametrize(
    ("fmt", "argv"),
    [
        ("claude", []),
        ("claude", ["claude"]),
        ("claude", ["claude", "--verbose", "--output-format", "stream-json"]),
        ("codex", ["codex", "exec", "--json"]),
        ("aether", ["python", "agent.py", "P"]),
    ],
)
def test_render_without_prompt_argument_is_a_copy(fmt: str, argv: list[str]) -> None:
    out = render_argv(fmt, argv, prompt="NEW", prompt_file="/f")
    assert out == argv and out is not argv


@pytest.mark.parametrize(
    ("fmt", "argv", "expected"),
    [
        (
            "claude",
            CLAUDE_ISSUE,
            ["claude", "--resume", "SID", "-p", "NEW", *CLAUDE_ISSUE[3:]],
        ),
        (
            "claude",
            ["claude", "--resume", "OLD", "-c", "-p", "P", "--output-format", "stream-json", "--verbose"],
            ["claude", "--resume", "SID", "-p", "NEW", "--output-format", "stream-json", "--verbose"],
        ),
        (
            "claude",
            ["claude", "--resume=OLD", "--session-id", "U", "-p", "{prompt}", "--continue"],
            ["claude", "--resume", "SID", "-p", "NEW"],
        ),
        (
            "claude",
            ["claude", "-p", "{prompt}", "--append-system-prompt", "{prompt_file}"],
            ["claude", "--resume", "SID", "-p", "NEW", "--append-system-prompt", "{prompt_file}"],
        ),
        ("claude", ["claude", "--output-format", "stream-json", "--verbose"], None),
        (
            "codex",
            ["codex", "exec", "--json", "-m", "gpt-5.5", "--skip-git-repo-check", "P"],
            ["codex", "exec", "--json", "-m", "gpt-5.5", "--skip-git-repo-check", "resume", "SID", "NEW"],
        ),
        (
            "codex",
            ["codex", "-c", "a=b", "exec", "--json", "resume", "OLD", "P", "-m", "x"],
            ["codex", "-c", "a=b", "exec", "--json", "-m", "x", "resume", "SID", "NEW"],
        ),
        (
            "codex",
            ["codex", "exec", "--json", "resume", "--last", "-i", "a.png", "P"],
            ["codex", "exec", "--json", "resume", "SID", "NEW"],
        ),
        (
            "codex",
            ["codex", "exec", "--json", "P", "resume", "--last"],
            ["codex", "exec", "--json", "resume", "SID", "NEW"],
        ),
        (
            "codex",
            ["codex", "exec", "--json", "P1", "resume", "OLD", "P2"],
            ["codex", "exec", "--json", "resume", "SID", "NEW"],
        ),
        ("codex", ["codex", "--json", "P"], None),
        ("gemini", ["gemini", "-p", "P", "-o", "stream-json"], None),
        ("aether", ["python", "agent.py"], None),
        ("text", ["python", "agent.py"], None),
        ("claude", [], None),
    ],
)
def test_native_resume_argv(fmt: str, argv: list[str], expected: list[str] | None) -> None:
    assert native_resume_argv(fmt, argv, session_id="SID", prompt="NEW") == expected


@pytest.mark.parametrize("session_id", ["", "-x", "--help", " padded", "id\n"])
def test_native_resume_refuses_odd_session_ids(session_id: str) -> None:
    assert native_resume_argv("claude", CLAUDE_ISSUE, session_id=session_id, prompt="NEW") is None
    assert (
        native_resume_argv("codex", ["codex", "exec", "--json", "P"], session_id=session_id, prompt="N")
        is None
    )


@pytest.mark.parametrize(
    ("fmt", "argv", "objective"),
    [
        ("claude", CLAUDE_ISSUE, PORT),
        ("claude", ["claude", "-p", "{prompt}", "--output-format", "stream-json"], None),
        ("claude", ["claude", "-p", "Follow {prompt_file}"], None),
        ("claude", ["claude", "--output-format", "stream-json", "--verbose"], None),
        ("codex", ["codex", "exec", "--json", PORT], PORT),
        ("codex", ["codex", "exec", "--json", "-"], None),
        ("gemini", ["gemini", "--prompt=Fix it", "-o", "stream-json"], "Fix it"),
        ("gemini", ["gemini", "-p", "   ", "-o", "stream-json"], None),
        ("aether", ["python", "agent.py", PORT], None),
        ("claude", [], None),
    ],
)
def test_prompt_objective(fmt: str, argv: list[str], objective: str | None) -> None:
    assert prompt_objective(fmt, argv) == objective


BASES = {
    "claude": CLAUDE_ISSUE,
    "codex": ["codex", "exec", "--json", "-m", "gpt-5.5", "P"],
    "gemini": ["gemini", "-p", "P", "-o", "stream-json"],
}
prompts = (
    st.text(min_size=1, max_size=80) | st.sampled_from(["-", "- item", "--help", "resume", "mcp"])
).filter(lambda s: s.strip() not in ("", "-") and "{prompt" not in s)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(BASES)), prompts)
def test_rendered_and_resumed_prompts_read_back(fmt: str, prompt: str) -> None:
    # Whatever the prompt, the agent's parser finds it where we put it.
    guarded = prompt.startswith("-") or prompt == {"claude": "mcp", "codex": "resume", "gemini": "mcp"}[fmt]
    expected = " " + prompt if guarded else prompt
    rendered = render_argv(fmt, BASES[fmt], prompt=prompt, prompt_file="/f")
    assert prompt_objective(fmt, rendered) == expected
    assert detect_format(rendered) == fmt
    resumed = native_resume_argv(fmt, BASES[fmt], session_id="0199-abc", prompt=prompt)
    if fmt == "gemini":
        assert resumed is None
    else:
        assert resumed is not None
        assert prompt_objective(fmt, resumed) == expected
        assert detect_format(resumed) == fmt
