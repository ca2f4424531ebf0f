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

from aether_cli import episode_log as EL
from aether_cli import protocol as P
from aether_cli.budget import Budget
from aether_cli.constants import LAST_INTENT_CHARS
from aether_cli.distill_command import distill_prompt
from aether_cli.episode_log import EpisodeLog
from aether_cli.settings import Settings
from aether_cli.store import MemoryStore
from aether_cli.supervisor.checkpointing import Checkpointer
from aether_cli.tokens import load_counter

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


# ------------------------------------------------------------ the tail itself


def test_the_tail_keeps_the_last_lines_bounded_by_count() -> None:
    log = text_log([f"step {i} done" for i in range(1000)])
    tail = log.output_tail()
    assert len(tail) == EL.MAX_TAIL_LINES
    assert tail[-1] == "step 999 done" and tail[0] == f"step {1000 - EL.MAX_TAIL_LINES} done"


def test_the_tail_is_bounded_by_bytes_and_each_line_is_capped() -> None:
    log = text_log([f"{i} " + "x" * 1500 for i in range(300)] + ["y" * 100_000])
    tail = log.output_tail()
    assert len("\n".join(tail).encode()) <= EL.MAX_TAIL_BYTES
    assert tail[-1].startswith("yyy") and len(tail[-1]) <= EL.MAX_TAIL_LINE_CHARS
    assert tail[-2].startswith("299 ")
    # The log itself holds at most the capped lines, however much was printed.
    assert sum(len(line) for line in log._output) <= EL.MAX_TAIL_LINES * EL.MAX_TAIL_LINE_CHARS


def test_the_tail_has_no_escape_sequences_or_control_characters() -> None:
    log = text_log(["\x1b[31mred\x1b[0m text\x07", "\x1b]0;pwned title\x07plain \u202eevil", "ok"])
    assert log.output_tail() == ["red text", "plain evil", "ok"]
    assert "\x1b" not in log.last_words


def test_the_tail_is_redacted() -> None:
    log = text_log(["loading config", SECRET.text, "connected"])
    tail = log.output_tail()
    assert tail[0] == "loading config" and tail[-1] == "connected"
    assert not leftovers("\n".join(tail), SECRET.secrets)
    assert "[REDACTED" in tail[1]


def test_the_distill_prompt_carries_the_tail_redacted_with_the_draft() -> None:
    log = text_log(["migrated table users", f"note: {SECRET.text}", "migrated table orders"])
    draft = {"progress": [], "next_actions": ["go on"], "errors": [], "tasks": [],
             "state": {"last_message": f"note: {SECRET.text}"}}
    prompt = distill_prompt(draft, objective=OBJECTIVE, max_tokens=900, memory_dir=None,
                            output_tail=log.output_tail())
    shown = draft_json(prompt)
    assert shown["output_tail"][-1] == "migrated table orders"
    assert shown["next_actions"] == ["go on"]
    # Nothing secret leaves aether: not the tail, not the draft's own copy of the last lines.
    assert not leftovers(prompt, SECRET.secrets)


def test_without_output_the_prompt_has_no_tail() -> None:
    prompt = distill_prompt({"progress": ["x"]}, objective=OBJECTIVE, max_tokens=900, memory_dir=None)
    assert "output_tail" not in draft_json(prompt)


# -------------------------------------------- a real distill command, checkpointed


def model(tmp_path: Path, body: str) -> str:
    """A fake model command: a Python script that gets the distill prompt on stdin."""
    script = tmp_path / "model.py"
    script.write_text(
        "import json, sys\n"
        "prompt = sys.stdin.read()\n"
        "open(sys.argv[1], 'w').write(prompt)\n"
        "draft = json.loads(next(l for l in prompt.splitlines() if l.startswith('{')))\n" + body
    )
    return f"{sys.executable} {script} {tmp_path / 'seen.txt'}"


ANSWER = (
    "tail = draft['output_tail']\n"
    "print(json.dumps({'objective': 'Migrate the records', 'progress': ['migrated up to: ' + tail[-1]],"
    " 'next_actions': ['migrate the table after the last one printed']}))\n"
)


def checkpoint(tmp_path: Path, command: str, lines: list[str], timeout: float = 30) -> tuple[dict, list]:
    """Write one budget checkpoint of a text episode of `lines`, asking `command`; (checkpoint, records)."""
    settings = Settings(command=("agent",), objective=OBJECTIVE, context_window=20_000,
                        distill_command=command, distill_timeout=timeout)
    store = MemoryStore(tmp_path / ".memory")
    store.init()
    records: list[tuple[str, dict]] = []
    ckp = Checkpointer(settings, store, load_counter(prefer_exact=False), cwd=tmp_path, fmt="text",
                       record=lambda kind, **kw: records.append((kind, kw)), notice=lambda *a: None)
    budget = Budget(window=20_000, soft_at=1, checkpoint_at=1, emergency_at=1)
    ck = ckp.write("budget", text_log(lines), budget, session_id="ses_1", episode=1, window=20_000)
    return ck, records


