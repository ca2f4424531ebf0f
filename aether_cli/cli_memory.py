"""`aether memory`: the project's long-term facts, for a person (list, add, rm, pin, unpin, search).

Part of the command line, like `cli` (it is registered there as a Typer
sub-app): it parses, calls `facts` and `fact_search`, and prints. Plain
output, no Rich, so it starts as fast as `aether status`. Text read from
project_memory.json (which git may have brought) is printed with its control
characters and escape sequences removed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from aether_cli.store import MemoryStore

memory_app = typer.Typer(
    name="memory",
    help="The project's long-term facts (project_memory.json): list, add, remove, pin, search.",
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
Key = Annotated[str, typer.Argument(help="The fact's key (`aether memory list` shows them).")]


def _store(memory_dir: Path | None) -> MemoryStore:
    from aether_cli import commands

    return commands.open_store(memory_dir)


def _print_json(data: Any) -> None:
    import orjson

    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


def _one_line(text: Any) -> str:
    from aether_cli.plain_text import clean

    return " ".join(clean(str(text)).split())


def _fact_line(fact: dict[str, Any], rank: int | None = None) -> str:
    from aether_cli.facts import origin

    pin = "[pinned] " if fact.get("pinned") is True else ""
    place = f"{rank}. " if rank is not None else ""
    return f"{place}{_one_line(fact['key'])}  {pin}({origin(fact)})  {_one_line(fact.get('text', ''))}"


def _live_note(store: MemoryStore) -> str:
    return "; the live run's next prompt carries it" if store.holder() else ""


@memory_app.command("list")
def list_facts(json: JsonFlag = False, memory_dir: MemoryDir = None) -> None:
    """List the facts, pinned first, with who proposed each (the agent and its episode, or a user)."""
    from aether_cli.facts import list_facts as facts

    rows = facts(_store(memory_dir))
    if json:
        _print_json(rows)
    elif not rows:
        typer.echo("no facts yet; `aether memory add TEXT` adds one")
    else:
        typer.echo("\n".join(_fact_line(f) for f in rows))


@memory_app.command()
def add(
    text: Annotated[str, typer.Argument(help="The fact, one short statement.")],
    key: Annotated[
        str | None, typer.Option("--key", "-k", help="Its key [default: from its first words].")
    ] = None,
    pin: Annotated[bool, typer.Option("--pin", help="Pin it: in every prompt, before the others.")] = False,
    memory_dir: MemoryDir = None,
) -> None:
    """Add a fact of your own (source "user"); the key of an existing fact replaces it."""
    from aether_cli.facts import add_fact, check_text

    store = _store(memory_dir)
    check_text(text)  # bad text is refused before a .memory is made for it
    if not store.exists():
        store.init()
    added = add_fact(store, text, key=key, pin=pin)
    if added.redacted:
        sys.stderr.write("aether: warning: the text held a secret; it was redacted before it was written\n")
    verb = "replaced" if added.replaced else "added"
    pinned = " (pinned)" if added.fact["pinned"] else ""
    typer.echo(f"{verb} fact {added.fact['key']}{pinned}{_live_note(store)}")


@memory_app.command()
def rm(key: Key, memory_dir: MemoryDir = None) -> None:
    """Remove the fact KEY."""
    from aether_cli.facts import remove_fact

    store = _store(memory_dir)
    remove_fact(store, key)
    typer.echo(f"removed fact {_one_line(key)}{_live_note(store)}")


@memory_app.command()
def pin(key: Key, memory_dir: MemoryDir = None) -> None:
    """Pin the fact KEY: it is in every prompt, before the other facts."""
    from aether_cli.facts import pin_fact

    store = _store(memory_dir)
    pin_fact(store, key)
    typer.echo(f"pinned fact {_one_line(key)}{_live_note(store)}")


@memory_app.command()
def unpin(key: Key, memory_dir: MemoryDir = None) -> None:
    """Unpin the fact KEY: it stays, in the prompts that have room for it."""
    from aether_cli.facts import pin_fact

    store = _store(memory_dir)
    pin_fact(store, key, pinned=False)
    typer.echo(f"unpinned fact {_one_line(key)}{_live_note(store)}")


@memory_app.command()
def search(
    query: Annotated[str, typer.Argument(help="Words to look for.")],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most N facts.")] = 10,
    json: JsonFlag = False,
    memory_dir: MemoryDir = None,
) -> None:
    """Search the facts, best match first (SQLite FTS5, or a plain ranked scan without it)."""
    from aether_cli.fact_search import search as run_search

    result = run_search(_store(memory_dir), query, limit=limit)
    if json:
        _print_json(result.to_dict())
    elif not result.facts:
        typer.echo(f"no fact matches {_one_line(query)!r}")
    else:
        typer.echo("\n".join(_fact_line(f, i) for i, f in enumerate(result.facts, 1)))
