"""Tests for aether_cli.tokens and cl100k: the real shipped encoding, real files, real subprocesses."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aether_cli import tokens as T
from aether_cli.cl100k import (
    CL100K_SHA256,
    CL100K_SPECIAL_TOKENS,
    encoding_file,
    parse_ranks,
    parse_verified_ranks,
)
from aether_cli.tokens import (
    ExactCounter,
    TokenCounter,
    estimate_bytes,
    estimate_tokens,
    load_counter,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exact() -> ExactCounter:
    counter = load_counter()
    assert isinstance(counter, ExactCounter), counter.note
    return counter


def run_python(code: str, *args: str) -> str:
    """Run `code` in a fresh interpreter of this venv; return its stdout."""
    proc = subprocess.run(
        [sys.executable, *args, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# --------------------------------------------------------------- the file


def test_shipped_file_is_found_and_genuine() -> None:
    path = encoding_file()
    assert path is not None
    assert path.name == "cl100k_base.tiktoken"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CL100K_SHA256


def test_parse_ranks_reads_the_format() -> None:
    data = b"YQ== 0\nYg== 1\n\nYWI= 2\n"
    assert parse_ranks(data) == {b"a": 0, b"b": 1, b"ab": 2}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"YQ== 0 extra\n", "line 1: expected"),
        (b"YQ==\n", "line 1: expected"),
        (b"YQ== 0\n!!!! 1\n", "line 2: bad token"),
        (b"YQ== zero\n", "line 1: bad token or rank"),
        (b"YQ== 0\nYQ== 1\n", "line 2: duplicate"),
        (b"YQ== 0\nYg== 5\n", "not 0..N-1"),
    ],
)
def test_parse_ranks_refuses_bad_lines(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_ranks(data)
    # The bulk parser used after the sha256 check gives the same answer, message included.
    with pytest.raises(ValueError, match=message):
        parse_verified_ranks(data)


@pytest.mark.parametrize(
    "data", [b"YQ== 0\nYg== 1\n\nYWI= 2\n", b"YQ== 0\nYg== 1", b"YQ==\t0\r\nYg== 1\r\n", b""]
)
def test_the_bulk_parser_reads_what_parse_ranks_reads(data: bytes) -> None:
    assert parse_verified_ranks(data) == parse_ranks(data)


def test_the_bulk_parser_reads_the_shipped_file_exactly() -> None:
    path = encoding_file()
    assert path is not None
    data = path.read_bytes()
    assert parse_verified_ranks(data) == parse_ranks(data)


# ------------------------------------------------------------ exact counts


def test_exact_counter_describes_itself(exact: ExactCounter) -> None:
    assert (exact.name, exact.exact, exact.note) == ("cl100k_base", True, "")
    assert isinstance(exact, TokenCounter)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("hello world", 2),  # "hello", " world": the documented cl100k example [15339, 1917]
        ("hello", 1),
        ("Hello, World!", 4),  # "Hello", ",", " World", "!"
        ("1234567", 3),  # digits are pre-split in groups of three: "123", "456", "7"
        (" indented\n", 3),  # " ind", "ented", "\n"
        # Counted as ordinary text, not as the special token: "<", "|", "endo", "ft", "ext", "|", ">"
        ("<|endoftext|>", 7),
    ],
)
def test_exact_counts(exact: ExactCounter, text: str, expected: int) -> None:
    assert exact.count(text) == expected


def test_exact_encoding_ids_are_cl100k(exact: ExactCounter) -> None:
    assert exact.encoding.encode_ordinary("hello world") == [15339, 1917]
    assert exact.encoding.n_vocab == 100277  # ranks 0..100255 plus <|endofprompt|> at 100276


def test_special_token_text_never_raises(exact: ExactCounter) -> None:
    text = "".join(CL100K_SPECIAL_TOKENS) + " and <|im_start|> too"
    assert exact.count(text) > len(CL100K_SPECIAL_TOKENS)


def test_lone_surrogates_do_not_raise(exact: ExactCounter) -> None:
    assert exact.count("bad \ud800 half") >= 3


def test_load_is_cached_once_per_process() -> None:
    assert load_counter() is load_counter()


def test_concurrent_first_loads_share_one_counter() -> None:
    out = run_python(
        """
        import threading
        from aether_cli.tokens import load_counter
        got = []
        threads = [threading.Thread(target=lambda: got.append(load_counter())) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(len({id(c) for c in got}), got[0].name)
        """
    )
    assert out == "1 cl100k_base"


def test_importing_tokens_does_not_import_tiktoken() -> None:
    out = run_python(
        """
        import sys
        import aether_cli.tokens
        print("tiktoken" in sys.modules)
        """
    )
    assert out == "False"


def test_one_megabyte_texts_are_counted(exact: ExactCounter) -> None:
    prose = ("lorem ipsum dolor sit amet, consectetur adipiscing elit\n" * 20000)[: 1 << 20]
    # Slices are cut before a space or newline, where cl100k starts a new piece
    # anyway: here the sliced count equals the one-shot count exactly.
    assert exact.count(prose) == len(exact.encoding.encode_ordinary(prose)) == 205972
    # One 1 MB "word": "aaaaaaaa" is a single token, and slices are multiples of 8.
    assert exact.count("a" * (1 << 20)) == (1 << 20) // 8


def test_slices_cover_the_text_and_prefer_whitespace() -> None:
    text = ("word " * 26) + ("x" * 150) + " tail"
    pieces = list(T._slices(text, limit=64))
    assert pieces == [
        "word " * 11 + "word",  # cut before the last space within 64 chars
        " word" * 12,
        " word word",  # the next 64 chars hold no whitespace after this one
        " " + "x" * 63,  # no whitespace in reach: a hard cut
        "x" * 64,
        "x" * 23 + " tail",
    ]
    assert "".join(pieces) == text
    assert list(T._slices("short", limit=64)) == ["short"]
    assert list(T._slices("", limit=64)) == [""]


# ---------------------------------------------------------------- fallback


def test_hash_mismatch_falls_back_with_a_note(tmp_path: Path) -> None:
    src = encoding_file()
    assert src is not None
    data = bytearray(src.read_bytes())
    data[1000] ^= 0x01
    bad = tmp_path / "cl100k_base.tiktoken"
    bad.write_bytes(bytes(data))
    counter = load_counter(path=bad)
    assert (counter.name, counter.exact) == ("estimate", False)
    assert "sha256" in counter.note
    assert "\n" not in counter.note
    assert counter.count("hello world") == estimate_tokens("hello world")


def test_genuine_copy_at_a_path_loads_exact(tmp_path: Path) -> None:
    src = encoding_file()
    assert src is not None
    copy = tmp_path / "copy.tiktoken"
    shutil.copyfile(src, copy)
    counter = load_counter(path=copy)
    assert counter.exact
    assert counter is not load_counter()  # an explicit path is never the cached counter
    assert counter.count("hello world") == 2


def test_missing_file_falls_back(tmp_path: Path) -> None:
    counter = load_counter(path=tmp_path / "nope.tiktoken")
    assert not counter.exact
    assert "cannot read" in counter.note
    assert "nope.tiktoken" in counter.note


def test_directory_instead_of_file_falls_back(tmp_path: Path) -> None:
    counter = load_counter(path=tmp_path)
    assert not counter.exact
    assert "cannot read" in counter.note


def test_no_shipped_file_falls_back() -> None:
    # -S: no site-packages, so neither tiktoken_ext's data nor tiktoken is there.
    out = run_python(
        f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from aether_cli.cl100k import encoding_file
        from aether_cli.tokens import load_counter
        c = load_counter()
        print(encoding_file(), c.exact, c.note)
        """,
        "-S",
    )
    assert out.startswith("None False cl100k_base.tiktoken not found")


