"""Where everything lives in one `.memory/` folder, and how its folders are made.

Promises:

- the root is addressed as the user named it (`abspath`, not `resolve`): it
  may itself be a symlink the user made, but nothing inside it is followed; a
  folder inside that is a symlink or a file is refused with
  `CorruptMemoryError` naming it;
- folders are created when first needed and never replaced;
- `init` creates whatever part of the layout is missing and never overwrites
  a file (each default text is written exclusively), so it is safe to rerun;
  config.toml is the user's: only `aether init` writes its commented default,
  a run lays out the rest without it;
- `sweep` removes the temp files that killed writers left, in every folder.

It also lists the checkpoint and task files by name (never opening them).
It knows nothing of what the files hold, of locks, or of time.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from aether_cli import constants as C
from aether_cli import ids
from aether_cli.errors import CorruptMemoryError
from aether_cli.store.files import atomic_write, sweep_temp_files
from aether_cli.store.texts import (
    DEFAULT_CONFIG_TOML,
    GITATTRIBUTES_FILE,
    GITATTRIBUTES_TEXT,
    GITIGNORE_TEXT,
    README_TEXT,
    TEMPLATES_README_TEXT,
)

WRITE_LOCK_FILE = "write.lock"


def check_dir(path: Path) -> bool:
    """True if `path` is a real directory, False if absent; a symlink or a file is refused."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise CorruptMemoryError(f"{path}: is a symlink; refusing to follow it")
    if not stat.S_ISDIR(st.st_mode):
        raise CorruptMemoryError(f"{path}: not a directory")
    return True


class Layout:
    """The paths of one `.memory` directory and the rules for its folders."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(os.path.abspath(root))
        self.runs_dir = self.root / C.RUNS_DIR
        self.tasks_dir = self.root / C.TASKS_DIR
        self.checkpoints_dir = self.root / C.CHECKPOINTS_DIR
        self.templates_dir = self.root / C.TEMPLATES_DIR
        self.continuity_path = self.root / C.CONTINUITY_FILE
        self.project_memory_path = self.root / C.PROJECT_MEMORY_FILE
        self.context_index_path = self.root / C.CONTEXT_INDEX_FILE
        self.lock_path = self.runs_dir / C.LOCK_FILE
        self.lock_info_path = self.runs_dir / C.LOCK_INFO_FILE
        self.write_lock_path = self.runs_dir / WRITE_LOCK_FILE
        self.heartbeat_path = self.runs_dir / C.HEARTBEAT_FILE
        self.prompt_path = self.runs_dir / C.START_PROMPT_FILE
        self.checkpoint_request_path = self.runs_dir / C.CHECKPOINT_REQUEST_FILE
        self.trust_path = self.runs_dir / C.TRUST_FILE

    def checkpoint_file(self, checkpoint_id: str) -> Path:
        """checkpoints/<id>.json (absolute; the id is not checked here)."""
        return self.checkpoints_dir / f"{checkpoint_id}.json"

    # --------------------------------------------------------- folders

    def exists(self) -> bool:
        """Whether the `.memory` directory exists."""
        return self.root.is_dir()

    def ensure_dir(self, path: Path) -> bool:
        """Make `path` (and the root) if missing; True if it was created."""
        if path == self.root:
            # The root itself may be a symlink the user made; only what is inside must not be.
            if path.is_dir():
                return False
            if os.path.lexists(path):
                raise CorruptMemoryError(f"{path}: not a directory")
            os.makedirs(path, exist_ok=True)
            return True
        self.ensure_dir(self.root)
        if check_dir(path):
            return False
        try:
            os.mkdir(path)
        except FileExistsError:
            check_dir(path)
            return False
        return True

    def rel(self, path: Path | str) -> str:
        """`path` relative to the root, with "/" separators."""
        # String slicing: Path.relative_to costs ~15 µs, and the context index asks
        # for thousands of these on every checkpoint.
        text, prefix = str(path), str(self.root) + os.sep
        if text.startswith(prefix) and os.sep == "/":
            return text[len(prefix) :]
        return Path(path).relative_to(self.root).as_posix()

    def init(self, *, config: bool = True) -> list[str]:
        """Create whatever part of the layout is missing; return what was created (relative paths).

        Never overwrites an existing file, so it is safe to run again. Folders
        are listed with a trailing "/". With `config` (`aether init`), the
        commented default config.toml too; a run passes False, for config.toml
        holds only what the user wrote. Leftover temp files of killed writers
        are swept.
        """
        created: list[str] = []
        self.ensure_dir(self.root)
        for folder in (self.tasks_dir, self.checkpoints_dir, self.templates_dir, self.runs_dir):
            if self.ensure_dir(folder):
                created.append(self.rel(folder) + "/")
        files = [
            (self.root / C.README_FILE, README_TEXT),
            (self.root / ".gitignore", GITIGNORE_TEXT),
            (self.root / GITATTRIBUTES_FILE, GITATTRIBUTES_TEXT),
            (self.templates_dir / C.README_FILE, TEMPLATES_README_TEXT),
        ]
        if config:
            files.append((self.root / C.CONFIG_FILE, DEFAULT_CONFIG_TOML))
        for path, text in files:
            try:
                atomic_write(path, text.encode("utf-8"), exclusive=True)
            except FileExistsError:
                continue
            created.append(self.rel(path))
        self.sweep()
        return created

    def sweep(self) -> int:
        """Remove temp files left by killed writers in every folder of the layout."""
        count = 0
        for folder in (self.root, self.tasks_dir, self.checkpoints_dir, self.templates_dir, self.runs_dir):
            if check_dir(folder):
                count += sweep_temp_files(folder)
        return count

    # --------------------------------------------------------- listings

    def checkpoint_entries(self) -> list[tuple[int, str]]:
        """(sequence number, id) of every checkpoint file, in sequence order."""
        if not check_dir(self.checkpoints_dir):
            return []
        found: list[tuple[int, str]] = []
        for entry in os.scandir(self.checkpoints_dir):
            parsed = ids.parse_checkpoint_file(entry.name)
            if parsed is not None:
                found.append(parsed)
        return sorted(found)

    def task_paths(self) -> list[tuple[str, str]]:
        """(task id, absolute path) of every task file whose id is valid, sorted by id."""
        # Paths as strings (scandir's, absolute and normalised: they print as a Path
        # would): a Path per file was a third of listing 1,000 tasks.
        if not check_dir(self.tasks_dir):
            return []
        found: list[tuple[str, str]] = []
        match = ids.TASK_FILE.match
        with os.scandir(self.tasks_dir) as entries:
            for entry in entries:
                m = match(entry.name)
                if m is not None and ids.valid_task_id(m.group(1)):
                    found.append((m.group(1), entry.path))
        return sorted(found)
