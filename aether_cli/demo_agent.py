"""The bundled demo agent: indexes the files of a folder, one step at a time, into
a Markdown report. It needs no model and no API key, and it is deterministic.

It knows nothing of aether's internals: it speaks only protocol v1 (stdin
commands, stdout events) and reads where to resume from its launch prompt,
exactly as an LLM agent would. Each file read is a tool call whose result
(the file's head) fills the context, so a small window makes aether
checkpoint and relaunch it several times before the report is complete.

    python -m aether_cli.demo_agent ROOT [--report PATH] [--delay SECONDS] [--max-files N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import sys
from pathlib import Path
from typing import Any

SKIP_DIRS = {".git", ".memory", ".venv", "__pycache__", "node_modules", ".demo", ".pytest_cache"}
TEXT_SUFFIXES = {
    ".py",
    ".md",
    ".toml",
    ".txt",
    ".json",
    ".cfg",
    ".ini",
    ".yaml",
    ".yml",
    ".sh",
    ".rst",
}
BATCH = 5
RESUME_MARK = re.compile(r"next file #(\d+)")


def emit(obj: dict[str, Any]) -> None:
    """Write one protocol event."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def list_files(root: Path, limit: int) -> list[str]:
    """The text files to index, relative to root, in a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.suffix in TEXT_SUFFIXES:
                found.append(path.relative_to(root).as_posix())
    return found[:limit]


def describe(text: str) -> str:
    """A one-line index entry for a file's content."""
    lines = text.splitlines()
    names = re.findall(r"^(?:def|class|async def)\s+([A-Za-z_]\w*)", text, flags=re.M)
    heads = re.findall(r"^#+\s+(.+)$", text, flags=re.M)
    parts = [f"{len(lines)} lines"]
    if names:
        parts.append("defines " + ", ".join(names[:6]) + (" …" if len(names) > 6 else ""))
    elif heads:
        parts.append("sections " + "; ".join(h.strip() for h in heads[:4]))
    return ", ".join(parts)


class Inbox:
    """Non-blocking reader of aether's commands on stdin."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        self.buf = b""
        self.closed = False

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The next command, waiting up to `timeout` seconds; None if none came."""
        while b"\n" not in self.buf:
            if self.closed:
                return None
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.closed = True
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            msg = json.loads(line)
        except ValueError:
            return None
        return msg if isinstance(msg, dict) else None


