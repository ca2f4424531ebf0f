"""store.files: deterministic bytes, atomic and symlink-safe writes, strict reads, temp-file sweeping."""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aether_cli.errors import AetherError, CorruptMemoryError
from aether_cli.store import files

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


# ------------------------------------------------------------- dumps / loads


def test_dumps_is_sorted_indented_and_newline_terminated() -> None:
    out = files.dumps({"b": 1, "a": [1, {"d": None, "c": "x"}]})
    assert out == (
        b'{\n  "a": [\n    1,\n    {\n      "c": "x",\n      "d": null\n    }\n  ],\n  "b": 1\n}\n'
    )


def test_dumps_same_value_same_bytes_whatever_the_insertion_order() -> None:
    one = {"z": 1, "a": {"y": 2, "b": 3}}
    two = {"a": {"b": 3, "y": 2}, "z": 1}
    assert files.dumps(one) == files.dumps(two)


@given(JSON_VALUES)
def test_dumps_round_trips_and_never_writes_nan(value: object) -> None:
    out = files.dumps(value)
    assert out.endswith(b"\n")
    # orjson.loads rejects bare NaN/Infinity, so parsing proves none were written.
    back = files.loads(out)
    assert files.dumps(back) == out


def test_dumps_writes_null_for_nan_and_infinities() -> None:
    assert files.dumps({"a": math.nan, "b": math.inf, "c": -math.inf}) == (
        b'{\n  "a": null,\n  "b": null,\n  "c": null\n}\n'
    )


def test_dumps_refuses_non_string_keys() -> None:
    with pytest.raises(TypeError):
        files.dumps({1: "x"})
    with pytest.raises(TypeError):
        files.dumps({"ok": {(1, 2): "x"}})


def test_dumps_refuses_values_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        files.dumps({"x": object()})
    with pytest.raises(TypeError):
        files.dumps({"x": 2**70})


def test_dumps_replaces_lone_surrogates_instead_of_failing() -> None:
    broken = b"caf\xff".decode("utf-8", "surrogateescape")
    out = files.dumps({"text": broken})
    assert files.loads(out) == {"text": "caf?"}


def test_dumps_line_is_one_compact_sorted_line() -> None:
    assert files.dumps_line({"b": "x\ny", "a": 1}) == b'{"a":1,"b":"x\\ny"}\n'


def test_loads_accepts_bytes_and_str_and_rejects_garbage() -> None:
    assert files.loads(b'{"a": 1}') == {"a": 1}
    assert files.loads("[1]") == [1]
    with pytest.raises(ValueError):
        files.loads(b"{nope")


# ------------------------------------------------------------- atomic_write


def _tmp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_creates_and_replaces_leaving_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    files.atomic_write(target, b"one\n")
    assert target.read_bytes() == b"one\n"
    files.atomic_write(target, b"two\n")
    assert target.read_bytes() == b"two\n"
    assert _tmp_files(tmp_path) == []


def test_atomic_write_applies_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        files.atomic_write(tmp_path / "ro", b"x", mode=0o444)
        files.atomic_write(tmp_path / "rw", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "ro").stat().st_mode & 0o777 == 0o444
    assert (tmp_path / "rw").stat().st_mode & 0o777 == 0o644


def test_atomic_write_without_durability_still_replaces(tmp_path: Path) -> None:
    target = tmp_path / "hot.json"
    files.atomic_write(target, b"1", durable=False)
    files.atomic_write(target, b"2", durable=False)
    assert target.read_bytes() == b"2"
    assert _tmp_files(tmp_path) == []


def test_exclusive_write_never_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "chk.json"
    files.atomic_write(target, b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        files.atomic_write(target, b"second", exclusive=True)
    assert target.read_bytes() == b"first"
    assert _tmp_files(tmp_path) == []


def test_exclusive_write_falls_back_where_hard_links_are_unsupported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "hard links not supported here")

    monkeypatch.setattr(os, "link", no_links)
    target = tmp_path / "chk.json"
    files.atomic_write(target, b"first", exclusive=True, mode=0o444)
    assert target.read_bytes() == b"first"
    assert target.stat().st_mode & 0o222 == 0
    with pytest.raises(FileExistsError):
        files.atomic_write(target, b"second", exclusive=True)
    assert target.read_bytes() == b"first"
    assert _tmp_files(tmp_path) == []


def test_exclusive_write_reraises_other_link_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EIO, "disk on fire")

    monkeypatch.setattr(os, "link", broken)
    with pytest.raises(OSError, match="disk on fire"):
        files.atomic_write(tmp_path / "x", b"x", exclusive=True)
    assert not (tmp_path / "x").exists()
    assert _tmp_files(tmp_path) == []


@pytest.mark.parametrize("exclusive", [False, True])
def test_atomic_write_refuses_a_symlink_and_leaves_its_target_alone(tmp_path: Path, exclusive: bool) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    link = tmp_path / "memory.json"
    link.symlink_to(outside)
    with pytest.raises(CorruptMemoryError, match=r"memory\.json"):
        files.atomic_write(link, b"overwritten", exclusive=exclusive)
    assert outside.read_bytes() == b"precious"
    assert link.is_symlink()
    assert _tmp_files(tmp_path) == []


