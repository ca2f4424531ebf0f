"""`aether memory search`: the project's facts ranked against a query.

Ranked by SQLite's FTS5 (BM25, the key weighing twice the text) over an index
file derived from project_memory.json: `runs/facts-index.sqlite`, local and
git-ignored like everything under runs/. The index records the size and
SHA-256 of the project_memory.json it was built from and is rebuilt (into a
temp file, then renamed, so a reader never sees half of one) whenever those
differ; a broken or foreign index file is rebuilt too, never trusted. Where
the linked SQLite has no FTS5, or the index cannot be written, a plain ranked
scan stands in: the query's words found in each fact, a whole word counting
more than a prefix. Either way the query's words are searched as words, so no
query is FTS5 syntax.

It knows nothing of the terminal, and only reads project memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import secrets
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aether_cli.errors import UsageError
from aether_cli.store import MemoryStore
from aether_cli.store.files import read_bytes
from aether_cli.store.layout import check_dir

INDEX_FILE = "facts-index.sqlite"
_WORD = re.compile(r"\w+")
_SCHEMA_VERSION = "1"


@dataclass
class SearchResult:
    """The ranked facts of one query, and how they were ranked ("fts5" or "scan")."""

    query: str
    method: str
    facts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON."""
        return {"query": self.query, "method": self.method, "results": self.facts}


def words(text: str) -> list[str]:
    """The lower-cased words of `text`, each once, in order."""
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))


def fts5_available() -> bool:
    """Whether the linked SQLite has FTS5."""
    try:
        with contextlib.closing(sqlite3.connect(":memory:")) as db:
            db.execute("CREATE VIRTUAL TABLE probe USING fts5(a)")
        return True
    except sqlite3.Error:
        return False


def search(store: MemoryStore, query: str, *, limit: int = 10, fts: bool | None = None) -> SearchResult:
    """The facts that match `query`, best first, at most `limit`.

    `fts`: None asks the linked SQLite; False forces the plain scan."""
    terms = words(query)
    if not terms:
        raise UsageError("the search query has no words")
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    pm = store.read_project_memory()  # a corrupt file raises here: nothing is built from it
    facts = [f for f in pm["facts"] if isinstance(f.get("key"), str)]
    if fts is None:
        fts = fts5_available()
    if fts:
        try:
            ranked = _fts_rank(store, facts, terms)
            return SearchResult(query, "fts5", ranked[:limit])
        except (sqlite3.Error, OSError):
            pass  # the scan still answers; the index is only a cache
    return SearchResult(query, "scan", scan_rank(facts, terms)[:limit])


# ------------------------------------------------------------- the plain scan


def scan_rank(facts: Iterable[dict[str, Any]], terms: list[str]) -> list[dict[str, Any]]:
    """Facts ranked by the query words they hold: a whole word 1, a word it begins 0.5.

    Ties go to the shorter fact (more of it is about the query), then the pinned one, then by key."""
    scored: list[tuple[float, int, bool, str, dict[str, Any]]] = []
    for fact in facts:
        have = words(f"{fact['key']} {fact.get('text', '')}")
        present = set(have)
        score = 0.0
        for term in terms:
            if term in present:
                score += 1.0
            elif any(w.startswith(term) for w in have):
                score += 0.5
        if score > 0:
            scored.append((-score, len(have), fact.get("pinned") is not True, fact["key"], fact))
    scored.sort(key=lambda s: s[:4])
    return [{**fact, "score": -neg} for neg, _n, _p, _k, fact in scored]


# ------------------------------------------------------------- the FTS5 index


def index_path(store: MemoryStore) -> Path:
    """runs/facts-index.sqlite (absolute)."""
    return store.runs_dir / INDEX_FILE


def _stamp(store: MemoryStore) -> str:
    """What the index is keyed on: the schema, and the size and SHA-256 of project_memory.json."""
    try:
        data = read_bytes(store.project_memory_path)
    except FileNotFoundError:
        data = b""
    return f"{_SCHEMA_VERSION}:{len(data)}:{hashlib.sha256(data).hexdigest()}"


def _fts_query(terms: list[str]) -> str:
    # Each word quoted and made a prefix: the user's text is never FTS5 syntax.
    return " OR ".join(f'"{t}"*' for t in terms)


def _fts_rank(store: MemoryStore, facts: list[dict[str, Any]], terms: list[str]) -> list[dict[str, Any]]:
    path = _fresh_index(store, facts)
    by_key = {f["key"]: f for f in facts}
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute(
            "SELECT key, bm25(facts, 2.0, 1.0) AS r FROM facts WHERE facts MATCH ? ORDER BY r, key",
            (_fts_query(terms),),
        ).fetchall()
    ranked = [(r, by_key[k]) for k, r in rows if k in by_key]
    # BM25 is lower for a better match; shown as a positive score, higher is better.
    ranked.sort(key=lambda x: (x[0], x[1].get("pinned") is not True, x[1]["key"]))
    return [{**fact, "score": round(-r, 6) if math.isfinite(r) else 0.0} for r, fact in ranked]


def _index_stamp(path: Path) -> str | None:
    """The stamp an index file records, or None if it is absent, not ours or broken."""
    if os.path.islink(path) or not path.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT value FROM meta WHERE name = 'stamp'").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row and isinstance(row[0], str) else None


def _fresh_index(store: MemoryStore, facts: list[dict[str, Any]]) -> Path:
    """The index file, rebuilt first if project_memory.json changed since it was built."""
    path = index_path(store)
    stamp = _stamp(store)
    if _index_stamp(path) == stamp:
        return path
    if not check_dir(store.runs_dir):
        if not store.exists():
            raise OSError(f"{store.root}: no .memory folder to keep a search index in")
        os.mkdir(store.runs_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        _build(tmp, facts, stamp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def _build(path: Path, facts: list[dict[str, Any]], stamp: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)")
        db.execute("CREATE VIRTUAL TABLE facts USING fts5(key, text, tokenize = 'porter unicode61')")
        db.executemany(
            "INSERT INTO facts (key, text) VALUES (?, ?)",
            [(f["key"], str(f.get("text", ""))) for f in facts],
        )
        db.execute("INSERT INTO meta VALUES ('stamp', ?)", (stamp,))
        db.commit()

