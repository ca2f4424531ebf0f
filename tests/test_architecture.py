"""The house rules of aether_cli's module graph, checked from the source:
no import cycles, Typer and Rich only at the edge, every module on the map."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "aether_cli"
MAP = PACKAGE.parent / "docs" / "architecture.md"
# Only these may import typer or rich: the core knows nothing of the terminal.
EDGE = {
    "aether_cli.cli", "aether_cli.cli_memory", "aether_cli.render", "aether_cli.report_render",
    "aether_cli.live_view",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, name: str) -> set[str]:
    """Every module `path` imports, at module level or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    known = set(modules())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            # `from aether_cli.store import files` names a module: the edge goes to it,
            # not to the package; `from aether_cli.store import MemoryStore` goes to the package.
            names = {f"{base}.{alias.name}" for alias in node.names}
            submodules = names & known
            found.update(submodules)
            if names - submodules:
                found.add(base)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {
        name: {m for m in imports_of(path, name) if m in mods and m != name} for name, path in mods.items()
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_only_the_cli_and_the_renderer_import_typer_or_rich() -> None:
    offenders = {
        name: sorted(m for m in imports_of(path, name) if m.split(".")[0] in ("typer", "rich", "click"))
        for name, path in modules().items()
        if name not in EDGE
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_module_is_on_the_map() -> None:
    text = MAP.read_text(encoding="utf-8")
    missing = [
        str(path.relative_to(PACKAGE.parent))
        for path in modules().values()
        if f"`{path.relative_to(PACKAGE.parent)}`" not in text
    ]
    assert missing == [], f"add these to {MAP.name}'s module map: {missing}"
