"""redact's fast path: `redact_text` returns exactly what the full rule set returns, only sooner.

`redact_text` skips the rules when no rule's pattern matches anywhere
(`redact_fastpath.may_hold_secret`). A gap in that test would leak a secret silently, so
every string here is redacted both ways and the results must be equal: random
text, text assembled from the pieces the rules look for (prefixes, keywords
in any case, separators, quotes, random values), corpus secrets glued into
random text, and the benign corpus. Short and long strings take different
routes through the fast path; both are covered.
"""

from __future__ import annotations

import random
import re
import string

import orjson
import pytest
from corpus import SecretCase, benign_files, benign_lines, secret_cases
from hypothesis import given, settings
from hypothesis import strategies as st

from aether_cli import redact_fastpath
from aether_cli.redact import _redact_full, redact_obj, redact_text
from aether_cli.redact_fastpath import may_hold_secret

CASES = secret_cases()
TEXTS = [case.text for case in CASES]
SECRETS = sorted({s for case in CASES for s in case.secrets})
BENIGN = [line for _, _, line in benign_lines()]
FILLER = "\n".join(BENIGN)
VALUE_CHARS = string.ascii_letters + string.digits + "+/=_-.~%!"

# What the rules in redact_rules.py look for, written out here rather than read from
# the module's tables, so a trigger missing from those tables still shows up.
# fmt: off
SHAPE_PREFIXES = (
    "AKIA", "ASIA", "AIza", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xoxb-", "xoxp-", "xoxe-",
    "xapp-1-", "https://hooks.slack.com/services/", "sk_live_", "rk_test_", "whsec_", "sk-", "sk-proj-",
    "sk-ant-", "npm_", "glpat-", "pypi-AgEIcHlwaS5vcmc", "hf_", "eyJ", ".eyJ",
)
PEM_LINES = (
    "-----BEGIN RSA PRIVATE KEY-----", "-----BEGIN PRIVATE KEY-----", "-----BEGIN OPENSSH PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----", "Proc-Type: 4,ENCRYPTED",
)
# Keywords in the spellings agents print, including a Kelvin sign (U+212A, whose lowercase is "k").
KEYWORDS = (
    "api_key", "API-KEY", "apikey", "secretKey", "client_secret", "SECRET", "signing_key", "password",
    "Passwd", "PassPhrase", "token", "TOKEN", "Token", "GITHUB_TOKEN", "credentials", "Credential",
    "page_token", "nextPageToken", "key", "private-key", "api_\u212aey", "to\u212aen",
)
# fmt: on
QUOTES = ("", '"', "'", '\\"', '\\\\"')
SEPARATORS = ("=", ": ", ":=", "=>", " = ", "\t:\t", ":", " ")
SEED = st.integers(0, 2**32)


def random_chars(alphabet: str, n: int, seed: int) -> str:
    """`n` characters drawn from `alphabet` (seeded: far cheaper for hypothesis than drawing each one)."""
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


# Random values in the alphabets secrets use, often exactly as long as a rule demands (or one short).
ALPHABETS = (
    string.ascii_letters + string.digits,
    string.ascii_uppercase + string.digits,
    string.ascii_letters + string.digits + "+/",
    string.ascii_letters + string.digits + "-_",
    VALUE_CHARS,
)
LENGTHS = st.sampled_from(
    (4, 5, 7, 8, 9, 10, 15, 16, 17, 19, 20, 22, 29, 30, 35, 36, 40, 49, 50)
) | st.integers(1, 90)
VALUE = st.builds(
    random_chars,
    st.sampled_from(ALPHABETS),
    LENGTHS,
    SEED,
)
SHAPED = st.tuples(st.sampled_from(SHAPE_PREFIXES), VALUE).map("".join)
ASSIGNMENT = st.tuples(
    st.sampled_from(KEYWORDS),
    st.sampled_from(QUOTES),
    st.sampled_from(SEPARATORS),
    st.sampled_from(QUOTES),
    VALUE,
    st.sampled_from(QUOTES),
).map("".join)
FLAG = st.tuples(st.just("--"), st.sampled_from(KEYWORDS), st.sampled_from((" ", "\t", "=")), VALUE).map(
    "".join
)
AUTH = st.tuples(
    st.sampled_from(("Authorization: ", "authorization=", '"Authorization": "', "")),
    st.sampled_from(("Basic ", "token ", "Bearer ", "bearer\t")),
    VALUE,
).map("".join)
URL = st.tuples(
    st.sampled_from(("postgres://", "https://", "://", "redis://")),
    st.sampled_from(("", "user", "admin", "$USER")),
    st.just(":"),
    VALUE,
    st.just("@db.example.com/app"),
).map("".join)
PUNCTUATION = (
    "\n",
    " ",
    "\t",
    '"',
    "'",
    "\\n",
    "(",
    "[",
    ",",
    "$",
    "<",
    "%",
    "*",
    "@",
    "/",
    "--",
    ".",
    "_",
    "-",
)
# Dotted capital I lowercases to two characters; long s and Kelvin sign have odd case mappings.
NOISE = st.sampled_from((*PUNCTUATION, *PEM_LINES, "\u0130", "\u017f", "\u212a"))
PIECE = SHAPED | ASSIGNMENT | FLAG | AUTH | URL | NOISE | VALUE | st.text(max_size=8)
SOUP = st.lists(PIECE, min_size=1, max_size=8).map("".join)
JWT = st.tuples(st.just("eyJ"), VALUE, st.just(".eyJ"), VALUE, st.just("."), VALUE).map("".join)
PEM_BLOCK = st.tuples(
    st.sampled_from(PEM_LINES[:3]),
    st.sampled_from(("\n", "\\n", "")),
    VALUE,
    st.sampled_from(("", PEM_LINES[3])),
).map("".join)
ONE_SECRET = SHAPED | JWT | PEM_BLOCK | ASSIGNMENT | FLAG | AUTH | URL
# Text that no rule looks at: ends of words, spaces, digits, punctuation.
PLAIN = st.text(alphabet="abcdefimnorux0123456789 \n\t.,;()", max_size=30)
# How a secret meets the filler around a long text: glued on, or as a word or line of its own.
SEP = st.sampled_from(("", " ", "\n"))


