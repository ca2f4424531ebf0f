"""Secret redaction: API keys, tokens, private keys and passwords never reach `.memory/`.

An agent prints whatever its tools print, and `.memory/` is committed to git,
so the store passes every string it writes (task files, checkpoints,
continuity, project memory, the run ledger) through `redact_obj` here. Each
secret becomes `[REDACTED:<kind>]`; everything else is left byte-for-byte alone,
because over-eager redaction would corrupt the code, paths and hashes that the
memory exists to carry.

This module is the entry point: it walks JSON values, skips the rules for
ordinary text (`redact_fastpath.may_hold_secret`, so nearly every string the
store writes is returned after a few scans) and repeats `redact_rules`' pass
until nothing changes, which makes redaction idempotent. What a secret looks
like lives in `redact_rules`; this module knows no pattern.
"""

from __future__ import annotations

import functools
from typing import Any

from aether_cli.redact_fastpath import may_hold_secret
from aether_cli.redact_labels import key_value_is_secret
from aether_cli.redact_rules import looks_random, mark, redact_pass, secret_key_kind

__all__ = ["looks_random", "redact_obj", "redact_text"]


def redact_text(s: str) -> str:
    """Replace each secret in `s` with `[REDACTED:<kind>]`; ordinary text is returned unchanged.

    Idempotent: `redact_text(redact_text(s)) == redact_text(s)`.
    """
    if len(s) < 8 or not may_hold_secret(s):
        return s
    return _redact_full(s)


def _redact_full(s: str) -> str:
    """`redact_text` without the fast path: every rule, pass after pass until nothing changes."""
    if len(s) < 8:
        return s
    # One pass can uncover another secret (a token glued to a JWT: once the token is
    # marked, the JWT's boundary appears). Passes until nothing changes make
    # redaction idempotent by construction; in practice it settles in one or two.
    for _ in range(4):
        redacted = redact_pass(s)
        if redacted == s:
            break
        s = redacted
    return s


def _redact_value(key: Any, value: Any) -> Any:
    if isinstance(value, str):
        # `{"password": "hunter2"}`: the key says what the value is even
        # though the value alone has no telltale shape.
        kind = secret_key_kind(key)
        text = redact_text(value)
        # Judged before and after the text's own rules: a value that turns secret-looking
        # once a secret inside it is marked must be marked whole the first time, or a
        # second redaction would change it again.
        if kind is not None and (key_value_is_secret(key, value) or key_value_is_secret(key, text)):
            return mark(kind)
        return text
    return redact_obj(value)


def _redact_key(key: Any) -> Any:
    if not isinstance(key, str):
        return key
    return _redact_field_name(key) if len(key) <= 64 else redact_text(key)


# Records repeat the same few dozen field names over and over.
@functools.lru_cache(maxsize=1024)
def _redact_field_name(key: str) -> str:
    return redact_text(key)


def redact_obj(obj: Any) -> Any:
    """A copy of the JSON value `obj` with every string redacted, dict keys included.

    A key like `password` or `GITHUB_TOKEN` makes a string value under it
    redacted whole, unless it is a placeholder (`redact_labels` says which
    keys name nothing but a secret, and which only a random-looking one).
    Keys are redacted too, because an agent chooses the keys of its tool
    inputs and checkpoint state; field names are never secret-shaped, so they
    come through unchanged (should two keys redact to the same marker, the
    later one wins). Tuples become lists; numbers, booleans and None are
    returned as they are.
    """
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {_redact_key(k): _redact_value(k, v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj
