"""The agent's command line, read: which format it prints and where its prompt is.

Pure functions over an argv list: no I/O, no processes. Each CLI is parsed the
way its own argument parser would (Claude Code: commander, Codex: clap,
Gemini CLI: yargs), as far as finding the prompt needs: which options take a
value, which take every value up to the next option, and where positionals
start. Options we do not know are taken as flags, which is what they almost
always are. Writing a new prompt into a command line is `prompt_argv`'s job;
this module only reads one (and says how a value must look to be read back
as a value).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

PROMPT = "{prompt}"
PROMPT_FILE = "{prompt_file}"
PLACEHOLDER = re.compile(r"\{prompt(?:_file)?\}")
# Executable suffixes a wrapper or another platform may add to the name.
_EXE_SUFFIXES = (".exe", ".cmd")


@dataclass(frozen=True)
class Options:
    """Which options of one CLI (or subcommand) consume the arguments after them."""

    values: frozenset[str] = frozenset()  # exactly one value
    optional: frozenset[str] = frozenset()  # one value if the next argument is not an option
    variadic: frozenset[str] = frozenset()  # values up to the next option


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


CLAUDE = Options(
    values=_names(
        "--output-format --input-format --permission-mode --model --fallback-model --max-turns"
        " --append-system-prompt --system-prompt --session-id --settings --permission-prompt-tool"
        " --agents --agent --setting-sources --max-budget-usd --json-schema --system-prompt-file"
        " --append-system-prompt-file --debug-file"
    ),
    # commander's `[value]` options: `--resume` alone opens the picker.
    optional=_names("--resume -r --debug -d"),
    variadic=_names(
        "--allowedTools --allowed-tools --disallowedTools --disallowed-tools --add-dir --tools"
        " --mcp-config --betas --plugin-dir --file"
    ),
)
_CLAUDE_PRINT = ("-p", "--print")

# `codex [root options] exec [exec options] [PROMPT]` and
# `codex exec [exec options] resume [SESSION_ID] [PROMPT]` (clap; exec's -i takes 1.. values).
_CODEX_SHARED = _names(
    "-c --config --enable --disable -m --model -p --profile -s --sandbox -C --cd --add-dir"
    " --local-provider --oss-provider"
)
CODEX_ROOT = Options(values=_CODEX_SHARED | _names("-a --ask-for-approval"), variadic=_names("-i --image"))
CODEX_EXEC = Options(
    values=_CODEX_SHARED | _names("--output-schema --color -o --output-last-message"),
    variadic=_names("-i --image"),
)
CODEX_RESUME = Options(values=CODEX_EXEC.values | _names("-i --image"))
_CODEX_JSON = ("--json", "--experimental-json")
_CODEX_RESUME_ONLY = _names("--last --all -i --image")

GEMINI = Options(
    values=_names(
        "-m --model -p --prompt -i --prompt-interactive -o --output-format --approval-mode -r --resume"
        " --delete-session --telemetry-target --telemetry-otlp-endpoint --telemetry-otlp-protocol"
        " --telemetry-outfile --proxy"
    ),
    variadic=_names("-e --extensions --include-directories --allowed-tools --allowed-mcp-server-names"),
)
_GEMINI_PROMPT = ("-p", "--prompt")


# ------------------------------------------------------------ parsing


def is_option(arg: str) -> bool:
    # A lone "-" is a value (stdin), not an option.
    return arg.startswith("-") and arg != "-"


def walk(
    argv: Sequence[str], start: int, opts: Options, on_option: Callable[[int], int | None] | None = None
) -> list[int]:
    """Indices of the positional arguments from `start` on, skipping options and their values.

    `on_option(i)` is called for each option first; a non-None return is the
    index to continue from (the caller consumed the option itself).
    """
    found: list[int] = []
    i = start
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            found.extend(range(i + 1, len(argv)))
            break
        if not is_option(arg):
            found.append(i)
            i += 1
            continue
        if on_option is not None:
            nxt = on_option(i)
            if nxt is not None:
                i = nxt
                continue
        i = skip_option(argv, i, opts)
    return found


def skip_option(argv: Sequence[str], i: int, opts: Options) -> int:
    """The index after option `argv[i]` and the values it consumes."""
    arg = argv[i]
    if "=" in arg:
        return i + 1
    if arg in opts.values:
        return i + 2
    if arg in opts.optional:
        return i + 2 if i + 1 < len(argv) and not is_option(argv[i + 1]) else i + 1
    if arg in opts.variadic:
        i += 1
        while i < len(argv) and not is_option(argv[i]):
            i += 1
        return i
    return i + 1


def _program(argv: Sequence[str]) -> str:
    """The basename of argv[0], lower-cased, without a Windows executable suffix."""
    if not argv:
        return ""
    name = os.path.basename(argv[0]).lower()
    for suffix in _EXE_SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def _option_value_is(argv: Sequence[str], names: tuple[str, ...], value: str) -> bool:
    """Whether an option in `names` is given `value` (`--opt value` or `--opt=value`)."""
    for i, arg in enumerate(argv[1:], start=1):
        if arg in names and i + 1 < len(argv) and argv[i + 1] == value:
            return True
        if any(arg == f"{name}={value}" for name in names):
            return True
    return False


@dataclass(frozen=True)
class CodexLayout:
    """Where `exec`, the prompt and a `resume` subcommand's own arguments are."""

    exec_index: int
    prompt_index: int | None
    resume_indices: frozenset[int]