def test_atomic_write_into_a_missing_folder_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        files.atomic_write(tmp_path / "nope" / "a.json", b"x")


def test_atomic_write_failure_removes_its_temp_file(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    with pytest.raises(OSError):
        files.atomic_write(tmp_path / "adir", b"x")  # cannot rename a file over a folder
    assert _tmp_files(tmp_path) == []


def test_readers_see_the_old_complete_file_while_a_writer_is_paused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "state.json"
    files.atomic_write(target, files.dumps({"v": "old"}))
    at_rename = threading.Event()
    go_on = threading.Event()
    real_replace = os.replace

    def paused_replace(src: str | Path, dst: str | Path) -> None:
        at_rename.set()
        go_on.wait()
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", paused_replace)
    writer = threading.Thread(target=files.atomic_write, args=(target, files.dumps({"v": "new" * 10000})))
    writer.start()
    try:
        assert at_rename.wait(timeout=30)
        # The new content is fully written to the temp file, yet readers still
        # get the previous complete document.
        assert files.read_json(target) == {"v": "old"}
        assert len(_tmp_files(tmp_path)) == 1
    finally:
        go_on.set()
        writer.join()
    assert files.read_json(target) == {"v": "new" * 10000}
    assert _tmp_files(tmp_path) == []


KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from aether_cli.store import files
# Die at the worst moment: the temp file is written, the rename not yet done.
os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
files.atomic_write(Path(sys.argv[1]), b'{"v": "new"}\\n')
"""


def test_a_killed_writer_leaves_the_old_file_and_a_temp_file_that_sweeping_removes(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    files.atomic_write(target, b'{"v": "old"}\n')
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], check=False)
    assert proc.returncode == -signal.SIGKILL
    assert files.read_json(target) == {"v": "old"}
    leftovers = _tmp_files(tmp_path)
    assert len(leftovers) == 1 and leftovers[0].startswith(".state.json.")
    assert files.sweep_temp_files(tmp_path) == 1
    assert _tmp_files(tmp_path) == []
    assert files.read_json(target) == {"v": "old"}


# ------------------------------------------------------------- read_json


def test_read_json_parses_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(b'{"a": [1, 2]}')
    assert files.read_json(tmp_path / "a.json") == {"a": [1, 2]}


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b'{"a": 1} trailing', b"\xff\xfe{}", b"NaN", b'{"a": 1,}'],
    ids=["empty", "truncated", "trailing", "bad-utf8", "nan", "trailing-comma"],
)
def test_read_json_reports_bad_json_with_the_file_name(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(CorruptMemoryError, match=r"broken\.json: invalid JSON"):
        files.read_json(path)


def test_read_json_refuses_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real.json").write_bytes(b"{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    with pytest.raises(CorruptMemoryError, match=r"link\.json: is a symlink"):
        files.read_json(tmp_path / "link.json")


def test_read_json_refuses_a_folder(tmp_path: Path) -> None:
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(CorruptMemoryError, match=r"dir\.json: not a regular file"):
        files.read_json(tmp_path / "dir.json")


def test_read_json_of_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        files.read_json(tmp_path / "absent.json")


def test_corrupt_memory_error_is_an_aether_error() -> None:
    assert issubclass(CorruptMemoryError, AetherError)


# ------------------------------------------------------------- sweep_temp_files


def test_sweep_removes_dead_writers_temp_files_and_keeps_live_ones(tmp_path: Path) -> None:
    folder = tmp_path / "mem"
    folder.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    dead_pid = int(dead.stdout)
    names = {
        f".a.json.{dead_pid}-0badcafe.tmp": False,  # its writer has exited
        ".b.json.oldstyle.tmp": False,  # no pid in the name
        ".c.tmp": False,
        f".d.json.{os.getpid()}-12345678.tmp": True,  # a live writer: this process
        ".e.json.0-12345678.tmp": False,  # pid 0 is nobody's
        "visible.tmp": True,  # not a hidden temp name
        "keep.json": True,
    }
    for name in names:
        (folder / name).write_bytes(b"x")
    (folder / ".folder.tmp").mkdir()
    assert files.sweep_temp_files(folder) == 4
    remaining = {p.name for p in folder.iterdir()}
    assert remaining == {n for n, kept in names.items() if kept} | {".folder.tmp"}


def test_sweep_of_a_missing_folder_is_zero(tmp_path: Path) -> None:
    assert files.sweep_temp_files(tmp_path / "absent") == 0


def test_sweep_removes_a_symlinked_temp_name_not_its_target(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_bytes(b"x")
    folder = tmp_path / "mem"
    folder.mkdir()
    (folder / ".x.tmp").symlink_to(outside / "keep")
    assert files.sweep_temp_files(folder) == 1
    assert (outside / "keep").read_bytes() == b"x"


def test_dumps_output_is_what_orjson_parses_back() -> None:
    value = {"k": ["é", "\u2603", "\n"], "n": 1.5}
    assert orjson.loads(files.dumps(value)) == value
