"""`aether resume`'s guardrails end to end (issue 13.4): the real CLI in real git repositories.

A fake agent copies the prompt it was launched with out of the repository
(so it leaves the workspace as it found it), and says done when told to. The
tests change the repository between runs the way a person would, then read
what aether printed, what it refused, what the relaunched agent's prompt said
and what the ledger recorded. The in-process Engine gets the same guardrails.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from aether_cli import Engine, resume_run
from aether_cli import constants as C
from aether_cli.errors import AetherError
from aether_cli.rehydrate import CHANGED_TITLE
from tests.gitrepo import git, init_repo
from tests.helpers import aether

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

# Copies its prompt to OUT/prompt_<episode>.txt; with "done", reports the objective done.
AGENT_SRC = (
    "import os, shutil, sys; e = os.environ; "
    "shutil.copy(e['AETHER_PROMPT_FILE'], os.path.join(sys.argv[1], 'prompt_%s.txt' % e['AETHER_EPISODE'])); "
    "print('{\"type\": \"done\", \"summary\": \"all done\"}' if sys.argv[2:] == ['done'] else '', flush=True)"
)


class Project:
    """A repository with a session in it, and the folder the agent copies its prompts into."""

    def __init__(self, tmp: Path, *, repo: bool = True) -> None:
        self.root = init_repo(tmp / "repo") if repo else tmp / "plain"
        self.root.mkdir(exist_ok=True)
        self.out = tmp / "out"
        self.out.mkdir()
        (self.root / "app.py").write_text("x = 1\n")
        if repo:
            git(self.root, "add", "app.py")
            git(self.root, "commit", "-qm", "app")

    def run(self, *extra: str) -> Any:
        argv = [sys.executable, "-c", AGENT_SRC, str(self.out), *extra]
        res = aether("run", "--format", "aether", "--objective", "keep going", "--", *argv, cwd=self.root)
        assert res.returncode == 0, res.stderr
        return res

    def resume(self, *args: str) -> Any:
        return aether("resume", "--yes", *args, cwd=self.root)

    def prompt(self, episode: int) -> str:
        return (self.out / f"prompt_{episode}.txt").read_text()

    def checkpoints(self) -> list[str]:
        return sorted(p.stem for p in (self.root / C.MEMORY_DIRNAME / C.CHECKPOINTS_DIR).glob("chk_*.json"))

    def ledger(self) -> list[dict[str, Any]]:
        (path,) = (self.root / C.MEMORY_DIRNAME / C.RUNS_DIR).glob("ses_*.jsonl")
        return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]

    def commit(self, name: str, text: str, message: str) -> None:
        (self.root / name).write_text(text)
        git(self.root, "add", name)
        git(self.root, "commit", "-qm", message)


def aether_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("aether ")]


@pytest.mark.slow
def test_a_new_commit_and_a_dirty_file_are_said_and_put_in_the_prompt(tmp_path: Path) -> None:
    p = Project(tmp_path)
    p.run()
    assert CHANGED_TITLE not in p.prompt(1)
    p.commit("lib.py", "def f(): pass\n", "add lib")
    (p.root / "app.py").write_text("x = 2\n")
    res = p.resume()
    assert res.returncode == 0, res.stderr
    lines = aether_lines(res.stdout)
    summary = "1 new commit; uncommitted changes appeared; 2 files changed"
    assert f"aether changed since the checkpoint: {summary}" in lines
    assert any(line.startswith("aether commits: ") and line.endswith(" add lib") for line in lines)
    assert "aether files: app.py (modified, +1 -1), lib.py (added, +1 -0)" in lines
    # The relaunched agent is told, in its prompt, to re-read those files.
    prompt = p.prompt(2)
    assert f"## {CHANGED_TITLE}" in prompt and "add lib" in prompt and "app.py (modified" in prompt
    # Its size against the expected one: printed and in the ledger.
    launch = [r for r in p.ledger() if r["kind"] == "launch"][-1]
    (rehydrated,) = [r for r in p.ledger() if r["kind"] == "rehydrated"]
    assert rehydrated["prompt_tokens"] == launch["prompt_tokens"] and rehydrated["changed_lines"] == 3
    assert rehydrated["checkpoint"] == p.checkpoints()[0] and isinstance(rehydrated["expected_tokens"], int)
    assert any(line.startswith(f"aether rehydrated prompt: {launch['prompt_tokens']:,} tokens (expected ~")
               for line in lines)
    # Nothing changed since the second checkpoint: the next resume says so, and no section.
    again = p.resume()
    assert again.returncode == 0, again.stderr
    assert "aether workspace unchanged since the checkpoint" in aether_lines(again.stdout)
    assert CHANGED_TITLE not in p.prompt(3)


@pytest.mark.slow
def test_strict_refuses_a_changed_workspace_and_launches_nothing(tmp_path: Path) -> None:
    p = Project(tmp_path)
    p.run()
    p.commit("lib.py", "y = 1\n", "add lib")
    res = p.resume("--strict")
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"aether: error: the workspace changed since checkpoint {p.checkpoints()[0]}: 1 new commit; "
        "1 file changed; refusing to resume (--strict)"
    ]
    assert not (p.out / "prompt_2.txt").exists()
    git(p.root, "reset", "-q", "--hard", "HEAD~1")  # back where the checkpoint was: strict lets it go
    assert p.resume("--strict").returncode == 0
    assert CHANGED_TITLE not in p.prompt(2)


@pytest.mark.slow
def test_a_done_session_asks_for_force(tmp_path: Path) -> None:
    p = Project(tmp_path)
    p.run("done")
    cont = orjson.loads((p.root / C.MEMORY_DIRNAME / C.CONTINUITY_FILE).read_bytes())
    assert cont["status"] == "done"
    res = p.resume()
    assert res.returncode == 1 and not (p.out / "prompt_2.txt").exists()
    assert res.stderr.strip().splitlines() == [
        f"aether: error: session {cont['session_id']} finished at {cont['updated_at']} with "
        f"{cont['last_checkpoint']}; `aether resume --force` goes on anyway, or `aether run` "
        "starts a new session"
    ]
    forced = p.resume("--force")
    assert forced.returncode == 0, forced.stderr
    assert any("which finished at" in line and "(--force)" in line for line in aether_lines(forced.stdout))
    assert (p.out / "prompt_2.txt").exists()


@pytest.mark.slow
def test_an_older_checkpoint_warns_that_later_work_is_on_disk(tmp_path: Path) -> None:
    p = Project(tmp_path)
    p.run()
    assert p.resume().returncode == 0
    first, second = p.checkpoints()
    res = p.resume(first)
    assert res.returncode == 0, res.stderr
    (warning,) = [line for line in aether_lines(res.stdout) if "is not the session's latest" in line]
    assert warning.startswith(f"aether {first} is not the session's latest checkpoint: later work")
    assert "on disk" in warning and warning.endswith(f"later checkpoints: {second} (episode 2)")
    prompt = p.prompt(3)
    assert "Later checkpoints of this session exist" in prompt and second in prompt


@pytest.mark.slow
def test_outside_git_it_says_so_once_and_goes_on(tmp_path: Path) -> None:
    p = Project(tmp_path, repo=False)
    p.run()
    res = p.resume("--strict")  # nothing is known to have changed: strict does not refuse
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("workspace not checked: not a git repository") == 1
    assert CHANGED_TITLE not in p.prompt(2)


@pytest.mark.slow
def test_a_hostile_git_head_in_an_edited_checkpoint(tmp_path: Path) -> None:
    p = Project(tmp_path)
    p.run()
    target = tmp_path / "clobbered"  # what `--output=` would have git write
    path = p.root / C.MEMORY_DIRNAME / C.CHECKPOINTS_DIR / f"{p.checkpoints()[0]}.json"
    ck = orjson.loads(path.read_bytes())
    ck["workspace"] = {"git_head": f"--output={target}", "dirty_hash": "HEAD~1; rm -rf ."}
    path.chmod(0o644)
    path.write_bytes(orjson.dumps(ck))
    res = p.resume("--force")  # --force: an edited checkpoint is used anyway
    assert res.returncode == 0, res.stderr
    assert "aether changed since the checkpoint: the checkpoint names no valid commit id (ignored)" in (
        aether_lines(res.stdout)
    )
    assert not target.exists() and (p.root / "app.py").exists()
    # Strict refuses what it cannot compare: the same checkpoint, named.
    strict = p.resume("--strict", "--force", p.checkpoints()[0])
    assert strict.returncode == 1 and "names no valid commit id" in strict.stderr


# ------------------------------------------------------------------ the engine


@pytest.mark.slow
def test_the_engine_resumes_with_the_same_guardrails(tmp_path: Path) -> None:
    p = Project(tmp_path)
    memory = p.root / C.MEMORY_DIRNAME
    eng = Engine.open("keep going", window=8000, memory_dir=memory, cwd=p.root, commit=False)
    eng.checkpoint({"progress": ["half way"], "next_actions": ["finish"]})
    eng.close()
    p.commit("lib.py", "z = 1\n", "add lib")
    with pytest.raises(AetherError, match=r"workspace changed since checkpoint .*1 new commit"):
        Engine.resume(memory_dir=memory, cwd=p.root, strict=True)
    seen: list[Any] = []
    eng = Engine.resume(memory_dir=memory, cwd=p.root, on_event=seen.append)
    notices = [e.data.get("text", "") for e in seen if e.kind == "notice"]
    assert any(n.startswith("changed since the checkpoint: 1 new commit") for n in notices), notices
    assert any(n.startswith("rehydrated prompt: ") for n in notices), notices
    assert CHANGED_TITLE in eng.context() and "lib.py (added" in eng.context()
    eng.checkpoint({"progress": ["more"], "next_actions": ["finish"]})
    assert CHANGED_TITLE not in eng.context()  # an ordinary next episode: its own work, no section
    eng.done("finished")
    for resume in (Engine.resume, resume_run):  # the API's two resumes, as the CLI's
        with pytest.raises(AetherError, match=r"finished at .*`aether resume --force` goes on anyway"):
            resume(memory_dir=memory, cwd=p.root)
    Engine.resume(memory_dir=memory, cwd=p.root, force=True).close()

