"""The run options: declared once in RunOptions, parsed by Typer for `run`, turned into
settings flags that outrank the environment and config.toml only when given."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aether_cli import cli, commands
from aether_cli.errors import AetherError, UsageError
from aether_cli.options import OPTION_INFO, RunOptions
from aether_cli.settings import Settings

runner = CliRunner()
PASS = ["--", sys.executable, "-c", "pass"]


@pytest.fixture
def supervised(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `run`/`resume` would hand the supervisor, instead of starting it."""
    calls: list[dict[str, Any]] = []

    def fake(
        store: Any, settings: Settings, plan: Any, *, typed: frozenset[str], yes: bool,
        notes: list[tuple[str, str]] | None = None,
    ) -> None:
        calls.append({"settings": settings, "plan": plan, "notes": notes, "typed": typed, "yes": yes})

    monkeypatch.setattr(cli, "_supervise", fake)
    return calls


def test_only_the_options_given_become_flags_under_their_settings_names() -> None:
    assert RunOptions().flags() == {}
    opts = RunOptions(context_window=5000, constraint=["a", "b"], agent_format="text", native_resume=True)
    assert opts.flags() == {
        "context_window": 5000,
        "constraints": ("a", "b"),
        "format": "text",
        "native_resume": True,
    }
    assert RunOptions(constraint=[]).flags() == {}  # given no times: the config's list stands


def test_every_option_names_a_settings_field() -> None:
    settings_fields = {f.name for f in dataclasses.fields(Settings)}
    for name, info in OPTION_INFO.items():
        assert (info.setting or name) in settings_fields


def test_run_help_lists_every_option_with_its_help() -> None:
    out = " ".join(runner.invoke(cli.app, ["run", "--help"]).stdout.split())
    for name, info in OPTION_INFO.items():
        flag = (info.flags[0] if info.flags else "--" + name.replace("_", "-")).replace("/", " / ")
        assert flag in out and info.help[:30] in out


def test_run_hands_the_supervisor_the_given_options(project: Path, supervised: list[dict[str, Any]]) -> None:
    args = ["run", "--context-window", "5000", "-c", "keep it", "--max-episodes", "2", "--format", "text"]
    res = runner.invoke(cli.app, [*args, *PASS])
    assert res.exit_code == 0, res.output
    s = supervised[0]["settings"]
    assert (s.context_window, s.constraints, s.max_episodes, s.format) == (5000, ("keep it",), 2, "text")
    assert s.command == (sys.executable, "-c", "pass")
    assert s.objective == "Carry on the work of: " + " ".join(s.command)
    assert not (project / ".memory" / "config.toml").exists()
    # The command was typed: only what .memory/ names is confirmed (issue 12.3).
    assert supervised[0]["typed"] == {"command"} and supervised[0]["yes"] is False


def test_an_option_not_given_leaves_config_and_env_alone(
    project: Path, supervised: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / ".memory").mkdir()
    (project / ".memory" / "config.toml").write_text("[run]\ncontext_window = 7000\nmax_steps = 9\n")
    monkeypatch.setenv("AETHER_MAX_STEPS", "4")
    assert runner.invoke(cli.app, ["run", *PASS]).exit_code == 0
    s = supervised[0]["settings"]
    assert (s.context_window, s.max_steps, s.soft_at) == (7000, 4, Settings().soft_at)


def test_prepare_run_refuses_before_writing_anything(project: Path) -> None:
    store = commands.open_store(None)
    with pytest.raises(AetherError, match="no agent command"):
        commands.prepare_run(store, [], RunOptions())
    with pytest.raises(UsageError, match="claude needs"):
        commands.prepare_run(store, ["claude", "-p", "hi"], RunOptions())
    with pytest.raises(UsageError, match="leaves no room"):
        commands.prepare_run(store, ["agent"], RunOptions(context_window=1000, context_overhead=900))
    assert not store.root.exists()


def test_prepare_run_takes_the_objective_from_a_known_cli(project: Path) -> None:
    argv = ["claude", "-p", "Port the tests", "--output-format", "stream-json", "--verbose"]
    settings = commands.prepare_run(commands.open_store(None), argv, RunOptions())
    assert settings.objective == "Port the tests" and settings.format == "auto"
    assert not (project / ".memory").exists()  # nothing written: config.toml least of all


def stored_session(**settings: Any) -> None:
    """A stopped session in ./.memory, as a finished `aether run` leaves it."""
    store = commands.open_store(None)
    store.init()
    command = [sys.executable, "-c", "pass"]
    stored = Settings(command=tuple(command), objective="o", **settings).to_config()
    store.write_continuity(
        {"session_id": "ses_1", "status": "stopped", "episode": 2, "command": command, "settings": stored}
    )


def test_resume_keeps_the_stored_settings(project: Path, supervised: list[dict[str, Any]]) -> None:
    stored_session(context_window=5000, max_episodes=3)
    res = runner.invoke(cli.app, ["resume"])
    assert res.exit_code == 0, res.output
    s, plan = supervised[0]["settings"], supervised[0]["plan"]
    assert (s.context_window, s.max_episodes, s.objective) == (5000, 3, "o")
    assert supervised[0]["typed"] == frozenset()  # the command comes from the continuity record
    assert (plan.session_id, plan.episode) == ("ses_1", 3)


