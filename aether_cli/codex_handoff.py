"""Ask a stopped Codex episode for its own handoff, in its own thread.

After aether stops `codex exec`, the thread is still on disk; `codex exec resume
<thread id> REQUEST` sends one more user message into it, and the model, which
still holds its whole context, writes its state. This module builds that
command from the user's original one and runs it. Facts from Codex 0.169.0:

- options given to `exec` before the `resume` subcommand apply to the resumed
  turn (`-c`, `-m`, `-C`, `-s`, `--json` were all seen to take effect), and a
  resumed turn takes its sandbox from its own command line, not from the
  thread: so every provider and config option of the original is repeated,
  while `-s`, `--dangerously-bypass-approvals-and-sandbox`, `--add-dir`,
  `-c sandbox_*` and the like are dropped and `-c sandbox_mode="read-only"` is
  added: the handoff turn cannot edit files ("Read-only file system").
- `-m` must be repeated (otherwise the default model answers), and
  `--skip-git-repo-check` too (otherwise it refuses to start outside git).
- `--json` is accepted before or after `resume`; it goes before, with `exec`.
- `-o` would overwrite the user's own file and `--output-schema` would force
  the user's schema on the answer, so both are dropped; so are images.
- a thread run with `--ephemeral` has no rollout file and cannot be resumed
  ("thread/resume failed: no rollout found for thread id ...").
- `turn.completed` usage is cumulative for the thread, so the handoff's own
  tokens come from the rollout file (`codex_rollout`): its thread total after
  the turn minus before it.

The answer is untrusted: `parse_answer` validates it like a protocol
`checkpoint` and fails closed with the reason. It knows nothing of the
supervisor, the episode or the checkpoint store.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from aether_cli import protocol as P
from aether_cli.adapters.argv import PLACEHOLDER, Options, is_option, safe_value, skip_option
from aether_cli.adapters.base import Outcome
from aether_cli.adapters.codex import CodexAdapter
from aether_cli.codex_rollout import THREAD_ID, RolloutWatcher, codex_home
from aether_cli.distill import HandoffResult
from aether_cli.handoff import handoff_request, parse_handoff
from aether_cli.reader import LineSplitter
from aether_cli.tokens import estimate_tokens

HANDOFF_TIMEOUT = 120.0
MAX_STDOUT = 8 << 20
MAX_LINE = 1 << 20
MAX_ANSWER_TOKENS = 2_000
READ_ONLY = ("-c", 'sandbox_mode="read-only"')
KILL_GRACE = 3.0



def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Options of `codex` and `codex exec` 0.169.0 that take a value (`-i` takes one or more).
_VALUES = _names(
    "-c --config --enable --disable -m --model --local-provider --oss-provider -p --profile -s --sandbox"
    " -C --cd --add-dir -a --ask-for-approval --output-schema --color -o --output-last-message"
    " --thread-source --cyber-access-program --remote --remote-auth-token-env"
)
CODEX_OPTIONS = Options(values=_VALUES, variadic=frozenset(("-i", "--image")))
# Dropped: they would loosen the sandbox, write the user's files, or change what the answer is.
_DROP = _names(
    "-s --sandbox -a --ask-for-approval --add-dir -i --image -o --output-last-message --output-schema"
    " --color --thread-source --cyber-access-program --dangerously-bypass-approvals-and-sandbox --yolo"
    " --full-auto --approve-for-me --worktree --trust --json --experimental-json --last --all"
)
_CONFIG = ("-c", "--config")
# `-c` keys that would set the sandbox or the permissions the read-only override must win over.
_SANDBOX_KEYS = ("sandbox", "permission")


def request_text(memory_dir: Path | None = None) -> str:
    """The handoff request sent as the resumed turn's user message (`templates/handoff.md`)."""
    return handoff_request(max_tokens=MAX_ANSWER_TOKENS, memory_dir=memory_dir)


def parse_answer(text: str) -> tuple[dict[str, Any] | None, str]:
    """(state, "") for a usable answer, else (None, why it was refused): `handoff.parse_handoff`."""
    state, why = parse_handoff(text, max_tokens=MAX_ANSWER_TOKENS, count=estimate_tokens)
    return state, why or ""


