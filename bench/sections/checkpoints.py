"""7. Checkpoint cost and `.memory/` size, on a store of `sizes.memory_tasks` tasks and
`sizes.memory_checkpoints` checkpoints built here with MemoryStore directly.

The tasks are written first (most of them done, a few open, as after a long run),
then each checkpoint is distilled from a small episode log by aether's own
distiller and written by `MemoryStore.write_checkpoint` (atomic and fsynced).

`write_checkpoint` also rebuilds context_index.json from every checkpoint and task
file, which with a thousand of each takes most of a second: building the store
that way would take many minutes. So the bulk build defers that rebuild (a
subclass whose `update_context_index` does nothing; the files are written by the
real code) and times each write without it; the index is then rebuilt once (timed),
and `sizes.checkpoint_samples` more checkpoints are written and timed through the
plain MemoryStore, at the full size: that is the cost of one checkpoint. The store
is kept for the start-up section.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import BenchError, Sizes, percentile

OPEN_TASKS = 10
OBJECTIVE = "Port the service to the v2 API without downtime"


def _task(i: int, total: int) -> dict[str, Any]:
    done = i < total - OPEN_TASKS
    return {
        "id": f"task-{i:04d}",
        "title": f"Port endpoint group {i} to the v2 API",
        "status": "done" if done else "in_progress",
        "progress": 1.0 if done else 0.4,
        "next_action": "" if done else f"update the handlers in src/api/group_{i}.py and rerun its tests",
        "notes": "kept the v1 route as an alias until clients move" if i % 3 == 0 else "",
        "files": [f"src/api/group_{i}.py", f"tests/api/test_group_{i}.py"],
    }


def _episode(k: int, open_tasks: dict[str, dict[str, Any]]) -> Any:
    """A small episode log like one relaunch's worth of work."""
    from aether_cli import protocol as P
    from aether_cli.episode_log import EpisodeLog

    log = EpisodeLog(objective=OBJECTIVE, prior_tasks=open_tasks)
    task_ids = sorted(open_tasks)
    for j in range(12):
        call = f"k{k}-{j}"
        path = f"src/api/group_{(k + j) % 997}.py"
        log.add(
            P.decode_obj(
                {
                    "type": "tool_call",
                    "id": call,
                    "name": "edit_file" if j % 3 else "read_file",
                    "input": {"path": path},
                },
                "",
            )
        )
        failed = j == 7 and k % 5 == 0
        out = "E   AssertionError: expected 200, got 404" if failed else f"ok: {path} ({40 + j} lines)"
        log.add(P.decode_obj({"type": "tool_result", "id": call, "output": out, "is_error": failed}, ""))
    log.add(
        P.decode_obj(
            {
                "type": "message",
                "role": "assistant",
                "text": f"Decision: keep the v1 alias for group {k} until the clients move.",
            },
            "",
        )
    )
    tid = task_ids[k % len(task_ids)]
    log.add(
        P.decode_obj(
            {
                "type": "task",
                "id": tid,
                "status": "in_progress",
                "progress": 0.5,
                "next_action": f"rerun tests/api/test_{tid}.py after the fix",
            },
            "",
        )
    )
    return log


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


class _Checkpointer:
    """Distils and writes checkpoint k after k-1, like successive relaunches."""

    def __init__(self, open_tasks: dict[str, dict[str, Any]]) -> None:
        from aether_cli.tokens import load_counter

        self.open_tasks = open_tasks
        self.counter = load_counter()
        self.parent: dict[str, Any] | None = None
        self.k = 0
        self.distill_s: list[float] = []

    def write(self, store: Any) -> float:
        """Write the next checkpoint to `store`; return the seconds write_checkpoint took."""
        from aether_cli.distill import distill

        log = _episode(self.k, self.open_tasks)
        draft, took = _timed(
            lambda: distill(
                trigger="budget",
                objective=OBJECTIVE,
                log=log,
                parent=self.parent,
                count=self.counter.count,
                max_tokens=4000,
            )
        )
        self.distill_s.append(took)
        draft.update(
            {
                "parent": self.parent["id"] if self.parent else None,
                "session_id": "ses_bench",
                "episode": self.k + 1,
                "tokenizer": self.counter.name,
            }
        )
        draft["metrics"]["episode_tokens"] = 6000 + self.k
        self.k += 1
        self.parent, took = _timed(store.write_checkpoint, draft)
        return took


