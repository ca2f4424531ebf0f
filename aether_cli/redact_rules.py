"""The redaction rules: what a secret looks like, and one pass that marks each one.

Two kinds of rule:
- shape rules for secrets with a recognisable prefix (AWS key ids, GitHub,
  Slack, Stripe, GitLab, PyPI, npm, Hugging Face, Google, `sk-` keys, JWTs,
  PEM private keys, passwords in URLs);
- keyword rules (`API_KEY=…`, `"password": "…"`, `--token …`,
  `Authorization: Bearer …`) that redact a value only if it looks random:
  8+ characters, mixed character classes and enough Shannon entropy, so
  `password=changeme`, `token_count=12` and `api_key = os.environ["API_KEY"]`
  stay as written.

The patterns are our own rather than a library's: the scanners on PyPI
(detect-secrets and its forks) report lines, not spans to replace, pull in
requests and PyYAML, and their entropy plugins flag the git SHAs, hashes and
base64 images that memory must keep. tests/corpus/ measures what these rules
catch and what they leave alone.

Every rule has a cheap substring pre-check, and markers never match a rule.
This module knows nothing of JSON values, of the fast path that skips it
(`redact_fastpath`) or of how often a pass is repeated (`redact`).
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

MARK_PREFIX = "[REDACTED:"


def mark(kind: str) -> str:
    return f"{MARK_PREFIX}{kind}]"


# ------------------------------------------------------------- "looks random"

# Names in code (snake_case, camelCase, dotted paths, kebab-case slugs with
# short version suffixes) are assigned to `token`/`secret` variables all the
# time; a secret almost never has this word-like shape.
_WORDISH_PART = re.compile(r"(?:[A-Za-z][a-z]*(?:[A-Z][a-z]+)*|[A-Z]+)[0-9]{0,3}|[0-9]{1,3}")
_PLACEHOLDER_PREFIXES = ("$", "<", "{{", "/", "./", "../", "~/", "*", MARK_PREFIX)
# `%APPDATA%`, `%(password)s`: a template, not a value. A bare leading `%` is
# kept as a possible secret: passwords start with one often enough.
_PERCENT_PLACEHOLDER = re.compile(r"%(?:\(\w+\)|\w+%)")
_WHITESPACE = re.compile(r"\s")
_LOWER = re.compile(r"[^\W\d_A-Z]")  # a lowercase (or uncased non-ASCII) letter
_UPPER = re.compile(r"[A-Z]")
_DIGIT = re.compile(r"[0-9]")
_OTHER = re.compile(r"[^A-Za-z0-9]")


_C_LOG_C = [0.0, 0.0] + [c * math.log2(c) for c in range(2, 256)]


def _entropy(value: str) -> float:
    # H = log2(n) - sum(c*log2(c))/n; characters seen once add nothing to the sum.
    n = len(value)
    total = 0.0
    for c in Counter(value).values():
        if c > 1:
            total += _C_LOG_C[c] if c < 256 else c * math.log2(c)
    return math.log2(n) - total / n


def _identifier_like(value: str) -> bool:
    parts = re.split(r"[_.\-]", value)
    if len(parts) < 2:
        return False
    return all(p == "" or _WORDISH_PART.fullmatch(p) for p in parts)


def looks_random(value: str) -> bool:
    """True if `value` could be a generated secret rather than a word, name or number.

    8+ characters, no whitespace, not a placeholder (`$VAR`, `<your-key>`,
    `***`, a path), not identifier-shaped, either letters mixed with digits or
    three character classes, and an entropy of at least ~3 bits per character
    (scaled down for short values, whose maximum is log2(length)).
    """
    n = len(value)
    if n < 8 or value.startswith(_PLACEHOLDER_PREFIXES) or _WHITESPACE.search(value):
        return False
    if value.startswith("%") and _PERCENT_PLACEHOLDER.match(value):
        return False
    has_lower = _LOWER.search(value) is not None
    has_upper = _UPPER.search(value) is not None
    has_digit = _DIGIT.search(value) is not None
    has_other = _OTHER.search(value) is not None
    if not (has_digit and (has_lower or has_upper)) and has_lower + has_upper + has_digit + has_other < 3:
        return False
    if _identifier_like(value):
        return False
    return _entropy(value) >= min(3.0, 0.85 * math.log2(n))


def _has_letter_and_digit(value: str) -> bool:
    return any(ch.isdigit() for ch in value) and any(ch.isalpha() for ch in value)


def _mixed_case(value: str) -> bool:
    return any(ch.islower() for ch in value) and any(ch.isupper() for ch in value)


# ------------------------------------------------------------- shape rules

# Patterns start with a literal (no lookbehind) so `re` can skip ahead with a
# fast substring search; the "not the tail of a longer token" test a lookbehind
# would make is done in Python, on the few candidates found.


class _Rule:
    """One compiled pattern: redact the whole match (or one group) when its checks pass."""

    __slots__ = ("boundary", "check", "group", "kind", "needles", "regex")

    def __init__(
        self,
        kind: str,
        pattern: str,
        needles: tuple[str, ...],
        *,
        group: int = 0,
        check: Callable[[str], bool] | None = None,
        boundary: str | None = None,
    ) -> None:
        self.kind = kind
        self.regex = re.compile(pattern)
        self.needles = needles
        self.group = group
        self.check = check
        # None: no test. Otherwise a match right after a letter, a digit or one
        # of these characters is part of a longer token and is left alone.
        self.boundary = boundary

    def accepts(self, text: str, m: re.Match[str]) -> bool:
        """Whether match `m` (found in `text` or in its lowercase twin) is a secret."""
        start = m.start()
        if self.boundary is not None and start > 0:
            before = text[start - 1]
            if before.isalnum() or before in self.boundary:
                return False
        value = text[m.start(self.group) : m.end(self.group)]
        if value.startswith(MARK_PREFIX):
            return False
        return self.check is None or self.check(value)

    def edits(self, text: str, hay: str) -> list[tuple[int, int, str]]:
        """Spans of `text` to redact, found by matching in `hay` (`text` or its lowercase twin)."""
        if not any(n in hay for n in self.needles):
            return []
        return [
            (m.start(self.group), m.end(self.group), self.kind)
            for m in self.regex.finditer(hay)
            if self.accepts(text, m)
        ]


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Replace each (start, end, kind) span of `text` by its marker; overlaps keep the first."""
    if not edits:
        return text
    edits.sort(key=lambda e: (e[0], -e[1]))
    out: list[str] = []
    pos = 0
    for start, end, kind in edits:
        if start < pos:
            continue
        out.append(text[pos:start])
        out.append(mark(kind))
        pos = end
    out.append(text[pos:])
    return "".join(out)