# ------------------------------------------------------------ the command line


def _name(arg: str) -> str:
    return arg.split("=", 1)[0] if arg.startswith("--") else arg[:2]


def _config_value(argv: Sequence[str], i: int) -> str:
    """The `key=value` of a `-c` option at `argv[i]`, in any of its spellings."""
    arg = argv[i]
    if arg in _CONFIG:
        return argv[i + 1] if i + 1 < len(argv) else ""
    if arg.startswith("--config="):
        return arg[len("--config=") :]
    return arg[2:].removeprefix("=")  # -cKEY=V or -c=KEY=V


def _keep(argv: Sequence[str], i: int, nxt: int) -> bool:
    name = _name(argv[i])
    if name in _DROP:
        return False
    if name in _CONFIG:
        key = _config_value(argv, i).split("=", 1)[0].strip().strip("'\"")
        return not key.startswith(_SANDBOX_KEYS)
    return True


def _options(argv: Sequence[str], start: int, *, root: bool) -> tuple[list[str], list[int], str]:
    """From `start`: the kept options (in order), the positional indices, and a refusal ("" if none).

    `root` stops at the first positional: the subcommand, whose options are another parser's.
    """
    kept: list[str] = []
    positional: list[int] = []
    i = start
    while i < len(argv):
        arg = argv[i]
        if arg == "--" or not is_option(arg):
            if root or arg == "--":
                positional.extend(range(i + (arg == "--"), len(argv)))
                break
            positional.append(i)
            i += 1
            continue
        if _name(arg) == "--ephemeral":
            return [], [], "the thread was started with --ephemeral: Codex kept no session to resume"
        nxt = skip_option(argv, i, CODEX_OPTIONS)
        if _keep(argv, i, nxt):
            kept.extend(argv[i:nxt])
        i = nxt
    return kept, positional, ""


def handoff_argv(argv: Sequence[str], thread_id: str, request: str) -> tuple[list[str] | None, str]:
    """`codex [root opts] exec [opts] --json -c sandbox_mode="read-only" resume ID REQUEST`, or (None, why).

    The original prompt and any earlier `resume` (with its id, prompt, --last,
    --all) are dropped; every option `exec resume` honours is repeated, minus
    those that would let the turn write (see the module docstring).
    """
    if not THREAD_ID.fullmatch(thread_id):
        return None, "the thread id is not a Codex thread id"
    root, found, refused = _options(argv, 1, root=True)
    if refused:
        return None, refused
    if not found or argv[found[0]] != "exec":
        return None, "not a `codex exec` command line"
    exec_opts, rest, refused = _options(argv, found[0] + 1, root=False)
    if refused:
        return None, refused
    sub = [argv[i] for i in rest[:2] if argv[i] in ("resume", "fork", "review", "help")]
    if sub and sub[0] != "resume":
        return None, f"`codex exec {sub[0]}` is not an agent turn that can be resumed"
    if any(PLACEHOLDER.search(a) for a in (*root, *exec_opts)):
        return None, "an option holds a {prompt} placeholder, which a handoff cannot fill"
    tail = ["--json", *READ_ONLY, "resume", thread_id, safe_value("codex", request)]
    return [argv[0], *root, "exec", *exec_opts, *tail], ""


# ------------------------------------------------------------ running it


class _Turn:
    """What the resumed turn printed, read through the Codex stream adapter."""

    def __init__(self) -> None:
        self.adapter = CodexAdapter()
        self.answer = ""
        self.errors: list[str] = []
        self.tool_calls = 0
        self.completed = False

    def feed(self, text: str) -> None:
        for ev in self.adapter.feed(text):
            if isinstance(ev, P.Message) and ev.role == "assistant":
                self.answer = ev.text
            elif isinstance(ev, P.ToolCall):
                self.tool_calls += 1
            elif isinstance(ev, P.Log) and ev.level == "error" and len(self.errors) < 20:
                self.errors.append(ev.text)
            elif isinstance(ev, Outcome) and ev.ok:
                self.completed = True


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """TERM the process group, KILL it after a grace period, and reap it."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, KILL_GRACE)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            return


def _collect(proc: subprocess.Popen[bytes], turn: _Turn, deadline: float) -> tuple[str, bytes]:
    """Feed stdout to `turn`, keep stderr's tail, until both close: ("", tail) or (why it stopped, tail)."""
    assert proc.stdout is not None and proc.stderr is not None
    splitter = LineSplitter(MAX_LINE)
    err_tail = b""
    total = 0
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return "timed out", err_tail
            for key, _ in sel.select(timeout=min(left, 1.0)):
                data = os.read(key.fd, 65536)
                if not data:
                    sel.unregister(key.fileobj)
                elif key.data == "err":
                    err_tail = (err_tail + data)[-4096:]
                else:
                    total += len(data)
                    if total > MAX_STDOUT:
                        return f"printed more than {MAX_STDOUT} bytes", err_tail
                    for line in splitter.feed(data):
                        turn.feed(line.text)
    last = splitter.close()
    if last is not None:
        turn.feed(last.text)
    return "", err_tail