# Ordinary tool output (pytest lines, hex digests) that no rule looks at.
LOG = "\n".join(
    f"tests/test_store.py::test_append_{i} PASSED [{i:3d}%]  ({0.01 * i:.2f}s) sha1={i * 7919:040x}"
    for i in range(40)
)


def same_both_ways(text: str) -> None:
    assert redact_text(text) == _redact_full(text), repr(text)


def pad_to(text: str, length: int, rng: random.Random, sep: str = "", filler: str = FILLER) -> str:
    """`text` inside a slice of `filler` (joined by `sep`), `length` characters in all if it fits."""
    room = max(0, length - len(text) - 2 * len(sep))
    start = rng.randrange(max(1, len(filler) - room))
    padding = filler[start : start + room]
    cut = rng.randint(0, len(padding))
    return padding[:cut] + sep + text + sep + padding[cut:]


# ------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_is_redacted_as_the_full_rules_would(text: str) -> None:
    same_both_ways(text)


@settings(max_examples=400, deadline=None)
@given(SOUP)
def test_text_built_from_what_the_rules_look_for_is_redacted_as_the_full_rules_would(text: str) -> None:
    same_both_ways(text)
    same_both_ways(orjson.dumps(text).decode())


@settings(max_examples=200, deadline=None)
@given(SOUP, st.integers(0, 400), SEED)
def test_long_texts_built_from_rule_pieces_are_redacted_as_the_full_rules_would(
    text: str, length: int, seed: int
) -> None:
    same_both_ways(pad_to(text, length, random.Random(seed)))


@settings(max_examples=800, deadline=None)
@given(PLAIN, ONE_SECRET, PLAIN, st.sampled_from((0, 0, 200, 3000)), SEP, SEED)
def test_one_secret_alone_in_plain_text_is_redacted_as_the_full_rules_would(
    before: str, secret: str, after: str, length: int, sep: str, seed: int
) -> None:
    # Alone, because any second trigger in the string would send it down the full path anyway.
    same_both_ways(pad_to(before + secret + after, length, random.Random(seed), sep, filler=LOG))


# A prefix and a run of token characters as long as some rule demands: no punctuation cuts it short.
TOKEN = st.tuples(
    st.sampled_from(SHAPE_PREFIXES),
    st.builds(
        random_chars,
        st.sampled_from((*ALPHABETS[:2], string.ascii_letters + string.digits + "-_")),
        st.sampled_from((10, 16, 20, 22, 30, 35, 36, 40, 50, 60)) | st.integers(1, 80),
        SEED,
    ),
).map("".join)


