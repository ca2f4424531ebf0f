"""`--distill-command`: ask a model command to distil an episode into a checkpoint.

The command (for example `claude -p` or `llm -m gpt-5`) gets the distillation
prompt on stdin, redacted (it is another program, often a hosted model), and
must print one JSON object on stdout. Whatever it prints
is untrusted: the caller validates it like an agent's own checkpoint and falls
back to rules with the reason. This module only runs the command and extracts
the JSON; it never raises on what the command does.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Any

import orjson

from aether_cli.prompt_template import load_template, render
from aether_cli.protocol import dumps_compact
from aether_cli.redact import redact_obj, redact_text

MAX_OUTPUT = 1 << 20
_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)\n\s*```", re.DOTALL)


def distill_prompt(
    draft: dict[str, Any], *, objective: str, max_tokens: int, memory_dir: Path | None,
    output_tail: list[str] | None = None,
) -> str:
    """The distillation prompt for `draft` (the rules-based checkpoint draft), redacted.

    `output_tail`, the last lines the agent printed as plain text (all a text
    agent says), is added to the draft's JSON when there are any, so a template
    override written before it existed still passes it on. The command is
    another program, often a hosted model: the draft holds the agent's words and
    errors verbatim, so nothing secret in them may leave aether.
    """
    shown = {k: draft.get(k) for k in ("progress", "next_actions", "errors", "tasks", "state")}
    if output_tail:
        shown["output_tail"] = output_tail
    return render(
        load_template("distill.md", memory_dir),
        {
            "objective": redact_text(objective),
            "draft": dumps_compact(redact_obj(shown)),
            "max_tokens": str(max_tokens),
        },
        name="distill.md",
    )


def extract_json(text: str) -> tuple[Any, str | None]:
    """The JSON object in a model's answer: the whole text, else a fenced ```json block.

    A Claude Code `--output-format json` envelope (`{"type": "result", "result": "..."}`)
    is unwrapped. Returns (object, None) or (None, reason).
    """
    text = text.strip()
    if not text:
        return None, "empty answer"
    candidates = [text, *(m.group(1) for m in _FENCE.finditer(text))]
    for candidate in candidates:
        try:
            value = orjson.loads(candidate)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict) and value.get("type") == "result" and isinstance(value.get("result"), str):
            return extract_json(value["result"])
        if isinstance(value, dict):
            return value, None
        return None, "answer is JSON but not an object"
    return None, "answer is not JSON"


def run_distill_command(
    command: str, prompt: str, *, timeout: float, cwd: Path | None = None
) -> tuple[Any, str | None]:
    """Run `command` (a shell-style string) with `prompt` on stdin; (object, None) or (None, reason)."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return None, f"cannot parse the command: {exc}"
    if not argv:
        return None, "empty command"
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        return None, f"cannot start {argv[0]}: {exc.strerror or exc}"
    try:
        out, err = proc.communicate(prompt.encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, f"timed out after {timeout:g}s"
    if proc.returncode != 0:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        return None, f"exit {proc.returncode}: {last[0][:200]}"
    if len(out) > MAX_OUTPUT:
        return None, f"answer too large ({len(out)} bytes)"
    return extract_json(out.decode("utf-8", "replace"))