PRINTED = [f"migrated table t{i}" for i in range(40)]


def test_the_command_reads_the_tail_and_its_answer_is_the_checkpoint(tmp_path: Path) -> None:
    ck, records = checkpoint(tmp_path, model(tmp_path, ANSWER), PRINTED)
    assert ck["distiller"] == "command", ck["distiller_note"]
    assert ck["progress"] == ["migrated up to: migrated table t39"]
    seen = draft_json((tmp_path / "seen.txt").read_text())
    assert seen["output_tail"] == PRINTED
    assert ("distill_command", {"ok": True, "reason": ""}) in records


BAD = {
    "not JSON": ("print('Sure, here is a summary of the migration.')\n", "answer is not JSON"),
    "JSON too big": ("sys.stdout.write(json.dumps({'objective': 'x', 'progress': ['y' * (2 << 20)]}))\n",
                     "answer too large"),
    "over the token budget": ("print(json.dumps({'objective': 'x', 'progress': ['word ' * 30000]}))\n",
                              "oversized"),
    "exit non-zero": ("sys.stderr.write('model overloaded\\n'); sys.exit(2)\n", "exit 2: model overloaded"),
    "hangs": ("import time; time.sleep(60)\n", "timed out after 1s"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_command_falls_back_to_rules_with_the_reason(tmp_path: Path, case: str) -> None:
    body, reason = BAD[case]
    ck, records = checkpoint(tmp_path, model(tmp_path, body), PRINTED, timeout=1)
    assert ck["distiller"] == "rules"
    assert f"distill command: {reason}" in ck["distiller_note"]
    # In the ledger: the command's own failures, and any refusal with the checkpoint.
    assert any(kind == "checkpoint" and reason in kw["note"] for kind, kw in records)
    # The rules checkpoint still says where the agent was.
    assert "migrated table t39" in ck["state"]["last_message"]


def test_a_secret_in_the_commands_answer_never_reaches_the_checkpoint(tmp_path: Path) -> None:
    body = (
        f"print(json.dumps({{'objective': 'Migrate the records', 'progress': ['used {SECRET.text}'],"
        " 'next_actions': ['go on']}))\n"
    )
    ck, records = checkpoint(tmp_path, model(tmp_path, body), PRINTED)
    assert ck["distiller"] == "command"
    assert ck["progress"][0].startswith("used ") and "[REDACTED" in ck["progress"][0]
    stored = b"".join(p.read_bytes() for p in (tmp_path / ".memory").rglob("*") if p.is_file())
    assert not leftovers(stored.decode(), SECRET.secrets)
    assert ("distill_command", {"ok": True, "reason": "", "redacted": True}) in records


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


@pytest.mark.slow
def test_the_distill_command_gets_the_text_agents_tail_redacted(project: Path, tmp_path: Path) -> None:
    script = tmp_path / "model.py"
    script.write_text(
        "import json, pathlib, sys\n"
        "prompt = sys.stdin.read()\n"
        f"seen = pathlib.Path({str(tmp_path)!r})\n"
        "(seen / f'seen_{len(list(seen.glob(\"seen_*\")))+1}.txt').write_text(prompt)\n"
        "draft = json.loads(next(l for l in prompt.splitlines() if l.startswith('{')))\n"
        "last = draft['output_tail'][-1]\n"
        "n = int(last.split()[4]) if last.startswith('progress: migrated record batch') else 0\n"
        "print(json.dumps({'objective': 'Migrate the records', 'progress': [f'batches 1-{n} migrated'],"
        " 'next_actions': [f'migrate record batch {n + 1}']}))\n"
    )
    run_text_agent(project, "--distill-command", f"{sys.executable} {script}")
    ck = read_json(min((project / ".memory" / "checkpoints").glob("chk_*.json")))
    assert ck["distiller"] == "command", ck["distiller_note"]
    prompt = (tmp_path / "seen_1.txt").read_text()
    tail = draft_json(prompt)["output_tail"]
    assert tail[-1].startswith(last_progress(project))
    assert not leftovers(prompt, SECRET.secrets)  # printed by the agent, redacted before it left aether
    assert any("[REDACTED" in line for line in tail)
    n = int((project / "last.txt").read_text())
    assert ck["next_actions"] == [f"migrate record batch {n + 1}"]
    assert f"migrate record batch {n + 1}" in (project / "prompt_2.txt").read_text()