def build(root: Path, tasks: int, checkpoints: int, samples: int = 0) -> dict[str, Any]:
    """Build project root/.memory (tasks, then checkpoints, then `samples` timed full writes)."""
    from aether_cli.store import MemoryStore

    class DeferredIndexStore(MemoryStore):
        def update_context_index(self, *, token_counts: dict[str, int] | None = None) -> dict[str, Any]:
            return {}

    bulk = DeferredIndexStore(root / ".memory")
    bulk.init()
    task_s = [_timed(bulk.write_task, _task(i, tasks))[1] for i in range(tasks)]
    open_tasks = {t["id"]: t for t in bulk.list_tasks() if t.get("status") != "done"}
    writer = _Checkpointer(open_tasks)
    bulk_s = [writer.write(bulk) for _ in range(checkpoints)]
    store = MemoryStore(root / ".memory")
    index_s = [_timed(store.update_context_index)[1] for _ in range(3)]
    write_s = [writer.write(store) for _ in range(samples)]
    if len(store.checkpoint_ids()) != checkpoints + samples or len(store.list_tasks()) != tasks:
        raise BenchError("checkpoint build: the store does not hold what was written")
    list_s = [_timed(store.list_tasks)[1] for _ in range(3)]
    return {
        "task_write_s": task_s,
        "distill_s": writer.distill_s,
        "bulk_write_s": bulk_s,
        "write_s": write_s,
        "index_s": index_s,
        "list_tasks_s": list_s,
        "sizes": _sizes(store.root),
    }


def _sizes(root: Path) -> dict[str, Any]:
    def files(folder: Path) -> list[Path]:
        return [p for p in folder.rglob("*") if p.is_file()]

    tasks = files(root / "task_states")
    ckpts = files(root / "checkpoints")
    everything = files(root)
    return {
        "task_state_bytes_mean": round(sum(p.stat().st_size for p in tasks) / max(1, len(tasks))),
        "checkpoint_bytes_mean": round(sum(p.stat().st_size for p in ckpts) / max(1, len(ckpts))),
        "context_index_bytes": (root / "context_index.json").stat().st_size,
        "total_bytes": sum(p.stat().st_size for p in everything),
        "total_disk_bytes": sum(p.stat().st_blocks * 512 for p in everything),
        "files": len(everything),
    }


def ms(values: list[float], p: float) -> float | None:
    """The p-th percentile of some seconds, in milliseconds."""
    x = percentile(values, p)
    return None if x is None else round(x * 1000, 2)


def run(sizes: Sizes, root: Path) -> dict[str, Any]:
    """Build the store in root and summarise: write p50/p99 (with and without the index), sizes."""
    built = build(root, sizes.memory_tasks, sizes.memory_checkpoints, sizes.checkpoint_samples)
    w = built["write_s"]
    b = built["bulk_write_s"]
    tenth = max(1, len(b) // 10)
    return {
        "tasks": sizes.memory_tasks,
        "checkpoints": sizes.memory_checkpoints,
        "samples": len(w),
        "write_checkpoint_ms": {"p50": ms(w, 50), "p99": ms(w, 99), "max": ms(w, 100)},
        "write_without_index_ms": {"p50": ms(b, 50), "p99": ms(b, 99)},
        "write_without_index_first_tenth_p50_ms": ms(b[:tenth], 50),
        "write_without_index_last_tenth_p50_ms": ms(b[-tenth:], 50),
        "update_context_index_ms": {"p50": ms(built["index_s"], 50)},
        "distill_ms": {"p50": ms(built["distill_s"], 50), "p99": ms(built["distill_s"], 99)},
        "write_task_ms": {"p50": ms(built["task_write_s"], 50), "p99": ms(built["task_write_s"], 99)},
        "list_tasks_ms": {"p50": ms(built["list_tasks_s"], 50)},
        "size": built["sizes"],
    }
