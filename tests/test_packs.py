"""Resume packs: `aether pack` / `aether unpack` round trip, an existing .memory, hostile zips."""

from __future__ import annotations

import stat
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from aether_cli import commands, packs, unpack
from aether_cli.store import MemoryStore
from aether_cli.store.files import dumps
from tests.helpers import aether


def make_session(root: Path, session: str = "s1", n: int = 3) -> MemoryStore:
    store = MemoryStore(root)
    store.init()
    parent = None
    for i in range(n):
        draft = {
            "session_id": session,
            "episode": i + 1,
            "trigger": "budget",
            "objective": "o",
            "parent": parent,
        }
        parent = store.write_checkpoint(draft)["id"]
    store.write_task({"id": "t1", "title": "first", "status": "in_progress"})
    store.write_project_memory({"objective": "o"})
    store.write_continuity(
        {
            "session_id": session,
            "status": "stopped",
            "episode": n,
            "last_checkpoint": parent,
            "command": ["true"],
        }
    )
    (store.runs_dir / f"{session}.jsonl").write_text('{"kind": "start"}\n')
    return store


def tree(root: Path) -> dict[str, bytes | None]:
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def good(project: Path) -> tuple[MemoryStore, Path]:
    store = make_session(project / "src" / ".memory")
    out = project / "pack.zip"
    packs.pack(store, None, out, with_ledger=True)
    return store, out


