"""The `aether` command line: parses arguments, calls the core, prints, maps errors
to exit codes. Each command stays a few lines; the work lives in `commands`,
`supervisor` and `store`. Before a launch it asks the person to confirm what
`.memory/` names and this machine has not run (`trust`). The options of `run`
and `resume` are declared once, as `options.RunOptions`; `_with_run_options`
spells them for Typer. Heavy
imports (Rich, the supervisor, tiktoken) are done inside the commands that need
them, so `aether status` starts fast.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer

from aether_cli import __version__
from aether_cli import constants as C
from aether_cli.errors import AetherError
from aether_cli.options import OPTION_INFO, RunOptions

if TYPE_CHECKING:
    from aether_cli.plan import ResumePlan
    from aether_cli.settings import Settings
    from aether_cli.store import MemoryStore

app = typer.Typer(
    name="aether",
    help=(
        "Run any LLM agent indefinitely with bounded context.\n\n"
        "aether supervises an agent process, counts the tokens that pass, checkpoints its state "
        "into .memory/ when the context fills up, and relaunches it with a short rehydrated prompt."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

MemoryDir = Annotated[
    Path | None,
    typer.Option("--memory-dir", "-m", help="The .memory folder to use [default: ./.memory]."),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
YesFlag = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Run an agent command, distill command, hooks or prompt templates that come from .memory/ "
        "and that this machine has not run before without asking (they are shown first); "
        "without it a terminal is asked and a pipe refuses (exit 2).",
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"aether {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Run any LLM agent indefinitely with bounded context."""


def _print_json(data: Any) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2, default=str).decode() + "\n")


def _console() -> Any:
    from aether_cli.render import make_console

    return make_console()


def _print_view(items: list[Any]) -> None:
    """Print a view's renderables one under another (`print(*items)` would join texts on one line)."""
    from rich.console import Group

    _console().print(Group(*items))


# ------------------------------------------------------------------ run / resume

KW = inspect.Parameter.KEYWORD_ONLY


def _typer_option(f: dataclasses.Field[Any], hint: Any) -> Any:
    info = OPTION_INFO[f.name]
    return Annotated[hint, typer.Option(*info.flags, help=info.help, min=info.min)]


