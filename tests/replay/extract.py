"""The facts a relaunched agent needs, read from recorded lines alone, and whether a prompt carries them.

Written for the test, independent of aether's detectors (it imports nothing
from `aether_cli`). At each checkpoint, from the lines of every episode so far:

- files: every file written since the session began, by Write/Edit/MultiEdit/
  NotebookEdit, a completed Codex `file_change`, or the shell (`>`, `>>`, `tee`, `sed -i`,
  `cp`/`mv`/`install` targets, `touch`), as paths relative to the session's cwd;
- errors: failed calls not cleared by a later success of the same command (or,
  for file tools, of a write to the same file), each as its first error line:
  pytest's `FAILED …` summary line, else an exception line (`KeyError: …`),
  else a diagnostic (`path:line: …`), else a line naming an error, else the
  first line that is not Claude's `Exit code N` (a failed Codex `file_change`
  has no text to quote and is not counted);
- todos: the items of the latest TodoWrite / `todo_list` not completed;
- instructions: every sentence the user wrote: the objective (the launch
  prompt) and, for Claude, each user turn in the stream.

A prompt carries a path when it appears with a path boundary on its left (so
`/abs/…/src/x.py` carries `src/x.py`); a text when its first `TEXT_PREFIX`
characters appear, whitespace collapsed and case folded.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

TEXT_PREFIX = 100
FILE_TOOLS = ("Write", "Edit", "MultiEdit", "NotebookEdit")
TODO_TOOL = "TodoWrite"
_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "|&", ";;"}
_REDIRECTS = {">", ">>", ">|", "&>", "&>>"}
_WRAPPERS = {"sudo", "command", "env", "nohup", "time"}
_HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")
_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
_EXIT_LINE = re.compile(r"^Exit code -?\d+$")
_ERROR_PATTERNS = (
    re.compile(r"^(FAILED|ERROR) \S"),
    re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b"),
    re.compile(r"^\S+:\d+(:\d+)?: "),
    re.compile(r"(?i)\b(error|fatal|failed|failure|not found|no such file|denied)\b"),
)


@dataclass
class Expected:
    """The facts a prompt must carry at one checkpoint."""

    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    todos: list[str] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def first_error_line(output: str) -> str:
    """The line of a failed call's output that names the failure (see the module docstring)."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip() and not _EXIT_LINE.match(ln.strip())]
    for pattern in _ERROR_PATTERNS:
        for line in lines:
            if pattern.search(line):
                return line
    return lines[0] if lines else ""


# ------------------------------------------------------------------ shell


def _strip_heredocs(command: str) -> list[str]:
    """The command's lines without heredoc bodies."""
    kept: list[str] = []
    until: str | None = None
    for line in command.splitlines():
        if until is not None:
            if line.strip() == until:
                until = None
            continue
        kept.append(line)
        m = _HEREDOC.search(line)
        if m:
            until = m.group(1)
    return kept


def _tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # an unclosed quote: the shell refuses the line, nothing is written
        return []


def _command_targets(words: list[str]) -> list[str]:
    """Files a simple command writes by its arguments (tee, sed -i, cp/mv/install, touch)."""
    while words and (_ASSIGNMENT.match(words[0]) or words[0] in _WRAPPERS):
        words = words[1:]
    if not words:
        return []
    prog, args = posixpath.basename(words[0]), words[1:]
    plain = [a for a in args if not a.startswith("-")]
    if prog == "tee" or prog == "touch":
        return plain
    if prog == "sed" and any(a.startswith(("-i", "--in-place")) for a in args):
        return _sed_files(args)
    if prog in ("cp", "mv", "install") and len(plain) >= 2:
        dest = plain[-1]
        return [dest + posixpath.basename(plain[0])] if dest.endswith("/") else [dest]
    return []


