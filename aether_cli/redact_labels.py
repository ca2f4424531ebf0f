"""Label rules: a value its label names a secret (`password=`, `"token":`, `--secret`, `-u user:pass`).

A password is chosen by a person, so it can look like anything: `hunter2`,
`correct horse battery staple`. What gives it away is its label. Labels come
in two strengths:

- labels that name nothing but a secret (password, passwd, pwd, passphrase,
  `*_PASS`, secret, token, secret/signing/private/encryption/master key):
  every value is redacted unless it is a placeholder or, where code may be
  written, a name in the program (`redact_values`);
- labels that also name ordinary things (api/access/client/... key,
  credentials): only a random-looking value.

Where a value is surely a literal (an uppercase `NAME=value` as in `.env` and
shell, `export`, `--flag=value`, a query string or connection string, a
quoted string, a JSON value), four characters are enough; elsewhere (`key =
value` or `key: value`, which code writes too) six, and a `token:` or
`secret:` followed by a lone lowercase word (`token: expired`) is prose. A
bare value ends at whitespace, a quote, a bracket or a comma; `&` and `;` end
it only before `name=` or a space (so `Tr0ub4dor&3x` goes whole while
`?token=…&page=2` keeps its page). A YAML `password:` at the start of a line
takes the rest of the line (`password: correct horse battery staple`).

Matching is done in an ASCII-lowercased twin of the text (same offsets): a
case-insensitive alternation cannot use `re`'s literal-prefix search. This
module knows nothing of the shape rules, of JSON values or of how often a
pass runs; `redact_rules` calls `label_edits` once per pass.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from aether_cli.redact_values import code_name, looks_random, names_a_secret, placeholder, plain_word

Edit = tuple[int, int, str]

# `<keyword><quote?> <sep> <value>`, one pattern per keyword ending so each
# starts with a literal. "key" alone is too common a word: it needs one of
# the prefixes below (api_key, ACCESS-KEY, secretkey, ...). Quotes may carry
# any number of backslashes: JSON inside a string inside JSON (a tool input
# flattened into a checkpoint line) escapes them twice.
_KEY_PREFIXES = r"api|access|secret|signing|private|encryption|master|account|client|auth|session|app"
KEY_PREFIX = re.compile(rf"(?:{_KEY_PREFIXES})[_-]?$")
# `page_token=...`, `nextPageToken`, `NextToken`, `--starting-token`: opaque
# cursors from paginated APIs (and idempotency and lock tokens), printed all
# the time and worth nothing to an attacker.
_CURSOR_PREFIX = re.compile(
    r"(?:page|continuation|cursor|next|starting|idempotency|request|lock|sequence)[_-]?$"
)
_STOP = r"\s\"'`,;&<>()\[\]{}\\"
_VALUE = (
    r"(?:\\*[\"'])?[ \t]*(?P<sep>=>|:=|[:=])[ \t]*(?![=>])"
    r"(?:\\*\"(?P<dq>[^\"\\\n]+)\\*\"|\\*'(?P<sq>[^'\\\n]+)\\*'"
    rf"|(?P<bare>(?:[^{_STOP}]|[&;](?=[^{_STOP}])(?![\w.%-]+=))+)(?P<after>[(\[]?))"
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
        ("pwd", "pwd"),
        ("_pass", "_pass"),
        ("-pass", "-pass"),
    )
)
_KEYWORDS = rf"(?:{_KEY_PREFIXES})[_-]?key|secret|passwd|password|passphrase|pwd|token|credentials?"
# `--password VALUE`, `--api-key VALUE`: the `=` form is an assignment above;
# this is the space-separated form of a long command-line option.
FLAG = re.compile(
    rf"--(?:[a-z0-9]+[_-])*(?P<kw>{_KEYWORDS})[ \t]+"
    r"(?:\\*\"(?P<dq>[^\"\\\n]+)\\*\"|\\*'(?P<sq>[^'\\\n]+)\\*'|(?P<bare>[^\s\"'`\\]+))"
)
# `curl -u admin:pass`, `--user=admin:pass`, `--proxy-user`, and argv written as JSON (`"-u", "a:b"`).
USER_FLAG = re.compile(
    r"-(?:u|-user|-proxy-user)(?:[ \t]+|=|\\*\"[ \t]*,[ \t]*(?=\\*\"))"
    r"(?:\\*\"(?P<dq>[^\"\\\n:]*:[^\"\\\n]+)\\*\"|\\*'(?P<sq>[^'\\\n:]*:[^'\\\n]+)\\*'"
    r"|(?P<bare>[^\s\"'`\\:]*:[^\s\"'`\\]+))"
)
_KEY_NAME = re.compile(rf"(?:{_KEYWORDS}|[_-]pass)$", re.IGNORECASE)
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_FLAG_BEFORE = re.compile(r"--[\w-]*\Z")
# A capitalised name (`Incomplete`, `Buffer`), or a name with a default (`Token=None`).
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# `:param password: the password to use`: a docstring, not a setting.
_DOC_FIELD = re.compile(r"[:@](?:param|type|arg|raises)[ \t]+\Z")
_TYPE_OR_DEFAULT = re.compile(r"[A-Z][a-z]+|[A-Za-z_]\w*=.*")
_LINE_START = re.compile(r"(?:\A|\n|\\n|\")[ \t]*(?:-[ \t]+)?\Z")
# The rest of a YAML line after a bare first word: more words, then the end of the line.
_YAML_REST = re.compile(r"(?:[ \t]+[^\s\"'`\\<>()\[\]{}=|;,#&]+)+(?=[ \t]*(?:\n|\\[nr]|\Z|[ \t]#))")
# `docker run -u 1000:1000`, `-u app:staff`: a user and group, not a user and password.
_USER_GROUP_TOOLS = re.compile(r"\b(?:docker|podman|nerdctl|kubectl|chown)\b")


def _keyword_kind(keyword: str) -> str:
    k = keyword.lower()
    if "pass" in k or "pwd" in k:
        return "password"
    if "token" in k:
        return "token"
    if "api" in k:
        return "api_key"
    return "secret"


def _names_only_secrets(keyword: str) -> bool:
    """True for labels that name nothing but a secret (the value is judged by its label)."""
    k = keyword.lower()
    return any(w in k for w in ("pass", "pwd", "secret", "token")) or k.startswith(
        ("signing", "encryption", "master", "private")
    )


def value_is_secret(value: str, keyword: str, *, literal: bool, spaced: bool = False) -> bool:
    """Whether `value`, written after label `keyword`, is a secret to redact.

    `literal`: the value is surely a literal (quoted, `.env`, a flag, JSON),
    not possibly a name in code. `spaced`: written `key = value`, as code
    assigns a variable.
    """
    if not _names_only_secrets(keyword):
        return looks_random(value)
    if placeholder(value):
        return False
    if looks_random(value):
        return True
    k = keyword.lower()
    password = "pass" in k or "pwd" in k
    if not password and _NUMBER.fullmatch(value):
        return False  # `"lastModifiedSecret": 1556311319.069`
    if literal:
        # `"input_token": "next_token"`, `SECRET_KEY = 'AWS_SECRET_ACCESS_KEY'`, `"IdToken": "minutes"`:
        # a name or a word, not a value.
        if names_a_secret(value):
            return False
        # A token is generated, never a word or a name; a secret, like a password, may be chosen.
        if "token" in k and (code_name(value) or " " in value or plain_word(value)):
            return False
        return len(value) >= 4
    if len(value) < 6 or code_name(value) or _TYPE_OR_DEFAULT.fullmatch(value):
        return False  # `password: HiddenText`, `startToken:Token=None`
    # `password: sunshine` is YAML; `password = credentials` is code.
    return (password and not spaced) or not plain_word(value)


def _surely_literal(text: str, name_start: int, sep: tuple[int, int]) -> bool:
    """A bare value after the label starting at `name_start` with separator span `sep`: surely a literal?"""
    before = text[max(0, name_start - 40) : name_start]
    # `--db-password=x`, `?token=x`, `&password=x`, `;Password=x;`, `export password=x`
    if _FLAG_BEFORE.search(before) or before.endswith(("?", "&", ";", "export ")):
        return True
    name = text[name_start : sep[0]]
    # `DB_PASSWORD=x`, `PGPASSWORD=x` (no spaces): shell and .env, never code.
    return text[sep[0] : sep[1]] == "=" and name.isupper() and text[sep[1] : sep[1] + 1] not in (" ", "\t")


def _yaml_rest(text: str, name_start: int, end: int) -> int:
    """The end of a YAML `password:` value: the line's end if its rest is plain words, else `end`."""
    if not _LINE_START.search(text, max(0, name_start - 40), name_start):
        return end
    rest = _YAML_REST.match(text, end)
    return rest.end() if rest is not None else end


