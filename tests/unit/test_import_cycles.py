"""No import cycle among milestones' modules (a stopgap until import-linter contracts).

Counts module-level imports only: those inside functions (lazy, for start-up) and
under ``if TYPE_CHECKING:`` do not run when the module loads. ``from . import x``
is an import of ``pkg.x``, as import-linter counts it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import milestones
from milestones.cli import COMMAND_MODULES

SRC = Path(milestones.__file__).parent


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    """Module -> the modules it imports; with ``lazy``, those imported in functions too."""
    modules = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        tree = ast.parse(path.read_text("utf-8"))
        tree.body = [n for n in tree.body if not (
            isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test))]
        for node in ast.walk(tree) if lazy else tree.body:
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                subs = {f"{base}.{alias.name}" for alias in node.names} & modules.keys()
                found |= subs or {base}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as its path of modules, or None (depth-first search, colouring)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    return next((c for n in sorted(graph) if n not in state and (c := visit(n))), None)


def test_no_import_cycle_among_our_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())


def reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        seen.add(node)
        todo += graph[node] - seen
    return False


def test_no_cycle_through_lazy_imports_where_the_layers_were_untangled() -> None:
    """Lazy imports too: the rule modules register through ``validation.registry``
    (the engine imports them, not they it); the CLI's shared options live in
    ``cli.options``; ``coord`` gets its Project passed in. (Not through ``cli``'s own
    loaders, which import a command's module on demand: those edges are the loaders'.)"""
    graph = import_graph(lazy=True)
    graph["milestones.cli"] = set()
    graph["milestones.cli.group"] = {m for m in graph["milestones.cli.group"]
                                     if m.rpartition(".")[2] not in COMMAND_MODULES.values()}
    pairs = [("milestones.project", "milestones.agents.coord"),
             ("milestones.cli.plan", "milestones.cli.templates")]
    pairs += [("milestones.validation.engine", f"milestones.validation.{rules}") for rules in
              ("structure", "dependency", "timeline", "resource", "template", "kiro_rules")]
    for a, b in pairs:
        assert not (reaches(graph, a, b) and reaches(graph, b, a)), f"{a} <-> {b}"


def test_the_check_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
