"""`aether memory list|add|rm|pin|unpin|search`: a person's long-term memory, through the real CLI.

Bad input (empty, huge, a secret, an unknown key, a corrupt file) gets one line and a
non-zero exit, never a traceback, and never costs what project_memory.json holds."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

from aether_cli import constants as C
from aether_cli import fact_search
from aether_cli.facts import MAX_TEXT_CHARS, add_fact
from aether_cli.store import MemoryStore
from tests.helpers import aether

SECRET = "sk-ant-api03-" + "Zq7vX2mR9pL4tK8wB3nH6jD1cF5gY0sA" * 2


def mem(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    r = aether("memory", *args, "--memory-dir", str(tmp_path / ".memory"), cwd=tmp_path)
    return r.returncode, r.stdout, r.stderr


def one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aether: error: "), err
    return lines[0]


def pm_bytes(tmp_path: Path) -> bytes:
    return (tmp_path / ".memory" / "project_memory.json").read_bytes()


def test_add_list_pin_unpin_rm(tmp_path: Path) -> None:
    assert mem(tmp_path, "list")[1] == "no facts yet; `aether memory add TEXT` adds one\n"
    assert mem(tmp_path, "add", "The database is Postgres 16", "--key", "db")[1] == "added fact db\n"
    assert mem(tmp_path, "add", "Tests run with pytest -q")[1] == "added fact tests-run-with-pytest-q\n"
    assert (tmp_path / ".memory" / ".gitignore").is_file(), "add lays out a new .memory, runs/ ignored"
    assert mem(tmp_path, "pin", "tests-run-with-pytest-q")[1] == "pinned fact tests-run-with-pytest-q\n"
    rc, out, _ = mem(tmp_path, "list")
    assert rc == 0
    assert out.splitlines() == [
        "tests-run-with-pytest-q  [pinned] (user)  Tests run with pytest -q",
        "db  (user)  The database is Postgres 16",
    ]
    rows = orjson.loads(mem(tmp_path, "list", "--json")[1])
    assert [(f["key"], f["pinned"], f["source"], f["episode"]) for f in rows] == [
        ("tests-run-with-pytest-q", True, "user", None), ("db", False, "user", None),
    ]
    assert mem(tmp_path, "add", "Postgres 17 now", "--key", "db")[1] == "replaced fact db\n"
    assert mem(tmp_path, "unpin", "tests-run-with-pytest-q")[0] == 0
    assert mem(tmp_path, "rm", "db")[1] == "removed fact db\n"
    rows = orjson.loads(mem(tmp_path, "list", "--json")[1])
    assert [(f["key"], f["pinned"]) for f in rows] == [("tests-run-with-pytest-q", False)]


def test_an_agents_fact_is_listed_with_its_source_and_episode(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    ops = [{"op": "add", "key": "port", "text": "the API listens on 8080"}]
    store.apply_memory_ops(ops, seq=3, episode=2)
    assert mem(tmp_path, "list")[1] == "port  (agent, episode 2)  the API listens on 8080\n"


@pytest.mark.parametrize("text, message", [
    ("", "the fact's text is empty"),
    ("   \n\t ", "the fact's text is empty"),
    ("\x1b[2J", "the fact's text is empty"),
    ("x" * (MAX_TEXT_CHARS + 1), f"the most is {MAX_TEXT_CHARS:,}"),
])
def test_bad_text_is_refused_and_nothing_is_written(tmp_path: Path, text: str, message: str) -> None:
    rc, _, err = mem(tmp_path, "add", text)
    assert rc == C.EXIT_USAGE
    assert message in one_line_error(err)
    assert not (tmp_path / ".memory").exists()


def test_bad_keys_are_refused(tmp_path: Path) -> None:
    for key in ("  ", "k" * 81, "a\nb"):
        rc, _, err = mem(tmp_path, "add", "a fact", "--key", key)
        assert rc == C.EXIT_USAGE, key
        one_line_error(err)


def test_a_secret_is_redacted_before_it_is_written_with_a_warning(tmp_path: Path) -> None:
    rc, out, err = mem(tmp_path, "add", f"deploy with the key {SECRET}", "--key", "deploy")
    assert rc == 0 and out == "added fact deploy\n"
    assert err == "aether: warning: the text held a secret; it was redacted before it was written\n"
    assert SECRET.encode() not in pm_bytes(tmp_path)
    (fact,) = orjson.loads(mem(tmp_path, "list", "--json")[1])
    assert fact["text"].startswith("deploy with the key [REDACTED")


@pytest.mark.parametrize("command", ["rm", "pin", "unpin"])
def test_an_unknown_key_is_one_line_and_non_zero(tmp_path: Path, command: str) -> None:
    mem(tmp_path, "add", "a fact", "--key", "known")
    before = pm_bytes(tmp_path)
    rc, _, err = mem(tmp_path, command, "unknown")
    assert rc == C.EXIT_USER
    assert one_line_error(err) == (
        "aether: error: no fact with the key 'unknown' (`aether memory list` shows the keys)"
    )
    assert pm_bytes(tmp_path) == before


@pytest.mark.parametrize("content", [b'{"facts": [', b'{"facts": "not a list"}', b"[1, 2]"])
@pytest.mark.parametrize("args", [("list",), ("add", "x"), ("pin", "k"), ("rm", "k"), ("search", "x")])
def test_a_corrupt_file_is_a_clear_error_and_never_overwritten(
    tmp_path: Path, content: bytes, args: tuple[str, ...]
) -> None:
    MemoryStore(tmp_path / ".memory").init()
    path = tmp_path / ".memory" / "project_memory.json"
    path.write_bytes(content)
    rc, _, err = mem(tmp_path, *args)
    assert rc == C.EXIT_CORRUPT
    assert "project_memory.json" in one_line_error(err)
    assert path.read_bytes() == content


def test_a_change_while_a_run_holds_the_lock_lands_and_says_so(tmp_path: Path) -> None:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    with store.holding(["agent"]):
        rc, out, err = mem(tmp_path, "add", "use the staging database", "--key", "db", "--pin")
    assert (rc, err) == (0, "")
    assert out == "added fact db (pinned); the live run's next prompt carries it\n"
    assert store.read_project_memory()["facts"][0]["pinned"] is True


# ------------------------------------------------------------------ search

FACTS = {
    "db": "The database is PostgreSQL 16, reached on port 5433",
    "api": "The API is served on port 8080 behind nginx",
    "tests": "Tests run with pytest -q and never touch the network",
    "style": "Functions stay under sixty lines; comments say why",
}


def seeded(tmp_path: Path) -> MemoryStore:
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    for key, text in FACTS.items():
        add_fact(store, text, key=key)
    return store


def test_search_ranks_with_fts5_and_keeps_its_index_in_runs(tmp_path: Path) -> None:
    seeded(tmp_path)
    rc, out, _ = mem(tmp_path, "search", "postgresql port", "--json")
    assert rc == 0
    result = orjson.loads(out)
    assert result["method"] == ("fts5" if fact_search.fts5_available() else "scan")
    assert [f["key"] for f in result["results"]] == ["db", "api"]
    assert result["results"][0]["score"] > result["results"][1]["score"]
    assert mem(tmp_path, "search", "port", "--limit", "1")[1].startswith("1. ")
    assert len(orjson.loads(mem(tmp_path, "search", "port", "--limit", "1", "--json")[1])["results"]) == 1
    if fact_search.fts5_available():
        assert (tmp_path / ".memory" / "runs" / fact_search.INDEX_FILE).is_file()
    assert "runs/" in (tmp_path / ".memory" / ".gitignore").read_text()


def test_the_index_is_rebuilt_when_the_facts_change_or_it_is_broken(tmp_path: Path) -> None:
    store = seeded(tmp_path)
    assert fact_search.search(store, "nginx").facts[0]["key"] == "api"
    add_fact(store, "nginx config lives in deploy/nginx.conf", key="nginx")
    assert fact_search.search(store, "nginx").facts[0]["key"] == "nginx"
    fact_search.index_path(store).write_bytes(b"not a database at all" * 100)
    assert [f["key"] for f in fact_search.search(store, "nginx").facts] == ["nginx", "api"]


@pytest.mark.parametrize("query", ['"', "AND OR NOT", "NEAR(port", "port*", "db:*", "col:postgres"])
def test_a_query_is_words_never_fts5_syntax(tmp_path: Path, query: str) -> None:
    seeded(tmp_path)
    rc, _, err = mem(tmp_path, "search", query)
    assert rc in (0, C.EXIT_USAGE) and "Traceback" not in err


def test_a_query_without_words_is_refused(tmp_path: Path) -> None:
    seeded(tmp_path)
    rc, _, err = mem(tmp_path, "search", "?!")
    assert rc == C.EXIT_USAGE
    assert one_line_error(err) == "aether: error: the search query has no words"


def test_without_fts5_a_plain_ranked_scan_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = seeded(tmp_path)
    monkeypatch.setattr(fact_search, "fts5_available", lambda: False)
    result = fact_search.search(store, "postgresql port")
    assert result.method == "scan"
    assert [(f["key"], f["score"]) for f in result.facts] == [("db", 2.0), ("api", 1.0)]
    assert not fact_search.index_path(store).exists(), "the scan needs no index"
    # A word the fact only begins counts half; ties go to the shorter fact.
    assert [(f["key"], f["score"]) for f in fact_search.search(store, "postgres").facts] == [("db", 0.5)]
    assert fact_search.search(store, "nothing matches this").facts == []


def test_an_index_that_cannot_be_written_falls_back_to_the_scan(tmp_path: Path) -> None:
    store = seeded(tmp_path)
    fact_search.index_path(store).mkdir()  # a folder where the index file would go
    result = fact_search.search(store, "postgresql")
    assert (result.method, [f["key"] for f in result.facts]) == ("scan", ["db"])


# ------------------------------------------------------------------ pinned facts in the prompt

COPY_PROMPT = "import shutil, sys; shutil.copy(sys.argv[1], 'seen.prompt')"


def test_a_pinned_fact_comes_first_in_the_prompt_and_is_never_evicted(tmp_path: Path) -> None:
    for i in range(40):
        mem(tmp_path, "add", f"ordinary fact number {i} " + "padding " * 20, "--key", f"a{i:02d}")
    mem(tmp_path, "add", "the zebra rule always holds", "--key", "zz-last-by-key", "--pin")
    r = aether("run", "--format", "text", "--objective", "check the prompt", "--prompt-budget", "400",
               "--memory-dir", str(tmp_path / ".memory"), "--", sys.executable, "-c", COPY_PROMPT,
               "{prompt_file}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    prompt = (tmp_path / "seen.prompt").read_text()
    assert "the zebra rule always holds" in prompt
    first_other = prompt.find("ordinary fact number")
    assert first_other == -1 or prompt.index("the zebra rule") < first_other
    assert prompt.count("ordinary fact number") < 40, "the budget evicts unpinned facts, not the pinned one"


def test_pinned_facts_come_first_in_a_rehydrated_prompt_too() -> None:
    from aether_cli.rehydrate import rehydrate_prompt

    facts = [{"key": f"a{i:02d}", "text": f"ordinary fact {i} " + "pad " * 30, "pinned": False,
              "updated_seq": i} for i in range(30)]
    facts += [{"key": "zz1", "text": "pinned rule one", "pinned": True, "source": "user"},
              {"key": "zz2", "text": "pinned rule two", "pinned": True, "source": "agent", "episode": 1}]
    checkpoint = {"id": "chk_000002_abcdef01", "objective": "ship it", "next_actions": ["go on"]}
    for budget in (300, 5000):
        text = rehydrate_prompt(checkpoint=checkpoint, tasks=[], facts=facts, episode=3,
                                count=lambda s: len(s) // 4, budget=budget, memory_dir=None).text
        first_other = text.find("ordinary fact")
        assert text.index("pinned rule one") < text.index("pinned rule two")
        assert first_other == -1 or text.index("pinned rule two") < first_other, budget
        assert (text.count("ordinary fact") < 30) == (budget == 300), "a tight budget evicts unpinned facts"
