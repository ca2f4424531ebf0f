"""`aether doctor [--repair]`: what a merge or a hand edit broke in `.memory/`, and its repair.

It looks for: git conflict markers or JSON that does not parse in the files
aether owns (the continuity record, project memory, the context index,
pruned.json, task files), a continuity record that names a checkpoint that is
not there, checkpoints whose seal fails, a missing `.gitattributes` and, inside
git, a merge driver that is not registered.

`repair` fixes what can be fixed without guessing, and says what it did for
each: a conflicted file becomes the merge of its two sides (the rule the merge
driver applies), a damaged continuity record is rebuilt from the checkpoints
and the ledger (the bad file kept under `runs/`, `store.recovery`), the index
is rebuilt, `.gitattributes` is written and the driver registered. A broken
checkpoint, project memory or task file that no merge explains is only
reported, with what to do: its content is nowhere else.

It refuses to repair while a run is live (that run owns the folder). It knows
nothing of how the CLI prints its findings.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

from aether_cli import constants as C
from aether_cli import ids
from aether_cli.errors import AetherError, ChecksumMismatchError, LockedError, NotFoundError
from aether_cli.merge_driver import ensure_registered, registered
from aether_cli.store import MemoryStore
from aether_cli.store.continuity import sessions_of
from aether_cli.store.files import read_bytes
from aether_cli.store.merge import MAX_BYTES, has_markers, kind_of, parse, resolve_conflicted
from aether_cli.store.pruned import PRUNED_FILE
from aether_cli.store.texts import GITATTRIBUTES_FILE, GITATTRIBUTES_TEXT


@dataclass
class Finding:
    """One problem: the file (relative to `.memory/`), what is wrong, and what was done about it."""

    file: str
    problem: str
    # What `--repair` did ("" before a repair, or when it could not) and what a person can do.
    fixed: str = ""
    hint: str = ""

    @property
    def kind(self) -> str:
        return self.problem.split(":", 1)[0]


@dataclass
class Report:
    findings: list[Finding]
    repaired: bool

    @property
    def healthy(self) -> bool:
        """No problem left (all found were fixed, or none was found)."""
        return all(f.fixed for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "repaired": self.repaired,
            "findings": [asdict(f) for f in self.findings],
        }

    def lines(self) -> list[str]:
        if not self.findings:
            return ["healthy: nothing to repair"]
        out = []
        for f in self.findings:
            if f.fixed:
                out.append(f"fixed {f.file}: {f.problem}; {f.fixed}")
            else:
                out.append(f"problem {f.file}: {f.problem}" + (f"; {f.hint}" if f.hint else ""))
        if not self.healthy and not self.repaired:
            out.append("run `aether doctor --repair` to fix what can be fixed")
        return out


def _owned_files(store: MemoryStore) -> list[tuple[str, str]]:
    """(relative path, merge kind) of every JSON file aether owns and a merge may touch."""
    files = [
        (C.CONTINUITY_FILE, "continuity"),
        (C.PROJECT_MEMORY_FILE, "project_memory"),
        (C.CONTEXT_INDEX_FILE, "index"),
        (PRUNED_FILE, "pruned"),
    ]
    try:
        entries = sorted(e.name for e in os.scandir(store.tasks_dir) if kind_of(e.name) == "task")
    except OSError:
        entries = []
    files += [(f"{C.TASKS_DIR}/{name}", "task") for name in entries]
    return files


def _file_problem(store: MemoryStore, rel: str, kind: str) -> tuple[str, bool] | None:
    """(what is wrong with one owned file, whether its two conflict sides merge), None if sound."""
    try:
        raw = read_bytes(store.root / rel, limit=MAX_BYTES)
    except FileNotFoundError:
        return None
    except (AetherError, OSError) as exc:
        return f"unreadable: {exc}", False
    if has_markers(raw):
        return "git conflict markers", resolve_conflicted(kind, raw) is not None
    try:
        parse(raw)
    except ValueError as exc:
        return f"damaged: {exc}", False
    return None


def check(store: MemoryStore) -> list[Finding]:
    """Every problem found, nothing changed."""
    findings: list[Finding] = []
    for rel, kind in _owned_files(store):
        found = _file_problem(store, rel, kind)
        if found is not None:
            findings.append(Finding(rel, found[0], hint=_file_hint(kind, found[1], rel)))
    diagnosis = store.diagnose_continuity()
    if diagnosis.damage is None and diagnosis.record is not None:
        known = set(store.checkpoint_ids())
        for sid, rec in sessions_of(diagnosis.record).items():
            last = rec.get("last_checkpoint")
            if isinstance(last, str) and last and last not in known:
                findings.append(
                    Finding(
                        C.CONTINUITY_FILE,
                        f"session {sid} names checkpoint {last}, which is not in checkpoints/",
                        hint="`aether resume` starts from the newest intact checkpoint instead",
                    )
                )
    for cid in store.checkpoint_ids():
        try:
            store.read_checkpoint(cid)
        except AetherError as exc:
            broken = isinstance(exc, ChecksumMismatchError)
            problem = "seal broken: content does not match its sha256" if broken else f"damaged: {exc}"
            hint = f"restore it from git, or `aether drop {cid}`"
            findings.append(Finding(f"{C.CHECKPOINTS_DIR}/{cid}.json", problem, hint=hint))
    if not os.path.lexists(store.root / GITATTRIBUTES_FILE):
        findings.append(
            Finding(GITATTRIBUTES_FILE, "missing: git would merge the shared JSON files line by line")
        )
    if registered(store.root) is False:
        findings.append(Finding("(git config)", "merge driver not registered: merge.aether.driver"))
    return findings


def _file_hint(kind: str, sides_merge: bool, rel: str) -> str:
    if sides_merge or kind in ("index", "pruned", "continuity"):
        return ""
    return f"no merge explains it: restore it from git (`git checkout -- .memory/{rel}`)"


def repair(store: MemoryStore) -> list[Finding]:
    """Every problem found, each fixed where that is safe; LockedError while a run is live."""
    if (holder := store.holder()) is not None:
        raise LockedError(f"a run is live on this folder (aether pid {holder.get('pid')}): stop it first")
    findings = check(store)
    for f in findings:
        try:
            f.fixed = _fix(store, f)
        except AetherError as exc:
            f.hint = f"could not repair it: {exc}"
    return findings


def _fix(store: MemoryStore, f: Finding) -> str:
    """What was done about one finding ("" if nothing could be)."""
    if f.file == C.CONTINUITY_FILE and f.kind in ("git conflict markers", "damaged", "unreadable"):
        return store.repair_continuity(missing=False)
    if f.file == C.CONTEXT_INDEX_FILE:
        store.update_context_index()  # derived: rebuilt whatever the old file held
        return "rebuilt from the checkpoints and task files"
    if f.file == PRUNED_FILE:
        store.record_pruned([])  # read tolerantly (every id in its text), written tidy
        return "rewritten as the union of the ids it held"
    if f.kind == "git conflict markers" and f.file == C.PROJECT_MEMORY_FILE:
        store.write_project_memory(store.read_project_memory())
        return "merged its two sides (facts: a union by key)"
    if f.kind == "git conflict markers" and f.file.startswith(C.TASKS_DIR + "/"):
        named = ids.TASK_FILE.match(f.file.split("/", 1)[1])
        task = store.read_task(named.group(1)) if named else None
        if task is None:
            return ""
        store.write_task(task)
        return "kept the side updated last"
    if f.file == GITATTRIBUTES_FILE:
        from aether_cli.store.files import atomic_write

        atomic_write(store.root / GITATTRIBUTES_FILE, GITATTRIBUTES_TEXT.encode(), exclusive=True)
        return "written (commit it)"
    if f.file == "(git config)":
        said = ensure_registered(store.root)
        return said if said.startswith("registered") else ""
    return ""


def resolve_conflicts(store: MemoryStore) -> list[str]:
    """Before a resume: each owned file a merge left with conflict markers written as the merge
    of its sides (or rebuilt); one line per file done. Damage no merge explains is left alone."""
    done = []
    for rel, kind in _owned_files(store):
        found = _file_problem(store, rel, kind)
        if found is None or found[0] != "git conflict markers" or rel == C.CONTINUITY_FILE:
            continue
        with_fix = Finding(rel, found[0])
        try:
            said = _fix(store, with_fix)
        except AetherError:
            continue
        if said:
            done.append(f"{rel} had git conflict markers: {said}")
    return done


def run(store: MemoryStore, *, fix: bool) -> Report:
    """`aether doctor`: the findings, repaired with `fix`."""
    if not store.exists():
        # Saying "healthy" here would hide a wrong --memory-dir or a folder deleted by hand.
        raise NotFoundError(f"nothing to check: {store.root} does not exist (`aether init` creates it)")
    return Report(repair(store) if fix else check(store), fix)