def test_tiktoken_not_importable_falls_back() -> None:
    out = run_python(
        """
        import sys
        sys.modules["tiktoken"] = None  # makes `import tiktoken` raise ImportError
        from aether_cli.tokens import load_counter
        c = load_counter()
        print(c.name, c.exact, c.note)
        print(c.count("hello world"))
        """
    )
    first, second = out.splitlines()
    assert first.startswith("estimate False tiktoken cannot be imported (ModuleNotFoundError:")
    assert int(second) >= 1


def test_env_forces_the_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AETHER_TOKENIZER", "estimate")
    counter = load_counter()
    assert (counter.name, counter.exact) == ("estimate", False)
    assert "AETHER_TOKENIZER=estimate" in counter.note


def test_env_forces_the_estimate_even_with_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AETHER_TOKENIZER", " Estimate ")
    src = encoding_file()
    assert src is not None
    assert not load_counter(path=src).exact


@pytest.mark.parametrize("value", ["", "auto", "cl100k_base"])
def test_env_default_values_keep_exact(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("AETHER_TOKENIZER", value)
    assert load_counter().exact


def test_env_unknown_value_is_named_in_the_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AETHER_TOKENIZER", "o200k")
    counter = load_counter()
    assert not counter.exact
    assert "'o200k'" in counter.note


def test_prefer_exact_false_gives_the_estimate() -> None:
    counter = load_counter(prefer_exact=False)
    assert not counter.exact
    assert counter.note
    assert isinstance(counter, TokenCounter)


# ---------------------------------------------------------------- estimate

CODE = '''\
def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping closed intervals; the input need not be sorted."""
    if not intervals:
        return []
    ordered = sorted(intervals)
    merged = [ordered[0]]
    for start, end in ordered[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    return merged


class RetryPolicy:
    def __init__(self, attempts: int = 5, base_delay: float = 0.25) -> None:
        self.attempts = attempts
        self.base_delay = base_delay

    def delays(self):
        for i in range(self.attempts):
            yield min(30.0, self.base_delay * 2**i)
'''

PROSE = """\
The supervisor watches the agent the way a careful editor watches a long
manuscript: it counts what has been said, notices when the pages pile up, and
asks for a summary before the writer loses the thread. When the context grows
past the threshold, the agent is asked to describe its objective, what it has
finished, what it is doing now and what it will do next. That summary is
written to disk, the old process is stopped, and a fresh one starts with a
short prompt that carries only what matters. Nothing important is forgotten,
because the plan, the open tasks and the pinned facts always survive the move.
"""

JSON_DOC = orjson.dumps(
    {
        "objective": "Port the billing service to the new queue",
        "progress": ["schema migrated", "consumer rewritten", "tests green on CI"],
        "state": {"branch": "billing-queue", "open_pr": 4182, "flaky": ["test_retry_backoff"]},
        "next_actions": ["deploy to staging", "run the replay job for 2024-03-01..03-07"],
        "tasks": [
            {"id": "t1", "status": "done", "progress": 1.0},
            {"id": "t2", "status": "in_progress", "progress": 0.45, "next_action": "load test"},
        ],
    },
    option=orjson.OPT_INDENT_2,
).decode()

JSON_COMPACT = orjson.dumps(
    [{"id": i, "name": f"item-{i}", "price": i * 1.25, "tags": ["a", "b"]} for i in range(30)]
).decode()


@pytest.mark.parametrize(
    "text",
    [CODE, PROSE, JSON_DOC, JSON_COMPACT],
    ids=["code", "prose", "json-indented", "json-compact"],
)
def test_estimate_is_within_35_percent(exact: ExactCounter, text: str) -> None:
    real = exact.count(text)
    guess = estimate_tokens(text)
    assert 0.65 * real <= guess <= 1.35 * real, (guess, real)


def test_estimate_corpus_total_is_close(exact: ExactCounter) -> None:
    corpus = [CODE, PROSE, JSON_DOC, JSON_COMPACT]
    real = sum(exact.count(t) for t in corpus)
    guess = sum(estimate_tokens(t) for t in corpus)
    assert abs(guess - real) <= 0.15 * real, (guess, real)


@pytest.mark.parametrize(
    "text",
    [
        "Это пример текста на русском языке для оценки. " * 5,
        "这是一个用于测试令牌数量估计的中文文本示例。" * 5,
        "Die Straßenbahn fährt über die Brücke. " * 5,
        "ship it 🚀 ✅ done 👍 → next — " * 5,
        "=" * 80 + "\n" + "-" * 40,
    ],
    ids=["russian", "chinese", "german", "emoji", "rulers"],
)
def test_estimate_handles_other_scripts(exact: ExactCounter, text: str) -> None:
    real = exact.count(text)
    guess = estimate_tokens(text)
    assert 0.65 * real <= guess <= 1.35 * real, (guess, real)


def test_estimate_of_empty_is_zero() -> None:
    assert estimate_tokens("") == 0


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_estimate_never_zero_for_non_empty(text: str) -> None:
    assert estimate_tokens(text) >= 1


def test_estimate_of_a_large_text_scales(exact: ExactCounter) -> None:
    big = PROSE * (262_144 // len(PROSE))
    assert estimate_tokens(big) == pytest.approx(exact.count(big), rel=0.15)


@pytest.mark.parametrize(
    ("n", "expected"), [(-5, 0), (0, 0), (1, 1), (4, 1), (5, 2), (52_428_800, 13_107_200)]
)
def test_estimate_bytes(n: int, expected: int) -> None:
    assert estimate_bytes(n) == expected
