"""Tests for aether_cli.reader: real pipes and real processes, no fakes."""

from __future__ import annotations

import inspect
import itertools
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aether_cli import reader as reader_module
from aether_cli.reader import Line, LineSplitter, iter_lines


@contextmanager
def pipe_with(chunks: Sequence[bytes]) -> Iterator[int]:
    """A pipe whose write end a thread fills with `chunks` (one write each), then closes."""
    r, w = os.pipe()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for c in chunks:
                _write_all(w, c)
        except BaseException as exc:  # surfaced by the test below, not swallowed
            errors.append(exc)
        finally:
            os.close(w)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        yield r
    finally:
        os.close(r)
        t.join()
    assert not errors, errors


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_all(chunks: Sequence[bytes], **kw: int) -> list[Line]:
    with pipe_with(chunks) as fd:
        return list(iter_lines(fd, **kw))


def raw_lines(data: bytes) -> list[tuple[bytes, bool]]:
    """Each line's bytes (without "\\n" and one trailing "\\r") and whether it was terminated,
    by bytes.split(b"\\n") semantics."""
    if not data:
        return []
    parts = data.split(b"\n")
    terminated_last = parts[-1] == b""
    if terminated_last:
        parts.pop()
    out = []
    for i, p in enumerate(parts):
        term = terminated_last or i < len(parts) - 1
        out.append((p[:-1] if p.endswith(b"\r") else p, term))
    return out


def reference(data: bytes) -> list[Line]:
    """What the reader must yield for `data` when every line is under the cap."""
    return [Line(p.decode("utf-8", errors="replace"), 0, t) for p, t in raw_lines(data)]


# ----------------------------------------------------------------- basics


def test_many_lines_in_one_chunk() -> None:
    assert read_all([b"a\nbb\nccc\n"]) == [
        Line("a", 0, True),
        Line("bb", 0, True),
        Line("ccc", 0, True),
    ]


def test_line_spanning_chunks() -> None:
    lines = read_all([b"hel", b"lo wo", b"rld\nnext", b"\n"], chunk=3)
    assert lines == [Line("hello world", 0, True), Line("next", 0, True)]


def test_crlf_and_empty_lines() -> None:
    lines = read_all([b"one\r\n\r\n\ntwo\r\r\n"])
    # Only one trailing "\r" is part of the line ending.
    assert lines == [
        Line("one", 0, True),
        Line("", 0, True),
        Line("", 0, True),
        Line("two\r", 0, True),
    ]


def test_crlf_split_between_chunks() -> None:
    assert read_all([b"abc\r", b"\n"], chunk=1) == [Line("abc", 0, True)]


def test_lone_cr_in_the_middle_is_kept() -> None:
    assert read_all([b"a\rb\n"]) == [Line("a\rb", 0, True)]


def test_eof_without_newline() -> None:
    assert read_all([b"first\nlast"]) == [Line("first", 0, True), Line("last", 0, False)]


def test_eof_after_lone_cr_yields_unterminated_empty_line() -> None:
    assert read_all([b"x\n\r"]) == [Line("x", 0, True), Line("", 0, False)]


def test_empty_input_yields_nothing() -> None:
    assert read_all([]) == []


def test_invalid_utf8_is_replaced() -> None:
    lines = read_all([b"ok \xff\xfe bad\n", b"\xc3\xa9t\xc3\xa9\n"])
    assert lines == [Line("ok \ufffd\ufffd bad", 0, True), Line("été", 0, True)]


def test_multibyte_char_split_across_chunks_is_not_damaged() -> None:
    data = "€uro ✓ 😀\n".encode()
    assert read_all([data[i : i + 1] for i in range(len(data))], chunk=1) == [
        Line("€uro ✓ 😀", 0, True)
    ]


# -------------------------------------------------------------- the cap


def test_long_line_is_capped_and_counted() -> None:
    lines = read_all([b"x" * 100 + b"\nshort\n"], max_line_bytes=10, chunk=7)
    assert lines == [Line("x" * 10, 90, True), Line("short", 0, True)]


def test_line_of_exactly_the_cap_drops_nothing() -> None:
    assert read_all([b"y" * 10 + b"\n"], max_line_bytes=10) == [Line("y" * 10, 0, True)]


def test_capped_crlf_line_does_not_count_the_cr() -> None:
    lines = read_all([b"z" * 15 + b"\r\n"], max_line_bytes=10)
    assert lines == [Line("z" * 10, 5, True)]


def test_capped_line_at_eof_without_newline() -> None:
    assert read_all([b"q" * 25], max_line_bytes=10, chunk=4) == [Line("q" * 10, 15, False)]


def test_cap_does_not_split_a_multibyte_character() -> None:
    # "€" is 3 bytes: a cap of 10 falls inside the 4th one.
    data = "€" * 6 + "\n"
    lines = read_all([data.encode()], max_line_bytes=10)
    assert lines == [Line("€" * 3, 18 - 9, True)]
    assert "\ufffd" not in lines[0].text


