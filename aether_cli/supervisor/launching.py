"""Launching one episode's agent: its command line, environment and start command.

`Launcher` puts the prompt where the agent takes it (the `start` command on
stdin, `{prompt}`/`{prompt_file}`, a recognised CLI's prompt argument, or the
agent's own resume with --native-resume; for Claude Code with the agent
handoff, its first stream-json user message, the prompt argument taken out of
the command line), sets the `AETHER_*` environment,
spawns the process through the injected `spawn_fn` and starts its stream
readers. It knows nothing of budgets' decisions, episodes or checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aether_cli import constants as C
from aether_cli import protocol as P
from aether_cli.adapters import claude_input as CI
from aether_cli.adapters.argv import claude_input_mode, prompt_location
from aether_cli.adapters.prompt_argv import (
    claude_input_argv,
    fill_placeholders,
    native_resume_argv,
    render_argv,
)
from aether_cli.budget import limit_tokens
from aether_cli.launcher import Child
from aether_cli.rehydrate import Prompt
from aether_cli.settings import Settings
from aether_cli.store import MemoryStore
from aether_cli.supervisor.streams import Streams


@dataclass
class LaunchSpec:
    """What one launch needs to know about the run."""

    session_id: str
    episode: int
    checkpoint_id: str | None
    window: int
    stream_session: str | None  # the agent's own session id, for --native-resume


class Launcher:
    """Starts each episode's agent process; remembers the last one and its generation."""

    def __init__(
        self,
        settings: Settings,
        store: MemoryStore,
        streams: Streams,
        *,
        fmt: str,
        protocol_format: bool,
        spawn_fn: Callable[..., Child],
        environ: dict[str, str],
        cwd: Path,
    ) -> None:
        self.settings = settings
        self.store = store
        self.streams = streams
        self.fmt = fmt
        self.protocol_format = protocol_format
        self.spawn_fn = spawn_fn
        self.environ = environ
        self.cwd = cwd
        self.child: Child | None = None
        self.gen = 0
        self.env: dict[str, str] = {}  # the last launch's environment
        self.last_argv: list[str] = []  # the last launch's command line, as run
        # Claude Code reading its messages on stdin, so that it can be asked for its handoff.
        self.claude_input = (
            fmt == "claude"
            and settings.handoff == "agent"
            and not claude_input_mode(list(settings.command))
            and prompt_location("claude", list(settings.command)) is not None
        )

    def launch(self, prompt: Prompt, spec: LaunchSpec) -> tuple[Child, list[str]]:
        """Start the agent with `prompt`; the child and its argv as the ledger keeps it."""
        s = self.settings
        prompt_path = self.store.write_prompt(prompt.text)
        argv = self.argv(prompt.text, prompt_path, spec)
        message = None
        if self.claude_input:
            loc = prompt_location("claude", argv)
            message = argv[loc[0]][len(loc[1]) :] if loc is not None else prompt.text
            argv = claude_input_argv(argv)
        self.gen += 1
        self.last_argv = argv
        self.env = self._env(prompt_path, spec)
        child = self.spawn_fn(
            argv, env=self.env, cwd=str(self.cwd), stdin_pipe=self.protocol_format or message is not None
        )
        self.child = child
        self.streams.start(child, self.gen)
        if message is not None:
            child.send(CI.prompt_message(message))
            return child, argv
        child.send(
            P.cmd_start(
                session=spec.session_id,
                episode=spec.episode,
                objective=s.objective,
                prompt=prompt.text,
                checkpoint=spec.checkpoint_id,
                window=spec.window,
                limit=limit_tokens(spec.window, s.checkpoint_at),
            )
        )
        # The prompt is in start.prompt already; the ledger needs only where it went.
        shown = argv if argv == list(s.command) else ["<prompt>" if a == prompt.text else a for a in argv]
        return child, shown

    def _env(self, prompt_path: Path, spec: LaunchSpec) -> dict[str, str]:
        env = dict(self.environ)
        env.update(
            {
                "AETHER_PROTOCOL": str(C.PROTOCOL_VERSION),
                "AETHER_SESSION": spec.session_id,
                "AETHER_EPISODE": str(spec.episode),
                "AETHER_MEMORY_DIR": str(self.store.root),
                "AETHER_PROMPT_FILE": str(prompt_path),
                "AETHER_CHECKPOINT": spec.checkpoint_id or "",
            }
        )
        return env

    def argv(self, prompt: str, prompt_path: Path, spec: LaunchSpec) -> list[str]:
        """The command line of this launch: the user's, with the prompt put in.

        `{prompt}` and `{prompt_file}` are filled in on every launch. The prompt argument
        of a recognised CLI (claude -p PROMPT, codex exec PROMPT) is the user's own on a
        fresh start and the rehydrated prompt after a checkpoint, or the agent's own
        resume with --native-resume once its session id is known.
        """
        argv = list(self.settings.command)
        if spec.checkpoint_id is None:
            return fill_placeholders(self.fmt, argv, prompt=prompt, prompt_file=str(prompt_path))
        if self.settings.native_resume and spec.stream_session:
            resumed = native_resume_argv(self.fmt, argv, session_id=spec.stream_session, prompt=prompt)
            if resumed is not None:
                return fill_placeholders(self.fmt, resumed, prompt=prompt, prompt_file=str(prompt_path))
        return render_argv(self.fmt, argv, prompt=prompt, prompt_file=str(prompt_path))