def _with_run_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command every RunOptions field as a Typer option, in place of its `options` parameter.

    The options are declared once (options.py); this spells each one as
    `Annotated[type, typer.Option(...)]` in the signature Typer reads, and hands
    the values the user gave to the command as one RunOptions.
    """
    hints = get_type_hints(RunOptions)
    spliced = [
        inspect.Parameter(f.name, KW, default=None, annotation=_typer_option(f, hints[f.name]))
        for f in dataclasses.fields(RunOptions)
    ]
    params: list[inspect.Parameter] = []
    for p in inspect.signature(command, eval_str=True).parameters.values():
        params.extend(spliced if p.name == "options" else [p.replace(kind=KW)])
    names = [f.name for f in dataclasses.fields(RunOptions)]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        given = {name: kwargs.pop(name) for name in names}
        command(**kwargs, options=RunOptions(**given))

    wrapper.__signature__ = inspect.Signature(params, return_annotation=None)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper


@app.command(context_settings={"allow_interspersed_args": False})
@_with_run_options
def run(
    command: Annotated[
        list[str] | None, typer.Argument(help="The agent command, after `--`.")
    ] = None,
    *,
    options: RunOptions,
    yes: YesFlag = False,
    memory_dir: MemoryDir = None,
) -> None:
    """Supervise an agent: checkpoint to .memory/ and relaunch it, until it is done.

    The agent may speak aether's protocol, or be Claude Code (-p ... --output-format
    stream-json --verbose), Codex (exec --json ...), Gemini CLI (-o stream-json) or any
    program printing text. {prompt} and {prompt_file} in the command are replaced by
    the launch prompt and the path of a file holding it.

    Examples:

      aether run --objective "Migrate the API to v2" --context-window 200000 -- python my_agent.py

      aether run -- claude -p "Port the tests to pytest" --output-format stream-json --verbose

      aether run --format text -- ./my-script.sh {prompt_file}

    The command typed here is run as is; a distill command or hooks from .memory/config.toml
    or prompt templates in .memory/templates/ that this machine has not run before are shown
    and confirmed first (see --yes). Hooks (--on-checkpoint, --on-relaunch, --on-crash,
    --on-done) and --events are described in docs/hooks.md.
    """
    from aether_cli import commands

    store = commands.open_store(memory_dir)
    settings = commands.prepare_run(store, command, options)
    _supervise(store, settings, None, typed=_typed(options, "command"), yes=yes)


@app.command()
@_with_run_options
def resume(
    checkpoint: Annotated[
        str | None,
        typer.Argument(
            help="Checkpoint id or a unique prefix, or a session id (`aether status` lists them) "
            "[default: the latest of the current session]."
        ),
    ] = None,
    *,
    options: RunOptions,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Resume a session that already ended done (its agent may redo finished work), "
            "and use a checkpoint even if its content no longer matches its sha256.",
        ),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse (exit 1) when the workspace changed since the checkpoint: new commits, "
            "another branch, different uncommitted changes, or a commit this repository lacks.",
        ),
    ] = False,
    yes: YesFlag = False,
    memory_dir: MemoryDir = None,
) -> None:
    """Continue the stored session from a checkpoint (crash recovery), with its command and settings.

    Without CHECKPOINT it starts from the newest intact checkpoint, skipping (and naming) corrupt ones.
    After a git merge of two branches the record holds both sessions: name a session id to continue
    that one from its own last checkpoint.
    Before the launch it says what changed since the checkpoint (git: commits, files, uncommitted
    changes) and which later checkpoints an older CHECKPOINT leaves out; the relaunch prompt gets
    a short "Changed since the checkpoint" section. The options of `aether run` given now override
    the stored settings. The command comes from .memory/session_continuity.json, which git shares:
    when it (or a distill command or prompt templates) differs from what this machine last ran, it
    is shown and confirmed first (see --yes).

    Examples:

      aether resume                      # the latest checkpoint

      aether resume chk_000003 --strict  # an older one, if nothing changed

      aether resume ses_20261206         # one of two sessions a merge brought together
    """
    from aether_cli import commands

    store = commands.open_store(memory_dir)
    plan, settings, note = commands.resume_plan(store, checkpoint, options.flags(), force=force)
    notes = [(note, "warn"), *commands.restore_guard(store, plan, Path.cwd(), strict=strict)]
    _supervise(store, settings, plan, notes=notes, typed=_typed(options), yes=yes)


def _typed(options: RunOptions, *given: str) -> frozenset[str]:
    """What of the launch the person gave now (a flag or AETHER_*), so nothing to confirm."""
    from aether_cli.commands import typed_items

    return typed_items(options, *given)


def _confirm_launch(store: MemoryStore, settings: Settings, *, typed: frozenset[str], yes: bool) -> None:
    """Show what `.memory/` makes this launch run that this machine has not run before, and ask
    (a pipe refuses unless --yes); then record what runs (trust.py). Not silenced by -q."""
    from aether_cli import trust
    from aether_cli.errors import UsageError
    from aether_cli.hooks import HOOK_EVENTS
    from aether_cli.prompt_template import read_overrides

    hooks = trust.config_hooks({e: settings.hook(e) for e in HOOK_EVENTS}, typed)
    launch = trust.Launch(settings.command, settings.distill_command, read_overrides(store.root), hooks)
    record = trust.parse_record(*store.trust_record(trust.MAX_RECORD_BYTES))
    items = trust.unconfirmed(launch, record, typed=typed)
    if items:
        typer.echo(_clean(f"aether: {store.root} (shared through git) names what this machine has not "
                          "run before" + (" (run: --yes)" if yes else "") + ":"), err=True)
        for line in trust.explain(launch, items, templates_dir=str(store.root / C.TEMPLATES_DIR)):
            typer.echo(line, err=True)
        if not yes and not sys.stdin.isatty():
            raise UsageError("not confirmed, and stdin is not a terminal to ask on: "
                             "check what is shown above, then pass --yes to run it")
        if not yes and not typer.confirm("Run it?", default=False, err=True):
            raise AetherError("not confirmed; nothing was run")
    store.write_trust_record(lambda folder: trust.record_bytes(launch, folder))


def _supervise(
    store: MemoryStore, settings: Settings, plan: ResumePlan | None, *,
    typed: frozenset[str], yes: bool, notes: list[tuple[str, str]] | None = None,
) -> None:
    # Before the heavy imports and the tokenizer: a second run must fail at once.
    store.ensure_unlocked()
    _confirm_launch(store, settings, typed=typed, yes=yes)
    from aether_cli.live_view import reporter_for
    from aether_cli.settings import unknown_model_warning
    from aether_cli.supervisor import Supervisor

    marks = (settings.soft_at, settings.checkpoint_at, settings.emergency_at)
    reporter = reporter_for(_console(), quiet=settings.quiet, marks=marks)
    model_note = unknown_model_warning(settings.model, settings.context_window)
    for text, kind in [*(notes or []), (model_note, "warn")]:
        if text:
            reporter.notice(text, kind)
    result = Supervisor(settings, store, reporter=reporter).run(plan)
    if reporter.shows_summary:
        from aether_cli.run_summary import summarize

        reporter.summary(summarize(store, result.session_id))
    raise typer.Exit(result.exit_code)


# ------------------------------------------------------------------ inspection


@app.command()
def status(
    json: JsonFlag = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh every second until Ctrl-C.")
    ] = False,
    memory_dir: MemoryDir = None,
) -> None:
    """What is running, how full its context is, which tasks, the last checkpoint."""
    from aether_cli import commands

    store = commands.open_store(memory_dir)
    if json:
        _print_json(commands.status(store))
        return
    from aether_cli.render import status_view, watch_view

    if watch:
        watch_view(_console(), lambda: status_view(commands.status(store)))
    else:
        _print_view(status_view(commands.status(store)))


@app.command("checkpoints")
def list_checkpoints(json: JsonFlag = False, memory_dir: MemoryDir = None) -> None:
    """List the checkpoints, oldest first."""
    from aether_cli import commands

    rows = commands.checkpoints(commands.open_store(memory_dir))
    if json:
        _print_json(rows)
        return
    from aether_cli.render import checkpoints_view

    console = _console()
    console.print(checkpoints_view(rows) if rows else "no checkpoints yet")


@app.command()
def show(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint id or a unique prefix.")],
    json: JsonFlag = False,
    memory_dir: MemoryDir = None,
) -> None:
    """Show one checkpoint."""
    from aether_cli import commands
    from aether_cli.retention import parent_note

    store = commands.open_store(memory_dir)
    ck = store.read_checkpoint(checkpoint)
    if json:
        _print_json(ck)
        return
    from aether_cli.render import checkpoint_view

    _print_view(checkpoint_view(ck, parent_note(store, ck)))


@app.command()
def report(
    session: Annotated[
        str | None, typer.Argument(help="Session id or a unique prefix [default: the latest].")
    ] = None,
    json: JsonFlag = False,
    html: Annotated[
        Path | None,
        typer.Option("--html", metavar="FILE", help="Also write a self-contained HTML page with charts."),
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Write the suggested settings into .memory/config.toml.")
    ] = False,
    memory_dir: MemoryDir = None,
) -> None:
    """Where a session's tokens went, what ended each episode, what it cost; suggestions."""
    from aether_cli import commands

    store = commands.open_store(memory_dir)
    data = commands.report(store, session)
    notes = []
    if html is not None:
        from aether_cli.report_html import page

        html.write_text(page(data), encoding="utf-8")
        notes.append(f"wrote {html}")
    if apply:
        data["applied"] = commands.apply_report(store, data)
        done = "; ".join(data["applied"]) or "nothing (no suggestion names a setting)"
        notes.append(f"applied to {store.root / C.CONFIG_FILE}: {done}")
    if json:
        _print_json(data)
        for note in notes:
            sys.stderr.write(f"aether: {note}\n")
        return
    from aether_cli.report_render import report_view

    _print_view([*report_view(data), *notes])


