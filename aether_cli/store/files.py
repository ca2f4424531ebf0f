"""Deterministic JSON bytes and crash-safe file writes for everything under `.memory/`.

This module owns the two properties the memory layout promises for every file:
the same value always serialises to the same bytes (sorted keys, 2-space
indent, trailing newline), so git diffs show only what changed; and a reader
never sees a half-written file, because every write goes to a temp file in the
same folder, is fsynced, and is renamed over the target (then the folder is
fsynced, so the rename itself survives a power cut).

It also refuses to read or write through symlinks: a cloned repository can
plant `.memory/task_states/x.json -> ~/.bashrc`, and nothing here may follow it.
Every filesystem call a write makes (write, fsync, rename, link, truncate,
fsync of the folder) goes through the module-level `FS` object, so tests can
swap in one that fails the k-th call with EIO or ENOSPC (`use_fs`) without
mocking the OS. A failing call surfaces as `StorageError` naming the file and
the step; the previous content of the file is left as it was.

It knows nothing about what the files mean (that is the rest of `store/`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from aether_cli.errors import CorruptMemoryError, StorageError

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


class OsFS:
    """The filesystem calls behind every write under `.memory/`: the real ones.

    A seam for fault-injection tests (see `use_fs`), not an abstraction over
    storage: each method is the one `os` call it names, looked up at call time.
    """

    def write(self, fd: int, data: bytes | memoryview) -> int:
        """os.write: may write fewer bytes than given."""
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        """os.fsync of a file."""
        os.fsync(fd)

    def replace(self, src: Path, dst: Path) -> None:
        """os.replace (an atomic rename over `dst`)."""
        os.replace(src, dst)

    def link(self, src: Path, dst: Path) -> None:
        """os.link without following a symlink at `src`; FileExistsError if `dst` exists."""
        os.link(src, dst, follow_symlinks=False)

    def truncate(self, fd: int, size: int) -> None:
        """os.ftruncate."""
        os.ftruncate(fd, size)

    def fsync_dir(self, folder: Path) -> None:
        """fsync a folder, so a rename or link in it survives a power cut."""
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


FS: OsFS = OsFS()


@contextlib.contextmanager
def use_fs(fs: OsFS) -> Iterator[OsFS]:
    """Route every write of this process through `fs` for the block (tests inject faults so)."""
    global FS
    previous, FS = FS, fs
    try:
        yield fs
    finally:
        FS = previous


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of `data` to `fd`, finishing short writes."""
    view = memoryview(data)
    while view:
        view = view[FS.write(fd, view) :]


