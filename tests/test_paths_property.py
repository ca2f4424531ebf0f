"""Every id that becomes a path stays inside its folder or is refused (issue 4, item 16).

Task ids, session ids, checkpoint references and `resume`/`show`/`drop`
arguments are fed hostile strings (`../x`, absolute paths, NUL, very long and
odd Unicode names) by hypothesis; the only outcomes allowed are a clean
refusal (an AetherError) or a path directly inside the right folder, and
nothing is ever written or deleted anywhere else.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import aether
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aether_cli import commands
from aether_cli import constants as C
from aether_cli.errors import AetherError, NotFoundError, UsageError
from aether_cli.store import InvalidTaskIdError, MemoryStore

FIXED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

NASTY = [
    "",
    ".",
    "..",
    "../x",
    "../../etc/passwd",
    "/etc/passwd",
    "/",
    "a/b",
    "a\\b",
    "..\\x",
    "x\x00y",
    "\x00",
    "chk_000001\x00../x",
    "~",
    "~/x",
    "$HOME",
    "x" * 65,
    "x" * 5000,
    "é",
    "ﬁle",  # a ligature that NFKC folds to "file"
    "\u202egnp.exe",  # right-to-left override
    "\uff12",  # fullwidth digit two
    "²",  # superscript digit: str.isdigit() but not int()-able
    "\u0661",  # Arabic-Indic digit one
    "chk_000001_aaaaaaaa/../..",
    "latest/..",
    " latest",
    "task\n",
    "con",
    ".hidden",
    "-rf",
    "\ud800",  # a lone surrogate
]
IDS = st.one_of(
    st.sampled_from(NASTY),
    st.text(max_size=80),
    st.text(alphabet=st.sampled_from("./\\\x00_-aZ9~é"), max_size=20),
    st.from_regex(r"[A-Za-z0-9_.-]{1,70}", fullmatch=True),
)
# `make stress` (AETHER_STRESS=1, read at import: the autouse fixture clears AETHER_*) runs far more examples.
EXAMPLES = 5000 if os.environ.get("AETHER_STRESS") else 300
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class World:
    """One .memory with a session, three checkpoints and a task; plus a sentinel tree beside it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.outside = base / "outside"
        self.outside.mkdir()
        (self.outside / "x").write_text("keep me")
        (self.outside / "passwd").write_text("keep me")
        self.store = MemoryStore(base / "project" / ".memory", clock=lambda: FIXED)
        self.store.init()
        self.checkpoints = [
            self.store.write_checkpoint({"objective": f"o{i}", "session_id": "s1"})["id"] for i in range(3)
        ]
        self.store.write_task({"id": "t1", "title": "a task"})
        agent = [sys.executable, "-c", "pass"]
        self.store.write_continuity(
            {
                "session_id": "s1",
                "status": "stopped",
                "episode": 1,
                "command": agent,
                "settings": {"command": agent, "objective": "o"},
            }
        )

    def outside_files(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.outside.iterdir()}

    def memory_files(self) -> set[str]:
        return {p.relative_to(self.store.root).as_posix() for p in self.store.root.rglob("*")}


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    base = Path(tempfile.mkdtemp(prefix="aether-paths-"))
    try:
        yield World(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _inside(path: Path, folder: Path) -> bool:
    return os.path.dirname(os.path.abspath(path)) == os.path.abspath(folder)


@FAST
@given(task_id=IDS)
@example(task_id="../x")
@example(task_id="x" * 64)
def test_task_ids_become_files_only_inside_task_states(world: World, task_id: str) -> None:
    store = world.store
    before_outside = world.outside_files()
    try:
        rel = store.task_file(task_id)
    except InvalidTaskIdError:
        assert not store.valid_task_id(task_id)
        with pytest.raises(InvalidTaskIdError):
            store.write_task({"id": task_id})
        with pytest.raises(InvalidTaskIdError):
            store.read_task(task_id)
    else:
        path = store.root / rel
        assert _inside(path, store.tasks_dir) and path.name == f"task_{task_id}_state.json"
        existed = path.exists()
        assert store.write_task({"id": task_id}) == rel
        assert store.read_task(task_id)["id"] == task_id  # type: ignore[index]
        if not existed:
            os.unlink(path)
    assert world.outside_files() == before_outside


@FAST
@given(session_id=IDS)
def test_session_ids_become_ledgers_only_inside_runs(world: World, session_id: str) -> None:
    store = world.store
    try:
        path = store.ledger_path(session_id)
    except UsageError:
        with pytest.raises(UsageError):
            store.open_ledger(session_id)
    else:
        assert _inside(path, store.runs_dir) and path.name == f"{session_id}.jsonl"
    assert world.outside_files() == {"x": b"keep me", "passwd": b"keep me"}


@FAST
@given(ref=IDS)
@example(ref="²")
@example(ref="\u0661")
@example(ref="latest")
@example(ref="2")
def test_checkpoint_refs_resolve_to_a_listed_checkpoint_or_are_refused(world: World, ref: str) -> None:
    store = world.store
    before = world.memory_files()
    try:
        resolved = store.resolve_checkpoint(ref)
    except (UsageError, NotFoundError):
        for call in (store.read_checkpoint, store.checkpoint_path):
            with pytest.raises((UsageError, NotFoundError)):
                call(ref)
        with pytest.raises((UsageError, NotFoundError)):
            store.drop_checkpoint(ref)
    else:
        assert resolved in world.checkpoints
        assert _inside(store.checkpoint_path(ref), store.checkpoints_dir)
        assert store.read_checkpoint(ref)["id"] == resolved
    assert world.memory_files() == before
    assert world.outside_files() == {"x": b"keep me", "passwd": b"keep me"}


@FAST
@given(ref=IDS)
def test_resume_arguments_name_a_checkpoint_inside_the_folder_or_are_refused(world: World, ref: str) -> None:
    try:
        plan, _settings, _note = commands.resume_plan(world.store, ref, {})
    except AetherError as exc:
        assert isinstance(exc, UsageError | NotFoundError), exc
    else:
        assert plan.checkpoint_id in world.checkpoints
    assert world.outside_files() == {"x": b"keep me", "passwd": b"keep me"}


def test_a_valid_id_cannot_be_a_secret_or_a_hidden_name() -> None:
    assert not MemoryStore.valid_task_id(".hidden")
    assert not MemoryStore.valid_task_id("ghp_" + "Ab3dE6gH9jK2mN5pQ8sT1vW4yZ7bC0eF3hJ6")
    assert MemoryStore.valid_task_id("a.b-c_9")


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["resume", "../x"],
        ["resume", "/etc/passwd"],
        ["resume", "x" * 5000],
        ["resume", "²"],
        ["show", "../../outside/x"],
        ["show", "\u202egnp"],
        ["drop", "--force", "/"],
        ["drop", "--force", ".."],
    ],
)
def test_the_cli_refuses_path_like_arguments_cleanly(project: Path, args: list[str]) -> None:
    (project / "outside").mkdir()
    (project / "outside" / "x").write_text("keep me")
    store = MemoryStore(project / C.MEMORY_DIRNAME)
    store.init()
    store.write_checkpoint({"objective": "o"})
    agent = [sys.executable, "-c", "pass"]
    store.write_continuity({"session_id": "s1", "status": "stopped", "command": agent})
    before = sorted(p.relative_to(project).as_posix() for p in project.rglob("*"))
    res = aether(*args)
    assert res.returncode in (C.EXIT_USER, C.EXIT_USAGE), (res.returncode, res.stderr)
    assert res.stderr.startswith("aether: error:") and "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) == 1
    assert sorted(p.relative_to(project).as_posix() for p in project.rglob("*")) == before
    assert (project / "outside" / "x").read_text() == "keep me"