def test_resume_options_given_now_override_the_stored_settings(
    project: Path, supervised: list[dict[str, Any]]
) -> None:
    stored_session(context_window=5000, max_episodes=3, max_steps=4)
    args = ["resume", "--context-window", "9000", "--max-episodes", "7", "-c", "new rule"]
    res = runner.invoke(cli.app, args)
    assert res.exit_code == 0, res.output
    s = supervised[0]["settings"]
    assert (s.context_window, s.max_episodes, s.constraints) == (9000, 7, ("new rule",))
    assert s.max_steps == 4  # not given now: the stored value stands


def test_resume_help_lists_the_run_options() -> None:
    out = " ".join(runner.invoke(cli.app, ["resume", "--help"]).stdout.split())
    assert "--context-window" in out and "--max-episodes" in out and "--force" in out


@pytest.fixture
def reporters(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The reporter each run would show its output through, with a supervisor that does nothing."""
    from aether_cli import supervisor
    from aether_cli.plan import RunResult

    seen: list[Any] = []

    class FakeSupervisor:
        def __init__(self, settings: Settings, store: Any, *, reporter: Any) -> None:
            seen.append(reporter)

        def run(self, plan: Any) -> RunResult:
            return RunResult(0, "done", "", "ses_1", 1, None)

    monkeypatch.setattr(supervisor, "Supervisor", FakeSupervisor)
    return seen


@pytest.mark.parametrize(
    ("args", "env", "config", "quiet"),
    [
        ([], {}, "", False),
        (["--quiet"], {}, "", True),
        ([], {"AETHER_QUIET": "1"}, "", True),
        ([], {}, "quiet = true\n", True),
        (["-q"], {"AETHER_QUIET": "0"}, "", True),
        ([], {"AETHER_QUIET": "0"}, "quiet = true\n", False),
    ],
)
def test_quiet_follows_flag_then_env_then_config(
    project: Path,
    reporters: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    env: dict[str, str],
    config: str,
    quiet: bool,
) -> None:
    (project / ".memory").mkdir()
    (project / ".memory" / "config.toml").write_text("[run]\n" + config)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    res = runner.invoke(cli.app, ["run", *args, *PASS])
    assert res.exit_code == 0, res.output
    assert reporters[0].quiet is quiet


def test_a_quiet_run_does_not_make_its_resume_quiet(project: Path, reporters: list[Any]) -> None:
    stored_session(quiet=True)
    # --yes: the stored session was not run on this machine (no record of it in runs/).
    assert runner.invoke(cli.app, ["resume", "--yes"]).exit_code == 0
    assert runner.invoke(cli.app, ["resume", "-q"]).exit_code == 0
    assert [r.quiet for r in reporters] == [False, True]


# ------------------------------------------------------------------ a new run starts afresh (issue 12.7)


def test_a_new_run_inherits_nothing_from_the_previous_run(project: Path) -> None:
    """A JSON agent read as text with a 900-token window, then another agent: it gets the defaults."""
    from helpers import aether, agent_cmd, read_json

    first = aether("run", "-q", "--context-window", "900", "--format", "text", "-o", "first objective",
                   "--", *agent_cmd("minimal_agent.py"))
    assert first.returncode == 0, first.stderr
    other = [sys.executable, "-c", "pass"]
    second = aether("run", "-q", "--", *other)
    assert second.returncode == 0, second.stderr
    cont = read_json(project / ".memory" / "session_continuity.json")
    assert cont["command"] == other
    assert cont["window"] == Settings().window and cont["agent_format"] == "aether"
    assert cont["settings"].get("context_window") is None and cont["settings"]["format"] == "auto"
    assert cont["objective"] == "Carry on the work of: " + " ".join(other)
    assert not (project / ".memory" / "config.toml").exists()  # run never writes config.toml


def test_a_run_carries_over_what_the_user_wrote_in_config_toml_and_leaves_it_alone(
    project: Path,
) -> None:
    from helpers import aether, read_json

    (project / ".memory").mkdir()
    config = project / ".memory" / "config.toml"
    config.write_text("# mine\n[run]\ncontext_window = 7000\n")
    for _ in range(2):
        res = aether("run", "-q", "--format", "text", "--", sys.executable, "-c", "pass")
        assert res.returncode == 0, res.stderr
        assert config.read_text() == "# mine\n[run]\ncontext_window = 7000\n"
        assert read_json(project / ".memory" / "session_continuity.json")["window"] == 7000


def test_config_toml_names_no_agent_command_and_none_is_read_from_it(project: Path) -> None:
    """The agent command is what the person types after `--` (or the session's own, on resume):
    a `command` in the committed config.toml would run without anyone typing it."""
    from aether_cli.store.texts import DEFAULT_CONFIG_TOML

    assert "# command =" not in DEFAULT_CONFIG_TOML
    (project / ".memory").mkdir()
    (project / ".memory" / "config.toml").write_text('[run]\ncommand = ["touch", "ran"]\n')
    res = runner.invoke(cli.app, ["run"])
    assert "no agent command" in str(res.exception)
    assert not (project / "ran").exists()