class DemoAgent:
    """Indexes `files` into `report`, resuming from the file named in its prompt."""

    def __init__(self, root: Path, report: Path, files: list[str], delay: float) -> None:
        self.root, self.report, self.files, self.delay = root, report, files, delay
        self.inbox = Inbox()
        self.objective = ""
        self.next_index = 0

    def batch_id(self, i: int) -> str:
        return f"batch-{i // BATCH + 1:02d}"

    def next_action(self, i: int) -> str:
        if i >= len(self.files):
            return "write the summary and finish"
        return f"index next file #{i + 1}: {self.files[i]}"

    def start(self, msg: dict[str, Any]) -> None:
        self.objective = msg.get("objective") or "Index the folder into a report"
        marks = [int(m) for m in RESUME_MARK.findall(msg.get("prompt") or "")]
        # The lowest mark is the earliest unfinished file: later batches are still pending.
        self.next_index = max(0, min(marks) - 1) if marks else 0

    def run(self) -> int:
        first = self.inbox.get(timeout=30.0)
        if not first or first.get("type") != "start":
            sys.stderr.write("demo agent: expected a start command on stdin\n")
            return 2
        self.start(first)
        emit({"type": "hello", "agent": "aether-demo", "model": "none"})
        if first.get("episode", 1) == 1 and not first.get("checkpoint"):
            self.fresh_start()
        else:
            emit(
                {
                    "type": "message",
                    "role": "assistant",
                    "text": f"Resuming at {self.next_action(self.next_index)}.",
                }
            )
        while self.next_index < len(self.files):
            if self.poll_commands(self.delay):
                return 0
            self.step(self.next_index)
            self.next_index += 1
        self.finish()
        return 0

    def fresh_start(self) -> None:
        self.report.write_text(f"# Index of {self.root.name or self.root}\n\n", encoding="utf-8")
        emit(
            {
                "type": "message",
                "role": "assistant",
                "text": f"Plan: index {len(self.files)} files in batches of {BATCH}, then summarise.",
            }
        )
        emit(
            {
                "type": "memory",
                "op": "add",
                "key": "report",
                "text": f"The report is written to {self.report}",
                "pinned": True,
                "priority": 5,
            }
        )
        emit(
            {
                "type": "message",
                "role": "assistant",
                "text": "Decision: one report section per file, in path order, so reruns are idempotent.",
            }
        )
        for b in range(0, len(self.files), BATCH):
            emit(
                {
                    "type": "task",
                    "id": self.batch_id(b),
                    "status": "pending",
                    "title": f"Index files {b + 1}-{min(b + BATCH, len(self.files))}",
                    "next_action": self.next_action(b),
                    "progress": 0.0,
                }
            )

    def poll_commands(self, wait: float) -> bool:
        """Handle commands that arrived; True when the agent must exit."""
        msg = self.inbox.get(wait)
        while msg is not None:
            kind = msg.get("type")
            if kind == "stop":
                return True
            if kind == "checkpoint_request":
                self.send_checkpoint()
                # Quiesce: no more work until stop or rehydrate.
                while True:
                    nxt = self.inbox.get(60.0)
                    if nxt is None and self.inbox.closed:
                        return True
                    if nxt is None:
                        continue
                    if nxt.get("type") == "stop":
                        return True
                    if nxt.get("type") == "rehydrate":
                        self.start(nxt)
                        break
            msg = self.inbox.get(0)
        return False

    def send_checkpoint(self) -> None:
        done = [self.files[i] for i in range(self.next_index)]
        emit(
            {
                "type": "checkpoint",
                "state": {
                    "objective": self.objective,
                    "progress": [f"indexed {len(done)} of {len(self.files)} files"]
                    + ([f"last indexed: {done[-1]}"] if done else []),
                    "state": {"next_index": self.next_index, "report": str(self.report)},
                    "next_actions": [self.next_action(self.next_index)],
                    "resume_instructions": "Continue with the next file; the report holds the earlier ones.",
                },
            }
        )

    def step(self, i: int) -> None:
        rel = self.files[i]
        call_id = f"read-{i + 1}"
        emit({"type": "tool_call", "id": call_id, "name": "read_file", "input": {"path": rel}})
        try:
            text = (self.root / rel).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            emit({"type": "tool_result", "id": call_id, "output": str(exc), "is_error": True})
            text = ""
        else:
            emit({"type": "tool_result", "id": call_id, "output": text[:1500]})
        entry = describe(text)
        header = f"## {rel}\n"
        existing = self.report.read_text(encoding="utf-8") if self.report.exists() else ""
        if header not in existing:
            with self.report.open("a", encoding="utf-8") as f:
                f.write(f"{header}{entry}\n\n")
        emit({"type": "message", "role": "assistant", "text": f"{rel}: {entry}."})
        b = i - i % BATCH
        end = min(b + BATCH, len(self.files))
        finished = i + 1 >= end
        emit(
            {
                "type": "task",
                "id": self.batch_id(i),
                "status": "done" if finished else "in_progress",
                "progress": round((i + 1 - b) / (end - b), 2),
                "next_action": "" if finished else self.next_action(i + 1),
                "files": [rel],
            }
        )

    def finish(self) -> None:
        with self.report.open("a", encoding="utf-8") as f:
            f.write(f"---\n{len(self.files)} files indexed.\n")
        emit({"type": "done", "summary": f"indexed {len(self.files)} files into {self.report}"})


def main(argv: list[str] | None = None) -> int:
    """Run the demo agent (it expects aether on the other end of its pipes)."""
    ap = argparse.ArgumentParser(prog="aether-demo-agent", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", nargs="?", default=".", help="folder to index")
    ap.add_argument("--report", default="aether-demo-report.md", help="where to write the report")
    ap.add_argument(
        "--delay", type=float, default=0.1, help="seconds per step, so a person can follow"
    )
    ap.add_argument("--max-files", type=int, default=40, help="index at most this many files")
    args = ap.parse_args(argv)
    root = Path(args.root).resolve()
    files = list_files(root, args.max_files)
    if not files:
        sys.stderr.write(f"demo agent: no text files under {root}\n")
        return 2
    return DemoAgent(root, Path(args.report).resolve(), files, args.delay).run()


if __name__ == "__main__":
    sys.exit(main())
