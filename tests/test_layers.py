"""The layer order of the sub-packages (docs/architecture.md, "Layers"), checked on the source.

Every ``import`` in ``src/iidfusion`` -- module level or inside a function, absolute or
relative -- is read with ``ast``; an import of a sub-package that is not below the importer in
:data:`LAYERS` fails, and so does any cycle between sub-packages. Between the modules of one
sub-package, a deferred import (inside a function, or under ``TYPE_CHECKING``) may close a loop;
the imports that run when a module is imported may not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src" / "iidfusion"

# Each unit (a sub-package or a top-level module of iidfusion) and the units it may import.
# "iidfusion" is the package root (``__version__``), which every unit may read.
_BELOW_TRAINING = ("core", "ot", "encoders", "fusion", "losses", "data", "kg", "progress", "provenance")
LAYERS: dict[str, tuple[str, ...]] = {
    "core": (),
    "ot": (),
    "encoders": (),
    "progress": (),
    "provenance": (),
    "fusion": ("core",),
    "losses": ("core", "ot"),
    "data": ("core", "encoders", "progress"),
    "kg": ("core", "ot", "encoders", "fusion", "losses"),
    "training": _BELOW_TRAINING,
    "cli": (*_BELOW_TRAINING, "training"),
    "__main__": ("cli",),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _deferred(tree: ast.Module) -> set[ast.AST]:
    """The import statements of ``tree`` that do not run on import: in functions or ``if TYPE_CHECKING``."""
    deferred: set[ast.AST] = set()
    for node in ast.walk(tree):
        inside_function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        type_checking = isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        if inside_function or type_checking:
            deferred.update(n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return deferred


def _imports(path: Path) -> Iterator[tuple[str, int, bool]]:
    """Every ``iidfusion`` module ``path`` imports: (module, line, whether it runs on import)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(), filename=str(path))
    deferred = _deferred(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            # ``from iidfusion.x import y`` imports the module x.y when y is one
            targets = [
                f"{origin}.{alias.name}" if _is_module(f"{origin}.{alias.name}") else origin for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if target == "iidfusion" or target.startswith("iidfusion."):
                yield target, node.lineno, node not in deferred


def _is_module(name: str) -> bool:
    path = SOURCE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "iidfusion"


def _module_graph(*, eager_only: bool = False) -> dict[str, dict[str, list[str]]]:
    """module -> {imported module: ["file:line", ...]} over the whole package."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        edges = graph.setdefault(_module_name(path), {})
        for target, line, eager in _imports(path):
            if eager or not eager_only:
                edges.setdefault(target, []).append(f"{path.relative_to(SOURCE.parent)}:{line}")
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == 1:
                return [*stack[stack.index(successor) :], successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


GRAPH = _module_graph()


def test_every_unit_has_a_declared_layer() -> None:
    units = {_unit(module) for module in GRAPH} - {"iidfusion"}
    assert units - set(LAYERS) == set(), "add the new sub-package to LAYERS and docs/architecture.md"
    assert set(LAYERS) - units == set(), "LAYERS names a unit that no longer exists"


def test_no_import_goes_against_the_layer_order() -> None:
    wrong = [
        f"{where}: {_unit(source)} imports {target} ({_unit(target)} is not below {_unit(source)})"
        for source, edges in GRAPH.items()
        for target, places in edges.items()
        for where in places
        if _unit(target) not in (_unit(source), "iidfusion") and _unit(target) not in LAYERS[_unit(source)]
    ]
    assert wrong == []


def test_the_declared_layers_form_no_cycle() -> None:
    assert _find_cycle({unit: set(below) for unit, below in LAYERS.items()}) is None


def test_no_cycle_between_sub_packages() -> None:
    units: dict[str, set[str]] = {}
    for source, edges in GRAPH.items():
        units.setdefault(_unit(source), set()).update(
            _unit(target) for target in edges if _unit(target) not in (_unit(source), "iidfusion")
        )
    assert _find_cycle(units) is None


def test_no_cycle_between_modules_on_import() -> None:
    # A package's __init__ re-exports its modules; a module importing its own package's
    # __init__ would close a loop, so that counts too.
    eager = _module_graph(eager_only=True)
    assert _find_cycle({module: set(edges) for module, edges in eager.items()}) is None


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from iidfusion.fusion import FusionModel\n", ["iidfusion.fusion"]),
        ("from iidfusion.fusion import base\n", ["iidfusion.fusion.base"]),
        ("def f():\n    from ..ot import sinkhorn\n", ["iidfusion.ot.sinkhorn"]),
        ("import iidfusion.data.registry as r\n", ["iidfusion.data.registry"]),
        ("import torch\nfrom torch import nn\n", []),
        ("def f():\n    import iidfusion.ot\n", ["iidfusion.ot"]),
    ],
)
def test_the_scan_sees_every_kind_of_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: list[str]) -> None:
    # a file inside a sub-package, so that relative imports resolve as in the package
    path = SOURCE / "losses" / "iid.py"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source if self == path else Path.read_text(self))
    assert [target for target, _, _ in _imports(path)] == expected


def test_deferred_imports_are_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    path = SOURCE / "losses" / "iid.py"
    source = "import iidfusion.ot\nif TYPE_CHECKING:\n    import iidfusion.core\ndef f():\n    import iidfusion.fusion\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source if self == path else Path.read_text(self))
    assert [(target, eager) for target, _, eager in _imports(path)] == [
        ("iidfusion.ot", True), ("iidfusion.core", False), ("iidfusion.fusion", False)
    ]
