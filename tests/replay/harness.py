"""Replay a recording through the real `aether` CLI and score the prompts it hands the relaunched agent.

`replay` writes the episodes into the project's `.replay/`, puts
`tests/agents/replay_agent.py` on PATH as `claude` or `codex`, runs
`aether run` with that CLI's usual command line and returns every prompt the
agent was launched with. `score` checks each checkpoint's expected facts (from
`extract`) against the prompt of the launch after it. Only the prompt text is
read: nothing of `.memory/` and nothing of aether's internals.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from helpers import AGENTS, aether

from replay.extract import CATEGORIES, Expected, missing
from replay.render import CodexEpisode, Ids

FAST = {"AETHER_STOP_GRACE": "1", "AETHER_TERM_GRACE": "1", "AETHER_BACKOFF_BASE": "0.05"}
# Claude reports a window of this size; Codex's is chosen so its padding stays small.
WINDOWS = {"claude": 200_000, "codex": 48_000}


@dataclass
class Run:
    """What one replay produced."""

    returncode: int
    output: str
    prompts: list[str]
    seconds: float
    extra_launches: int
    handoffs: int


@dataclass
class Score:
    """Found and expected facts per category, over every checkpoint, and what was missed."""

    found: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    misses: list[dict[str, list[str]]] = field(default_factory=list)

    def recall(self, category: str) -> float:
        total = self.total[category]
        return self.found[category] / total if total else 1.0

    def add(self, other: Score) -> None:
        for c in CATEGORIES:
            self.found[c] += other.found[c]
            self.total[c] += other.total[c]
        self.misses.extend(other.misses)

    def line(self, label: str) -> str:
        parts = [f"{c} {self.recall(c):6.1%} ({self.found[c]}/{self.total[c]})" for c in CATEGORIES]
        return f"{label:<24} " + "  ".join(parts)


def agent_argv(fmt: str, objective: str) -> list[str]:
    if fmt == "claude":
        return ["claude", "-p", objective, "--output-format", "stream-json", "--verbose"]
    return ["codex", "exec", "--json", objective]


def install(project: Path, fmt: str, episodes: list[list[str]]) -> dict[str, str]:
    """The recording in `.replay/`, the replay agent on PATH as `fmt`; the environment to run with."""
    root = project / ".replay" / "episodes"
    root.mkdir(parents=True)
    for n, lines in enumerate(episodes, 1):
        (root / f"{n:03d}.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    bin_dir = project.parent / "replay-bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / fmt
    shim.write_text(f"#!{sys.executable}\n" + (AGENTS / "replay_agent.py").read_text())
    shim.chmod(0o755)
    return {**FAST, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def replay(project: Path, fmt: str, objective: str, episodes: list[list[str]], timeout: float = 600) -> Run:
    """Run aether over the recording; every launch's prompt, in launch order."""
    env = install(project, fmt, episodes)
    # The rules handoff is what is measured.
    args = ["run", "--format", fmt, "--context-window", str(WINDOWS[fmt]), "--handoff", "rules"]
    start = time.monotonic()
    res = aether(*args, "--", *agent_argv(fmt, objective), cwd=project, env=env, timeout=timeout)
    seconds = time.monotonic() - start
    folder = project / ".replay"
    prompts = [p.read_text(encoding="utf-8") for p in sorted((folder / "prompts").glob("*.txt"))]
    extra = folder / "extra_launches"
    handoffs = folder / "handoffs"
    return Run(
        res.returncode,
        res.stdout + res.stderr,
        prompts,
        seconds,
        int(extra.read_text()) if extra.exists() else 0,
        int(handoffs.read_text()) if handoffs.exists() else 0,
    )


def score(expected: list[Expected], prompts: list[str]) -> Score:
    """Checkpoint k's facts against the prompt of launch k+1."""
    s = Score()
    for k, facts in enumerate(expected):
        prompt = prompts[k + 1] if k + 1 < len(prompts) else ""
        lost = missing(prompt, facts)
        s.misses.append(lost)
        for c in CATEGORIES:
            s.total[c] += len(getattr(facts, c))
            s.found[c] += len(getattr(facts, c)) - len(lost[c])
    return s


def load_fixture(name: str) -> tuple[dict, list[list[str]]]:
    """A hand-labelled fixture: its labels (`NAME.expected.json`) and its episodes (`NAME.jsonl`,
    episodes separated by `# checkpoint` lines)."""
    folder = Path(__file__).parent / "fixtures"
    labels = json.loads((folder / f"{name}.expected.json").read_text(encoding="utf-8"))
    episodes: list[list[str]] = [[]]
    for line in (folder / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        if line.startswith("# checkpoint"):
            episodes.append([])
        elif line.strip():
            episodes[-1].append(line)
    return labels, episodes


def with_padding(fmt: str, episodes: list[list[str]], window: int) -> list[list[str]]:
    """Codex episodes (all but the last) followed by read-only output that crosses aether's threshold."""
    if fmt != "codex":
        return episodes
    padded = []
    for lines in episodes[:-1]:
        pad = CodexEpisode(Ids(f"pad:{len(padded)}"), "/")
        pad.lines = []
        pad.items = 1000
        pad.padding(window)
        padded.append([*lines, *pad.lines])
    return [*padded, episodes[-1]]