def _assignment_edits(text: str, low: str, edits: list[Edit]) -> None:
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
            start, end = m.span(group)
            name_start = _name_start(text, m.start())
            literal_value = group != "bare" or _surely_literal(text, name_start, m.span("sep"))
            if group == "bare" and m.group("sep") == ":" and name_start > 0 and text[name_start - 1] == ":":
                continue  # `arn:aws:secretsmanager:*:*:secret:name*`: a resource name
            if _DOC_FIELD.search(text, max(0, name_start - 12), name_start):
                continue
            # `REDIS_PASS=`, `--db-pass=`, never `bypass = ...` or `_assertion_pass = hooks` in code.
            if literal in ("_pass", "-pass") and not (literal_value and group == "bare"):
                continue
            spaced = text[m.start("sep") - 1 : m.start("sep")] in (" ", "\t")
            if not value_is_secret(text[start:end], keyword, literal=literal_value, spaced=spaced):
                continue
            if group == "bare" and m.group("sep") == ":" and _keyword_kind(keyword) == "password":
                end = _yaml_rest(text, name_start, end)
            edits.append((start, end, _keyword_kind(keyword)))


def _name_start(text: str, keyword_start: int) -> int:
    """Where the name holding the keyword at `keyword_start` begins (`DB_` of `DB_PASSWORD`)."""
    i, lo = keyword_start, max(0, keyword_start - 40)
    while i > lo and text[i - 1] in _NAME_CHARS:
        i -= 1
    return i