def codex_layout(argv: Sequence[str]) -> CodexLayout | None:
    root = walk(argv, 1, CODEX_ROOT)
    if not root or argv[root[0]] != "exec":
        return None
    exec_index = root[0]
    found = walk(argv, exec_index + 1, CODEX_EXEC)
    # `exec [PROMPT] resume …` is accepted too: a prompt may come before the subcommand.
    resume = next((i for i in found[:2] if argv[i] == "resume"), None)
    if resume is None:
        return CodexLayout(exec_index, found[0] if found else None, frozenset())
    parent_prompt = found[0] if found[0] != resume else None
    # `resume [SESSION_ID] [PROMPT]`; with --last the one positional is the prompt.
    rest = walk(argv, resume + 1, CODEX_RESUME)
    owned = {resume, *rest}
    last = False
    i = resume + 1
    while i < len(argv) and argv[i] != "--":
        arg = argv[i]
        nxt = skip_option(argv, i, CODEX_RESUME) if is_option(arg) else i + 1
        if arg.split("=", 1)[0] in _CODEX_RESUME_ONLY:
            owned.update(range(i, nxt))
            last = last or arg == "--last"
        i = nxt
    own_prompt = rest[0] if last and rest else (rest[1] if len(rest) > 1 else None)
    if own_prompt is None:
        return CodexLayout(exec_index, parent_prompt, frozenset(owned))
    # Two prompts: resume's own is the one sent; the other goes with the resume.
    if parent_prompt is not None:
        owned.add(parent_prompt)
    return CodexLayout(exec_index, own_prompt, frozenset(owned))


def prompt_location(fmt: str, argv: Sequence[str]) -> tuple[int, str] | None:
    """(index, prefix) of the prompt: the prompt is `argv[index][len(prefix):]`."""
    if len(argv) < 2:
        return None
    if fmt == "claude":
        hit: list[int] = []

        def after_print(i: int) -> int | None:
            # `-p PROMPT`: commander reads it as the positional prompt.
            if argv[i] in _CLAUDE_PRINT and i + 1 < len(argv) and not is_option(argv[i + 1]):
                hit.append(i + 1)
                return len(argv)
            return None

        found = walk(argv, 1, CLAUDE, after_print)
        if hit and (not found or hit[0] < found[0]):
            return hit[0], ""
        return (found[0], "") if found else None
    if fmt == "codex":
        layout = codex_layout(argv)
        if layout is None or layout.prompt_index is None:
            return None
        return layout.prompt_index, ""
    if fmt == "gemini":
        flagged: list[tuple[int, str]] = []

        def prompt_flag(i: int) -> int | None:
            arg = argv[i]
            for name in _GEMINI_PROMPT:
                if arg.startswith(name + "="):
                    flagged.append((i, name + "="))
                    return len(argv)
            if arg in _GEMINI_PROMPT and i + 1 < len(argv):
                flagged.append((i + 1, ""))
                return len(argv)
            return None

        found = walk(argv, 1, GEMINI, prompt_flag)
        if flagged and (not found or flagged[0][0] < found[0]):
            return flagged[0]
        return (found[0], "") if found else None
    return None