@app.command()
def drop(
    checkpoint: Annotated[str, typer.Argument(help="Checkpoint id or a unique prefix.")],
    force: Annotated[
        bool, typer.Option("--force", help="Allow dropping the latest checkpoint.")
    ] = False,
    memory_dir: MemoryDir = None,
) -> None:
    """Delete a checkpoint (never the latest unless --force)."""
    from aether_cli import commands

    dropped = commands.open_store(memory_dir).drop_checkpoint(checkpoint, force=force)
    typer.echo(f"dropped {dropped}")


@app.command()
def gc(
    keep: Annotated[
        int | None,
        typer.Option("--keep", min=0, help="Keep the N newest checkpoints [default: config's retention]."),
    ] = None,
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            min=0,
            help="Remove only checkpoints older than DAYS [default: config's retention].",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be removed.")] = False,
    json: JsonFlag = False,
    memory_dir: MemoryDir = None,
) -> None:
    """Remove old checkpoints: never a session's latest; their ids go to .memory/pruned.json."""
    from aether_cli import commands, retention

    store = commands.open_store(memory_dir)
    report = retention.gc(store, retention.policy_for(store, keep, older_than), dry_run=dry_run).to_dict()
    if json:
        _print_json(report)
        return
    from aether_cli.render import gc_lines

    typer.echo("\n".join(gc_lines(report)))