def _flag_edits(text: str, low: str, edits: list[Edit]) -> None:
    for m in FLAG.finditer(low):
        if _CURSOR_PREFIX.search(low, max(0, m.start("kw") - 13), m.start("kw")):
            continue  # `--starting-token`, `--client-request-token`
        group = "dq" if m.group("dq") is not None else "sq" if m.group("sq") is not None else "bare"
        start, end = m.span(group)
        value = text[start:end]
        # `--password --verbose`, `(--current-token --cut-at-cursor)`: the next option, not a value.
        if not value.startswith("-") and value_is_secret(value, m.group("kw"), literal=True):
            edits.append((start, end, _keyword_kind(m.group("kw"))))


def _user_flag_edits(text: str, low: str, edits: list[Edit]) -> None:
    for m in USER_FLAG.finditer(low):
        if m.start() > 0 and (text[m.start() - 1].isalnum() or text[m.start() - 1] in "-_./"):
            continue  # `git-upload`, `x-u`: part of a longer word
        group = "dq" if m.group("dq") is not None else "sq" if m.group("sq") is not None else "bare"
        start, end = m.span(group)
        user, _, password = text[start:end].partition(":")
        if placeholder(password) or password.startswith("//") or password == user or len(password) < 4:
            continue  # `$PASS`, `-u https://host` (a URL), `root:root`
        if password.isdigit() and user.isdigit():
            continue  # uid:gid
        line_start = text.rfind("\n", 0, m.start()) + 1
        if _USER_GROUP_TOOLS.search(low, line_start, m.start()):
            continue
        edits.append((start + len(user) + 1, end, "password"))


def label_edits(text: str, low: str) -> list[Edit]:
    """Spans of `text` that a label names a secret, found in `low` (its lowercase twin)."""
    edits: list[Edit] = []
    _assignment_edits(text, low, edits)
    if "--" in low:
        _flag_edits(text, low, edits)
    if "-u" in low:
        _user_flag_edits(text, low, edits)
    return edits


def lower_twin(text: str) -> str:
    """`text` lowercased, with the same length and offsets."""
    low = text.lower()
    # One character changes length when lowercased ("İ" becomes "i" and a combining
    # dot); offsets must match, so it becomes a plain "i" first.
    return low if len(low) == len(text) else text.replace("\u0130", "i").lower()


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


def key_value_is_secret(key: str, value: str) -> bool:
    """Whether string `value` under dict key `key` (which `secret_key_kind` names) is a secret."""
    named = _KEY_NAME.search(key)
    return named is not None and value_is_secret(value, named.group(0), literal=True)