def _last_line(err: bytes) -> str:
    lines = [ln.strip() for ln in err.decode("utf-8", "replace").splitlines() if ln.strip()]
    meaningful = [ln for ln in lines if ln.startswith(("Error", "error"))] or lines
    return meaningful[-1][:300] if meaningful else ""


def _thread_tokens(watcher: RolloutWatcher | None) -> int | None:
    if watcher is None:
        return None
    usage = watcher.catch_up()
    return usage.thread_tokens if usage is not None else None


def run_handoff(
    argv: Sequence[str],
    thread_id: str,
    env: Mapping[str, str],
    cwd: Path,
    *,
    timeout: float = HANDOFF_TIMEOUT,
    request: str | None = None,
    parse: Callable[[str], tuple[dict[str, Any] | None, str]] = parse_answer,
) -> HandoffResult:
    """Resume `thread_id` read-only with the handoff request and return Codex's validated answer.

    `argv` is the episode's own command line, `env` and `cwd` those it ran
    with (CODEX_HOME, HOME and PATH come from `env`). Never raises on what
    Codex does: every failure is a None state with the reason.
    """
    command, refused = handoff_argv(argv, thread_id, request if request is not None else request_text())
    if command is None:
        return HandoffResult(None, refused, 0.0, None)
    home = codex_home(env)
    with contextlib.ExitStack() as stack:
        watcher = stack.enter_context(RolloutWatcher(home, thread_id)) if home is not None else None
        before = _thread_tokens(watcher)
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,  # a piped stdin would be appended to the request
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return HandoffResult(None, f"cannot start {command[0]}: {exc.strerror or exc}", 0.0, None)
        turn = _Turn()
        try:
            stopped, err = _collect(proc, turn, start + timeout)
        finally:
            if proc.poll() is None:
                _stop(proc)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
        proc.wait()
        seconds = round(time.monotonic() - start, 3)
        after = _thread_tokens(watcher)
    tokens = after - before if after is not None and before is not None and after >= before else None
    reason = _failure(stopped, timeout, proc.returncode, err, turn)
    if reason:
        return HandoffResult(None, reason, seconds, tokens)
    state, why = parse(turn.answer)
    if state is None:
        return HandoffResult(None, _with_calls(why or "answer refused", turn), seconds, tokens)
    return HandoffResult(state, "", seconds, tokens)


def _failure(stopped: str, timeout: float, code: int | None, err: bytes, turn: _Turn) -> str:
    """Why the turn gave no answer to parse, or ""."""
    if stopped == "timed out":
        return f"codex exec resume timed out after {timeout:g}s"
    if stopped:
        return f"codex exec resume {stopped}"
    if code != 0:
        detail = _last_line(err) or (turn.errors[-1] if turn.errors else "")
        if "no rollout found" in detail:
            detail += " (a thread run with --ephemeral, or under another CODEX_HOME, cannot be resumed)"
        return f"codex exec resume exited {code}" + (f": {detail}" if detail else "")
    if not turn.answer.strip():
        return "codex answered the handoff request with no message"
    return ""


def _with_calls(reason: str, turn: _Turn) -> str:
    """A refusal, saying when the model ran tools instead of answering (the read-only turn stopped them)."""
    if turn.tool_calls:
        return f"{reason} (it ran {turn.tool_calls} tool call(s) instead of answering)"
    return reason
