"""The layers point one way, read from the imports themselves (ast), as test_configuration keeps the env.

- `flags/` knows nothing of `rollout`;
- the domain (every other module of `rollout`) imports neither the composition root
  (`rollout.runtime`, `rollout.demo`) nor the interfaces (`rollout.app`, `.api`, `.cli`, `.console`);
- the composition root imports no interface; the API and the console never import the CLI;
- the domain takes its values as arguments, not from `rollout.config`, except the adapters that
  turn settings into connections and the modules listed in CONFIG_DEBTS (to be emptied, never grown);
- no import cycle between packages, except the edges listed in CYCLE_DEBTS (the same rule).

Imports under `if TYPE_CHECKING:` are types only and are not counted.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

INTERFACES = ("rollout.app", "rollout.api", "rollout.cli", "rollout.console")
COMPOSITION = ("rollout.runtime", "rollout.demo")
# turn settings into processes, connections and the domain's values: reading rollout.config is their job
ADAPTERS = ("rollout.config", "rollout.configured", "rollout.database", "rollout.schema", "rollout.services",
            "rollout.server", "rollout.gunicorn_config", "rollout.maintenance", "rollout.embedders")
CONFIG_DEBTS: frozenset[str] = frozenset()
# (importer, imported) package edges that close a cycle today
CYCLE_DEBTS: frozenset[tuple[str, str]] = frozenset()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[str]:
    """Every module a file imports (absolute names; `from a import b` yields a and a.b)."""
    tree = ast.parse(path.read_text(), str(path))
    types_only = {id(node) for block in ast.walk(tree)
                  if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                  for node in ast.walk(block)}
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in types_only:
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _project_imports() -> dict[str, set[str]]:
    modules = {_module_name(p): p for folder in ("rollout", "flags") for p in (ROOT / folder).rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules} for name, path in modules.items()}


IMPORTS = _project_imports()


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _broken(importers: tuple[str, ...] | None, forbidden: tuple[str, ...],
            exempt: tuple[str, ...] = ()) -> list[str]:
    return sorted(f"{module} imports {target}" for module, targets in IMPORTS.items()
                  if (importers is None or _within(module, importers)) and not _within(module, exempt)
                  for target in targets if _within(target, forbidden))


def test_flags_know_nothing_of_rollout():
    assert _broken(("flags",), ("rollout",)) == []


def test_the_domain_imports_no_interface_and_no_composition_root():
    assert _broken(("rollout",), INTERFACES + COMPOSITION, exempt=INTERFACES + COMPOSITION) == []


def test_the_composition_root_imports_no_interface():
    assert _broken(COMPOSITION, INTERFACES) == []


def test_the_api_and_the_console_never_import_the_cli():
    assert _broken(("rollout.api", "rollout.console"), ("rollout.cli", "rollout.app")) == []


def _reads_config(module: str) -> bool:
    return "rollout.config" in IMPORTS[module]


def test_the_domain_takes_values_not_settings():
    domain = [m for m in IMPORTS if m.startswith("rollout.") and not _within(m, INTERFACES + COMPOSITION + ADAPTERS)]
    readers = {m for m in domain if _reads_config(m)}
    assert sorted(readers - CONFIG_DEBTS) == [], "pass these values in rather than importing rollout.config"
    assert sorted(CONFIG_DEBTS - readers) == [], "no longer reads rollout.config: remove it from CONFIG_DEBTS"


def _package(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "flags":
        return "flags"
    if len(parts) > 1 and (ROOT / "rollout" / parts[1]).is_dir():
        return f"rollout.{parts[1]}"
    return ".".join(parts[:2])


def _package_edges() -> set[tuple[str, str]]:
    return {(_package(m), _package(t)) for m, targets in IMPORTS.items() for t in targets
            if _package(m) != _package(t)}


def _cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    """One cycle of the package graph, or None (depth-first search)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            found = visit(nxt, path + [node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_no_import_cycle_between_packages():
    edges = _package_edges()
    assert _cycle(edges - CYCLE_DEBTS) is None
    assert sorted(CYCLE_DEBTS - edges) == [], "this edge is gone: remove it from CYCLE_DEBTS"


def test_the_cycle_finder_finds_one():
    assert _cycle({("a", "b"), ("b", "c"), ("c", "a")}) == ["a", "b", "c", "a"]
    assert _cycle({("a", "b"), ("a", "c"), ("b", "c")}) is None
