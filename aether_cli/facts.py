"""A person's long-term memory: list, add, remove, pin and unpin the facts of `project_memory.json`.

The work behind `aether memory`. Every change is one read-modify-write under
the store's write lock (`MemoryStore.update_project_memory`), so it is safe
while a run is live: the run's next checkpoint reads the person's change
before it writes. A fact a person adds says so (`source: "user"`); one an
agent proposed keeps its `source: "agent"` and the episode it came from.

Bad input is refused before anything is written: empty or over-long text, a
bad key, a key that names no fact. A secret in the text is redacted before it
is written, and the caller is told. A corrupt project_memory.json raises
`CorruptMemoryError` from the read, so it is never overwritten.

It knows nothing of the terminal or of search (see `fact_search`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aether_cli.errors import NotFoundError, UsageError
from aether_cli.plain_text import clean as plain_text
from aether_cli.redact import redact_text
from aether_cli.store import MemoryStore

# Every fact a person keeps is in every prompt that has room; pinned ones always are.
MAX_TEXT_CHARS = 2_000
MAX_KEY_CHARS = 80
_SLUG_WORDS = 6
_NON_SLUG = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class Added:
    """What `add` wrote: the fact, whether it replaced one, whether a secret was redacted."""

    fact: dict[str, Any]
    replaced: bool
    redacted: bool


def sorted_facts(pm: dict[str, Any]) -> list[dict[str, Any]]:
    """The facts as a person reads them: pinned first, then by key."""
    facts = [f for f in pm.get("facts", []) if isinstance(f, dict)]
    return sorted(facts, key=lambda f: (f.get("pinned") is not True, str(f.get("key", ""))))


def list_facts(store: MemoryStore) -> list[dict[str, Any]]:
    """Every fact, pinned first."""
    return sorted_facts(store.read_project_memory())


def check_text(text: str) -> tuple[str, bool]:
    """The text as it will be stored (plain, trimmed, redacted) and whether a secret was redacted."""
    clean = plain_text(text).strip()
    if not clean:
        raise UsageError("the fact's text is empty")
    if len(clean) > MAX_TEXT_CHARS:
        raise UsageError(
            f"the fact's text is {len(clean):,} characters; the most is {MAX_TEXT_CHARS:,} "
            "(facts go into every prompt: keep one fact short, or split it)"
        )
    redacted = redact_text(clean)
    return redacted, redacted != clean


def check_key(key: str) -> str:
    """A key a person gave, trimmed; UsageError if it is empty, too long or holds control characters."""
    clean = key.strip()
    if not clean:
        raise UsageError("the fact's key is empty")
    if len(clean) > MAX_KEY_CHARS:
        raise UsageError(f"the fact's key is {len(clean)} characters; the most is {MAX_KEY_CHARS}")
    if plain_text(clean) != clean or any(c in clean for c in "\t\r\n"):
        raise UsageError(f"the fact's key {clean!r} holds control characters")
    return clean


def _slug(text: str) -> str:
    words = _NON_SLUG.sub(" ", text.lower()).split()[:_SLUG_WORDS]
    return "-".join(words)[:40].strip("-") or "fact"


def _free_key(facts: dict[str, dict[str, Any]], text: str) -> str:
    """A key made from the text: its first words, with -2, -3… if another fact has it."""
    base = _slug(text)
    key, n = base, 1
    while key in facts and facts[key].get("text") != text:
        n += 1
        key = f"{base}-{n}"
    return key


def _current_seq(store: MemoryStore) -> int:
    """The latest checkpoint's sequence number: a person's fact is as recent as the work so far."""
    latest = store.latest_checkpoint_id()
    return int(latest.split("_")[1]) if latest else 0


def add_fact(store: MemoryStore, text: str, *, key: str | None = None, pin: bool = False) -> Added:
    """Add (or, with the key of an existing fact, replace) a person's fact; return what was written."""
    stored, redacted = check_text(text)
    wanted = check_key(key) if key is not None else None
    seq = _current_seq(store)
    result: dict[str, Any] = {}

    def change(pm: dict[str, Any]) -> None:
        facts = {f["key"]: f for f in pm["facts"]}
        k = wanted or _free_key(facts, stored)
        old = facts.get(k)
        fact = {
            "key": k,
            "text": stored,
            "pinned": pin or bool(old and old.get("pinned") is True),
            "priority": old.get("priority", 0) if old else 0,
            "added_seq": old.get("added_seq", seq) if old else seq,
            "updated_seq": seq,
            "source": "user",
            "episode": None,
        }
        if fact["pinned"]:
            fact["pinned_by"] = "user"
        facts[k] = fact
        pm["facts"] = [facts[x] for x in sorted(facts)]
        result.update(fact=fact, replaced=old is not None)

    store.update_project_memory(change)
    return Added(fact=result["fact"], replaced=result["replaced"], redacted=redacted)


def _change_fact(store: MemoryStore, key: str, how: str) -> dict[str, Any]:
    """Remove, pin or unpin the fact `key` under the write lock; NotFoundError if there is none."""
    found: dict[str, Any] = {}

    def change(pm: dict[str, Any]) -> None:
        facts = {f["key"]: f for f in pm["facts"]}
        fact = facts.get(key)
        if fact is None:
            raise NotFoundError(f"no fact with the key {key!r} (`aether memory list` shows the keys)")
        if how == "rm":
            del facts[key]
        else:
            fact["pinned"] = how == "pin"
            fact["pinned_by"] = "user"
        found.update(fact)
        pm["facts"] = [facts[x] for x in sorted(facts)]

    store.update_project_memory(change)
    return found


def remove_fact(store: MemoryStore, key: str) -> dict[str, Any]:
    """Remove the fact `key`; return it as it was."""
    return _change_fact(store, key, "rm")


def pin_fact(store: MemoryStore, key: str, *, pinned: bool = True) -> dict[str, Any]:
    """Pin (or unpin) the fact `key`: a pinned fact is in every prompt, before the others."""
    return _change_fact(store, key, "pin" if pinned else "unpin")


def origin(fact: dict[str, Any]) -> str:
    """Who proposed a fact, and when: "user", "agent, episode 3", or "agent" for an older fact."""
    source = fact.get("source")
    episode = fact.get("episode")
    if source == "user":
        return "user"
    where = f", episode {episode}" if isinstance(episode, int) and not isinstance(episode, bool) else ""
    return f"agent{where}"
