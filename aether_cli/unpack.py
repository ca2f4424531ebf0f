"""`aether unpack`: a resume pack checked in full, then installed as a `.memory/`.

A pack is untrusted input. In this order, and nothing is written before the
first three pass:

1. the zip itself: it opens (not a zip, a truncated one: refused), at most
   `MAX_ENTRIES` entries, no duplicate names (nor two that differ only in case);
2. each entry: no absolute path, no `..` (zip-slip), no NUL or backslash, a
   regular file (a symlink or a folder entry is refused, read from the zip's
   external attributes), not encrypted, stored or deflated, a name a pack may
   hold (`packs.entry_kind`), and within the caps: declared size per entry and
   in total, and the compression ratio (a zip bomb);
3. the manifest: an aether pack of a known version, listing exactly the
   other entries (none missing, none extra);
4. then the entries are extracted into a temp folder beside the target
   (inside the target's parent), each read no further than its declared size
   and checked against the manifest's size and sha256, and the content is
   checked (every checkpoint's seal, the continuity record's session);
5. then the files are moved into place, the continuity record last.

Any failure is one `PackError` line, and the temp folder goes with it.

Where it goes: a target `.memory` with no session (absent, or only what
`aether init` writes) receives the pack; one holding the same session at an
older or equal `_update_seq` is brought up to the pack (same-named
checkpoints must be identical: they are content-addressed); a newer copy of
the session, another session, or an unreadable one is refused unless
`force`, which moves the old folder aside (`.memory.replaced-<time>`) rather
than mixing the two; a live run's folder is always refused. The pack's
ledger goes to `runs/imported/<session>.jsonl`, never to where this
machine's own ledger lives (that file would read as "this session ran
here"); nothing else is written under `runs/` but the lock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

from aether_cli import constants as C
from aether_cli import packs as K
from aether_cli.errors import AetherError, LockedError
from aether_cli.store import MemoryStore
from aether_cli.store.files import loads, read_bytes
from aether_cli.store.layout import check_dir

_READ_CHUNK = 1 << 16
# Where a pack's ledger goes under runs/: not runs/<session>.jsonl, which is this machine's own.
IMPORTED = "imported"


def _refuse(path: Path, why: str) -> K.PackError:
    return K.PackError(f"{path}: refused: {why}; nothing written")


def _name_problem(name: str) -> str | None:
    if "\x00" in name or "\\" in name:
        return f"entry {name!r} has a NUL or a backslash in its name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"entry {name!r} is an absolute path"
    parts = name.split("/")
    if ".." in parts:
        return f"entry {name!r} climbs out of the target with '..' (zip-slip)"
    if "" in parts or "." in parts:
        return f"entry {name!r} is not a plain relative path"
    return None


def _info_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return f"entry {name!r} is a symlink"
    if info.is_dir() or (stat.S_IFMT(mode) not in (0, stat.S_IFREG)):
        return f"entry {name!r} is not a regular file"
    if info.flag_bits & 0x1:
        return f"entry {name!r} is encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return f"entry {name!r} uses an unsupported compression"
    if info.file_size > K.MAX_ENTRY_BYTES:
        return f"entry {name!r} declares {info.file_size} bytes, over the {K.MAX_ENTRY_BYTES}-byte cap"
    if info.file_size > K.RATIO_FLOOR_BYTES and info.file_size > K.MAX_RATIO * max(info.compress_size, 1):
        return f"entry {name!r} expands {info.file_size // max(info.compress_size, 1)}x (a zip bomb?)"
    if K.entry_kind(name) is None:
        return f"entry {name!r} is not part of an aether pack"
    return None


def _check_entries(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Steps 1 and 2 of the module docstring, from the zip's directory alone."""
    if len(infos) > K.MAX_ENTRIES:
        raise _refuse(path, f"{len(infos)} entries, over the cap of {K.MAX_ENTRIES}")
    seen: set[str] = set()
    total = 0
    for info in infos:
        problem = _name_problem(info.filename) or _info_problem(info)
        if problem:
            raise _refuse(path, problem)
        folded = info.filename.casefold()
        if folded in seen:
            raise _refuse(path, f"entry {info.filename!r} appears twice")
        seen.add(folded)
        total += info.file_size
        if total > K.MAX_TOTAL_BYTES:
            raise _refuse(path, f"the entries declare over {K.MAX_TOTAL_BYTES} bytes in total")


def _read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, sink: Any = None) -> bytes:
    """An entry's bytes (or, with `sink`, written to it), never more than it declared."""
    parts: list[bytes] = []
    got = 0
    with zf.open(info) as src:
        while chunk := src.read(_READ_CHUNK):
            got += len(chunk)
            if got > info.file_size:
                raise ValueError("holds more than it declares")
            if sink is None:
                parts.append(chunk)
            else:
                sink.write(chunk)
    return b"".join(parts)


