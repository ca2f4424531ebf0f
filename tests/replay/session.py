"""A realistic multi-episode coding session from a seed: what the agent did, not how a CLI prints it.

The session works through a backlog in a small Python service ("ledgerline"):
it reads and greps, edits and writes files, runs `pytest -x` until a failure is
fixed, writes files through the shell (`>`, `>>`, `tee`, `sed -i`, `cp`, `mv`,
a heredoc), leaves some lint and type errors for later (some forever), keeps a
todo list and, for Claude, receives instructions from the user mid-session.
It is cut into episodes at tool-call boundaries; `render` prints each as one
CLI's stream. The generator also labels what it did (`Facts` per checkpoint), so
the test's extractor, which reads only the printed lines, can be checked
against a second, independent derivation. Same seed, same session, byte for byte.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass, field
from typing import Any

PKG = "src/ledgerline"
MODULES = (
    "invoices", "currency", "export", "tax", "reports", "storage", "api", "cli", "audit",
    "webhooks", "pagination", "customers", "payments", "refunds", "schedules",
)  # fmt: skip
FEATURES = (
    "add CSV export", "add JSON export", "round amounts half-even", "paginate listings",
    "validate currency codes", "retry failed webhooks", "cache exchange rates",
    "sign webhook payloads", "soft-delete customers", "add tax breakdown", "stream large reports",
    "parse ISO dates", "normalise customer emails", "add audit trail", "limit refund amounts",
    "schedule monthly invoices",
)  # fmt: skip
OBJECTIVE = (
    "Work through the ledgerline backlog: add the export formats, fix the failing currency "
    "tests and keep the reports in sync. Never touch migrations/. Use pytest -x, not the full suite."
)
USER_INSTRUCTIONS = (
    "Please don't touch anything under migrations/; those files are generated.",
    "Use pytest -x for test runs, the full suite takes minutes.",
    "Keep the public signature of export_invoices() unchanged, the billing service calls it.",
    "Don't add new dependencies to pyproject.toml.",
    "Write the CHANGELOG entries in the imperative mood.",
    "Leave the legacy/ folder alone until the export work is done.",
)
DETAILS = (
    "assert Decimal('10.00') == Decimal('10.01')", "KeyError: 'currency'",
    "assert 'id,amount' == 'id,amount,currency'",
    "TypeError: unsupported operand type(s) for +: 'Decimal' and 'float'",
    "AssertionError: expected 3 pages, got 4", "ValueError: invalid ISO 8601 date: '2024-13-01'",
    "assert None is not None", "AttributeError: 'Invoice' object has no attribute 'tax_lines'",
)  # fmt: skip
EPISODE_CALLS = (22, 42)  # tool calls per episode, drawn uniformly
TODO_DONE_TEXT = (
    "Todos have been modified successfully. Ensure that you continue to use the todo list to "
    "track your progress. Please proceed with the current tasks if applicable"
)


@dataclass
class Call:
    """One tool call and its outcome, with the generator's own labels."""

    tool: str  # Read, Write, Edit, Bash, Grep, TodoWrite
    input: dict[str, Any]
    output: str
    ok: bool = True
    writes: tuple[str, ...] = ()  # project-relative paths this call writes
    key: str = ""  # what a later success must repeat to clear this call's error
    error_line: str = ""  # the line that names the failure, when not ok


@dataclass
class Say:
    """Assistant text between calls."""

    text: str


@dataclass
class UserSays:
    """A message from the user, mid-session."""

    text: str


Action = Call | Say | UserSays


@dataclass
class Facts:
    """What the next prompt must carry at one checkpoint."""

    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    todos: list[str] = field(default_factory=list)
    instructions: list[str] = field(default_factory=list)


@dataclass
class Session:
    """A whole session: its objective, where it ran, and its episodes."""

    fmt: str
    objective: str
    cwd: str
    episodes: list[list[Action]]
    labels: list[Facts]  # after episode k, for every episode but the last

    @property
    def calls(self) -> int:
        return sum(isinstance(a, Call) for ep in self.episodes for a in ep)


def sentences(text: str) -> list[str]:
    """`text` split into sentences (the unit an instruction is checked in)."""
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def ing(verb: str) -> str:
    return (verb[:-1] if verb.endswith("e") else verb) + "ing"


@dataclass
class Unit:
    """One backlog item: a feature in a module, its files and its todo title."""

    feature: str
    module: str

    @property
    def title(self) -> str:
        return f"{self.feature[0].upper()}{self.feature[1:]} in {self.module}"

    @property
    def active(self) -> str:
        first, _, rest = self.feature.partition(" ")
        return f"{ing(first).capitalize()} {rest} in {self.module}"

    @property
    def src(self) -> str:
        return f"{PKG}/{self.module}.py"

    @property
    def test(self) -> str:
        return f"tests/test_{self.module}.py"

    @property
    def func(self) -> str:
        return re.sub(r"[^a-z]+", "_", self.feature.lower()).strip("_")


class Builder:
    """Appends actions and keeps the generator's own view of the facts."""

    def __init__(self, rng: random.Random, cwd: str, fmt: str) -> None:
        self.rng, self.cwd, self.fmt = rng, cwd, fmt
        self.actions: list[Action] = []
        self.files: dict[str, None] = {}
        self.errors: dict[str, str] = {}
        self.todos: list[dict[str, str]] = []
        self.instructions: list[str] = sentences(OBJECTIVE)
        self.cuts: list[int] = []  # action indices after which an episode ends
        self.snapshots: list[Facts] = []
        self.calls = 0
        self._since_cut = 0
        self._cut_at = rng.randint(*EPISODE_CALLS)

    def abs(self, rel: str) -> str:
        return f"{self.cwd}/{rel}"

    def say(self, text: str) -> None:
        self.actions.append(Say(text))

    def user(self, text: str) -> None:
        if self.fmt == "claude":  # `codex exec --json` never shows the user's words
            self.actions.append(UserSays(text))
            self.instructions.extend(s for s in sentences(text) if s not in self.instructions)

    def add(self, call: Call) -> None:
        self.actions.append(call)
        for rel in call.writes:
            self.files.pop(rel, None)
            self.files[rel] = None
        if call.key:
            if call.ok:
                self.errors.pop(call.key, None)
            else:
                self.errors.pop(call.key, None)
                self.errors[call.key] = call.error_line
        self.calls += 1
        self._since_cut += 1
        if self._since_cut >= self._cut_at:
            self.snapshot()
            self._since_cut, self._cut_at = 0, self.rng.randint(*EPISODE_CALLS)

    def session(self, objective: str) -> Session:
        """The actions cut into episodes; a last episode of under 5 calls joins the one before."""
        cuts, labels = list(self.cuts), list(self.snapshots)
        if cuts and self._since_cut < 5:
            cuts.pop()
            labels.pop()
        bounds = [0, *cuts, len(self.actions)]
        episodes = [self.actions[a:z] for a, z in itertools.pairwise(bounds)]
        return Session(self.fmt, objective, self.cwd, episodes, labels)

    def snapshot(self) -> None:
        self.cuts.append(len(self.actions))
        self.snapshots.append(
            Facts(
                files=list(self.files),
                errors=list(self.errors.values()),
                todos=[t["content"] for t in self.todos if t["status"] != "completed"],
                instructions=list(self.instructions),
            )
        )
