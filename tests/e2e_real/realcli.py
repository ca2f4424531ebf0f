"""Helpers for the checks that run the real Claude Code and Codex CLIs against the fake model servers.

The CLIs come from `make e2e-real` (npm, into .cache/npm). Each check runs in the tmp project that
tests/conftest.py gives it, with a private HOME, so nothing reads or writes a real user's config.
The fake server runs as its own process, as a developer would start it by hand.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]
NPM_BIN = REPO / ".cache" / "npm" / "node_modules" / ".bin"
FAKES = REPO / "tests" / "fakes"
STEP_LINE = re.compile(r"^step (\d+)$")
# Codex needs a model slug it knows for its own metadata; the fake answers whatever is asked.
CODEX_MODEL = "gpt-5.5"


def cli(name: str) -> str:
    """Absolute path of an npm-installed CLI; fails the check (not skips) when it is missing."""
    path = NPM_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make e2e-real`, which installs it with npm")
    return str(path)


@dataclass(frozen=True)
class Fake:
    """A running fake model server: its port and the JSONL log of the requests it got."""

    port: int
    log: Path

    def records(self) -> list[dict[str, Any]]:
        """The logged requests, oldest first."""
        if not self.log.exists():
            return []
        return [orjson.loads(line) for line in self.log.read_bytes().splitlines() if line.strip()]

    def turns(self) -> list[dict[str, Any]]:
        """The logged agent turns (tool calls and final answers), without side queries."""
        return [r for r in self.records() if r.get("kind") in ("tool", "final")]


@contextmanager
def fake_server(
    script: str,
    workdir: Path,
    tmp: Path,
    *,
    steps: int,
    base_tokens: int,
    tokens_per_turn: int,
    step_output: int = 0,
) -> Iterator[Fake]:
    """Start tests/fakes/<script> on a free port for the block, then stop it."""
    port_file, log = tmp / f"{script}.port", tmp / f"{script}.requests.jsonl"
    stderr = (tmp / f"{script}.stderr").open("w")
    argv = [
        sys.executable,
        str(FAKES / script),
        "--port=0",
        f"--workdir={workdir}",
        f"--steps={steps}",
        f"--base-tokens={base_tokens}",
        f"--tokens-per-turn={tokens_per_turn}",
        f"--step-output={step_output}",
        f"--port-file={port_file}",
        f"--log={log}",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"fake server {script} did not start: {(tmp / f'{script}.stderr').read_text()}")
            time.sleep(0.05)
        yield Fake(int(port_file.read_text()), log)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        stderr.close()


def base_env() -> dict[str, str]:
    """The environment of a real CLI: ours (private HOME from conftest) with the npm bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{NPM_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    return env


def claude_env(port: int) -> dict[str, str]:
    """The offline recipe for Claude Code: only the fake server, no telemetry, no updater."""
    return {
        **base_env(),
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}",
        "ANTHROPIC_API_KEY": "dummy",
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


def claude_args(prompt: str) -> list[str]:
    """`claude -p` printing stream-json, allowed to run Bash (as root, skip-permissions is refused)."""
    return [
        "claude",
        "-p",
        prompt,
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "acceptEdits",
        "--allowedTools",
        "Bash",
    ]


def codex_env(codex_home: Path) -> dict[str, str]:
    """Codex with a private CODEX_HOME (config, sessions, logs)."""
    codex_home.mkdir(parents=True, exist_ok=True)
    return {**base_env(), "CODEX_HOME": str(codex_home)}


def codex_args(port: int, prompt: str) -> list[str]:
    """`codex exec --json` through a custom Responses-API provider pointing at the fake server."""
    provider = f'{{name="fake", base_url="http://127.0.0.1:{port}/v1", wire_api="responses"}}'
    return [
        "codex",
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--sandbox",
        "workspace-write",
        "-m",
        CODEX_MODEL,
        "-c",
        "model_provider=fake",
        "-c",
        f"model_providers.fake={provider}",
        prompt,
    ]


def run_cli(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run a real CLI to the end with stdin at /dev/null (Claude Code would wait for a piped stdin)."""
    return subprocess.run(
        [cli(argv[0]), *argv[1:]],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a stream, one per line; a non-JSON line fails the check."""
    out = []
    for line in text.splitlines():
        if line.strip():
            obj = orjson.loads(line)
            assert isinstance(obj, dict), line
            out.append(obj)
    return out


def steps_done(workdir: Path) -> list[int]:
    """The step numbers in steps.txt, in file order; a malformed line fails the check."""
    path = workdir / "steps.txt"
    if not path.exists():
        return []
    numbers = []
    for line in path.read_text().splitlines():
        match = STEP_LINE.match(line.strip())
        assert match, f"unexpected line in steps.txt: {line!r}"
        numbers.append(int(match.group(1)))
    return numbers


def assert_steps_once_each(workdir: Path, steps: int, relaunches: int) -> None:
    """steps.txt holds 1..steps, in order, each once, but for at most one repeat per relaunch."""
    done = steps_done(workdir)
    assert sorted(set(done)) == list(range(1, steps + 1)), done
    assert len(done) - steps <= relaunches, f"{len(done) - steps} repeated steps for {relaunches} relaunches"
    assert done == sorted(done), done


def ledger(project: Path) -> list[dict[str, Any]]:
    """Every record of the run ledgers in .memory/runs/."""
    records = []
    for path in sorted((project / ".memory" / "runs").glob("*.jsonl")):
        records += [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return records


def checkpoints(project: Path) -> list[dict[str, Any]]:
    """The checkpoints in .memory/checkpoints/, oldest first."""
    return [
        orjson.loads(p.read_bytes()) for p in sorted((project / ".memory" / "checkpoints").glob("chk_*.json"))
    ]


def explain(proc: subprocess.CompletedProcess[str], fake: Fake, project: Path) -> str:
    """What to read when a check fails: exit code, stderr tail, the requests the fake got."""
    turns = [(r.get("kind"), r.get("messages"), r.get("tokens"), r.get("step")) for r in fake.records()]
    return (
        f"exit {proc.returncode}\n--- stderr (tail)\n{proc.stderr[-3000:]}\n--- stdout (tail)\n"
        f"{proc.stdout[-3000:]}\n--- fake requests (kind, messages, tokens, step)\n{turns}\n"
        f"--- steps.txt: {steps_done(project)}"
    )