def _sed_files(args: list[str]) -> list[str]:
    """The files of `sed -i`: positional arguments, less the script (given by -e/-f, or the first)."""
    files: list[str] = []
    scripted = skip = False
    for a in args:
        if skip:
            skip = False
        elif a in ("-e", "-f", "--expression", "--file"):
            scripted = skip = True
        elif a.startswith(("--expression=", "--file=")):
            scripted = True
        elif not a.startswith("-"):
            files.append(a)
    return files if scripted else files[1:]


def shell_writes(command: str) -> list[str]:
    """Paths a shell command writes, as written in it (not normalised)."""
    found: list[str] = []
    for line in _strip_heredocs(command):
        tokens = _tokens(line)
        words: list[str] = []
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            if tok in _REDIRECTS and i + 1 < len(tokens):
                found.append(tokens[i + 1])
                i += 2
                continue
            if tok in _SEPARATORS or tok.startswith((">&", "<")):
                found.extend(_command_targets(words))
                words = []
                i += 2 if tok.startswith((">&", "<")) else 1
                continue
            words.append(tok)
            i += 1
        found.extend(_command_targets(words))
    return [p for p in found if p and not p.startswith(("/dev/", "&")) and not p.isdigit()]


def unwrap_shell(command: str) -> str:
    """`bash -lc 'X'` (how Codex shows a command) as X."""
    try:
        words = shlex.split(command)
    except ValueError:
        return command
    if (
        len(words) == 3
        and posixpath.basename(words[0]) in ("bash", "sh", "zsh")
        and words[1] in ("-lc", "-c")
    ):
        return words[2]
    return command


# ------------------------------------------------------------------ streams