@settings(max_examples=800, deadline=None)
@given(PLAIN, TOKEN | JWT, PLAIN, st.sampled_from((0, 200)), SEP, SEED)
def test_one_shaped_token_alone_in_plain_text_is_redacted_as_the_full_rules_would(
    before: str, token: str, after: str, length: int, sep: str, seed: int
) -> None:
    same_both_ways(pad_to(before + token + after, length, random.Random(seed), sep, filler=LOG))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(TEXTS) | st.sampled_from(SECRETS) | st.sampled_from(BENIGN) | st.text(max_size=16),
        min_size=1,
        max_size=6,
    ).map("".join)
)
def test_corpus_secrets_glued_into_random_and_benign_text_are_redacted_as_the_full_rules_would(
    text: str,
) -> None:
    same_both_ways(text)


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.integers() | st.sampled_from(TEXTS) | st.sampled_from(BENIGN) | SOUP,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(KEYWORDS) | SOUP | st.sampled_from(TEXTS), inner, max_size=4)
        ),
        max_leaves=10,
    )
)
def test_redact_obj_gives_the_same_result_twice_with_its_caches_warm(value: object) -> None:
    first = redact_obj(value)
    assert redact_obj(value) == first
    assert redact_obj(first) == first


# ------------------------------------------------------------- the corpora, every line


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_corpus_secret_takes_the_full_path_in_short_and_long_text(case: SecretCase) -> None:
    rng = random.Random(case.lineno)
    escaped = orjson.dumps({"output": case.text}).decode()
    variants = [case.text, escaped, orjson.dumps(escaped).decode()]
    # Either side of the length where the fast path changes route, on lines of their own.
    edge = redact_fastpath._SHORT_TEXT
    variants += [pad_to(case.text, n, rng, "\n") for n in (edge - 1, edge, edge + 1, 3000)]
    for text in variants:
        assert may_hold_secret(text), repr(text)
        out = redact_text(text)
        assert out == _redact_full(text)
        assert out != text


SELF_EVIDENT = [s for s in SECRETS if _redact_full(s) != s]  # redacted even without a keyword nearby


def test_the_corpus_has_a_bare_token_of_every_shape() -> None:
    kinds = {kind for s in SELF_EVIDENT for kind in re.findall(r"\[REDACTED:(\w+)\]", _redact_full(s))}
    assert kinds >= {
        "aws_access_key", "github_token", "slack_token", "slack_webhook", "stripe_key", "api_key",
        "google_api_key", "npm_token", "gitlab_token", "pypi_token", "hf_token", "jwt", "private_key",
    }  # fmt: skip


@pytest.mark.parametrize("secret", SELF_EVIDENT)
def test_a_bare_token_takes_the_full_path_alone_and_in_short_and_long_text(secret: str) -> None:
    # No keyword nearby, only plain text: the token's own shape must be what sends it to the rules.
    rng = random.Random(secret)
    edge = redact_fastpath._SHORT_TEXT
    padded = [
        pad_to(secret, n, rng, sep, filler=LOG) for n in (edge - 1, edge + 1, 3000) for sep in (" ", "\n")
    ]
    for text in [secret, *padded]:
        assert may_hold_secret(text), repr(text)
        out = redact_text(text)
        assert out == _redact_full(text)
        assert out != text
    # Cut short enough to take the short-text route (a truncated tool output); many still redact.
    for n in (edge - 1, 60, 40, 24):
        cut = secret[:n]
        assert redact_text(cut) == _redact_full(cut)
        assert may_hold_secret(cut) or _redact_full(cut) == cut


def test_benign_corpus_lines_and_files_are_returned_as_they_are() -> None:
    texts = BENIGN + list(benign_files().values())
    assert any(len(t) < redact_fastpath._SHORT_TEXT for t in texts)
    assert any(len(t) >= redact_fastpath._SHORT_TEXT for t in texts)
    for text in texts:
        assert redact_text(text) == text == _redact_full(text)


def test_ordinary_ledger_strings_skip_the_rules() -> None:
    # The point of the fast path: a record of ordinary agent output never reaches the rules.
    for text in (
        "tool_result",
        "2024-06-04T10:12:44.120Z",
        "src/auth/token.py",
        "def refresh_access_token(token_id: str) -> str:\n    return self._tokens[token_id]",
        "input_tokens",
        "https://github.com/acme/agent/pull/42",
        LOG,
    ):
        assert not may_hold_secret(text), text


def test_a_secret_named_field_is_redacted_every_time_not_just_the_first() -> None:
    record = {"password": "hU7!xq2Lm9#vTz", "AKIA" + "Q" * 8 + "7" * 8: "key id as a field name"}
    for _ in range(3):
        out = redact_obj(record)
        assert out == {
            "password": "[REDACTED:password]",
            "[REDACTED:aws_access_key]": "key id as a field name",
        }


def test_a_secret_key_whose_value_turns_random_once_redacted_is_marked_whole_at_once() -> None:
    # Found by the property above: the private-key header was marked first, and the
    # remaining `AKIA2yW4[REDACTED:private_key]` looked random only on a second pass.
    value = {"api_key": "AKIA2yW4-----BEGIN RSA PRIVATE KEY-----"}
    first = redact_obj(value)
    assert first == {"api_key": "[REDACTED:api_key]"}
    assert redact_obj(first) == first
