"""Which ids may become file names under `.memory/`, and how they are spelt there.

Two rules live here, as plain functions over strings:

- a task id (also a session id) is 1-64 letters, digits, `_`, `-` or `.`,
  not starting with `.` and not shaped like a secret, because it becomes part
  of a file name and a file name cannot be redacted;
- a checkpoint id is `chk_<seq>_<hash>`: a sequence number of at least six
  digits and the first 8 hex digits of the checkpoint's sha256, stored as
  `<id>.json`.

It does no I/O and knows nothing of folders, locks or what the files hold, so
an adapter can ask whether a todo's id is acceptable without importing the
store.
"""

from __future__ import annotations

import functools
import re

from aether_cli import constants as C
from aether_cli.redact import redact_text

TASK_ID = re.compile(C.TASK_ID_PATTERN)
TASK_FILE = re.compile(r"^task_(.+)_state\.json$")
# Groups: the id, its sequence number, its hash suffix.
CHECKPOINT_FILE = re.compile(r"^(chk_(\d{6,})_([0-9a-f]{8}))\.json$")
CHECKPOINT_SUFFIX_CHARS = 8


@functools.lru_cache(maxsize=1 << 16)
def _task_id_ok(task_id: str) -> bool:
    # Cached: every listing of task_states/ checks every file name, and the
    # secret test behind it is a full redaction pass.
    return (
        not task_id.startswith(".")
        and TASK_ID.fullmatch(task_id) is not None
        and redact_text(task_id) == task_id
    )


def valid_task_id(task_id: object) -> bool:
    """Whether `task_id` may become part of a file name.

    1-64 letters, digits, `_`, `-` or `.` (not a leading `.`), and not
    shaped like a secret (a file name cannot be redacted).
    """
    return isinstance(task_id, str) and _task_id_ok(task_id)


def task_file_name(task_id: str) -> str:
    """`task_<id>_state.json` (the caller checks the id first)."""
    return f"task_{task_id}_state.json"


def format_checkpoint_id(seq: int, digest: str) -> str:
    """`chk_<seq:06d>_<first 8 hex digits of digest>`."""
    return f"chk_{seq:06d}_{digest[:CHECKPOINT_SUFFIX_CHARS]}"


def parse_checkpoint_file(name: str) -> tuple[int, str] | None:
    """(sequence number, id) of a checkpoint file name, or None for any other name."""
    m = CHECKPOINT_FILE.match(name)
    return None if m is None else (int(m.group(2)), m.group(1))


def checkpoint_seq(checkpoint_id: str) -> int | None:
    """The sequence number in a checkpoint id, or None if it is not one."""
    parsed = parse_checkpoint_file(f"{checkpoint_id}.json")
    return None if parsed is None else parsed[0]


def checkpoint_suffix(checkpoint_id: str) -> str:
    """The hash suffix of a checkpoint id (what follows its last `_`)."""
    return checkpoint_id.rsplit("_", 1)[-1]
