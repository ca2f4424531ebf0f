"""The fast path of redaction: proof that a string holds no secret, in a few scans.

Almost no string the store writes holds a secret, yet the full rule set costs
some thirty substring scans and a few dozen Python calls per string. Here each
rule is asked only the question all of its edits depend on: does its pattern
match at all? Checks, boundaries, entropy, placeholders and cursor names are
skipped (they can only veto a match), so "no match anywhere" proves that one
pass changes nothing, and the full path would return the string as it is. A
match (even one a check would veto) runs the full path. Shape rules, private
keys and URLs are asked about the text, keyword rules about its lowercase
twin, exactly where `redact_rules.redact_pass` matches them in its first pass.
The bare AWS secret key has no literal to look for: the rule itself is the
test, checks included, so the git hashes that fill agent output (runs of 40
characters too) do not send a string down the full path.

This module reads the rule tables of `redact_rules` and never changes a
string: it knows nothing of markers or of JSON values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from aether_cli.redact_labels import label_edits
from aether_cli.redact_rules import (
    ASSIGNMENTS,
    AUTH_RULES,
    FLAG,
    KEY_PREFIX,
    PEM_BEGIN,
    SHAPE_RULES,
    URL_CREDS,
    USER_FLAG,
    aws_secret_keys,
    lower_twin,
)

# Each trigger is (needle, pattern): the rule's pattern, searched only if the
# needle is in the string, as the rule's own `edits` does. On a long text, a
# rule with several needles (ghp_, gho_, ...) whose pattern starts with a
# literal is searched at once, with needle "" (always in): `re` scans for that literal
# about as fast as `in` does, so one search beats five `in` scans. On a short
# text one alternation of all the needles comes first: a single call, where
# two dozen `in` tests and searches cost more in Python overhead than in
# scanning (but `re` tries an alternation at every character, so it loses
# on long texts).
_SHORT_TEXT = 128


def _starts_with_literal(regex: re.Pattern[str]) -> bool:
    return regex.pattern[:1].isalnum() or regex.pattern[:1] in "-:"


def _scan_plan(needles: tuple[str, ...], regex: re.Pattern[str]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    if len(needles) > 1 and _starts_with_literal(regex):
        return (("", regex),)
    return tuple((needle, regex) for needle in needles)


_SHAPE_SOURCES: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = (
    *((rule.needles, rule.regex) for rule in SHAPE_RULES),
    (("-----BEGIN",), PEM_BEGIN),
    (("://",), URL_CREDS),
)
_SHAPE_GATED: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (needle, regex) for needles, regex in _SHAPE_SOURCES for needle in needles
)
_SHAPE_SCANNED: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    pair for needles, regex in _SHAPE_SOURCES for pair in _scan_plan(needles, regex)
)


def _gates(pairs: Iterable[tuple[str, re.Pattern[str]]]) -> dict[str, tuple[re.Pattern[str], ...]]:
    gates: dict[str, tuple[re.Pattern[str], ...]] = {}
    for needle, regex in pairs:
        gates[needle] = (*gates.get(needle, ()), regex)
    return gates


# Matched in the lowercase twin: each literal the keyword rules need, with the
# patterns it gates. The "key" assignment is left out: it also needs the
# prefix test of `redact_rules._assignment_edits` (see `_keyword_may_match`).
_KEYWORD_GATES = _gates(
    [
        *((needle, rule.regex) for rule in AUTH_RULES for needle in rule.needles),
        *ASSIGNMENTS[1:],
        ("-u", USER_FLAG),
    ]
)
_KEY_ASSIGNMENT = ASSIGNMENTS[0][1]
# Every keyword `FLAG` can match contains one of these.
_FLAG_NEEDLES = frozenset(("key", "secret", "passw", "passphrase", "pwd", "token", "credential"))


def _alternation(needles: Iterable[str]) -> re.Pattern[str]:
    """A pattern that matches where any of `needles` starts, written as a trie (`gh(?:o_|p_|...)`).

    `re` tries an alternation's branches in turn at every character; sharing
    prefixes cuts the tries to a handful per position.
    """
    trie: dict[str, dict] = {}
    for needle in needles:
        node = trie
        for ch in needle:
            node = node.setdefault(ch, {})
        node[""] = {}

    def branches(node: dict[str, dict]) -> str:
        if "" in node:  # a needle ends here: longer needles through this node add nothing
            return ""
        alts = [re.escape(ch) + branches(child) for ch, child in sorted(node.items())]
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return re.compile(branches(trie))


_SHAPE_NEEDLES = _alternation(needle for needle, _ in _SHAPE_GATED)
_KEYWORD_NEEDLES = _alternation((*_KEYWORD_GATES, "key", *_FLAG_NEEDLES))

# Where a short text holds a needle, only the triggers of the needles found there
# are tried, not all two dozen ("task-0001" holds "sk-": one search, not 24 tests).
# At each position where a needle starts, `_SHAPE_NEEDLES` matches the shortest
# needle there, a prefix of every needle that starts there: its entry holds the
# triggers of all of them.
_SHAPE_BY_START: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    start: tuple(pair for pair in _SHAPE_GATED if pair[0].startswith(start))
    for start in {needle for needle, _ in _SHAPE_GATED}
}


def _any_trigger(s: str, triggers: tuple[tuple[str, re.Pattern[str]], ...]) -> bool:
    return any(needle in s and regex.search(s) is not None for needle, regex in triggers)


def _keyword_may_match(low: str) -> bool:
    # Each literal is looked for once: a long text costs one scan per literal.
    flag_word = False
    for needle, regexes in _KEYWORD_GATES.items():
        if needle in low:
            flag_word = flag_word or needle in _FLAG_NEEDLES
            if any(regex.search(low) is not None for regex in regexes):
                return True
    if "key" in low:
        flag_word = True
        # As in the keyword rules' assignment edits: a "key" match counts only
        # with a prefix (api_, secret-, ...) before it.
        for m in _KEY_ASSIGNMENT.finditer(low):
            if KEY_PREFIX.search(low, max(0, m.start() - 12), m.start()) is not None:
                return True
    return flag_word and "--" in low and FLAG.search(low) is not None


def _keyword_edits(s: str, low: str) -> bool:
    # Labels are everywhere in code (`password=password`, `token: str`): where no
    # shape rule matched, the text reaches the keyword rules unchanged, so their
    # own answer, checks included, is exactly what the full path would do.
    return any(rule.edits(s, low) for rule in AUTH_RULES) or bool(label_edits(s, low))


def _keyword_edits_if_matched(s: str, low: str) -> bool:
    return _keyword_may_match(low) and _keyword_edits(s, low)


def _shape_may_match_short(s: str, hit: re.Match[str] | None) -> bool:
    # `_any_trigger(s, _SHAPE_GATED)`, asking only the needles that occur in `s`:
    # `hit` is the first needle, and each search from one position on finds the next.
    while hit is not None:
        for needle, regex in _SHAPE_BY_START[hit.group()]:
            if needle in s and regex.search(s) is not None:
                return True
        hit = _SHAPE_NEEDLES.search(s, hit.start() + 1)
    return False


def may_hold_secret(s: str) -> bool:
    """False only if no rule's pattern matches `s`: then one redaction pass leaves it unchanged."""
    if len(s) < _SHORT_TEXT:
        hit = _SHAPE_NEEDLES.search(s)
        if hit is not None and _shape_may_match_short(s, hit):
            return True
        if len(s) >= 40 and next(aws_secret_keys(s), None) is not None:
            return True
        low = lower_twin(s)
        return _KEYWORD_NEEDLES.search(low) is not None and _keyword_may_match(low) and _keyword_edits(s, low)
    return (
        _any_trigger(s, _SHAPE_SCANNED)
        or next(aws_secret_keys(s), None) is not None
        or _keyword_edits_if_matched(s, lower_twin(s))
    )
