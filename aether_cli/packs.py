"""Resume packs: one zip that carries a session to another machine (`aether pack`).

A pack holds, under the names they have inside `.memory/`: the checkpoint and
its parent chain (back to the first, or to a parent gc pruned), the
continuity record, every task state, the project memory, the templates,
pruned.json, and with `with_ledger` the session's run ledger (as
`runs/<session>.jsonl`). `manifest.json` lists every other entry with its
size and sha256, the aether version, the session and the checkpoint.

This module owns what a pack may contain (`entry_kind`, the size caps), and
builds one; `unpack` reads one back, trusting nothing in it. It knows
nothing of the CLI. The zip is written to a temp file beside the output and
renamed into place, so a failed pack leaves no half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import zipfile
from pathlib import Path
from typing import Any

from aether_cli import __version__, ids
from aether_cli import constants as C
from aether_cli.errors import AetherError, NotFoundError
from aether_cli.store import MemoryStore
from aether_cli.store.files import dumps, read_bytes

MANIFEST = "manifest.json"
FORMAT = "aether-pack"
FORMAT_VERSION = 1
PRUNED = "pruned.json"
# Caps an unpack enforces (and a pack respects, so that every pack unpacks).
MAX_ENTRY_BYTES = 64 << 20
MAX_TOTAL_BYTES = 256 << 20
MAX_ENTRIES = 50_000
# JSON deflates 5-20x; a zip bomb, hundreds to millions. Small entries are exempt.
MAX_RATIO = 200
RATIO_FLOOR_BYTES = 1 << 20
# Entries get a fixed time, so the same memory packs to the same entries.
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
_TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
_TOP_FILES = {C.CONTINUITY_FILE, C.PROJECT_MEMORY_FILE, PRUNED}


class PackError(AetherError):
    """A pack cannot be made, or a zip is refused as a pack (nothing was written)."""


def entry_kind(name: str) -> str | None:
    """What an entry name is in a pack ("checkpoint", "task", ...), None if a pack never holds it."""
    if name == MANIFEST:
        return "manifest"
    if name in _TOP_FILES:
        return name
    folder, _, base = name.partition("/")
    if not base or "/" in base:
        return None
    if folder == C.CHECKPOINTS_DIR and ids.parse_checkpoint_file(base):
        return "checkpoint"
    if folder == C.TASKS_DIR and (m := ids.TASK_FILE.match(base)) and ids.valid_task_id(m.group(1)):
        return "task"
    if folder == C.TEMPLATES_DIR and _TEMPLATE_NAME.match(base):
        return "template"
    if folder == C.RUNS_DIR and base.endswith(".jsonl") and ids.valid_task_id(base[: -len(".jsonl")]):
        return "ledger"
    return None


def sha256(data: bytes) -> str:
    """The hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def _chain(store: MemoryStore, ref: str) -> tuple[list[tuple[str, bytes]], str]:
    """The checkpoint `ref` names and its parents, newest first; and why the chain ends."""
    checkpoint_id = store.resolve_checkpoint(ref)
    chain: list[tuple[str, bytes]] = []
    pruned = store.pruned_ids()
    while True:
        ck = store.read_checkpoint(checkpoint_id)  # the seal is checked: a pack never carries a broken one
        chain.append((checkpoint_id, read_bytes(store.checkpoint_path(checkpoint_id))))
        parent = ck.get("parent")
        if not isinstance(parent, str) or not parent:
            return chain, "root"
        seq, parent_seq = ids.checkpoint_seq(checkpoint_id), ids.checkpoint_seq(parent)
        if parent_seq is None or seq is None or parent_seq >= seq:
            return chain, "missing"  # not a checkpoint id, or a loop: no further
        if not os.path.lexists(store.checkpoints_dir / f"{parent}.json"):
            return chain, "pruned" if parent in pruned else "missing"
        checkpoint_id = parent


def _templates(store: MemoryStore) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in sorted(os.scandir(store.templates_dir), key=lambda e: e.name):
            if entry.is_file(follow_symlinks=False) and _TEMPLATE_NAME.match(entry.name):
                out.append((f"{C.TEMPLATES_DIR}/{entry.name}", read_bytes(entry.path)))
    return out


def collect(
    store: MemoryStore, ref: str | None, *, with_ledger: bool
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The entries of a pack of `ref` (default: the latest checkpoint), and its manifest."""
    if not store.exists():
        raise NotFoundError(f"no {store.root} here: nothing to pack")
    cont = store.read_continuity()
    if cont is None:
        raise NotFoundError(f"no session in {store.root} (no {C.CONTINUITY_FILE}): nothing to pack")
    session = cont.get("session_id")
    if not isinstance(session, str) or not ids.valid_task_id(session):
        raise PackError(f"{store.continuity_path}: its session_id {session!r} cannot be packed")
    chain, chain_end = _chain(store, ref or "latest")
    entries = {f"{C.CHECKPOINTS_DIR}/{cid}.json": raw for cid, raw in chain}
    entries[C.CONTINUITY_FILE] = read_bytes(store.continuity_path)
    for task in store.list_tasks():  # checked as it is read: a broken task file stops the pack
        entries[store.task_file(task["id"])] = read_bytes(store.root / store.task_file(task["id"]))
    if store.project_memory_path.exists():
        store.read_project_memory()
        entries[C.PROJECT_MEMORY_FILE] = read_bytes(store.project_memory_path)
    if pruned := store.pruned_ids():
        entries[PRUNED] = dumps({"pruned": sorted(pruned, key=lambda c: (len(c), c))})
    entries.update(_templates(store))
    if with_ledger:
        try:
            entries[f"{C.RUNS_DIR}/{session}.jsonl"] = read_bytes(store.ledger_path(session))
        except FileNotFoundError:
            raise PackError(
                f"no ledger of session {session} on this machine (pack without --with-ledger)"
            ) from None
    _check_sizes(entries)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "aether_version": __version__,
        "session_id": session,
        "checkpoint": chain[0][0],
        "chain": [cid for cid, _ in chain],
        "chain_end": chain_end,
        "created_at": store.now(),
        "entries": {
            name: {"bytes": len(data), "sha256": sha256(data)} for name, data in sorted(entries.items())
        },
    }
    return entries, manifest


def _check_sizes(entries: dict[str, bytes]) -> None:
    for name, data in entries.items():
        if len(data) > MAX_ENTRY_BYTES:
            raise PackError(
                f"{name} is {len(data)} bytes, over a pack's {MAX_ENTRY_BYTES}-byte cap per entry"
            )
    total = sum(map(len, entries.values()))
    if total > MAX_TOTAL_BYTES:
        raise PackError(f"the pack would hold {total} bytes, over its {MAX_TOTAL_BYTES}-byte cap")


def _zip_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # unix: the mode below is read as one
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info


def pack(store: MemoryStore, ref: str | None, out: Path, *, with_ledger: bool = False) -> dict[str, Any]:
    """Write the pack of `ref` to `out` (replacing it); return the manifest."""
    entries, manifest = collect(store, ref, with_ledger=with_ledger)
    out = Path(os.path.abspath(out))
    if out.is_dir():
        raise PackError(f"{out} is a folder; name the zip file to write (-o FILE.zip)")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            zf.writestr(_zip_info(MANIFEST), dumps(manifest))
            for name in sorted(entries):
                zf.writestr(_zip_info(name), entries[name])
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return manifest