@app.command()
def pack(
    checkpoint: Annotated[
        str | None, typer.Argument(help="Checkpoint id or a unique prefix [default: the latest].")
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The zip file to write.")
    ] = Path("aether-pack.zip"),
    with_ledger: Annotated[bool, typer.Option("--with-ledger", help="Add the session's run ledger.")] = False,
    memory_dir: MemoryDir = None,
) -> None:
    """Pack a checkpoint, its parents, continuity, tasks and facts into one zip (with a sha256 manifest)."""
    from aether_cli import commands, packs

    manifest = packs.pack(commands.open_store(memory_dir), checkpoint, output, with_ledger=with_ledger)
    typer.echo(
        f"packed session {manifest['session_id']} at {manifest['checkpoint']} "
        f"({len(manifest['chain'])} checkpoints, {len(manifest['entries'])} files) into {output}"
    )


@app.command()
def unpack(
    file: Annotated[Path, typer.Argument(help="The pack (a zip made by `aether pack`).")],
    directory: Annotated[
        Path | None, typer.Argument(help="The project to unpack into [default: the current one].")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Move a .memory holding another or a newer session aside.")
    ] = False,
    memory_dir: MemoryDir = None,
) -> None:
    """Check a pack (manifest, paths, sizes) and install it as DIR/.memory; refuse anything odd.

    A refused pack writes nothing."""
    from aether_cli.unpack import unpack as unpack_pack

    target = memory_dir or (directory or Path.cwd()) / C.MEMORY_DIRNAME
    done = unpack_pack(file, target, force=force)
    if done["moved_aside"]:
        typer.echo(f"moved the .memory that was there to {done['moved_aside']}")
    typer.echo(
        f"unpacked session {done['session_id']} at {done['checkpoint']} ({done['files']} files) "
        f"into {done['memory_dir']}; `aether status` shows it, `aether resume` continues it"
    )


@app.command("checkpoint")
def checkpoint_now(memory_dir: MemoryDir = None) -> None:
    """Ask the live run (in another terminal) to checkpoint now."""
    from aether_cli import commands

    holder = commands.request_checkpoint(commands.open_store(memory_dir))
    typer.echo(f"checkpoint requested from the run with pid {holder.get('pid')}")


@app.command()
def init(memory_dir: MemoryDir = None) -> None:
    """Create .memory/ with its README.md, config.toml and .gitignore."""
    from aether_cli import commands

    store = commands.open_store(memory_dir)
    created = commands.init(store)
    if created:
        typer.echo(f"created {store.root}: " + ", ".join(created))
    else:
        typer.echo(f"{store.root} already set up")


@app.command()
def scan(json: JsonFlag = False, memory_dir: MemoryDir = None) -> None:
    """Check .memory/ for secrets; exit 1 naming file and line (for a pre-commit hook).

    Where there is no .memory/ at all it says so and exits 0: nothing can have leaked.
    """
    from aether_cli.scan import scan_memory

    report = scan_memory((memory_dir or Path.cwd() / C.MEMORY_DIRNAME).absolute())
    if json:
        _print_json(report.to_dict())
    else:
        for line in report.lines(relative_to=Path.cwd()):
            typer.echo(line)
    raise typer.Exit(0 if report.clean else 1)


@app.command()
def doctor(
    repair: Annotated[
        bool, typer.Option("--repair", help="Fix what can be fixed, and say what was done.")
    ] = False,
    json: JsonFlag = False,
    memory_dir: MemoryDir = None,
) -> None:
    """Find what a git merge or a hand edit broke in .memory/ (conflict markers, damaged JSON,
    broken checkpoints, the merge driver); --repair fixes it. Exit 0 healthy, 1 problems left."""
    from aether_cli import commands
    from aether_cli import doctor as D

    report = D.run(commands.open_store(memory_dir), fix=repair)
    if json:
        _print_json(report.to_dict())
    else:
        typer.echo("\n".join(_clean(line) for line in report.lines()))
    raise typer.Exit(0 if report.healthy else 1)


@app.command("merge-file", hidden=True)
def merge_file(base: Path, ours: Path, theirs: Path, path: Annotated[str, typer.Argument()] = "") -> None:
    """git's merge driver for .memory/'s JSON files (%O %A %B %P); registered by aether itself."""
    from aether_cli.merge_driver import run as merge

    code, said = merge(base, ours, theirs, path)
    if said:
        sys.stderr.write(_clean(said) + "\n")
    raise typer.Exit(code)


