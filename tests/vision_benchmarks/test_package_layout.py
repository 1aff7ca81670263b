"""The layout of ``vision_benchmarks``: no import cycle, the layers import downwards only, and
every documented command still runs as ``python -m vision_benchmarks.<command>``.

The import graph is read from the source with :mod:`ast`, not by importing: every ``import``
and ``from ... import`` of the package is an edge, at module level, inside a function (a
deferred import that hides a cycle is still a cycle) or under ``if TYPE_CHECKING:`` (a
dependency of the design even where it never runs).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import vision_benchmarks

PACKAGE = "vision_benchmarks"
ROOT = Path(vision_benchmarks.__file__).parent
COMMANDS = ("pretrain", "evaluate", "weights", "ablate", "semisup")
"""The command modules the documentation tells users to run with ``python -m``."""

SHARED = ("config", "datasets", "pretrained")
"""Top-level modules that are not commands: what the commands and the subpackages share."""


def module_names() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name)."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(ROOT).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, functions and ``if`` blocks included."""
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def imported_modules(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``module`` imports: ``from a.b import c`` is ``a.b.c`` when that
    is a module, else ``a.b``; relative imports are resolved against ``module``'s package."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets = set()
    for node in _imports(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
            continue
        if node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module or ""
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            targets.add(submodule if submodule in modules else source)
    return {target for target in targets if target in modules and target != module}


def import_graph() -> dict[str, set[str]]:
    """``{module: the package's modules it imports}`` for every module of the package."""
    modules = module_names()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None when it has none (depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path = [start]
        branches = [iter(sorted(graph[start]))]
        while branches:
            child = next(branches[-1], None)
            if child is None:  # every import of path[-1] explored: no cycle through it
                done.add(path.pop())
                branches.pop()
            elif child in path:
                return path[path.index(child):] + [child]
            elif child not in done:
                path.append(child)
                branches.append(iter(sorted(graph.get(child, ()))))
    return None


def test_the_cycle_finder_reports_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_the_import_graph_resolves_relative_deferred_and_annotation_imports(tmp_path):
    modules = {f"{PACKAGE}.evaluation.robustness": tmp_path / "robustness.py",
               f"{PACKAGE}.evaluation.protocols": tmp_path / "protocols.py", f"{PACKAGE}.evaluation": tmp_path,
               f"{PACKAGE}.datasets": tmp_path / "datasets.py", f"{PACKAGE}.evaluate": tmp_path / "evaluate.py"}
    source = tmp_path / "robustness.py"
    source.write_text("from typing import TYPE_CHECKING\nfrom . import protocols\n"
                      "def f():\n    from ..datasets import load_run_split\n"
                      "if TYPE_CHECKING:\n    from vision_benchmarks.evaluate import EvaluateConfig\n")
    assert imported_modules(f"{PACKAGE}.evaluation.robustness", source, modules) == {
        f"{PACKAGE}.evaluation.protocols", f"{PACKAGE}.datasets", f"{PACKAGE}.evaluate"}


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert {f"{PACKAGE}.evaluation.robustness", f"{PACKAGE}.studies.ablation_cells"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_layers_import_downwards_only():
    """methods/ stands alone; evaluation/ does not reach into studies/ or the commands; only the
    studies run commands (a study is made of pre-training runs)."""
    commands = {f"{PACKAGE}.{name}" for name in COMMANDS}
    for module, targets in import_graph().items():
        if module.startswith(f"{PACKAGE}.methods"):
            assert all(t.startswith(f"{PACKAGE}.methods") for t in targets), (module, targets)
        if module.startswith(f"{PACKAGE}.evaluation"):
            assert not any(t.startswith(f"{PACKAGE}.studies") or t in commands for t in targets), (module, targets)
        if module.startswith(f"{PACKAGE}.studies"):
            assert targets & commands <= {f"{PACKAGE}.pretrain"}, (module, targets)
        if module in {f"{PACKAGE}.{name}" for name in SHARED}:
            assert not any(t in commands or ".evaluation" in t or ".studies" in t for t in targets), (module, targets)


def test_the_top_level_holds_only_the_commands_and_what_they_share():
    top = {path.stem for path in ROOT.glob("*.py")} - {"__init__"}
    assert top == set(COMMANDS) | set(SHARED)
    assert {path.name for path in ROOT.iterdir() if (path / "__init__.py").is_file()} == {
        "methods", "evaluation", "studies"}


def test_every_documented_command_module_exposes_main():
    for name in COMMANDS:
        module = importlib.import_module(f"{PACKAGE}.{name}")
        assert callable(getattr(module, "main", None)), f"{PACKAGE}.{name} has no main()"
        assert 'if __name__ == "__main__":' in Path(module.__file__).read_text(), f"{PACKAGE}.{name} cannot run with -m"