def test_cap_cut_inside_four_byte_character() -> None:
    data = ("a" + "😀" * 3 + "\n").encode()  # 1 + 12 bytes
    lines = read_all([data], max_line_bytes=7)  # cut after 2 bytes of the 2nd emoji
    assert lines == [Line("a😀", 13 - 5, True)]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        LineSplitter(0)
    # A bare pipe: the arguments are refused before anything is read, so a writer
    # thread would race the close and could see EPIPE.
    r, w = os.pipe()
    try:
        with pytest.raises(ValueError, match="chunk"):
            next(iter_lines(r, chunk=0))
    finally:
        os.close(r)
        os.close(w)


def test_fifty_megabyte_line_from_a_real_process_is_bounded() -> None:
    """A child prints a 50 MB line, then normal lines: the later lines arrive, the
    dropped count is exact and the reader's own allocations stay near the cap."""
    size = 50 * 1024 * 1024
    script = (
        "import sys\n"
        "out = sys.stdout.buffer\n"
        "block = b'A' * 65536\n"
        f"for _ in range({size} // 65536): out.write(block)\n"
        "out.write(b'\\n{\"type\": \"done\"}\\nafter\\n')\n"
        "out.flush()\n"
    )
    cap = 1 << 20
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    tracemalloc.start()
    try:
        lines = list(iter_lines(proc.stdout.fileno(), max_line_bytes=cap))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        proc.stdout.close()
        assert proc.wait() == 0
    assert len(lines) == 3
    big = lines[0]
    assert len(big.text.encode()) <= cap
    assert big.text == "A" * cap
    assert big.dropped_bytes == size - cap
    assert lines[1:] == [Line('{"type": "done"}', 0, True), Line("after", 0, True)]
    # The kept bytes, the decoded text and one chunk: about 2 MB, not 50 MB.
    assert peak < 3 * cap, peak


def test_stdout_of_a_real_process_without_trailing_newline() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; sys.stdout.write('a\\nb')"],
        stdout=subprocess.PIPE,
        check=True,
    )
    r, w = os.pipe()
    os.write(w, proc.stdout)
    os.close(w)
    try:
        assert list(iter_lines(r)) == [Line("a", 0, True), Line("b", 0, False)]
    finally:
        os.close(r)


def test_non_blocking_descriptor_is_waited_on_not_spun() -> None:
    """An O_NONBLOCK pipe with nothing in it: the reader waits in select, then reads."""
    source, _ = inspect.getsourcelines(reader_module._read)
    first = reader_module._read.__code__.co_firstlineno
    select_line = first + next(i for i, s in enumerate(source) if "select.select" in s)
    main = threading.get_ident()
    r, w = os.pipe()
    os.set_blocking(r, False)

    parked: list[bool] = []

    def late_writer() -> None:
        # Write once the reader is parked in select; give up (and fail the test
        # below) if it never gets there, rather than hang.
        for _ in range(10_000):
            frame = sys._current_frames().get(main)
            if (
                frame is not None
                and frame.f_code is reader_module._read.__code__
                and frame.f_lineno == select_line
            ):
                parked.append(True)
                break
            time.sleep(0.001)
        os.write(w, b"late\n")
        os.close(w)

    t = threading.Thread(target=late_writer, daemon=True)
    t.start()
    try:
        assert list(iter_lines(r)) == [Line("late", 0, True)]
    finally:
        t.join()
        os.close(r)
    assert parked == [True]


def test_reading_a_closed_descriptor_raises() -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError):
        list(iter_lines(r))


# ------------------------------------------------------------ properties


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes], int]:
    data = draw(
        st.binary(max_size=300)
        | st.lists(st.sampled_from([b"\n", b"\r", b"\r\n", b"ab", b"\xe2\x82\xac", b"\xff"]))
        .map(b"".join)
    )
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    chunks = [data[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    return data, chunks, draw(st.integers(1, 64))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunked())
def test_any_chunking_gives_split_semantics(case: tuple[bytes, list[bytes], int]) -> None:
    data, chunks, read_size = case
    assert read_all(chunks, chunk=read_size) == reference(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 40), st.integers(1, 16))
def test_cap_invariants(data: bytes, cap: int, read_size: int) -> None:
    splitter = LineSplitter(cap)
    lines: list[Line] = []
    for i in range(0, len(data), read_size):
        lines += splitter.feed(data[i : i + read_size])
    last = splitter.close()
    if last is not None:
        lines.append(last)
    ref = raw_lines(data)
    assert len(lines) == len(ref)
    for got, (raw, term) in zip(lines, ref, strict=True):
        assert got.terminated == term
        if len(raw) <= cap:
            assert got == Line(raw.decode("utf-8", errors="replace"), 0, term)
        else:
            # Kept: a prefix of at most `cap` bytes, cut back by at most 3 bytes to
            # a character boundary; everything else is counted as dropped.
            kept = len(raw) - got.dropped_bytes
            assert cap - 3 <= kept <= cap
            assert got.text == raw[:kept].decode("utf-8", errors="replace")