# ------------------------------------------------------------------ across machines

Remote = Annotated[str, typer.Argument(help="The git remote (a name or URL).")]


@app.command()
def push(remote: Remote = "origin", memory_dir: MemoryDir = None) -> None:
    """Push aether's memory commits (refs/aether/*) to REMOTE."""
    from aether_cli import commands, git_sync

    typer.echo(git_sync.push(commands.open_store(memory_dir).root, remote))


@app.command()
def pull(remote: Remote = "origin", memory_dir: MemoryDir = None) -> None:
    """Fetch aether's memory commits from REMOTE and bring .memory/ up to the pulled session.

    Refused (exit 1, nothing changed) when .memory/ here and the pulled session have diverged.
    """
    from aether_cli import commands, git_sync

    store = commands.open_store(memory_dir)
    store.ensure_unlocked()
    typer.echo(git_sync.pull(store.root, remote))

# ------------------------------------------------------------------ memory, completion

_COMPLETE_VAR = "_AETHER_COMPLETE"
_SHELLS = ("bash", "zsh", "fish")
_MEMORY_HELP = "The project's long-term facts: list, add, rm, pin, unpin, search (`aether memory --help`)."

if os.environ.get(_COMPLETE_VAR):
    # Completing a command line: the shell needs every subcommand, and start-up speed no longer counts.
    # Typer's completion classes are registered here, not at every start (add_completion=False).
    from typer.completion import completion_init

    from aether_cli.cli_memory import memory_app

    completion_init()
    app.add_typer(memory_app, help=_MEMORY_HELP)
else:

    @app.command(
        "memory",
        help=_MEMORY_HELP,
        add_help_option=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )
    def memory(ctx: typer.Context) -> None:
        # A stand-in that loads `aether memory`'s own commands only when it is used:
        # six more commands for Typer to build would slow every other command's start-up.
        from aether_cli.cli_memory import memory_app

        memory_app(args=ctx.args, prog_name="aether memory")


@app.command()
def completion(
    shell: Annotated[str, typer.Argument(help="bash, zsh or fish.", metavar="SHELL")],
) -> None:
    """Print the shell completion script for SHELL.

    e.g. `aether completion bash > ~/.local/share/bash-completion/completions/aether`,
    `aether completion zsh > "${fpath[1]}/_aether"`,
    `aether completion fish > ~/.config/fish/completions/aether.fish`.
    """
    if shell not in _SHELLS:
        from aether_cli.errors import UsageError

        raise UsageError(f"no completion for {shell!r}: choose one of {', '.join(_SHELLS)}")
    # Typer's completion machinery is loaded here only: aether starts without it.
    from typer.completion import get_completion_script

    typer.echo(get_completion_script(prog_name="aether", complete_var=_COMPLETE_VAR, shell=shell))


# ------------------------------------------------------------------ entry point


def _bug_report(exc: BaseException) -> str:
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="aether-bug-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(f"aether {__version__} on Python {sys.version.split()[0]} ({sys.platform})\n")
        f.write(f"argv: {sys.argv!r}\n\n")
        f.write("".join(traceback.format_exception(exc)))
    return path


def main() -> None:
    """Console-script entry point: one-line errors and exit codes, never a traceback."""
    try:
        app(complete_var=_COMPLETE_VAR)
    except AetherError as exc:
        sys.stderr.write(f"aether: error: {_clean(str(exc))}\n")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("aether: interrupted\n")
        sys.exit(C.EXIT_SIGINT)
    except OSError as exc:
        if not exc.filename:
            _internal_error(exc)
        # The filesystem refused (read-only, full, no permission): the user's to fix, not a bug.
        sys.stderr.write(f"aether: error: {_clean(f'{exc.filename}: {exc.strerror or exc}')}\n")
        sys.exit(C.EXIT_STORAGE)
    except Exception as exc:
        _internal_error(exc)


def _clean(text: str) -> str:
    """An error line may quote what a `.memory/` file or the agent holds: no escape sequences."""
    from aether_cli.render import clean

    return clean(text)


def _internal_error(exc: BaseException) -> None:
    path = _bug_report(exc)
    sys.stderr.write(f"aether: internal error: {type(exc).__name__}: {_clean(str(exc))} (details: {path})\n")
    sys.exit(C.EXIT_BUG)
