"""Which files a shell command writes, read from its text: redirections and common writers.

A tool call that runs a shell command (Claude's `Bash`, Codex's `shell`)
names no file, yet it may write several: `> out.txt`, `>> log`, `tee`,
`sed -i`, `perl -i`, `cp`/`mv`/`install` targets, `touch`, `dd of=`. This
module splits a command into simple commands with `shlex` (never runs
anything, never expands anything) and names the targets it can see. It is a
best effort: a target built from a variable (`> "$OUT"`), or a file a script
writes from inside (`python - <<EOF`), is not visible here; the git state of
the workspace is the ground truth for those.

Hostile input is the norm, not the exception: unbalanced quotes, megabytes of
text, heredocs, comments, `>` inside quotes, `/dev/null`. Parsing is bounded
(text, tokens and nesting capped) and never raises. Knows nothing of tool
calls, episodes or checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import shlex

MAX_COMMAND_CHARS = 32 * 1024  # a longer command is parsed from its start only
MAX_TOKENS = 20_000
MAX_DEPTH = 3  # bash -c 'sh -c "..."' nesting followed this deep
MAX_TARGETS = 50

_PUNCTUATION = "();<>|&\n"
_SEPARATOR_CHARS = frozenset(";&|()\n")
# Words that run the command after them (their own options are skipped).
_WRAPPERS = frozenset({
    "sudo", "env", "time", "nohup", "nice", "command", "exec", "builtin", "stdbuf", "timeout",
    "doas", "ionice", "chronic",
})  # fmt: skip
_SHELLS = frozenset({"bash", "sh", "zsh", "dash", "ksh"})
_NOT_A_FILE_PREFIXES = ("/dev/", "/proc/")


# --------------------------------------------------------------- tokenizing


def _strip_comments_and_heredocs(text: str) -> str:
    """`text` without `# comments` and heredoc bodies, quote-aware, in one pass.

    A heredoc body is data, not commands (its `>` must not count), and a `#`
    starts a comment only at the start of a word outside quotes.
    """
    out: list[str] = []
    pending: list[tuple[str, bool]] = []  # heredoc delimiters waiting for the next line
    i, n, quote = 0, len(text), ""
    while i < n:
        ch = text[i]
        if quote:
            out.append(ch)
            if ch == "\\" and quote == '"' and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
            i += 1
            continue
        if ch == "\\" and i + 1 < n:
            out.append(text[i : i + 2])
            i += 2
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t\n;&|()"):
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif ch == "<" and text.startswith("<<", i) and not text.startswith("<<<", i):
            i = _heredoc_start(text, i, out, pending)
            continue
        elif ch == "\n" and pending:
            out.append(ch)
            i = _skip_heredoc_bodies(text, i + 1, pending)
            pending.clear()
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _heredoc_start(text: str, i: int, out: list[str], pending: list[tuple[str, bool]]) -> int:
    """Copy `<<[-]WORD` to `out`, note WORD as a pending delimiter; the index after it."""
    j = i + 2
    strip_tabs = j < len(text) and text[j] == "-"
    if strip_tabs:
        j += 1
    while j < len(text) and text[j] in " \t":
        j += 1
    k = j
    while k < len(text) and text[k] not in " \t\n;&|<>()":
        k += 1
    word = text[j:k].replace("'", "").replace('"', "").replace("\\", "")
    out.append(text[i:k])
    # Only a name-like word starts a heredoc: `$((1<<2))` is arithmetic.
    if word.isidentifier():
        pending.append((word, strip_tabs))
    return k


def _skip_heredoc_bodies(text: str, i: int, pending: list[tuple[str, bool]]) -> int:
    """The index after the bodies of `pending` heredocs that start at `i`."""
    for word, strip_tabs in pending:
        while i < len(text):
            end = text.find("\n", i)
            line = text[i:] if end < 0 else text[i:end]
            i = len(text) if end < 0 else end + 1
            if (line.lstrip("\t") if strip_tabs else line) == word:
                break
    return i


def _lex(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=_PUNCTUATION)
    lexer.whitespace_split = True
    lexer.whitespace = " \t\r"
    lexer.commenters = ""
    tokens: list[str] = []
    for token in lexer:
        tokens.append(token)
        if len(tokens) >= MAX_TOKENS:
            break
    return tokens


def tokens(command: str) -> list[str]:
    """The shell tokens of `command`: words, operators and newlines; never raises.

    Text past MAX_COMMAND_CHARS is ignored. If the quotes do not balance, each
    line is read on its own and a line that still does not parse is read up
    to its first quote character, so one bad line costs only itself.
    """
    text = _strip_comments_and_heredocs(command[:MAX_COMMAND_CHARS])
    try:
        return _lex(text)
    except ValueError:
        pass
    out: list[str] = []
    for line in text.split("\n"):
        try:
            out.extend(_lex(line))
        except ValueError:
            cut = min((p for p in (line.find("'"), line.find('"')) if p >= 0), default=len(line))
            with contextlib.suppress(ValueError):
                out.extend(_lex(line[:cut]))
        out.append("\n")
        if len(out) >= MAX_TOKENS:
            break
    return out[:MAX_TOKENS]


# -------------------------------------------------------- simple commands


def _is_operator(token: str) -> bool:
    return bool(token) and all(c in _PUNCTUATION for c in token)


def _is_redirect(token: str) -> bool:
    return _is_operator(token) and ("<" in token or ">" in token)


def split_commands(toks: list[str]) -> list[tuple[list[str], list[str]]]:
    """(argv, redirect targets written) per simple command of a token list.

    A digit word just before a redirection is its file descriptor, not an
    argument; `>&2` and `2>&1` duplicate descriptors and write no file.
    """
    result: list[tuple[list[str], list[str]]] = []
    argv: list[str] = []
    writes: list[str] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if _is_redirect(tok):
            target = toks[i + 1] if i + 1 < len(toks) and not _is_operator(toks[i + 1]) else None
            if argv and argv[-1].isdigit():
                argv.pop()
            if target is not None:
                i += 1
                if ">" in tok and not (tok in (">&", "<&") and (target.isdigit() or target == "-")):
                    writes.append(target)
            i += 1
            continue
        if _is_operator(tok):
            if argv or writes:
                result.append((argv, writes))
            argv, writes = [], []
        else:
            argv.append(tok)
        i += 1
    if argv or writes:
        result.append((argv, writes))
    return result


def strip_wrappers(argv: list[str]) -> list[str]:
    """`argv` without leading `NAME=value` assignments and wrappers (`sudo`, `env`, `time` …)."""
    i = 0
    while i < len(argv):
        word = argv[i]
        if "=" in word and word.split("=", 1)[0].isidentifier():
            i += 1
        elif os.path.basename(word) in _WRAPPERS:
            i += 1
            # The wrapper's own options (and `timeout`'s duration) are not the command.
            while i < len(argv) and (argv[i].startswith("-") or argv[i][:1].isdigit()):
                i += 1
        else:
            break
    return argv[i:]


def shell_script(argv: list[str]) -> str | None:
    """The script of `bash -c SCRIPT` (also `-lc`, `sh`, `zsh` …), else None."""
    if not argv or os.path.basename(argv[0]) not in _SHELLS:
        return None
    for i, word in enumerate(argv[1:], 1):
        if not word.startswith("-"):
            return None
        if "c" in word[1:] and not word.startswith("--") and i + 1 < len(argv):
            return argv[i + 1]
    return None


def simple_commands(command: str, depth: int = 0) -> list[tuple[list[str], list[str]]]:
    """Every simple command of `command` as (argv without wrappers, redirect targets).

    `bash -c 'SCRIPT'` is followed into SCRIPT (MAX_DEPTH levels), so Codex's
    `/bin/bash -lc '...'` is read as the command it runs.
    """
    out: list[tuple[list[str], list[str]]] = []
    for argv, writes in split_commands(tokens(command)):
        argv = strip_wrappers(argv)
        script = shell_script(argv)
        if script is not None and depth < MAX_DEPTH:
            out.append(([], writes))
            out.extend(simple_commands(script, depth + 1))
        else:
            out.append((argv, writes))
    return out


# ---------------------------------------------------------------- writers


def _operands(args: list[str], takes_value: frozenset[str]) -> list[str]:
    """Non-option arguments; options in `takes_value` consume the next word."""
    out: list[str] = []
    skip = False
    only_operands = False
    for word in args:
        if skip:
            skip = False
        elif only_operands or not word.startswith("-") or word == "-":
            out.append(word)
        elif word == "--":
            only_operands = True
        elif word in takes_value:
            skip = True
    return out


def _cp_like(args: list[str], takes_value: frozenset[str]) -> list[str]:
    for i, word in enumerate(args):
        if word in ("-t", "--target-directory") and i + 1 < len(args):
            return [args[i + 1]]
        if word.startswith("--target-directory="):
            return [word.split("=", 1)[1]]
    operands = _operands(args, takes_value)
    return operands[-1:] if len(operands) >= 2 else []


def _short_group(word: str, script_letters: str) -> tuple[bool, bool]:
    """(in place, the next word is a script) for an option word of sed or perl.

    In a short group the letter `i` takes the rest of the word as a backup
    suffix (`-i.bak`, and `-ie` means suffix "e"); `e` (and sed's `f`)
    takes the next word as the script (`-ne`, `-pe`).
    """
    if word.startswith("--in-place"):
        return True, False
    if word in ("--expression", "--file"):
        return False, True
    if not word.startswith("-") or word.startswith("--") or word == "-":
        return False, False
    for ch in word[1:]:
        if ch == "i":
            return True, False
        if ch in script_letters:
            return False, True
    return False, False


def _in_place_files(args: list[str], script_letters: str) -> list[str]:
    """The files an in-place editor (sed -i, perl -i) rewrites; [] if it is not in place."""
    in_place = has_script = skip = False
    files: list[str] = []
    for i, word in enumerate(args):
        if skip:
            skip = False
            continue
        if word.startswith(("--expression=", "--file=")):
            has_script = True
            continue
        if word == "" and i > 0 and args[i - 1] == "-i":
            continue  # BSD sed: `-i ''` is an empty backup suffix
        if word.startswith("-") and word != "-":
            place, script = _short_group(word, script_letters)
            in_place = in_place or place
            has_script = has_script or script
            skip = script
        else:
            files.append(word)
    if not in_place:
        return []
    return files if has_script else files[1:]


_CP_VALUES = frozenset({"-S", "--suffix"})
_INSTALL_VALUES = frozenset({"-m", "-o", "-g", "-S", "--mode", "--owner", "--group", "--suffix"})
_TOUCH_VALUES = frozenset({"-d", "-t", "-r", "--date", "--reference"})
_TEE_VALUES = frozenset({"--output-error"})


def command_writes(argv: list[str]) -> list[str]:
    """The files one simple command (wrappers stripped) writes by its own arguments."""
    if not argv:
        return []
    name, args = os.path.basename(argv[0]), argv[1:]
    if name == "tee":
        return [w for w in _operands(args, _TEE_VALUES) if w != "-"]
    if name in ("cp", "mv"):
        return _cp_like(args, _CP_VALUES)
    if name == "install":
        return _cp_like(args, _INSTALL_VALUES) if "-d" not in args else []
    if name == "sed":
        return _in_place_files(args, "ef")
    if name == "perl":
        return _in_place_files(args, "eE")
    if name == "touch":
        return _operands(args, _TOUCH_VALUES)
    if name == "dd":
        return [w[3:] for w in args if w.startswith("of=")]
    return []


def _is_file_target(path: str) -> bool:
    # A variable or command substitution is not a path we can name.
    return (
        bool(path.strip())
        and path != "-"
        and not path.startswith(_NOT_A_FILE_PREFIXES)
        and "$" not in path
        and "`" not in path
        and "\n" not in path
    )


def written_paths(command: str) -> list[str]:
    """The files `command` writes, as spelt in it, in order, without repeats (never raises)."""
    found: dict[str, None] = {}
    for argv, writes in simple_commands(command):
        for path in (*writes, *command_writes(argv)):
            if _is_file_target(path):
                found.setdefault(path, None)
                if len(found) >= MAX_TARGETS:
                    return list(found)
    return list(found)


def command_text(value: object) -> str | None:
    """A tool input's command as one string: a string as is, an argv list joined; else None."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return shlex.join(value[:1000])
    return None