def entries_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def write_zip(path: Path, items: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name: the test wants one
        for name, data in items:
            zf.writestr(name, data)
    return path


def with_manifest(files: dict[str, bytes], manifest: dict[str, Any] | None = None) -> list[tuple[str, bytes]]:
    """The files plus a manifest listing them (or the one given)."""
    if manifest is None:
        manifest = orjson.loads(files.pop("manifest.json"))
        manifest["entries"] = {n: {"bytes": len(d), "sha256": packs.sha256(d)} for n, d in files.items()}
    return [("manifest.json", dumps(manifest)), *files.items()]


def test_round_trip_into_a_fresh_folder(good: tuple[MemoryStore, Path], project: Path) -> None:
    store, out = good
    before = orjson.loads(aether("status", "--json", cwd=store.root.parent).stdout)
    done = aether("unpack", str(out), str(project / "dest"), cwd=project)
    assert done.returncode == 0, done.stderr
    after = aether("status", "--json", cwd=project / "dest")
    assert after.returncode == 0, after.stderr
    got = orjson.loads(after.stdout)
    assert got["session_id"] == before["session_id"] == "s1"
    assert got["last_checkpoint"]["id"] == before["last_checkpoint"]["id"]
    assert got["tasks"] == before["tasks"] and got["checkpoints"] == 3
    dest = project / "dest" / ".memory"
    for name in ("session_continuity.json", "project_memory.json", "task_states/task_t1_state.json"):
        assert (dest / name).read_bytes() == (store.root / name).read_bytes()
    # The ledger is kept apart from this machine's own, and nothing else is written under runs/.
    assert (dest / "runs" / "imported" / "s1.jsonl").read_text() == '{"kind": "start"}\n'
    assert sorted(p.name for p in (dest / "runs").iterdir()) == ["imported", "write.lock"]
    assert (dest / ".gitignore").exists()
    assert stat.S_IMODE((dest / "checkpoints").stat().st_mode) & 0o200
    # Resume finds the session and its checkpoint (it is not started here).
    plan, _settings, _note = commands.resume_plan(MemoryStore(dest), None, {})
    assert plan.session_id == "s1" and plan.checkpoint_id == before["last_checkpoint"]["id"]


def test_pack_holds_the_chain_and_a_manifest_of_every_entry(good: tuple[MemoryStore, Path]) -> None:
    store, out = good
    files = entries_of(out)
    manifest = orjson.loads(files.pop("manifest.json"))
    assert manifest["chain"] == list(reversed(store.checkpoint_ids())) and manifest["chain_end"] == "root"
    assert set(manifest["entries"]) == set(files)
    assert all(manifest["entries"][n]["sha256"] == packs.sha256(d) for n, d in files.items())
    assert manifest["aether_version"] and manifest["session_id"] == "s1"
    assert "runs/s1.jsonl" in files


def test_an_older_checkpoints_pack_stops_at_a_pruned_parent(project: Path) -> None:
    store = make_session(project / "src" / ".memory", n=4)
    ids = store.checkpoint_ids()
    from aether_cli import retention

    retention.gc(store, retention.Policy(keep=3))
    manifest = packs.pack(store, ids[2], project / "p.zip")
    assert manifest["chain"] == [ids[2], ids[1]] and manifest["chain_end"] == "pruned"
    assert "pruned.json" in manifest["entries"]


def test_unpack_refuses_another_session_and_force_moves_it_aside(
    good: tuple[MemoryStore, Path], project: Path
) -> None:
    _store, out = good
    other = make_session(project / "dest" / ".memory", session="s2")
    before = tree(project / "dest")
    refused = aether("unpack", str(out), "dest", cwd=project)
    assert refused.returncode == 1 and "holds another session ('s2')" in refused.stderr
    assert refused.stderr.count("\n") == 1 and tree(project / "dest") == before
    forced = aether("unpack", "--force", str(out), "dest", cwd=project)
    assert forced.returncode == 0, forced.stderr
    aside = [p for p in (project / "dest").iterdir() if p.name.startswith(".memory.replaced-")]
    assert (
        len(aside) == 1
        and (aside[0] / "session_continuity.json").read_bytes() == (before[".memory/session_continuity.json"])
    )
    assert MemoryStore(other.root).read_continuity()["session_id"] == "s1"  # type: ignore[index]


def test_unpack_brings_an_older_copy_up_and_refuses_to_go_back(
    good: tuple[MemoryStore, Path], project: Path
) -> None:
    store, out = good
    assert aether("unpack", str(out), "dest", cwd=project).returncode == 0
    # The source goes on: one more checkpoint; a new pack updates the copy.
    cont = store.read_continuity()
    ck = store.write_checkpoint({"session_id": "s1", "episode": 4, "trigger": "budget", "objective": "o"})
    store.write_continuity({**(cont or {}), "last_checkpoint": ck["id"]})
    newer = project / "newer.zip"
    packs.pack(store, None, newer)
    assert aether("unpack", str(newer), "dest", cwd=project).returncode == 0
    st = orjson.loads(aether("status", "--json", cwd=project / "dest").stdout)
    assert st["last_checkpoint"]["id"] == ck["id"]
    # The old pack would take the copy back: refused.
    back = aether("unpack", str(out), "dest", cwd=project)
    assert back.returncode == 1 and "holds a newer copy of session s1" in back.stderr


def patch_declared_size(path: Path, name: str, size: int) -> None:
    """Rewrite the uncompressed size an entry declares in the central directory."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46 : at + 46 + name_len] == name.encode():
            struct.pack_into("<I", data, at + 24, size)
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


def hostile(kind: str, good_pack: Path, tmp: Path) -> Path:
    files = entries_of(good_pack)
    bad = tmp / f"{kind}.zip"
    if kind == "zip-slip":
        return write_zip(bad, with_manifest({**files, "../evil.json": b"{}"}))
    if kind == "absolute":
        return write_zip(bad, with_manifest({**files, "/tmp/evil.json": b"{}"}))
    if kind == "symlink":
        link = zipfile.ZipInfo("templates/prompt.md")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        items = with_manifest({**files, "templates/prompt.md": b"/etc/passwd"})
        return write_zip(bad, [(link if n == "templates/prompt.md" else n, d) for n, d in items])
    if kind == "huge":
        write_zip(bad, with_manifest(files))
        patch_declared_size(bad, "session_continuity.json", 3 << 30)
        return bad
    if kind == "bomb":
        return write_zip(bad, with_manifest({**files, "templates/bomb.md": b"\0" * (8 << 20)}))
    if kind == "mismatch":
        manifest = orjson.loads(files.pop("manifest.json"))
        files["task_states/task_t1_state.json"] = b'{"id": "t1", "title": "changed"}'
        return write_zip(bad, with_manifest(files, manifest))
    if kind == "extra":
        manifest = orjson.loads(files.pop("manifest.json"))
        return write_zip(bad, with_manifest({**files, "templates/extra.md": b"hi"}, manifest))
    if kind == "duplicate":
        items = with_manifest(files)
        return write_zip(bad, [*items, ("session_continuity.json", b'{"session_id": "s9"}')])
    if kind == "not-a-zip":
        bad.write_text("hello, not a zip\n")
        return bad
    if kind == "truncated":
        bad.write_bytes(good_pack.read_bytes()[: good_pack.stat().st_size // 2])
        return bad
    raise AssertionError(kind)


HOSTILE = {
    "zip-slip": "zip-slip",
    "absolute": "absolute path",
    "symlink": "is a symlink",
    "huge": "over the 67108864-byte cap",
    "bomb": "a zip bomb",
    "mismatch": "does not match its sha256",
    "extra": "is not in the manifest",
    "duplicate": "appears twice",
    "not-a-zip": "not a readable zip",
    "truncated": "not a readable zip",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_zip_is_refused_with_nothing_written(
    kind: str, good: tuple[MemoryStore, Path], project: Path, tmp_path: Path
) -> None:
    _store, out = good
    bad = hostile(kind, out, tmp_path)
    (project / "dest").mkdir()
    before = tree(project)
    result = aether("unpack", str(bad), "dest", cwd=project)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.startswith("aether: error: ") and result.stderr.count("\n") == 1
    assert HOSTILE[kind] in result.stderr and "nothing written" in result.stderr
    assert tree(project) == before
    assert not (tmp_path / "evil.json").exists()
    # Into a folder that does not exist yet: not even the folder appears.
    again = aether("unpack", str(bad), "fresh", cwd=project)
    assert again.returncode == 1 and not (project / "fresh").exists()


def test_a_tampered_checkpoint_with_a_matching_manifest_is_refused(
    good: tuple[MemoryStore, Path], project: Path
) -> None:
    """The manifest proves only what its maker listed; each checkpoint's own seal is checked too."""
    store, out = good
    files = entries_of(out)
    name = f"checkpoints/{store.checkpoint_ids()[-1]}.json"
    ck = orjson.loads(files[name])
    ck["next_actions"] = ["rm -rf ~"]
    files[name] = dumps(ck)
    bad = write_zip(project / "bad.zip", with_manifest(files))
    result = aether("unpack", str(bad), "dest", cwd=project)
    assert result.returncode == 1 and "does not match its sha256" in result.stderr
    assert not (project / "dest").exists()


def test_unpack_read_pack_stages_only_inside_the_temp_folder(
    good: tuple[MemoryStore, Path], tmp_path: Path
) -> None:
    _store, out = good
    temp = tmp_path / "stage"
    temp.mkdir()
    manifest = unpack.read_pack(out, temp)
    staged = {p.relative_to(temp).as_posix() for p in temp.rglob("*") if p.is_file()}
    assert staged == set(manifest["entries"])
