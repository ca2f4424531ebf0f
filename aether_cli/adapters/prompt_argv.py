"""The agent's command line, written: this launch's prompt put in, or the agent's own resume.

Pure functions over an argv list: no I/O, no processes. `{prompt}` and
`{prompt_file}` placeholders are filled in where the user wrote them;
without any, the prompt argument `argv.prompt_location` finds is replaced.
`native_resume_argv` builds the command that continues the agent's own
session (Claude Code's `--resume`, Codex's `exec resume`). `claude_input_argv`
turns a Claude command into one whose messages come on stdin as stream-json
(the prompt is then sent, not written). Where an argument is and what each
CLI's parser makes of it is `argv`'s business.
"""

from __future__ import annotations

import re

from aether_cli.adapters.argv import (
    CLAUDE,
    PLACEHOLDER,
    PROMPT,
    claude_input_mode,
    codex_layout,
    is_option,
    prompt_location,
    safe_value,
    skip_option,
    walk,
)

_CLAUDE_SESSION_FLAGS = ("--continue", "-c")
_CLAUDE_SESSION_OPTIONS = ("--resume", "-r", "--session-id")
_CLAUDE_INPUT_FORMAT = "--input-format"
# Echo each stdin message back with its uuid: how the adapter knows which turn is which.
_CLAUDE_REPLAY = "--replay-user-messages"


def _fill(arg: str, prompt: str, prompt_file: str | None) -> str:
    # One pass, so a prompt that itself contains "{prompt_file}" is left as written.
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == PROMPT:
            return prompt
        return prompt_file if prompt_file is not None else m.group(0)

    return PLACEHOLDER.sub(sub, arg)


def fill_placeholders(fmt: str, argv: list[str], *, prompt: str, prompt_file: str) -> list[str]:
    """`{prompt}` and `{prompt_file}` filled in wherever they appear, in one pass (a prompt
    holding "{prompt_file}" stays as written); a bare `{prompt}` that looks like an option
    is kept from being read as one."""
    return [safe_value(fmt, prompt) if a == PROMPT else _fill(a, prompt, prompt_file) for a in argv]


def render_argv(fmt: str, argv: list[str], *, prompt: str, prompt_file: str) -> list[str]:
    """A new argv with this launch's prompt in it.

    `{prompt}` and `{prompt_file}` are replaced inside every argument; without
    any placeholder, the agent's own prompt argument (if it has one) is
    replaced by `prompt`.
    """
    if any(PLACEHOLDER.search(a) for a in argv):
        return fill_placeholders(fmt, argv, prompt=prompt, prompt_file=prompt_file)
    out = list(argv)
    loc = prompt_location(fmt, argv)
    if loc is not None:
        index, prefix = loc
        out[index] = prefix + prompt if prefix else safe_value(fmt, prompt)
    return out


def native_resume_argv(fmt: str, argv: list[str], *, session_id: str, prompt: str) -> list[str] | None:
    """The command that continues the agent's own session `session_id` with `prompt`, or None.

    claude: `--resume ID` right after the program, any earlier --resume,
    --continue or --session-id dropped, the prompt argument replaced.
    codex: `codex [root opts] exec [exec opts] resume ID PROMPT` (clap only
    takes exec's own options before the subcommand), an earlier resume and
    prompt dropped. `{prompt_file}` placeholders are left for `render_argv`.
    None for other formats, a session id that could pass for an option, or a
    claude command whose prompt cannot be found.
    """
    if not session_id or is_option(session_id) or session_id.strip() != session_id:
        return None
    if fmt == "claude":
        return _claude_resume(argv, session_id, prompt)
    if fmt == "codex":
        return _codex_resume(argv, session_id, prompt)
    return None


def claude_input_argv(argv: list[str]) -> list[str]:
    """`argv` (a claude command) reading its messages from stdin: `--input-format stream-json`.

    The prompt argument (a written prompt or a bare `{prompt}`) is dropped, since
    the prompt is sent as the first user message; any other input format is
    replaced; `--replay-user-messages` is added. `-p`, the output flags and every
    other argument stay as written, so `argv.json_flag_missing` reads the result
    as it read the original. A command already in input mode gets only what it lacks.
    """
    drop: set[int] = set()
    already = claude_input_mode(argv)

    def input_format(i: int) -> int | None:
        if not already and argv[i].split("=", 1)[0] == _CLAUDE_INPUT_FORMAT:
            nxt = skip_option(argv, i, CLAUDE)
            drop.update(range(i, nxt))
            return nxt
        return None

    walk(argv, 1, CLAUDE, input_format)
    loc = prompt_location("claude", argv)
    if loc is not None and not loc[1]:
        drop.add(loc[0])
    kept = [a for i, a in enumerate(argv) if i not in drop and not (i > 0 and a == PROMPT)]
    if kept[-1:] == ["--"]:
        kept.pop()  # it only introduced the prompt
    extra = [] if already else [_CLAUDE_INPUT_FORMAT, "stream-json"]
    if _CLAUDE_REPLAY not in kept[1:]:
        extra.append(_CLAUDE_REPLAY)
    # Before any `--`: what follows it is positional.
    end = kept.index("--") if "--" in kept[1:] else len(kept)
    return [*kept[:end], *extra, *kept[end:]]


def _codex_resume(argv: list[str], session_id: str, prompt: str) -> list[str] | None:
    layout = codex_layout(argv)
    if layout is None:
        return None
    drop = set(layout.resume_indices)
    if layout.prompt_index is not None:
        drop.add(layout.prompt_index)
    kept = [
        _fill(a, prompt, None)
        for i, a in enumerate(argv)
        if i not in drop and not (i > layout.exec_index and a == "--")
    ]
    return [*kept, "resume", session_id, safe_value("codex", prompt)]


def _claude_resume(argv: list[str], session_id: str, prompt: str) -> list[str] | None:
    drop: set[int] = set()

    def session_option(i: int) -> int | None:
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg in _CLAUDE_SESSION_FLAGS:
            drop.add(i)
            return i + 1
        if name in _CLAUDE_SESSION_OPTIONS:
            nxt = skip_option(argv, i, CLAUDE)
            drop.update(range(i, nxt))
            return nxt
        return None

    walk(argv, 1, CLAUDE, session_option)
    kept = [a for i, a in enumerate(argv) if i not in drop]
    if claude_input_mode(kept):
        # The prompt is sent on stdin, not written: resume the session without one.
        return [kept[0], "--resume", session_id, *kept[1:]]
    if any(PROMPT in a for a in kept):
        body = [safe_value("claude", prompt) if a == PROMPT else _fill(a, prompt, None) for a in kept[1:]]
    else:
        loc = prompt_location("claude", kept)
        if loc is None:
            return None
        body = kept[1:]
        body[loc[0] - 1] = safe_value("claude", prompt)
    return [kept[0], "--resume", session_id, *body]
