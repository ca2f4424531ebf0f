"""How the fake models decide the next step: by reading the prompt and their own conversation as prose.

A model relaunched with a fresh context knows only what its prompt says, so the fakes never look
at the workdir (steps.txt) and never parse a supervisor's headings or field names. They read the
text the way a careful model would: every mention of "step N" (or "steps N-M") is taken in its
clause, and the clause's own words say whether the step is done ("done", "finished", "ok",
"appended", "exit code 0", "continue after step N") or still to do ("interrupted", "never
started", "announced", "unfinished", "failed", "next", "redo"). A mention whose clause says
neither takes the sense of the line that introduces it ("Finished commands:", "Still to do:").
Then: resume after the highest step stated done; before that, redo any step stated not done and
never stated done. What the prompt does not say is not known, so a misleading prompt makes the
fake lose or redo steps, and the workdir shows it.

Stdlib only, like the rest of tests/fakes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# "step 7", "Step 7 of 100", "steps 3-5", "steps 3 to 5", "steps 3..5".
_STEP = re.compile(r"\bsteps?\s+(\d+)(?:\s*(?:-|\u2013|\.\.|to|through)\s*(\d+)(?!\s*(?:of|/)))?", re.I)
# A step named as the point to resume after is done.
_AFTER = re.compile(r"\b(?:after|past|beyond|up to and including|through)\b", re.I)
_NOT_DONE = re.compile(
    r"interrupt|never (?:ran|run|started|finished|completed|executed)|not (?:yet )?"
    r"(?:run|done|started|finished|completed|appended|executed|verified)|did(?:n't| not)|unfinished|"
    r"incomplete|cut off|cut short|abort|announced|pending|fail|error|redo|run again|retry|re-?run|"
    r"\bnext\b|go on with|continue (?:with|at|from)|start (?:with|at)|resume (?:with|at|from)|"
    r"\bto do\b|\btodo\b|still to|remaining|may be|unverified|unknown|check (?:whether|if|what)",
    re.I,
)
_DONE = re.compile(
    r"\bdone\b|finish|complet|succe|\bok\b|exit(?: code|ed with code)?:? 0\b|\bappended\b|\bwritten\b|"
    r"\bwrote\b|\bran\b",
    re.I,
)
# Where one statement ends and the next begins, inside a line.
_CLAUSE = re.compile(r";|(?<=[.!?])\s+(?=[A-Z0-9])|\s+\u2014\s+")


@dataclass
class Reading:
    """What a text says about the steps: the ones stated done, the ones stated still to do."""

    done: set[int] = field(default_factory=set)
    not_done: set[int] = field(default_factory=set)

    def add(self, other: Reading) -> Reading:
        """Both readings together (what a model knows from its prompt and its conversation)."""
        return Reading(self.done | other.done, self.not_done | other.not_done)

    def next_step(self) -> int:
        """The step to take now: the lowest one said to be unfinished, else the one after the last done."""
        last = max(self.done, default=0)
        redo = sorted(self.not_done - self.done)
        return redo[0] if redo else last + 1


def _sense(text: str, before_mention: str = "") -> bool | None:
    """True if the words say done, False if they say still to do, None if they say neither."""
    if _AFTER.search(before_mention[-40:]):
        return True
    if _NOT_DONE.search(text):
        return False
    if _DONE.search(text):
        return True
    return None


def _steps(match: re.Match[str]) -> range:
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else first
    return range(first, max(first, last) + 1) if last - first < 100_000 else range(first, first + 1)


def read_text(text: str) -> Reading:
    """What `text` (a prompt, a message) states about which steps are done and which are not."""
    reading = Reading()
    context: bool | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        mentions = list(_STEP.finditer(line))
        if not mentions:
            # A line that mentions no step may introduce the lines after it ("Commands finished:").
            if line.rstrip().endswith(":") or line.lstrip().startswith("#"):
                context = _sense(line)
            continue
        start = 0
        for clause in _CLAUSE.split(line):
            at = line.find(clause, start)
            start = at + len(clause)
            for match in _STEP.finditer(clause):
                sense = _sense(clause, clause[: match.start()])
                if sense is None:
                    sense = context
                if sense is True:
                    reading.done.update(_steps(match))
                elif sense is False:
                    reading.not_done.update(_steps(match))
    return reading
