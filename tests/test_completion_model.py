"""`aether completion bash|zsh|fish`, completion that works without slowing start-up, and the
warning for a `--model` aether has no context window for."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aether_cli import constants as C
from aether_cli.settings import unknown_model_warning
from tests.helpers import aether


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_script_for_each_shell_calls_aether_back(shell: str) -> None:
    r = aether("completion", shell)
    assert r.returncode == 0, r.stderr
    assert f"_AETHER_COMPLETE=complete_{shell}" in r.stdout
    assert "aether" in r.stdout


def test_an_unknown_shell_is_one_line_and_exit_2() -> None:
    r = aether("completion", "tcsh")
    assert r.returncode == C.EXIT_USAGE
    assert r.stderr == "aether: error: no completion for 'tcsh': choose one of bash, zsh, fish\n"


def complete_in_bash(tmp_path: Path, words: list[str]) -> list[str]:
    """What bash offers for `words` (the last one being completed), through the printed script."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "aether"
    shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m aether_cli "$@"\n')
    shim.chmod(0o755)
    script = tmp_path / "aether.bash"
    script.write_text(aether("completion", "bash").stdout)
    quoted = " ".join(f"'{w}'" for w in words)
    code = (
        f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; "
        "_aether_completion aether; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(["bash", "--norc", "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if line]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")
def test_bash_completes_commands_subcommands_and_options(tmp_path: Path) -> None:
    assert complete_in_bash(tmp_path, ["aether", "mem"]) == ["memory"]
    assert complete_in_bash(tmp_path, ["aether", "memory", "p"]) == ["pin"]
    assert complete_in_bash(tmp_path, ["aether", "run", "--max-ep"]) == ["--max-episodes"]
    assert "status" in complete_in_bash(tmp_path, ["aether", ""])


def test_zsh_completion_answers_with_descriptions() -> None:
    r = aether(env={"_AETHER_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "aether memory "})
    assert r.returncode == 0, r.stderr
    assert '"search":"Search the facts' in r.stdout


def test_start_up_loads_neither_completion_nor_the_memory_commands(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "aether_cli", "status"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    loaded = {line.rsplit("|", 1)[-1].strip() for line in r.stderr.splitlines() if "|" in line}
    assert "aether_cli.cli" in loaded
    lazy = {"aether_cli.cli_memory", "aether_cli.facts", "aether_cli.fact_search", "sqlite3"}
    assert loaded & lazy == set()


# ------------------------------------------------------------------ --model


def test_an_unknown_model_is_warned_about_in_one_line(tmp_path: Path) -> None:
    r = aether("run", "--model", "gpt-9-ultra", "--format", "text", "--objective", "say hi",
               "--", sys.executable, "-c", "print('hi')", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stdout.splitlines() if "unknown model" in line]
    assert warned == [
        "aether unknown model 'gpt-9-ultra': using the default context window of 128,000 tokens "
        "(unless the agent reports its own); set --context-window N (or context_window in config.toml)"
    ]


def test_a_known_model_or_a_given_window_is_not_warned_about(tmp_path: Path) -> None:
    r = aether("run", "--model", "claude-sonnet-4-5", "--format", "text", "--objective", "say hi",
               "--", sys.executable, "-c", "print('hi')", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "unknown model" not in r.stdout + r.stderr
    assert unknown_model_warning("gpt-9-ultra", 50_000) is None
    assert unknown_model_warning(None, None) is None
    assert unknown_model_warning("GPT-4o-mini", None) is None