def _manifest(path: Path, zf: zipfile.ZipFile, names: set[str]) -> dict[str, Any]:
    """Step 3: the manifest, checked against the entries."""
    if K.MANIFEST not in names:
        raise _refuse(path, f"no {K.MANIFEST}: not an aether pack")
    try:
        data = loads(_read_entry(zf, zf.getinfo(K.MANIFEST)))
    except ValueError as exc:
        raise _refuse(path, f"{K.MANIFEST} does not parse ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != K.FORMAT:
        raise _refuse(path, f"{K.MANIFEST} is not an aether pack's")
    if data.get("format_version") != K.FORMAT_VERSION:
        raise _refuse(path, f"pack format version {data.get('format_version')!r} is not {K.FORMAT_VERSION}")
    listed = data.get("entries")
    if not isinstance(listed, dict) or not all(_entry_record_ok(v) for v in listed.values()):
        raise _refuse(path, f"{K.MANIFEST}: entries must map each name to its bytes and sha256")
    present = names - {K.MANIFEST}
    if extra := sorted(present - set(listed)):
        raise _refuse(path, f"entry {extra[0]!r} is not in the manifest")
    if missing := sorted(set(listed) - present):
        raise _refuse(path, f"the manifest lists {missing[0]!r}, which the zip does not hold")
    checkpoint, session = data.get("checkpoint"), data.get("session_id")
    if f"{C.CHECKPOINTS_DIR}/{checkpoint}.json" not in listed or C.CONTINUITY_FILE not in listed:
        raise _refuse(path, "the manifest's checkpoint or the continuity record is not in the pack")
    if not isinstance(session, str) or K.entry_kind(f"{C.RUNS_DIR}/{session}.jsonl") != "ledger":
        raise _refuse(path, f"the manifest's session_id {session!r} is not a valid id")
    return data


def _entry_record_ok(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and type(value.get("bytes")) is int
        and isinstance(value.get("sha256"), str)
        and len(value["sha256"]) == 64
    )


def _extract(path: Path, zf: zipfile.ZipFile, manifest: dict[str, Any], temp: Path) -> None:
    """Step 4: every entry into `temp`, each checked against its size and sha256."""
    import hashlib

    for info in zf.infolist():
        if info.filename == K.MANIFEST:
            continue
        want = manifest["entries"][info.filename]
        dest = temp / info.filename
        dest.parent.mkdir(parents=True, exist_ok=True)
        with open(dest, "xb") as fh:
            digest = _Hashing(fh, hashlib.sha256())
            _read_entry(zf, info, digest)
        if K.entry_kind(info.filename) == "checkpoint":
            os.chmod(dest, 0o444)  # as the store makes them: never rewritten
        if digest.count != want["bytes"] or digest.hexdigest() != want["sha256"]:
            raise _refuse(path, f"entry {info.filename!r} does not match its sha256 in the manifest")


class _Hashing:
    """A file sink that hashes and counts what passes."""

    def __init__(self, fh: Any, digest: Any) -> None:
        self.fh, self.digest, self.count = fh, digest, 0

    def write(self, chunk: bytes) -> None:
        self.fh.write(chunk)
        self.digest.update(chunk)
        self.count += len(chunk)

    def hexdigest(self) -> str:
        return str(self.digest.hexdigest())


def _check_content(path: Path, temp: Path, manifest: dict[str, Any]) -> None:
    """Step 4, the content: checkpoint seals, the continuity record, tasks and project memory parse."""
    staged = MemoryStore(temp)
    try:
        for name in manifest["entries"]:
            if K.entry_kind(name) == "checkpoint":
                staged.read_checkpoint(Path(name).stem)
        cont = staged.read_continuity() or {}
        staged.list_tasks()
        staged.read_project_memory()
    except AetherError as exc:
        raise _refuse(path, str(exc).replace(str(temp) + os.sep, "")) from None
    if cont.get("session_id") != manifest["session_id"]:
        raise _refuse(path, "the continuity record names another session than the manifest")


def read_pack(path: Path, temp: Path) -> dict[str, Any]:
    """Steps 1-4 into the (empty) folder `temp`; return the manifest. PackError on any failure."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            _check_entries(path, infos)
            manifest = _manifest(path, zf, {i.filename for i in infos})
            _extract(path, zf, manifest, temp)
    except FileNotFoundError:
        raise K.PackError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as exc:
        raise _refuse(path, f"not a readable zip ({exc})") from None
    _check_content(path, temp, manifest)
    return manifest


def unpack(path: Path, target: Path, *, force: bool = False) -> dict[str, Any]:
    """Check the pack at `path` and install it as the `.memory` folder `target` (see the module docstring)."""
    path, target = Path(os.path.abspath(path)), Path(os.path.abspath(target))
    _preflight(path)
    parent = target.parent
    made_parent = not parent.exists()
    parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=".aether-unpack-", dir=parent))
    umask = os.umask(0o022)
    os.umask(umask)
    os.chmod(temp, 0o777 & ~umask)  # it may become the .memory folder itself: not mkdtemp's 0700
    try:
        manifest = read_pack(path, temp)
        moved_aside = _install(temp, target, manifest, force=force)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        if made_parent:
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise
    shutil.rmtree(temp, ignore_errors=True)
    return {
        "memory_dir": str(target),
        "session_id": manifest["session_id"],
        "checkpoint": manifest["checkpoint"],
        "files": len(manifest["entries"]),
        "aether_version": manifest.get("aether_version"),
        "moved_aside": str(moved_aside) if moved_aside else None,
    }


def _preflight(path: Path) -> None:
    """Steps 1-3 before anything is created, so a hostile zip leaves not even a temp folder."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            _check_entries(path, infos)
            _manifest(path, zf, {i.filename for i in infos})
    except FileNotFoundError:
        raise K.PackError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise K.PackError(f"{path}: is a folder, not a pack") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as exc:
        raise _refuse(path, f"not a readable zip ({exc})") from None


def _verdict(store: MemoryStore, temp: Path, manifest: dict[str, Any]) -> str:
    """ "fresh", "merge", or why the target may not take the pack (read only)."""
    if not os.path.lexists(store.root):
        return "fresh"
    if not store.root.is_dir():
        return "is not a folder"
    for folder in (store.checkpoints_dir, store.tasks_dir, store.templates_dir, store.runs_dir):
        check_dir(folder)  # a planted symlink is refused (CorruptMemoryError) before anything moves
    try:
        here = store.read_continuity()
    except AetherError:
        return "holds a session whose session_continuity.json cannot be read"
    if here is None:
        return "holds checkpoints but no session record" if store.checkpoint_ids() else "merge"
    if here.get("session_id") != manifest["session_id"]:
        return f"holds another session ({here.get('session_id')!r})"
    theirs = loads((temp / C.CONTINUITY_FILE).read_bytes()).get("_update_seq")
    ours = here.get("_update_seq")
    if type(ours) is int and type(theirs) is int and ours > theirs:
        return f"holds a newer copy of session {manifest['session_id']} (update {ours}, the pack's {theirs})"
    for name in manifest["entries"]:
        mine = store.root / name
        same_name = K.entry_kind(name) == "checkpoint" and os.path.lexists(mine)
        if same_name and read_bytes(mine) != (temp / name).read_bytes():
            return f"holds a different {name}"
    return "merge"


def _install(temp: Path, target: Path, manifest: dict[str, Any], *, force: bool) -> Path | None:
    """Step 5: move the checked files into `target`; return where an old folder was moved, if one was."""
    store = MemoryStore(target)
    if store.exists() and (holder := store.holder()) is not None:
        raise LockedError(
            f"{target} is in use by a live aether run (pid {holder.get('pid')}); nothing written"
        )
    verdict = _verdict(store, temp, manifest)
    moved: Path | None = None
    if verdict not in ("fresh", "merge"):
        if not force:
            raise K.PackError(
                f"{target} {verdict}; nothing written "
                f"(--force moves it aside to {target.name}.replaced-<time>)"
            )
        stamp = store.now().replace(":", "").replace("-", "").replace(".", "")
        moved = target.with_name(f"{target.name}.replaced-{stamp}")
        os.rename(target, moved)
        store, verdict = MemoryStore(target), "fresh"
    ledger = temp / C.RUNS_DIR / f"{manifest['session_id']}.jsonl"
    if ledger.exists():
        (temp / C.RUNS_DIR / IMPORTED).mkdir()
        os.rename(ledger, temp / C.RUNS_DIR / IMPORTED / ledger.name)
    if verdict == "fresh":
        os.rename(temp, target)  # all at once: the folder appears complete or not at all
        store.init()
    else:
        with store.holding(["aether", "unpack"]):
            store.init()
            _merge(store, temp)
    store.update_context_index()
    return moved


def _merge(store: MemoryStore, temp: Path) -> None:
    """Move the staged files over the target's; the continuity record last, a local ledger kept."""
    from aether_cli.store.pruned import parse

    staged = sorted(p for p in temp.rglob("*") if p.is_file())
    last = temp / C.CONTINUITY_FILE
    for src in [p for p in staged if p != last] + [last]:
        rel = src.relative_to(temp).as_posix()
        dest = store.root / rel
        if rel == K.PRUNED:
            store.record_pruned(sorted(parse(src.read_bytes())))
            continue
        if os.path.lexists(dest) and (K.entry_kind(rel) == "checkpoint" or rel.startswith(C.RUNS_DIR + "/")):
            continue  # a checkpoint here is the same (checked); a ledger here is this machine's own
        dest.parent.mkdir(exist_ok=True)
        os.replace(src, dest)
