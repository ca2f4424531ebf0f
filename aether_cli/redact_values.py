"""What a value after a label looks like: random, a placeholder, a name in code, or a literal.

A label (`password=`, `"token":`, `--secret`) says a secret *may* follow;
whether one does depends on the value. Three answers live here:

- `looks_random`: the value could be a generated key (8+ characters, mixed
  character classes, enough entropy). Labels that also name ordinary things
  (`api_key`, `credentials`) redact only such values.
- `placeholder`: the value stands for a secret without being one (`$VAR`,
  `${{ secrets.X }}`, `<your-password>`, `********`, `changeme`, `None`, a
  path, a marker already written).
- `code_name`: the value is a name in a program (`self.password`,
  `args.db_password`, `hashedPassword`, `my_secret_v2`): the variable that
  holds the secret, not the secret.

Labels that name nothing but a secret (`password`, `secret`, `token`) redact
every value that is neither a placeholder nor, where code may be written, a
name. This module also spells the marker that replaces a secret. It knows
nothing of labels, patterns or text around the value.
"""

from __future__ import annotations

import math
import re
from collections import Counter

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


def entropy(value: str) -> float:
    """Shannon entropy of `value` in bits per character."""
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
    return entropy(value) >= min(3.0, 0.85 * math.log2(n))


# ------------------------------------------------------------- placeholders

# Values written where a secret goes, in docs, templates, defaults and code.
# fmt: off
_PLACEHOLDER_WORDS = frozenset((
    "changeme", "change_me", "change-me", "changeit", "password", "passwd", "pwd", "pass", "secret",
    "passphrase", "credential", "credentials",
    "token", "key", "none", "null", "nil", "undefined", "true", "false", "yes", "no", "on", "off",
    "empty", "blank", "unset", "redacted", "hidden", "masked", "filtered", "omitted", "removed",
    "example", "sample", "dummy", "fake", "test", "placeholder", "required", "optional", "prompt",
    "stdin", "env", "environ", "inherit", "ask", "your_password", "yourpassword", "your-password",
    "mypassword", "my_password", "your_token", "your_secret", "str", "string", "bytes", "int",
    "integer", "bool", "boolean", "float", "number", "any", "unknown", "object", "text",
    "secretstr", "self", "this", "cls", "await", "new", "yield", "lambda", "function", "async",
    "typeof", "require",
    # Words prose puts after a label: "the --password option", "password=value".
    "option", "options", "flag", "flags", "argument", "arguments", "parameter", "parameters",
    "value", "values", "field", "fields", "setting", "settings", "variable", "instead",
))
# fmt: on
_FILL = re.compile(r"([*•xX.#?_-])\1*")  # `********`, `xxxxxx`, `....`, `•••••`
# `{token}` of a format string, `[Pagination token]`, `[FILTERED]` (and every
# marker), `file://key.pem` and curl's `@file`: where the secret is, not the secret.
_TEMPLATE_PREFIXES = ("$", "<", "{", "[", "%(", "file:", "@")
_PATH_PREFIXES = ("/", "./", "../", "~/", "~\\")
_WINDOWS_ENV = re.compile(r"%\w+%")
_COLOUR = re.compile(r"#[0-9a-fA-F]{3,8}")  # a style sheet's `Token: "#d0d0d0"`


def placeholder(value: str) -> bool:
    """True if `value` stands for a secret (a variable, template, mask, default word or path) or is empty."""
    v = value.strip()
    if not v or v.startswith(_TEMPLATE_PREFIXES) or v.startswith(_PATH_PREFIXES):
        return True
    if _FILL.fullmatch(v) or _WINDOWS_ENV.fullmatch(v) or _COLOUR.fullmatch(v):
        return True
    # `:****`, `---`: no letter or digit at all, a mask rather than a value.
    return v.lower() in _PLACEHOLDER_WORDS or not any(ch.isalnum() for ch in v)


# ------------------------------------------------------------- names in code

_DOTTED = re.compile(r"[A-Za-z_$][\w$]*(?:\??\.[A-Za-z_$][\w$]*)+")
_IDENTIFIER = re.compile(r"[A-Za-z_$][\w$]*")
_CAMEL_HUMP = re.compile(r"[a-z][A-Z]")


_SLUG = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)+")
# The words a variable or setting holding a secret is named after.
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "cred", "auth")


def names_a_secret(value: str) -> bool:
    """True if `value` is a name with a secret's word in it (`next_token`, `ACCESS_TOKEN`, `no-password`)."""
    if not (code_name(value) or _SLUG.fullmatch(value)):
        return False
    low = value.lower()
    return any(word in low for word in _SECRET_WORDS)


def code_name(value: str) -> bool:
    """True if `value` reads as a name in a program rather than a literal.

    A dotted path (`self.password`, `process.env.DB_PASSWORD`), a private name
    (`_token`), or an identifier made of words joined by `_` or camel humps
    (`db_password`, `hashedPassword`, `DB_PASSWORD`, `HiddenText`,
    `saved_hooks`): a variable or a type, not a value. `hunter2`, `Tr0ub4dor`
    and `Sunshine` are literals.
    """
    if _DOTTED.fullmatch(value):
        return True
    if not _IDENTIFIER.fullmatch(value):
        return False
    return value.startswith("_") or "_" in value.rstrip("_") or _CAMEL_HUMP.search(value) is not None


def plain_word(value: str) -> bool:
    """True if `value` is one word (`expired`, `Comment`) or a number: prose or code, not a token."""
    return value.isdigit() or (value.isascii() and value.isalpha() and (value.islower() or value.istitle()))
