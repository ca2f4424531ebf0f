"""What one tool call is: a shell command, a file tool or a todo list, and what it touches.

Agents name their tools differently (Claude's `Bash` and `Write`, Codex's
`shell` and `apply_patch`, a protocol agent's `write_file`), so a call is
judged by the words of its name and the keys of its input: which files it
names, whether it writes them, the shell command it runs (and the files that
command writes, see `shell_writes`), its identity for matching a failure with
a later success (`error_book`), and the todo list it carries (TodoWrite,
update_plan). Pure functions over a name and an input dict; never raises on
odd input. Knows nothing of episodes, checkpoints or prompts.
"""

from __future__ import annotations

import re
from typing import Any

from aether_cli import protocol
from aether_cli.error_book import Identity, file_identity, other_identity, shell_identity
from aether_cli.redact import redact_text
from aether_cli.shell_writes import command_text

SHORT_INPUT_CHARS = 120
MAX_TODOS = 50
TODO_TEXT_CHARS = 300
ELLIPSIS = "…"
_REDACT_MARGIN = 1024

PATH_KEYS = ("path", "file", "file_path", "filename")
PATH_LIST_KEYS = ("paths",)
COMMAND_KEYS = ("command", "cmd")

# A tool that changes files: matched against the words of its name, so
# "write_file", "MultiEdit", "apply_patch" and "rm" count, "format" does not.
_WRITE_VERBS = (
    "write", "edit", "create", "patch", "apply", "save", "delete", "remove", "rename",
    "replace", "append", "insert", "move", "mkdir", "touch", "unlink",
)
_WRITE_SHORT = frozenset({"mv", "rm", "cp"})
_NOT_WRITE = frozenset({"credit", "dispatch"})
_SHELL_WORDS = frozenset({
    "bash", "shell", "sh", "zsh", "exec", "execute", "command", "terminal", "run", "cmd", "powershell",
})  # fmt: skip
_NAME_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")

# Tools whose input is the agent's whole todo list: (list key, text key).
TODO_TOOLS = {"TodoWrite": ("todos", "content"), "update_plan": ("plan", "step"),
              "todo_write": ("todos", "content")}
_TODO_STATUS = {"completed": "done", "done": "done", "in_progress": "in_progress",
                "pending": "pending", "blocked": "blocked"}


def cap(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis when cut.

    A text is redacted before it is cut: a secret cut in half no longer has the
    shape or the closing quote the rules know it by, and its first half would
    reach the checkpoint.
    """
    if len(text) <= limit:
        return text
    # A margin past the cut, so that a secret starting before it is seen whole.
    head = text[: limit + _REDACT_MARGIN]
    redacted = redact_text(head)
    if len(head) == len(text) and len(redacted) <= limit:
        return redacted  # the secret's marker is shorter than the secret: it fits now
    return redacted[: max(0, limit - 1)] + ELLIPSIS


def short_input(data: Any, limit: int = SHORT_INPUT_CHARS) -> str:
    """A one-line rendering of a tool input, capped (used in call summaries)."""
    return cap(protocol.dumps_compact(data), limit)


def _words(name: str) -> list[str]:
    return [w.lower() for w in _NAME_WORDS.findall(name)]


def is_write_tool(name: str) -> bool:
    """True if a tool's name suggests it changes files (write/edit/create/patch/mv/rm …)."""
    for w in _words(name):
        if w in _NOT_WRITE:
            continue
        if w in _WRITE_SHORT:
            return True
        if any(w.startswith(v) or w.endswith(v) for v in _WRITE_VERBS):
            return True
    return False


def shell_command(name: str, inp: dict[str, Any]) -> str | None:
    """The command a shell tool runs (`Bash`, `shell`, `run_shell_command` …), else None."""
    if not any(w in _SHELL_WORDS for w in _words(name)):
        return None
    for key in COMMAND_KEYS:
        text = command_text(inp.get(key))
        if text is not None:
            return text
    return None


def named_paths(inp: dict[str, Any], limit: int) -> list[str]:
    """The paths a tool input names under its usual keys, as written, in order."""
    out: list[str] = []
    for key in PATH_KEYS:
        value = inp.get(key)
        if isinstance(value, str):
            out.append(value)
    for key in PATH_LIST_KEYS:
        values = inp.get(key)
        if isinstance(values, list):
            out.extend(v for v in values[:limit] if isinstance(v, str))
    return out


def identity(name: str, inp: dict[str, Any]) -> Identity:
    """The call's identity for error matching, and how it is shown in the work log."""
    command = shell_command(name, inp)
    if command is not None:
        return shell_identity(name, command)
    paths = named_paths(inp, 1)
    if name in TODO_TOOLS:
        items = inp.get(TODO_TOOLS[name][0])
        return other_identity(name, f"({len(items) if isinstance(items, list) else 0} items)")
    if paths and is_write_tool(name):
        return file_identity(name, paths[0])
    return other_identity(name, paths[0] if paths else short_input(inp))


def todo_list(name: str, inp: dict[str, Any]) -> list[dict[str, str]] | None:
    """The todo list a TodoWrite / update_plan call carries ([{"text", "status"}]), else None."""
    keys = TODO_TOOLS.get(name)
    items = inp.get(keys[0]) if keys else None
    if keys is None or not isinstance(items, list):
        return None
    out: list[dict[str, str]] = []
    for item in items[:MAX_TODOS]:
        text = item.get(keys[1]) if isinstance(item, dict) else None
        if isinstance(text, str) and text.strip():
            out.append(todo_item(text, item.get("status")))
    return out


def todo_item(text: str, status: Any) -> dict[str, str]:
    """One todo as kept: its text (capped) and a task status (pending/in_progress/done/blocked)."""
    return {
        "text": cap(text.strip(), TODO_TEXT_CHARS),
        "status": _TODO_STATUS.get(status, "pending") if isinstance(status, str) else "pending",
    }
