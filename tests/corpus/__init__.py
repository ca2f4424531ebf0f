"""The redaction corpora: synthetic secrets (expanded from templates) and benign agent output.

`secrets.txt` holds templates rather than secrets, so nothing secret-shaped is
committed (repository scanners and push protection would flag it, and a real
key must never be in a test). Each line is filled in with random characters
from a seed derived from its line number: the same line always expands to the
same text, and adding a line does not change the others. See README.md.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

HERE = Path(__file__).parent
SECRETS_FILE = HERE / "secrets.txt"
BENIGN_DIR = HERE / "benign"

OPEN, CLOSE = "⟦", "⟧"
_ALPHABETS = {
    "alnum": string.ascii_letters + string.digits,
    "upper": string.ascii_uppercase + string.digits,
    "lower": string.ascii_lowercase + string.digits,
    "hex": string.hexdigits[:16],
    "b64": string.ascii_letters + string.digits + "+/",
    "url": string.ascii_letters + string.digits + "-_",
    "digits": string.digits,
    # Punctuation a password may hold and still end where a shell or URL word ends.
    "pw": string.ascii_letters + string.digits + "!%*+-.^_~#",
}
_PLACEHOLDER = re.compile(r"\{(" + "|".join(_ALPHABETS) + r"):(\d+)\}")
_ESCAPE = re.compile(r"\\([\\n])")
_SECRET = re.compile(f"{OPEN}(.*?){CLOSE}", re.S)
_RUN = re.compile(r"[A-Za-z0-9]+")
_MARKER = re.compile(r"\[REDACTED:[a-z0-9_]+\]")


@dataclass(frozen=True)
class SecretCase:
    """One expanded line of secrets.txt: the text, and the secrets that must vanish from it."""

    lineno: int
    text: str
    secrets: tuple[str, ...]

    @property
    def id(self) -> str:
        """A short test id: the line number and the start of the text."""
        return f"L{self.lineno}-{self.text[:24].strip()}"


def _random(rng: random.Random, alphabet: str, n: int) -> str:
    # A generated key mixes letters and digits; an all-letter draw would be a
    # different (and much rarer) case than the one the line describes.
    mixed = any(c.isdigit() for c in alphabet) and any(c.isalpha() for c in alphabet)
    while True:
        value = "".join(rng.choice(alphabet) for _ in range(n))
        if not mixed or n < 2 or (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
            return value


def expand(template: str, seed: str) -> SecretCase:
    """Fill in one template line (escapes, random characters), then split off its marked secrets."""
    rng = random.Random(seed)
    text = _ESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else "\\", template)
    text = _PLACEHOLDER.sub(lambda m: _random(rng, _ALPHABETS[m.group(1)], int(m.group(2))), text)
    secrets = tuple(m.group(1) for m in _SECRET.finditer(text))
    if not secrets:
        raise ValueError(f"{SECRETS_FILE.name}: no ⟦secret⟧ marked in {template!r}")
    return SecretCase(0, text.replace(OPEN, "").replace(CLOSE, ""), secrets)


def secret_cases() -> list[SecretCase]:
    """Every case of secrets.txt, expanded (deterministic)."""
    cases = []
    for lineno, line in enumerate(SECRETS_FILE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        case = expand(line, f"aether-corpus:{lineno}")
        cases.append(SecretCase(lineno, case.text, case.secrets))
    return cases


def all_secrets() -> list[str]:
    """Every secret of the corpus, once each."""
    return sorted({s for case in secret_cases() for s in case.secrets})


def benign_files() -> dict[str, str]:
    """name -> text of every file in benign/ (sorted by name)."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(BENIGN_DIR.iterdir()) if p.is_file()}


def benign_lines() -> list[tuple[str, int, str]]:
    """(file name, line number, text) for every non-empty line of the benign corpus."""
    return [
        (name, lineno, line)
        for name, text in benign_files().items()
        for lineno, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]


def leftovers(out: str, secrets: Iterable[str]) -> list[str]:
    """The parts of `secrets` still in `out`, as written or JSON-escaped (once or twice).

    A multi-line secret (a private key) counts as leaked if any of its lines
    of 8+ characters is still there, and any secret if a run of 6+ letters and
    digits of it (not all lowercase letters) is: a password cut at its `&` or
    `@` leaks its tail.
    """
    left = []
    for secret in secrets:
        forms = {secret, *(line for line in secret.split("\n") if len(line) >= 8)}
        for form in list(forms):
            once = orjson.dumps(form).decode()[1:-1]
            forms |= {once, orjson.dumps(once).decode()[1:-1]}
        left.extend(form for form in forms if form in out)
        # Runs with a digit or a capital: a lowercase word of a secret (`github` of
        # `github_pat_`, `correct` of `correct horse`) also occurs in plain text.
        bare = _MARKER.sub(" ", out)
        runs = [
            run for run in _RUN.findall(secret) if len(run) >= 6 and not (run.isalpha() and run.islower())
        ]
        left.extend(run for run in runs if run in bare)
    return left