def _load(line: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


class Tracker:
    """The running facts of one session, fed call by call."""

    def __init__(self, objective: str, cwd: str) -> None:
        self.cwd = cwd.rstrip("/")
        self.files: dict[str, None] = {}
        self.errors: dict[str, str] = {}
        self.todos: list[tuple[str, bool]] = []  # (text, completed)
        self.instructions: list[str] = []
        self.said(objective)

    def rel(self, path: str) -> str:
        if path.startswith(self.cwd + "/"):
            path = path[len(self.cwd) + 1 :]
        return posixpath.normpath(path) if path else path

    def said(self, text: str) -> None:
        for s in sentences(text):
            if s not in self.instructions:
                self.instructions.append(s)

    def wrote(self, path: str) -> None:
        rel = self.rel(path)
        self.files.pop(rel, None)
        self.files[rel] = None

    def outcome(self, key: str, ok: bool, output: str) -> None:
        self.errors.pop(key, None)
        if not ok:
            self.errors[key] = first_error_line(output) or f"{key} failed"

    def shell(self, command: str, ok: bool, output: str) -> None:
        for path in shell_writes(command):
            self.wrote(path)
        self.outcome(" ".join(command.split()), ok, output)

    def file_tool(self, path: str, ok: bool, output: str) -> None:
        if ok:
            self.wrote(path)
        self.outcome(f"edit:{self.rel(path)}", ok, output)

    def expected(self) -> Expected:
        return Expected(
            list(self.files),
            list(self.errors.values()),
            [t for t, done in self.todos if not done],
            list(self.instructions),
        )


class ClaudeReader:
    """Claude Code stream-json lines into a `Tracker`."""

    def __init__(self, tracker: Tracker) -> None:
        self.t = tracker
        self.calls: dict[str, tuple[str, dict[str, Any]]] = {}

    def line(self, obj: dict[str, Any]) -> None:
        message = _dict(obj.get("message"))
        content = message.get("content")
        if obj.get("type") == "assistant" and isinstance(content, list):
            for block in content:
                b = _dict(block)
                if b.get("type") == "tool_use" and isinstance(b.get("id"), str):
                    self.calls[b["id"]] = (str(b.get("name", "")), _dict(b.get("input")))
        elif obj.get("type") == "user" and obj.get("isSynthetic") is not True:
            if isinstance(content, str):
                self.t.said(content)
            for block in content if isinstance(content, list) else []:
                b = _dict(block)
                if b.get("type") == "text":
                    self.t.said(str(b.get("text", "")))
                elif b.get("type") == "tool_result":
                    self.result(b)

    def result(self, block: dict[str, Any]) -> None:
        name, inp = self.calls.pop(str(block.get("tool_use_id")), ("", {}))
        ok, output = block.get("is_error") is not True, _text(block.get("content"))
        path = inp.get("file_path") or inp.get("notebook_path")
        if name in FILE_TOOLS and isinstance(path, str):
            self.t.file_tool(path, ok, output)
        elif name == "Bash" and isinstance(inp.get("command"), str):
            self.t.shell(inp["command"], ok, output)
        elif name == TODO_TOOL:
            todos = inp.get("todos") if isinstance(inp.get("todos"), list) else []
            self.t.todos = [
                (d["content"], d.get("status") == "completed")
                for d in todos
                if isinstance(d, dict) and isinstance(d.get("content"), str) and d["content"].strip()
            ]
        elif name:
            self.t.outcome(f"{name} {json.dumps(inp, sort_keys=True)}", ok, output)


class CodexReader:
    """`codex exec --json` lines into a `Tracker`."""

    def __init__(self, tracker: Tracker) -> None:
        self.t = tracker

    def line(self, obj: dict[str, Any]) -> None:
        kind, item = obj.get("type"), _dict(obj.get("item"))
        if kind not in ("item.started", "item.updated", "item.completed"):
            return
        if item.get("type") == "todo_list":
            items = item.get("items") if isinstance(item.get("items"), list) else []
            self.t.todos = [
                (i["text"], i.get("completed") is True)
                for i in items
                if isinstance(i, dict) and isinstance(i.get("text"), str) and i["text"].strip()
            ]
        if kind != "item.completed":
            return
        status = item.get("status")
        if item.get("type") == "command_execution" and isinstance(item.get("command"), str):
            ok = item.get("exit_code") == 0 and status not in ("failed", "declined")
            self.t.shell(unwrap_shell(item["command"]), ok, str(item.get("aggregated_output") or ""))
        elif item.get("type") == "file_change" and status == "completed":
            for change in item.get("changes") if isinstance(item.get("changes"), list) else []:
                if isinstance(_dict(change).get("path"), str):
                    self.t.wrote(change["path"])


def expected_per_checkpoint(fmt: str, objective: str, cwd: str, episodes: list[list[str]]) -> list[Expected]:
    """The facts due at the end of each episode but the last (each is followed by a relaunch)."""
    tracker = Tracker(objective, cwd)
    reader = ClaudeReader(tracker) if fmt == "claude" else CodexReader(tracker)
    out: list[Expected] = []
    for lines in episodes[:-1]:
        for line in lines:
            obj = _load(line)
            if obj is not None:
                reader.line(obj)
        out.append(tracker.expected())
    return out


# ------------------------------------------------------------------ matching


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def carries_text(prompt: str, text: str) -> bool:
    return _norm(text)[:TEXT_PREFIX] in _norm(prompt)


def carries_path(prompt: str, path: str) -> bool:
    return (
        re.search(r"(?<![\w.\-])" + re.escape(path) + r"(?![\w\-]|\.\w)", prompt) is not None
        or re.search(r"/" + re.escape(path) + r"(?![\w\-]|\.\w)", prompt) is not None
    )


CATEGORIES = ("files", "errors", "todos", "instructions")


def missing(prompt: str, expected: Expected) -> dict[str, list[str]]:
    """Per category, the expected facts `prompt` does not carry."""
    return {
        "files": [p for p in expected.files if not carries_path(prompt, p)],
        "errors": [e for e in expected.errors if not carries_text(prompt, e)],
        "todos": [t for t in expected.todos if not carries_text(prompt, t)],
        "instructions": [i for i in expected.instructions if not carries_text(prompt, i)],
    }
