"""The git merge driver for aether's JSON files: what git runs on them, and its registration.

Git merges `.memory/` with no help for the files that never collide
(checkpoints are named by their content hash, ledgers stay local). The few
shared JSON files are named `merge=aether` in `.memory/.gitattributes`, and
git then runs the command registered as `merge.aether.driver`:
`aether merge-file %O %A %B %P` (`run`), which merges them by rule
(`store.merge`) and writes the result over %A.

Everything it reads is untrusted: three files of any size or content. What it
cannot merge by rule it hands to `git merge-file`, so git reports an ordinary
conflict (markers in the file, exit 1), and aether's readers rebuild such a
file later; the driver never prints a traceback.

`ensure_registered` writes the driver into the repository's local config
whenever aether creates or opens a `.memory/` inside git: no one has to
remember a setup step. It costs a walk up to `.git` and one read of its
config file; git itself runs only when the setting is missing or names
another aether. It never fails: without git, the merge is a plain one.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
from pathlib import Path

from aether_cli.errors import AetherError
from aether_cli.store.files import read_bytes
from aether_cli.store.merge import MAX_BYTES, MergeError, kind_of, merge_bytes

DRIVER_NAME = "aether"
DRIVER_LABEL = "aether: merge .memory/ JSON files by rule"
_TIMEOUT = 10.0


def driver_command(python: str | None = None) -> str:
    """The command line git runs: this Python running aether, the paths as git gives them."""
    return f"{shlex.quote(python or sys.executable)} -m aether_cli merge-file %O %A %B %P"


# ------------------------------------------------------------------ the driver


def run(base: Path, ours: Path, theirs: Path, path: str) -> tuple[int, str]:
    """Merge `ours` with `theirs` (from `base`) into `ours`, by the rule of `path`'s name.

    (0, what was merged) when the rule merged them; else (1, why), with the file left as
    `git merge-file` leaves it (conflict markers), so git reports a conflict.
    """
    kind = kind_of(path)
    try:
        if kind is None:
            raise MergeError("not a file aether merges")
        sides = [_read(p) for p in (base, ours, theirs)]
        merged = merge_bytes(kind, sides[0], sides[1], sides[2])
        with open(ours, "wb") as out:  # git's own temp file: it reads it back when we exit
            out.write(merged)
    except (MergeError, AetherError, OSError, RecursionError, MemoryError) as exc:
        _fallback(base, ours, theirs)
        return 1, f"aether: cannot merge {path} by rule ({_one_line(exc)}); leaving it to git"
    return 0, ""


def _read(path: Path) -> bytes:
    try:
        return read_bytes(path, limit=MAX_BYTES)
    except FileNotFoundError:
        return b""  # git gives an empty ancestor for a file added on both sides


def _one_line(exc: BaseException) -> str:
    text = str(exc).replace("\n", " ").replace("\r", " ")
    return "".join(ch for ch in text if ch.isprintable())[:200] or type(exc).__name__


def _fallback(base: Path, ours: Path, theirs: Path) -> None:
    """`git merge-file`'s line merge into `ours` (conflict markers where the sides differ)."""
    labels = ["-L", "ours", "-L", "base", "-L", "theirs"]
    argv = ["git", "merge-file", *labels, str(ours), str(base), str(theirs)]
    # Without git, ours stays as it is; git still reports the conflict.
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=_TIMEOUT, check=False)


# ------------------------------------------------------------------ registration


def _git_config_file(start: Path) -> Path | None:
    """The local config of the repository around `start`, found without running git; None
    outside one (or where `.git` is something this does not read: then git is left alone)."""
    try:
        for folder in (start, *start.parents):
            dot_git = folder / ".git"
            if dot_git.is_dir():
                return dot_git / "config"
            if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
                return _linked_config(folder, dot_git)
    except (OSError, ValueError, RuntimeError):
        return None
    return None


def _linked_config(folder: Path, dot_git: Path) -> Path | None:
    with open(dot_git, encoding="utf-8", errors="replace") as f:
        text = f.read(4096)
    lines = text[len("gitdir:") :].strip().splitlines() if text.startswith("gitdir:") else []
    if not lines or not lines[0].strip():
        return None
    git_dir = (folder / lines[0].strip()).resolve()
    common = git_dir / "commondir"
    if common.is_file():
        with open(common, encoding="utf-8", errors="replace") as f:
            git_dir = (git_dir / f.read(4096).strip()).resolve()
    return git_dir / "config"


def registered(memory_dir: Path, command: str | None = None) -> bool | None:
    """Whether the repository around `memory_dir` has this aether as its driver; None outside git.

    A cheap read of the config file; a setting git would spell otherwise reads as missing."""
    config = _git_config_file(memory_dir.parent)
    if config is None:
        return None
    want = f"driver = {command or driver_command()}"
    try:
        with open(config, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)  # a local config is small; past 1 MiB, git config decides
    except OSError:
        return False
    at = text.find(f'[merge "{DRIVER_NAME}"]')
    return at >= 0 and any(line.strip() == want for line in text[at:].splitlines()[1:12])


def ensure_registered(memory_dir: Path) -> str:
    """Register this aether as `merge.aether.driver` in the local config; "" if nothing was done,
    else what was (or why it could not be: git missing). Never raises."""
    command = driver_command()
    if registered(memory_dir, command) in (None, True):
        return ""
    top = memory_dir.parent
    try:
        for key, value in (("driver", command), ("name", DRIVER_LABEL)):
            res = subprocess.run(
                ["git", "config", "--local", f"merge.{DRIVER_NAME}.{key}", value],
                cwd=top,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=_TIMEOUT,
                check=False,
                env={k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_CONFIG")},
            )
            if res.returncode != 0:
                why = Exception(res.stderr.decode("utf-8", "replace"))
                return f"could not register aether's merge driver: {_one_line(why)}"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not register aether's merge driver: {_one_line(exc)}"
    return f"registered aether's merge driver in {top} (git config merge.{DRIVER_NAME}.driver)"
