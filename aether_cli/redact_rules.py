"""The redaction rules: what a secret looks like, and one pass that marks each one.

Three kinds of rule:
- shape rules for secrets with a recognisable prefix (AWS key ids, GitHub,
  Slack, Stripe, GitLab, PyPI, npm, Hugging Face, Google, `sk-` keys, JWTs,
  PEM private keys, passwords in URLs) and one without: a bare 40-character
  AWS secret access key (base64 with both cases, a digit and a letter past
  `f`, so the 40 lowercase hex of a git hash never qualifies);
- `Authorization` headers (Basic, Bearer, token);
- label rules (`redact_labels`: `password=…`, `"token": "…"`, `--secret …`,
  `curl -u user:pass`), where the label rather than the value's shape says
  a secret follows.

The patterns are our own rather than a library's. detect-secrets 1.5.0 (the
maintained scanner on PyPI) was measured on tests/corpus/: it caught 1 of the 8
plain-password forms of issue 12 (only a quoted `password: "…"`), flagged 10
of the 192 benign lines (git heads, sha256 digests, npm integrity strings, a
base64 image), costs ~0.1 s to import and ~270 µs a line, pulls in requests and
PyYAML, and reports lines and values rather than spans to replace.
tests/corpus/ measures what these rules catch and what they leave alone.

Every rule has a cheap substring pre-check (the bare AWS key a regular
expression of its own), and markers never match a rule. This module knows
nothing of JSON values, of the fast path that skips it (`redact_fastpath`) or
of how often a pass is repeated (`redact`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from aether_cli.redact_labels import (
    ASSIGNMENTS,
    FLAG,
    KEY_PREFIX,
    USER_FLAG,
    label_edits,
    lower_twin,
    secret_key_kind,
)
from aether_cli.redact_values import MARK_PREFIX, entropy, looks_random, mark, placeholder

__all__ = [
    "ASSIGNMENTS",
    "AWS_SECRET",
    "FLAG",
    "KEY_PREFIX",
    "USER_FLAG",
    "aws_secret_keys",
    "looks_random",
    "lower_twin",
    "mark",
    "redact_pass",
    "secret_key_kind",
]


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
# The password runs to the last `@` before the host: a raw `@` inside it
# (`p@ss@host`) must not leave its tail behind.
URL_CREDS = re.compile(r"://(?P<user>[^\s:/@\[\]\"'<>]{0,256}):(?P<pw>[^\s/\"'<>]{1,256})@")


def _redact_url_password(m: re.Match[str]) -> str:
    text = m.string
    start = m.start()
    # Only a real scheme (`postgres://`), not a stray "://" inside other text,
    # and not a template (`https://user:${DB_PASSWORD}@host`, `:****@`).
    pw = m.group("pw")
    if start == 0 or not text[start - 1].isalnum() or pw.startswith(_URL_PLACEHOLDERS) or placeholder(pw):
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

# ------------------------------------------------------------- bare AWS secret keys

# Exactly 40 base64 characters between characters that are neither base64 nor
# `_` or `-` (which would make them part of a name or slug), not followed by
# padding; or right after an escaped `\n`, `\t`, `\r` of JSON text (where the
# escape's letter would otherwise lengthen the run). Two patterns, because the
# second starts with a literal and so costs next to nothing where no backslash is.
AWS_SECRET = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=_-])")
_AWS_SECRET_ESCAPED = re.compile(r"\\[ntr]([A-Za-z0-9+/]{40})(?![A-Za-z0-9+/=_-])")
_WORDS = re.compile(r"[a-z]{4,}")
_NOT_HEX = re.compile(r"[g-zG-Z+/]")


def _aws_secret_key(value: str) -> bool:
    # Both cases, a digit and a character no hex digest has: a git hash (40
    # lowercase hex), an uppercase hex id or a path of words never qualifies.
    if not (_mixed_case(value) and any(ch.isdigit() for ch in value) and _NOT_HEX.search(value)):
        return False
    if value.startswith("eyJ"):
        return False  # base64 of a JSON object (a JWT's header), not a key
    # Random base64 of this length holds a `/` or `+` about once and has ~4.8
    # bits of entropy per character; a path holds many slashes and less entropy.
    if value.count("/") + value.count("+") > 6 or entropy(value) < 4.2:
        return False
    # `org/cpython/file/7aaba721ebc0/Lib/socket`: a path of words, not a key.
    words = [part for part in value.split("/") if len(part) >= 3 and part.isalpha()]
    # `CreateCloudFrontOriginAccessIdentity2014`: a name of words; random base64
    # has a run of 4+ lowercase letters about once in 40 characters.
    return len(words) < 2 and sum(map(len, _WORDS.findall(value))) < 16


def aws_secret_keys(text: str) -> Iterator[tuple[int, int]]:
    """The spans of bare AWS secret access keys in `text` (lazily: the fast path stops at the first)."""
    for m in AWS_SECRET.finditer(text):
        start = m.start()
        if start > 0 and text[start - 1] == "\\" and text[start] in "ntr":
            continue  # the letter of an escape: the key, if any, starts after it (below)
        if _aws_secret_key(m.group()):
            yield m.span()
    if "\\" in text:
        for m in _AWS_SECRET_ESCAPED.finditer(text):
            if _aws_secret_key(m.group(1)):
                yield m.span(1)


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
    edits.extend(label_edits(text, low))
    # Last, so that where a label names the same span (`token=<40 characters>`),
    # its kind is the one written (`_apply` keeps the first of equal spans).
    edits.extend((start, end, "aws_secret_key") for start, end in aws_secret_keys(text))
    return _apply(text, edits)
