#!/usr/bin/env python3
"""A stand-in supervisor for the random-kill tests: it holds the run lock and writes
`.memory` through MemoryStore in a loop until it is killed.

    checkpoint_writer.py MEMORY_DIR AGENT_ARGV_JSON [--cycles N] [--payload BYTES]

Each cycle appends ledger records (one of them big, so that a kill can tear
it), writes a task file, project memory, a checkpoint,
session_continuity.json and the heartbeat, like a supervisor between two
episodes. After each write has returned it prints one line
("ledger 17", "checkpoint chk_000003_1a2b3c4d", "continuity 9", ...) and
flushes, so the parent that SIGKILLs it at a random moment knows exactly
which writes must have survived. The session and the agent argv it records
make `aether resume` possible afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from aether_cli.store import MemoryStore

SESSION = "ses_killtest"


def say(*parts: object) -> None:
    sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
    sys.stdout.flush()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("memory_dir", type=Path)
    ap.add_argument("agent_argv")
    ap.add_argument("--cycles", type=int, default=1_000_000)
    ap.add_argument("--payload", type=int, default=2000)
    ap.add_argument("--big", type=int, default=1 << 20, help="bytes of the big ledger record per cycle")
    args = ap.parse_args()
    agent = json.loads(args.agent_argv)

    store = MemoryStore(args.memory_dir)
    store.init()
    store.acquire(["checkpoint_writer", *agent])
    say("locked", os.getpid())
    cont = store.read_continuity() or {}
    session = str(cont.get("session_id") or SESSION)
    episode = int(cont.get("episode") or 0)
    ledger = store.open_ledger(session)
    say("ledger-open", ledger.seq, ledger.repaired_bytes)
    blob = "x" * args.payload
    # Big enough that a kill can land inside its one os.write and tear the ledger's last line.
    big = ("lorem ipsum dolor sit amet " * (args.big // 27 + 1))[: args.big]
    took = 0.0
    for cycle in range(args.cycles):
        episode += 1
        task_id = f"t{cycle % 5}"
        event = {"type": "task", "id": task_id, "status": "in_progress", "next_action": f"step {cycle}"}
        say("ledger", ledger.append({"kind": "event", "episode": episode, "event": event}))
        # Says how long the previous big append took, so the killer can aim at its write.
        say("ledger-big-start", f"{took:.6f}")
        t0 = time.perf_counter()
        seq = ledger.append({"kind": "blob", "episode": episode, "text": big})
        took = time.perf_counter() - t0
        say("ledger", seq)
        store.write_task(
            {
                "id": task_id,
                "title": f"task {task_id}",
                "status": "in_progress",
                "progress": (cycle % 10) / 10,
                "notes": blob[: 100 + cycle % 300],
            }
        )
        say("task", task_id)
        store.apply_memory_ops(
            [{"op": "add", "key": f"fact{cycle % 7}", "text": f"seen at cycle {cycle}"}], seq=cycle
        )
        say("memory", cycle)
        ck = store.write_checkpoint(
            {
                "session_id": session,
                "episode": episode,
                "trigger": "budget",
                "objective": "survive random kills",
                "progress": [f"cycle {cycle}"],
                "state": {"cycle": cycle, "blob": blob},
                "next_actions": [f"do cycle {cycle + 1}"],
                "tasks": [{"id": task_id, "status": "in_progress", "next_action": f"step {cycle}"}],
            }
        )
        say("checkpoint", ck["id"])
        say("ledger", ledger.append({"kind": "checkpoint", "episode": episode, "id": ck["id"]}))
        written = store.write_continuity(
            {
                "session_id": session,
                "status": "running",
                "episode": episode,
                "context_usage_percent": 42.0,
                "last_checkpoint": ck["id"],
                "active_tasks": [],
                "memory_locations": [],
                "resume_instructions": "run `aether resume`",
                "command": agent,
                "objective": "survive random kills",
                "settings": {"command": agent, "objective": "survive random kills"},
            }
        )
        say("continuity", written["_update_seq"])
        store.write_heartbeat({"pid": os.getpid(), "session_id": session, "episode": episode})
        say("heartbeat", cycle)
    ledger.close()
    store.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