SHAPE_RULES: tuple[_Rule, ...] = (
    _Rule("jwt", r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", ("eyJ",)),
    _Rule(
        "github_token",
        r"gh[pousr]_[A-Za-z0-9]{36,}",
        ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
        boundary="",
    ),
    _Rule("github_token", r"github_pat_[A-Za-z0-9_]{22,}", ("github_pat_",), boundary=""),
    _Rule("slack_token", r"xox[abprse]-[A-Za-z0-9-]{10,}", ("xox",), boundary=""),
    _Rule("slack_token", r"xapp-[0-9]-[A-Za-z0-9-]{10,}", ("xapp-",), boundary=""),
    _Rule("slack_webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9_/]{8,}", ("hooks.slack",)),
    _Rule("stripe_key", r"[rs]k_(?:live|test)_[A-Za-z0-9]{10,}", ("_live_", "_test_"), boundary=""),
    _Rule("stripe_key", r"whsec_[A-Za-z0-9+/=]{20,}", ("whsec_",), check=_has_letter_and_digit, boundary=""),
    _Rule(
        "api_key",
        r"sk-(?:proj-|ant-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}",
        ("sk-",),
        check=_has_letter_and_digit,
        boundary="_-",
    ),
    _Rule(
        "aws_access_key",
        r"A(?:KIA|SIA)[0-9A-Z]{16}(?![A-Za-z0-9])",
        ("AKIA", "ASIA"),
        boundary="",
    ),
    _Rule("google_api_key", r"AIza[0-9A-Za-z_-]{35}", ("AIza",), boundary=""),
    _Rule("npm_token", r"npm_[A-Za-z0-9]{36,}", ("npm_",), boundary=""),
    _Rule("gitlab_token", r"glpat-[A-Za-z0-9_-]{20,}", ("glpat-",), check=_has_letter_and_digit, boundary=""),
    # Every PyPI API token is a macaroon whose base64 starts with the same bytes.
    _Rule("pypi_token", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", ("pypi-AgEI",), boundary=""),
    _Rule("hf_token", r"hf_[A-Za-z0-9]{30,}", ("hf_",), check=_mixed_case, boundary=""),
)

# ------------------------------------------------------------- private keys

PEM_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----")
# What may follow an unterminated BEGIN line (a truncated tool output still
# leaks the key): base64 lines and PEM headers, with real or escaped newlines.
_PEM_BODY = re.compile(
    r"(?:(?:\s|\\+[nr])*(?:[A-Za-z0-9+/=]{8,}|Proc-Type:[^\n]*|DEK-Info:[^\n]*|Comment:[^\n]*))*"
)


def _redact_private_keys(text: str) -> str:
    if "PRIVATE KEY" not in text:
        return text
    out: list[str] = []
    pos = 0
    ends = True  # once no END follows one BEGIN, none follows a later one either
    while (begin := PEM_BEGIN.search(text, pos)) is not None:
        end = _PEM_END.search(text, begin.end()) if ends else None
        if end is not None:
            stop = end.end()
        else:
            ends = False
            body = _PEM_BODY.match(text, begin.end())
            stop = body.end() if body is not None else begin.end()
        out.append(text[pos : begin.start()])
        out.append(mark("private_key"))
        pos = stop
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


# ------------------------------------------------------------- URL passwords

_URL_PLACEHOLDERS = ("$", "<", "{{", "*", MARK_PREFIX)
URL_CREDS = re.compile(r"://(?P<user>[^\s:/@\[\]\"'<>]{0,256}):(?P<pw>[^\s@/\"'<>]{1,256})@")


def _redact_url_password(m: re.Match[str]) -> str:
    text = m.string
    start = m.start()
    # Only a real scheme (`postgres://`), not a stray "://" inside other text,
    # and not a template (`https://user:${DB_PASSWORD}@host`, `:****@`).
    if start == 0 or not text[start - 1].isalnum() or m.group("pw").startswith(_URL_PLACEHOLDERS):
        return m.group(0)
    return f"://{m.group('user')}:{mark('url_password')}@"


def _redact_urls(text: str) -> str:
    if "://" not in text:
        return text
    return URL_CREDS.sub(_redact_url_password, text)


# ------------------------------------------------------------- keyword rules

# These match in an ASCII-lowercased twin of the text (same length, same
# offsets): a case-insensitive alternation cannot use `re`'s literal-prefix
# search and is some fifty times slower on a megabyte of text.
AUTH_RULES: tuple[_Rule, ...] = (
    _Rule(
        "basic_auth",
        r"authorization(?:\\*[\"'])?[ \t]*[:=][ \t]*(?:\\*[\"'])?basic[ \t]+([a-z0-9+/]{8,}={0,2})",
        ("authorization",),
        group=1,
    ),
    _Rule(
        "bearer_token",
        r"bearer[ \t]+([a-z0-9._~+/-]{16,}=*)",
        ("bearer",),
        group=1,
        check=looks_random,
        boundary="_",
    ),
    # GitHub's older scheme: `Authorization: token <hex>`.
    _Rule(
        "token",
        r"authorization(?:\\*[\"'])?[ \t]*[:=][ \t]*(?:\\*[\"'])?token[ \t]+([a-z0-9._~+/-]{16,})",
        ("authorization",),
        group=1,
        check=looks_random,
    ),
)

# `<keyword><quote?> <sep> <value>`, one pattern per keyword ending so each
# starts with a literal. "key" alone is too common a word: it needs one of
# the prefixes below (api_key, ACCESS-KEY, secretkey, ...). Quotes may carry
# any number of backslashes: JSON inside a string inside JSON (a tool input
# flattened into a checkpoint line) escapes them twice.
_KEY_PREFIXES = r"api|access|secret|signing|private|encryption|master|account|client|auth|session|app"
KEY_PREFIX = re.compile(rf"(?:{_KEY_PREFIXES})[_-]?$")
# `page_token=...`, `nextPageToken`, `continuation_token`: opaque cursors from
# paginated APIs, printed all the time and worth nothing to an attacker.
_CURSOR_PREFIX = re.compile(r"(?:page|continuation|cursor)[_-]?$")
_VALUE = (
    r"(?:\\*[\"'])?[ \t]*(?:=>|:=|[:=])[ \t]*(?![=>])"
    r"(?:\\*\"(?P<dq>[^\"\\\n]{8,})\\*\"|\\*'(?P<sq>[^'\\\n]{8,})\\*'"
    r"|(?P<bare>[^\s\"'`,;&<>()\[\]{}\\]{8,})(?P<after>[(\[]?))"
)
ASSIGNMENTS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (literal, re.compile(pattern + _VALUE))
    for literal, pattern in (
        ("key", "key"),
        ("secret", "secret"),
        ("passw", "passw(?:or)?d"),
        ("passphrase", "passphrase"),
        ("token", "token"),
        ("credential", "credentials?"),
    )
)
_KEYWORDS = rf"(?:{_KEY_PREFIXES})[_-]?key|secret|passwd|password|passphrase|token|credentials?"
# `--password VALUE`, `--api-key VALUE`: the `=` form is an assignment above;
# this is the space-separated form of a long command-line option.
FLAG = re.compile(rf"--(?:[a-z0-9]+[_-])*(?P<kw>{_KEYWORDS})[ \t]+(?:\\*[\"'])?(?P<value>[^\s\"'`\\]{{8,}})")
_KEY_NAME = re.compile(rf"(?:{_KEYWORDS})$", re.IGNORECASE)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _keyword_kind(keyword: str) -> str:
    k = keyword.lower()
    if "pass" in k:
        return "password"
    if "token" in k:
        return "token"
    if "api" in k:
        return "api_key"
    return "secret"


def _assignment_edits(text: str, low: str) -> list[tuple[int, int, str]]:
    edits: list[tuple[int, int, str]] = []
    for literal, regex in ASSIGNMENTS:
        if literal not in low:
            continue
        for m in regex.finditer(low):
            keyword = m.group(0)[: len(literal)]
            if literal == "key":
                prefix = KEY_PREFIX.search(low, max(0, m.start() - 12), m.start())
                if prefix is None:
                    continue
                keyword = prefix.group(0) + keyword
            elif literal == "token" and _CURSOR_PREFIX.search(low, max(0, m.start() - 13), m.start()):
                continue
            group = "dq" if m.group("dq") is not None else "sq" if m.group("sq") is not None else "bare"
            # `api_key = get_key(...)`, `token = tokens[0]`: code, not a value.
            if group == "bare" and m.group("after"):
                continue
            start, end = m.start(group), m.end(group)
            if looks_random(text[start:end]):
                edits.append((start, end, _keyword_kind(keyword)))
    if "--" in low:
        for m in FLAG.finditer(low):
            start, end = m.span("value")
            if looks_random(text[start:end]):
                edits.append((start, end, _keyword_kind(m.group("kw"))))
    return edits


def lower_twin(text: str) -> str:
    low = text.lower()
    # A few characters change length when lowercased ("İ"); offsets must match.
    return low if len(low) == len(text) else text.translate(_ASCII_LOWER)


# Records repeat a small set of field names, and this search (case-insensitive,
# with no literal to scan for) costs as much as redacting a short value.
@functools.lru_cache(maxsize=1024)
def secret_key_kind(key: Any) -> str | None:
    """The marker kind if dict key `key` names a secret (`password`, `GITHUB_TOKEN`), else None."""
    if not isinstance(key, str):
        return None
    named = _KEY_NAME.search(key)
    if named is None or _CURSOR_PREFIX.search(key.lower(), 0, named.start()):
        return None
    return _keyword_kind(named.group(0))


def redact_pass(s: str) -> str:
    """`s` with every secret the rules find marked once; a marked secret can uncover another."""
    text = _redact_private_keys(s)
    edits: list[tuple[int, int, str]] = []
    for rule in SHAPE_RULES:
        edits.extend(rule.edits(text, text))
    text = _redact_urls(_apply(text, edits))
    low = lower_twin(text)
    edits = []
    for rule in AUTH_RULES:
        edits.extend(rule.edits(text, low))
    edits.extend(_assignment_edits(text, low))
    return _apply(text, edits)
