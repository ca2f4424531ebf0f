"""A plain-text agent's output tail: kept bounded, cleaned and redacted, given to the
distill command, and its last lines carried into the relaunch prompt as its last intent."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from corpus import expand, leftovers
from helpers import aether, read_json

from aether_cli import protocol as P
from aether_cli.constants import LAST_INTENT_CHARS
from aether_cli.episode_log import EpisodeLog

OBJECTIVE = "Migrate the records"
# A GitHub token, generated from a template: no secret-shaped string is committed.
SECRET = expand("GITHUB_TOKEN=⟦ghs_{alnum:36}⟧", "aether-text-tail")


def text_log(lines: list[str]) -> EpisodeLog:
    log = EpisodeLog(objective=OBJECTIVE)
    for line in lines:
        log.add(P.Text({"type": "text", "text": line}, text=line))
    return log


def draft_json(prompt: str) -> dict[str, Any]:
    """The JSON object in a distill prompt, as a model reading it would find it."""
    line = next(ln for ln in prompt.splitlines() if ln.startswith("{"))
    return orjson.loads(line)


def test_a_text_agents_last_words_end_with_its_newest_line_within_what_a_prompt_shows() -> None:
    log = text_log([f"progress: batch {i} of the archive " + "." * 80 for i in range(50)])
    words = log.last_words
    assert words.splitlines()[-1].startswith("progress: batch 49 ")
    assert len(words) <= LAST_INTENT_CHARS and len(words.splitlines()) > 1
    one = text_log(["short", "z" * 5000]).last_words  # a newest line longer than that is kept alone
    assert one.startswith("zzz") and "short" not in one


# ------------------------------------------------ real text agents under `aether run`

# Prints numbered progress lines until aether stops it; every launch saves the prompt it got.
AGENT = """
import os, signal, sys, time
ep = os.environ['AETHER_EPISODE']
open(f'prompt_{ep}.txt', 'w').write(sys.argv[1])
if ep != '1':
    print('resumed', flush=True)
    sys.exit(0)
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
i = 0
while not stop:
    i += 1
    if i % 10 == 1:
        print(os.environ['SECRET_LINE'], flush=True)
    print(f'progress: migrated record batch {i} of the archive ' + '.' * 40, flush=True)
    open('last.txt', 'w').write(str(i))
    time.sleep(0.005)
"""


def run_text_agent(project: Path, *extra: str) -> None:
    res = aether(
        "run", "--objective", OBJECTIVE, "--context-window", "4000", "--max-episodes", "2",
        "--format", "text", *extra, "--", sys.executable, "-c", AGENT, "{prompt}",
        env={"AETHER_STOP_GRACE": "1", "AETHER_TERM_GRACE": "2", "SECRET_LINE": SECRET.text},
    )
    assert res.returncode == 0, res.stdout + res.stderr


def last_progress(project: Path) -> str:
    n = int((project / "last.txt").read_text())
    return f"progress: migrated record batch {n} of the archive"


@pytest.mark.slow
def test_a_relaunched_text_agent_is_told_its_last_output_line(project: Path) -> None:
    run_text_agent(project)
    ck = read_json(next((project / ".memory" / "checkpoints").glob("chk_*.json")))
    assert ck["distiller"] == "rules"
    relaunch = (project / "prompt_2.txt").read_text()
    assert last_progress(project) in relaunch.split("## Last intent")[1]
    assert not leftovers(relaunch, SECRET.secrets)