def _temp_name(path: Path) -> Path:
    # The pid in the name lets sweep_temp_files() tell a killed writer's leftover
    # from a live writer's file in progress.
    import secrets  # here: readers (`aether status`) never need it

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

    Any other filesystem failure (EIO, ENOSPC, EROFS, EACCES...) raises
    `StorageError` naming the path and the step; `path` then still holds its
    previous content (or, if only the final folder fsync failed, the new one),
    and no temp file is left behind unless even removing it failed (the next
    start sweeps it). A missing folder stays a plain `FileNotFoundError`.
    """
    path = Path(path)
    _refuse_symlink(path)
    if exclusive and os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "refusing to replace an existing file", str(path))
    tmp = _temp_name(path)
    step = "creating a temp file"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode)
        try:
            try:
                step = "writing"
                write_all(fd, data)
                if durable:
                    step = "fsync"
                    FS.fsync(fd)
            finally:
                os.close(fd)
            if exclusive:
                step = "linking into place"
                _link_exclusive(tmp, path, data, mode, durable=durable)
            else:
                _refuse_symlink(path)
                step = "renaming into place"
                FS.replace(tmp, path)
        finally:
            # After a successful replace the temp name is gone; after a link it is a
            # second name for the target; after a failure it is litter. Remove it.
            # A failure to remove it must not hide the error that matters.
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if durable:
            step = "fsync of the folder"
            FS.fsync_dir(path.parent)
    except (FileExistsError, FileNotFoundError, StorageError):
        raise
    except OSError as exc:
        raise StorageError(path, step, exc) from exc


def _link_exclusive(tmp: Path, path: Path, data: bytes, mode: int, *, durable: bool) -> None:
    try:
        FS.link(tmp, path)
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
        write_all(fd, data)
        if durable:
            FS.fsync(fd)
    except BaseException:
        # We created it (O_EXCL): a half-written file must not pass for the real one.
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    os.close(fd)


# O_NONBLOCK: opening a FIFO planted in place of a file must not wait for a writer
# (it is refused as "not a regular file" right after). No effect on regular files.
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)


def read_bytes(path: Path | str, *, limit: int | None = None) -> bytes:
    """The content of a regular file, never following a symlink.

    Raises `FileNotFoundError` if it is absent, `CorruptMemoryError` naming
    the path if it is a symlink, not a regular file or (with `limit`) larger
    than `limit` bytes, and `StorageError` if the filesystem fails the read
    (EIO, EACCES...).
    """
    # Fast path (listing 1,000 task files reads them all): open first, with
    # O_NOFOLLOW so the kernel refuses a symlink, and check the open file itself.
    # Any failure to open (absent, a symlink, a socket, EACCES...) takes the
    # checked path below, which raises exactly what it always has.
    if not _NOFOLLOW:
        return _read_bytes_checked(Path(path), limit)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return _read_bytes_checked(Path(path), limit)
    try:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CorruptMemoryError(f"{Path(path)}: not a regular file")
            _check_size(Path(path), st.st_size, limit)
            return _read_to_end(fd, st.st_size, limit, Path(path))
        except OSError as exc:
            raise StorageError(Path(path), "reading", exc) from exc
    finally:
        os.close(fd)


def _check_size(path: Path, size: int, limit: int | None) -> None:
    # A file that only ever holds a small record, grown huge (tampered, or a bad
    # merge), must not be read into memory whole just to be refused afterwards.
    if limit is not None and size > limit:
        raise CorruptMemoryError(f"{path}: {size:,} bytes, more than the {limit:,} it may hold")


def _read_to_end(fd: int, size: int, limit: int | None = None, path: Path | None = None) -> bytes:
    # Asks for one byte more than fstat's size: getting exactly `size` bytes is the
    # whole file in one call. A file that changed meanwhile is read on to its end
    # (or to `limit`: one that grows past it while being read is refused all the same).
    chunk = os.read(fd, size + 1)
    if len(chunk) == size:
        return chunk
    parts, total = [chunk], len(chunk)
    while chunk := os.read(fd, max(size + 1, 1 << 16)):
        parts.append(chunk)
        total += len(chunk)
        if limit is not None and total > limit:
            raise CorruptMemoryError(f"{path}: grew past {limit:,} bytes while being read")
    return b"".join(parts)


def _read_bytes_checked(path: Path, limit: int | None = None) -> bytes:
    """`read_bytes` by lstat first: names each way a path can fail (the slow path)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise
    except NotADirectoryError as exc:
        raise CorruptMemoryError(f"{path}: a folder on its path is not a directory") from exc
    except OSError as exc:
        raise StorageError(path, "looking up", exc) from exc
    if stat.S_ISLNK(st.st_mode):
        raise CorruptMemoryError(f"{path}: is a symlink; refusing to follow it")
    if not stat.S_ISREG(st.st_mode):
        raise CorruptMemoryError(f"{path}: not a regular file")
    _check_size(path, st.st_size, limit)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptMemoryError(f"{path}: is a symlink; refusing to follow it") from exc
        raise StorageError(path, "opening", exc) from exc
    try:
        with os.fdopen(fd, "rb") as fh:
            return fh.read() if limit is None else _read_to_end(fh.fileno(), st.st_size, limit, path)
    except OSError as exc:
        raise StorageError(path, "reading", exc) from exc


def read_json(path: Path | str, *, limit: int | None = None) -> Any:
    """Parse the JSON file at `path`.

    Raises `FileNotFoundError` if it is absent, and `CorruptMemoryError`
    ("<path>: invalid JSON at line L, column C (<reason>)", or "<path>: <reason>")
    if it is not valid JSON, not a regular file, a symlink, or larger than `limit` bytes.
    """
    data = read_bytes(path, limit=limit)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CorruptMemoryError(f"{path}: {decode_error_text(exc)}") from exc


def read_object(path: Path | str, *, limit: int | None = None) -> dict[str, Any] | None:
    """The JSON object at `path`, None if absent, CorruptMemoryError if anything else
    (including a file larger than `limit` bytes)."""
    try:
        value = read_json(path, limit=limit)
    except FileNotFoundError:
        return None
    if not isinstance(value, dict):
        raise CorruptMemoryError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def refuse_hard_link(fd: int, path: Path) -> None:
    """CorruptMemoryError (after closing `fd`) if the file open at `fd` has other names.

    O_NOFOLLOW stops symlinks, not hard links: a file written in place (the
    ledger, a lock) that is also linked from elsewhere would carry aether's
    writes, or its truncation, to a file outside `.memory/`.
    """
    links = os.fstat(fd).st_nlink
    if links > 1:
        os.close(fd)
        raise CorruptMemoryError(
            f"{path}: has {links} hard links; refusing to write to a file that is also elsewhere "
            "(remove it, aether recreates it)"
        )


def refuse_hard_linked_path(path: Path) -> None:
    """The same check by name, for files opened by a library (the lock files); nothing if absent."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if st.st_nlink > 1:
        raise CorruptMemoryError(
            f"{path}: has {st.st_nlink} hard links; refusing to write to a file that is also elsewhere "
            "(remove it, aether recreates it)"
        )


def open_nofollow(path: Path) -> int:
    """A read-only descriptor of `path`; CorruptMemoryError if it is a symlink (for streaming reads)."""
    try:
        return os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise CorruptMemoryError(f"{path}: is a symlink; refusing to follow it") from exc
        raise


def decode_error_text(exc: orjson.JSONDecodeError) -> str:
    """'invalid JSON at line L, column C (reason)': a report that points at the bad byte."""
    return f"invalid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})"


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