# Subcommand names: a prompt that is exactly one of them would run the subcommand.
_SUBCOMMANDS = {
    "claude": _names("mcp config doctor update install setup-token plugin migrate-installer"),
    "codex": _names("resume review help"),
    "gemini": _names("mcp extensions"),
}


def safe_value(fmt: str, prompt: str) -> str:
    """`prompt` as an argument the agent's parser cannot mistake for an option or a subcommand.

    A prompt that starts with "-" (a markdown list, "-" meaning stdin) would be
    parsed as a flag, and a prompt that is a subcommand's name would run it; a
    leading space keeps its meaning for the model and makes it a plain value.
    """
    names = _SUBCOMMANDS.get(fmt)
    if names is not None and (prompt.startswith("-") or prompt in names):
        return " " + prompt
    return prompt


# ------------------------------------------------------------ what the command line says


def detect_format(argv: Sequence[str]) -> str:
    """The output format of an agent command: "claude", "codex", "gemini" or "aether".

    Only a known program with its JSON-stream flag is recognised; anything
    else is assumed to speak the aether protocol (the caller may override).
    """
    program = _program(argv)
    if program == "claude" and _option_value_is(argv, ("--output-format",), "stream-json"):
        return "claude"
    if program == "codex":
        layout = codex_layout(argv)
        if layout is not None:
            after_exec = range(layout.exec_index + 1, len(argv))
            if any(argv[i] in _CODEX_JSON for i in after_exec if i != layout.prompt_index):
                return "codex"
    if program == "gemini" and _option_value_is(argv, ("-o", "--output-format"), "stream-json"):
        return "gemini"
    return "aether"


def claude_input_mode(argv: Sequence[str]) -> bool:
    """Whether a claude command reads its messages as stream-json on stdin (aether owns stdin then)."""
    return _program(argv) == "claude" and _option_value_is(argv, ("--input-format",), "stream-json")


def json_flag_missing(argv: Sequence[str]) -> str | None:
    """A one-line hint when a known agent is run without the flags that make it supervisable."""
    program = _program(argv)
    if program == "claude":
        missing = []
        if not any(a in _CLAUDE_PRINT for a in argv[1:]):
            missing.append("-p")
        if not _option_value_is(argv, ("--output-format",), "stream-json"):
            missing.append("--output-format stream-json")
        if "--verbose" not in argv[1:]:
            missing.append("--verbose")
        return f"claude needs {' '.join(missing)} to be supervised" if missing else None
    if program == "codex":
        if detect_format(argv) == "codex":
            return None
        if codex_layout(argv) is None:
            return "codex needs `exec --json` to be supervised (codex exec --json PROMPT)"
        return "codex exec needs --json to be supervised"
    if program == "gemini" and detect_format(argv) != "gemini":
        return "gemini needs --output-format stream-json to be supervised"
    return None


def find_prompt_arg(fmt: str, argv: Sequence[str]) -> int | None:
    """Index of the argument that holds the prompt (for gemini `-p X`: the index of X), or None.

    For `--prompt=X` forms the index is that of the whole argument. Codex's "-"
    (read the prompt from stdin) is returned too.
    """
    loc = prompt_location(fmt, argv)
    return loc[0] if loc else None


def prompt_objective(fmt: str, argv: Sequence[str]) -> str | None:
    """The prompt written on the command line (an objective when the user gave none).

    None when there is none, when it is a placeholder, or when it is "-" (stdin).
    """
    loc = prompt_location(fmt, argv)
    if loc is None:
        return None
    index, prefix = loc
    text = argv[index][len(prefix) :]
    if PLACEHOLDER.search(text) or text.strip() in ("", "-"):
        return None
    return text
