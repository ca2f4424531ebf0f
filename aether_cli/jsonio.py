"""Deterministic JSON bytes and crash-safe file writes for everything under `.memory/`.

This module owns the two properties the memory layout promises for every file:
the same value always serialises to the same bytes (sorted keys, 2-space
indent, trailing newline), so git diffs show only what changed; and a reader
never sees a half-written file, because every write goes to a temp file in the
same folder, is fsynced, and is renamed over the target (then the folder is
fsynced, so the rename itself survives a power cut).

It also refuses to read or write through symlinks: a cloned repository can
plant `.memory/task_states/x.json -> ~/.bashrc`, and nothing here may follow it.
It knows nothing about what the files mean (that is `store.py`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import orjson

from aether_cli.errors import CorruptMemoryError

_OPTIONS = orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS

# O_NOFOLLOW makes the kernel itself refuse a symlink that appears between our
# check and our open (a check alone would leave a race).
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _scrub(obj: Any) -> Any:
    """Replace lone surrogates (undecodable bytes smuggled through `surrogateescape`)."""
    if isinstance(obj, str):
        return obj.encode("utf-8", "replace").decode("utf-8")
    if isinstance(obj, dict):
        return {k: _scrub(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_scrub(v) for v in obj]
    return obj


def dumps(obj: Any) -> bytes:
    """Serialise `obj` deterministically: sorted keys, 2-space indent, trailing newline.

    NaN and infinities become `null` (orjson never writes the non-standard
    tokens); a dict with non-string keys raises `TypeError`, as does any value
    JSON cannot hold. Lone surrogates in strings are replaced rather than
    failing the write.
    """
    return _encode(obj, _OPTIONS) + b"\n"


def dumps_line(obj: Any) -> bytes:
    """One compact JSON line (sorted keys, trailing newline), for JSONL ledgers."""
    return _encode(obj, orjson.OPT_SORT_KEYS) + b"\n"


def _encode(obj: Any, options: int) -> bytes:
    try:
        return orjson.dumps(obj, option=options)
    except orjson.JSONEncodeError as exc:
        if "surrogates" not in str(exc):
            raise
        return orjson.dumps(_scrub(obj), option=options)


def loads(data: bytes | str) -> Any:
    """Parse JSON text; raises `orjson.JSONDecodeError` (a `ValueError`) on bad input."""
    return orjson.loads(data)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temp_name(path: Path) -> Path:
    # The pid in the name lets sweep_temp_files() tell a killed writer's leftover
    # from a live writer's file in progress.
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _refuse_symlink(path: Path) -> None:
    if os.path.islink(path):
        raise CorruptMemoryError(f"{path}: is a symlink; refusing to write through it")


def atomic_write(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o644,
    exclusive: bool = False,
    durable: bool = True,
) -> None:
    """Replace (or, with `exclusive`, create) `path` with `data` atomically.

    The data goes to `.<name>.<pid>-<random>.tmp` in the same folder, is
    fsynced, then renamed over `path`; with `exclusive=True` it is hard-linked
    into place instead, so an existing target is never replaced
    (`FileExistsError`). The folder is fsynced afterwards. `durable=False` skips
    both fsyncs (for hot, advisory files such as the heartbeat): still atomic
    for readers, just not guaranteed to survive a power cut. `mode` is applied
    through the process umask. A `path` that is a symlink is refused with
    `CorruptMemoryError` and its target is left untouched.
    """
    path = Path(path)
    _refuse_symlink(path)
    if exclusive and os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "refusing to replace an existing file", str(path))
    tmp = _temp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            _link_exclusive(tmp, path, data, mode, durable=durable)
        else:
            _refuse_symlink(path)
            os.replace(tmp, path)
    finally:
        # After a successful replace the temp name is gone; after a link it is a
        # second name for the target; after a failure it is litter. Remove it.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if durable:
        _fsync_dir(path.parent)


def _link_exclusive(tmp: Path, path: Path, data: bytes, mode: int, *, durable: bool) -> None:
    try:
        os.link(tmp, path, follow_symlinks=False)
        return
    except FileExistsError:
        raise
    except OSError as exc:
        # Some filesystems (vfat, a few FUSE mounts) have no hard links. O_EXCL
        # still never replaces an existing file; only the all-or-nothing view
        # for a concurrent reader is lost there.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_bytes(path: Path) -> bytes:
    """The content of a regular file, never following a symlink.

    Raises `FileNotFoundError` if it is absent and `CorruptMemoryError` naming
    the path if it is a symlink or not a regular file.
    """
    path = Path(path)
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise CorruptMemoryError(f"{path}: is a symlink; refusing to follow it")
    if not stat.S_ISREG(st.st_mode):
        raise CorruptMemoryError(f"{path}: not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptMemoryError(f"{path}: is a symlink; refusing to follow it") from exc
        raise
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def read_json(path: Path) -> Any:
    """Parse the JSON file at `path`.

    Raises `FileNotFoundError` if it is absent, and `CorruptMemoryError`
    ("<path>: <reason>") if it is not valid JSON, not a regular file, or a symlink.
    """
    data = read_bytes(path)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptMemoryError(f"{path}: invalid JSON ({exc})") from exc


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def sweep_temp_files(folder: Path) -> int:
    """Remove leftover `.*.tmp` files in `folder` (not recursive); return how many.

    A temp file whose name carries the pid of a live process is a write in
    progress and is kept; anything else (a killed writer's leftover, or a name
    without a pid) is removed. A missing folder sweeps nothing.
    """
    count = 0
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        if entry.is_dir(follow_symlinks=False):
            continue
        stem = name[:-4]
        tag = stem.rsplit(".", 1)[-1] if "." in stem[1:] else ""
        pid_text = tag.split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) > 0 and pid_alive(int(pid_text)):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        count += 1
    return count
