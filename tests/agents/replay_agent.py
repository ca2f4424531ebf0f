#!/usr/bin/env python3
"""A stand-in for `claude` or `codex` that replays a recorded session, one episode per launch.

Installed on PATH as `claude` or `codex` (with the interpreter as its shebang),
so aether runs it exactly as it would run the real CLI. The recording lives in
the project (the working directory): `.replay/episodes/NNN.jsonl` is what launch
NNN prints, and `.replay/launches` counts the launches. Each launch saves the
prompt it was started with to `.replay/prompts/NNN.txt`: with claude's
`--input-format stream-json`, the first user message on stdin; else the `-p`
argument (claude) or `exec`'s prompt argument (codex); else the file
$AETHER_PROMPT_FILE names; so a test reads exactly what the relaunched agent
would read. After an episode that is not the last it waits to be stopped
(the episode's last lines crossed aether's threshold); after the last it ends
as the CLI ends a finished run. Standard library only.

Handoff turns are answered without consuming an episode and without a usable
answer (so aether falls back to its rules handoff): `codex exec resume …`
prints one short turn; on stream-json stdin, a control request gets its
response and a `result`, a user message a short text and a `result`. Their
prompts go to `.replay/handoff/NNN.txt`. A launch past the recording prints an
empty finished run and is counted in `.replay/extra_launches`.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

ROOT = Path(".replay")
WAIT_SECONDS = float(os.environ.get("REPLAY_WAIT_SECONDS", "120"))
# Codex options that take a value (so their value is not the prompt).
CODEX_VALUES = {
    "-c",
    "--config",
    "-m",
    "--model",
    "-C",
    "--cd",
    "-s",
    "--sandbox",
    "-p",
    "--profile",
    "-o",
    "--output-last-message",
    "--output-schema",
    "--color",
    "-i",
    "--image",
    "--add-dir",
    "--local-provider",
    "-a",
    "--ask-for-approval",
}


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def message_text(obj: dict) -> str:
    content = (obj.get("message") or {}).get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ""


def codex_positionals(argv: list[str]) -> list[str]:
    """Positional arguments after `exec`."""
    rest = argv[argv.index("exec") + 1 :] if "exec" in argv else []
    found: list[str] = []
    i = 0
    while i < len(rest):
        arg = rest[i]
        if arg == "--":
            found.extend(rest[i + 1 :])
            break
        if arg.startswith("-") and arg != "-":
            i += 2 if arg in CODEX_VALUES else 1
            continue
        found.append(arg)
        i += 1
    return found


def argv_prompt(fmt: str, argv: list[str]) -> str | None:
    if fmt == "claude":
        for flag in ("-p", "--print"):
            if flag in argv:
                i = argv.index(flag)
                if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    return argv[i + 1]
        return None
    found = codex_positionals(argv)
    if found[:1] == ["resume"]:
        return found[2] if len(found) > 2 else None
    return found[0] if found and found[0] != "-" else None


def fallback_prompt() -> str:
    path = os.environ.get("AETHER_PROMPT_FILE", "")
    return Path(path).read_text(encoding="utf-8") if path and Path(path).is_file() else ""


def bump(name: str) -> int:
    path = ROOT / name
    n = int(path.read_text() or "0") + 1 if path.exists() else 1
    path.write_text(str(n))
    return n


def save(folder: str, n: int, text: str) -> None:
    (ROOT / folder).mkdir(parents=True, exist_ok=True)
    (ROOT / folder / f"{n:03d}.txt").write_text(text, encoding="utf-8")


def empty_run(fmt: str) -> None:
    if fmt == "claude":
        emit({"type": "system", "subtype": "init", "session_id": "replay-over", "model": "replay"})
        emit(
            {
                "type": "result",
                "subtype": "success",
                "is_error": False,
                "result": "nothing left to replay",
                "session_id": "replay-over",
                "num_turns": 1,
            }
        )
    else:
        emit({"type": "thread.started", "thread_id": "replay-over"})
        emit({"type": "turn.started"})
        emit(
            {
                "type": "turn.completed",
                "usage": {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 1},
            }
        )


def serve_stdin(done: threading.Event) -> None:
    """Stream-json input after the episode: answer control requests and handoff turns, end at EOF."""
    for raw in sys.stdin:
        try:
            obj = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(obj, dict):
            continue
        if obj.get("type") == "control_request":
            emit(
                {
                    "type": "control_response",
                    "response": {"subtype": "success", "request_id": obj.get("request_id"), "response": {}},
                }
            )
        elif obj.get("type") == "user":
            save("handoff", bump("handoffs"), message_text(obj))
            emit(
                {
                    "type": "assistant",
                    "message": {
                        "id": "msg_replay_handoff",
                        "role": "assistant",
                        "content": [{"type": "text", "text": "(no handoff in a replay)"}],
                    },
                }
            )
        else:
            continue
        emit({"type": "result", "subtype": "success", "is_error": False, "result": "", "num_turns": 1})
    done.set()


def main() -> int:
    argv = sys.argv[1:]
    fmt = "codex" if "exec" in argv else "claude"
    ROOT.mkdir(exist_ok=True)
    if fmt == "codex" and codex_positionals(argv)[:1] == ["resume"]:
        save("handoff", bump("handoffs"), argv_prompt(fmt, argv) or fallback_prompt())
        emit({"type": "thread.started", "thread_id": (codex_positionals(argv)[1:2] or ["replay"])[0]})
        emit({"type": "turn.started"})
        emit(
            {
                "type": "item.completed",
                "item": {"id": "item_0", "type": "agent_message", "text": "(no handoff in a replay)"},
            }
        )
        emit(
            {
                "type": "turn.completed",
                "usage": {"input_tokens": 1, "cached_input_tokens": 0, "output_tokens": 1},
            }
        )
        return 0
    streamed = "--input-format" in argv and "stream-json" in argv
    n = bump("launches")
    prompt = None
    if streamed:  # the prompt comes as the first user message; a prompt argument is not read then
        first = sys.stdin.readline()
        prompt = message_text(json.loads(first)) if first.strip() else None
    if prompt is None:
        prompt = argv_prompt(fmt, argv)
    save("prompts", n, prompt if prompt is not None else fallback_prompt())
    (ROOT / "prompts" / f"{n:03d}.argv.json").write_text(json.dumps(argv))
    episodes = sorted((ROOT / "episodes").glob("*.jsonl"))
    if n > len(episodes):
        bump("extra_launches")
        empty_run(fmt)
        return 0
    with (ROOT / "episodes" / f"{n:03d}.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            sys.stdout.write(line)
            sys.stdout.flush()
    done = threading.Event()
    if streamed:
        threading.Thread(target=serve_stdin, args=(done,), daemon=True).start()
    if n == len(episodes) and not streamed:
        return 0
    # Not the last episode: aether's threshold fired on the lines above, so it stops us.
    return 0 if done.wait(WAIT_SECONDS) else 3


if __name__ == "__main__":
    sys.exit(main())
