"""Helpers for tests that run the real CLI and the test agents in tests/agents/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

AGENTS = Path(__file__).parent / "agents"


def aether(
    *args: str, cwd: Path | None = None, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real `aether` CLI in a subprocess."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "aether_cli", *args],
        cwd=cwd or Path.cwd(),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


def agent_cmd(name: str, *args: str) -> list[str]:
    """argv for a test agent in tests/agents/."""
    return [sys.executable, str(AGENTS / name), *args]


def read_json(path: Path) -> dict:
    """Parse a JSON file."""
    return orjson.loads(path.read_bytes())
