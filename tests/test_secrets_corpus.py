"""The redaction corpus (tests/corpus/): every synthetic secret is caught, ordinary agent output is not.

The secrets are expanded from templates in tests/corpus/secrets.txt (random
characters in the right shape, never real keys); the benign files are
realistic transcript snippets. The figures in tests/corpus/README.md come from
the two measuring tests below (run with `-s` to see them).
"""

from __future__ import annotations

import re

import orjson
import pytest
from corpus import SecretCase, all_secrets, benign_files, benign_lines, leftovers, secret_cases
from hypothesis import given, settings
from hypothesis import strategies as st

from aether_cli.redact import redact_obj, redact_text
from aether_cli.store import files

CASES = secret_cases()
MARK = "[REDACTED:"
MARKER = re.compile(r"\[REDACTED:([a-z0-9_]+)\]")


# ------------------------------------------------------------- the secrets corpus


def test_the_corpus_covers_every_kind_the_issue_names() -> None:
    kinds = {kind for case in CASES for kind in MARKER.findall(redact_text(case.text))}
    assert {
        "aws_access_key",
        "aws_secret_key",
        "github_token",
        "slack_token",
        "stripe_key",
        "api_key",
        "jwt",
        "private_key",
        "url_password",
        "password",
        "token",
        "secret",
    } <= kinds
    prefixes = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")
    assert all(any(p in case.text for case in CASES) for p in prefixes)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_corpus_secret_is_redacted(case: SecretCase) -> None:
    out = redact_text(case.text)
    assert not leftovers(out, case.secrets), out
    assert MARK in out
    assert redact_text(out) == out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_corpus_secret_is_redacted_inside_json_and_the_json_stays_valid(case: SecretCase) -> None:
    value = {
        "type": "tool_result",
        "output": case.text,
        "nested": [{"cmd": ["sh", "-c", case.text]}, 3, 1.5, None, True],
        case.text: "a key the agent chose",
        "flattened": "shell " + orjson.dumps({"command": case.text}).decode(),
    }
    out = redact_obj(value)
    data = files.dumps(out)
    assert files.loads(data) == out
    assert not leftovers(data.decode(), case.secrets)
    assert redact_obj(out) == out
    line = files.dumps_line(out)
    assert orjson.loads(line) == out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_corpus_secret_is_redacted_in_json_text(case: SecretCase) -> None:
    # A tool that printed JSON (or a ledger line pasted into a message): the
    # secret arrives escaped, as text.
    once = orjson.dumps({"output": case.text}).decode()
    twice = orjson.dumps(once).decode()
    for text in (once, twice):
        out = redact_text(text)
        assert not leftovers(out, case.secrets), out
        assert orjson.loads(out)  # escaping survives: still valid JSON


def test_the_whole_corpus_as_one_text_is_redacted_and_measured() -> None:
    text = "\n".join(case.text for case in CASES)
    out = redact_text(text)
    secrets = all_secrets()
    caught = [s for s in secrets if not leftovers(out, [s])]
    print(f"\nsecrets corpus: {len(CASES)} cases, {len(secrets)} secrets, {len(caught)} caught")
    assert len(caught) == len(secrets)
    assert redact_text(out) == out


# ------------------------------------------------------------- the benign corpus


def test_benign_corpus_has_no_false_positives() -> None:
    lines = benign_lines()
    changed = [(name, n, redact_text(line)) for name, n, line in lines if redact_text(line) != line]
    files = benign_files()
    changed_files = [name for name, text in files.items() if redact_text(text) != text]
    rate = len(changed) / len(lines)
    print(
        f"\nbenign corpus: {len(files)} files, {len(lines)} lines, "
        f"{len(changed)} false positives ({rate:.2%}); files changed as a whole: {len(changed_files)}"
    )
    assert changed == []
    assert changed_files == []


def test_benign_corpus_is_left_alone_as_json_too() -> None:
    for name, n, line in benign_lines():
        once = orjson.dumps(line).decode()
        assert redact_text(once) == once, f"{name}:{n}"
        assert redact_obj({"output": line, "lines": [line]}) == {"output": line, "lines": [line]}


def test_benign_ledger_records_are_left_alone_by_redact_obj() -> None:
    for line in benign_files()["ledger.jsonl"].splitlines():
        record = orjson.loads(line)
        assert redact_obj(record) == record


def test_the_benign_corpus_has_what_the_issue_lists() -> None:
    text = "\n".join(benign_files().values())
    for needle in ("def ", "const ", "commit ", "sha256:", "sha512-", "data:image/png;base64,", '"kind":'):
        assert needle in text, needle
    assert any(len(word) > 60 for word in text.split())  # long identifiers and hashes


# ------------------------------------------------------------- idempotence

TEXTS = [case.text for case in CASES]


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_redaction_of_random_text_is_idempotent(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TEXTS) | st.text(max_size=16), min_size=1, max_size=6).map("".join))
def test_redaction_of_corpus_lines_glued_into_random_text_is_idempotent(text: str) -> None:
    once = redact_text(text)
    assert redact_text(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.sampled_from(CASES), st.text(max_size=40))
def test_a_corpus_line_between_random_lines_is_still_redacted(
    before: str, case: SecretCase, after: str
) -> None:
    text = f"{before}\n{case.text}\n{after}"
    out = redact_text(text)
    assert not leftovers(out, case.secrets)
    assert redact_text(out) == out


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**63 - 1)
        | st.sampled_from(TEXTS)
        | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.sampled_from(TEXTS) | st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_redact_obj_on_corpus_values_is_idempotent_and_round_trips(value: object) -> None:
    once = redact_obj(value)
    assert redact_obj(once) == once
    assert files.loads(files.dumps(once)) == once
