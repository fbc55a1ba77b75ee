"""The layer order of the sub-packages (docs/architecture.md, "Layers"), checked on the source.

Every ``import`` in ``src/iidfusion`` and in the studies (``studies/src``) -- module level or
inside a function, absolute or relative -- is read with ``ast``. An import of a unit that is not
below the importer in :data:`LAYERS` fails, and so does any cycle between units or between
modules at import time. Outside the command line, an import inside a function is allowed only
for a package that the unit's install does not bring (an optional extra).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"iidfusion": REPO / "src", "iidfusion_studies": REPO / "studies" / "src"}

# Each unit and the units it may import ("iidfusion", the package root with __version__, is
# open to every unit). The unit of a module is its sub-package of iidfusion; the studies are one
# unit, their command line another.
_MODELS = ("core", "ot", "encoders", "fusion", "losses")
_BELOW_ENGINE = (*_MODELS, "data", "kg")
_BELOW_TASKS = (*_BELOW_ENGINE, "engine")
_BELOW_API = (*_BELOW_TASKS, "tasks")
LAYERS: dict[str, tuple[str, ...]] = {
    "core": (),
    "ot": (),
    "encoders": (),
    "fusion": ("core",),
    "losses": ("core", "ot"),
    "data": ("core", "encoders"),
    "kg": ("core", "ot", "encoders", "fusion", "losses"),
    "engine": ("core", "ot", "losses"),  # Lightning, and no task: no data, models or tasks
    "tasks": _BELOW_TASKS,
    "api": _BELOW_API,
    "cli": (*_BELOW_API, "api"),
    "__main__": ("cli",),
    "studies": (*_BELOW_API, "api"),
    "studies.cli": (*_BELOW_API, "api", "cli", "studies"),
}

# What each unit's install brings (docs/architecture.md, "Layers"): a function may
# import a package only when its unit's install lacks it (an optional extra). Platform modules of
# the standard library count as optional.
_CORE_INSTALL = {"torch", "numpy"}
_TRAIN = _CORE_INSTALL | {"lightning", "torchmetrics", "yaml", "tensorboard", "tqdm", "scipy", "PIL"}
_PLATFORM = {"resource", "fcntl", "msvcrt", "winreg"}
INSTALLED: dict[str, set[str]] = {unit: _CORE_INSTALL if unit in _MODELS else _TRAIN for unit in LAYERS}
INSTALLED["studies"] = INSTALLED["studies.cli"] = _TRAIN | {"matplotlib", "ot"}


def _files() -> Iterator[tuple[str, Path]]:
    for package, root in ROOTS.items():
        for path in sorted((root / package).rglob("*.py")):
            yield package, path


def _module_name(path: Path) -> str:
    root = next(root for root in ROOTS.values() if path.is_relative_to(root))
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _deferred(tree: ast.Module) -> tuple[set[ast.AST], set[ast.AST]]:
    """The import statements of ``tree`` that do not run on import: (inside functions, under ``if TYPE_CHECKING``)."""
    in_functions: set[ast.AST] = set()
    type_checking: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_functions.update(n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking.update(n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return in_functions, type_checking


def _imports(path: Path, source: str | None = None) -> Iterator[tuple[str, int, bool, bool]]:
    """Every module ``path`` imports: (module, line, whether it runs on import, whether inside a function)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    in_functions, type_checking = _deferred(tree)
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
        eager = node not in in_functions and node not in type_checking
        for target in targets:
            yield target, node.lineno, eager, node in in_functions


def _is_module(name: str) -> bool:
    root = ROOTS.get(name.partition(".")[0])
    if root is None:
        return False
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _ours(name: str) -> bool:
    return name.partition(".")[0] in ROOTS


def _unit(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "iidfusion_studies":
        return "studies.cli" if len(parts) > 1 and parts[1] == "cli" else "studies"
    return parts[1] if len(parts) > 1 else "iidfusion"


def _module_graph(*, eager_only: bool = False) -> dict[str, dict[str, list[str]]]:
    """module -> {imported module of ours: ["file:line", ...]} over the package and the studies."""
    graph: dict[str, dict[str, list[str]]] = {}
    for _, path in _files():
        edges = graph.setdefault(_module_name(path), {})
        for target, line, eager, _ in _imports(path):
            if _ours(target) and (eager or not eager_only):
                edges.setdefault(target, []).append(f"{path.relative_to(REPO)}:{line}")
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


def test_the_library_never_imports_the_studies() -> None:
    assert not [
        f"{s} imports {t}"
        for s, edges in GRAPH.items()
        for t in edges
        if s.startswith("iidfusion.") and t.startswith("iidfusion_studies")
    ]


def test_the_declared_layers_form_no_cycle() -> None:
    assert _find_cycle({unit: set(below) for unit, below in LAYERS.items()}) is None


def test_no_cycle_between_units() -> None:
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


def test_imports_inside_functions_are_for_optional_packages_only() -> None:
    """Outside the command line a function imports nothing of ours, nothing of the standard library
    and nothing its unit's install brings: only an optional extra (transformers, optuna, ...)."""
    wrong = []
    for _, path in _files():
        unit = _unit(_module_name(path))
        if unit in ("cli", "studies.cli"):
            continue
        for target, line, _, in_function in _imports(path):
            top = target.partition(".")[0]
            optional = top in _PLATFORM or not (
                _ours(target) or top in sys.stdlib_module_names or top in INSTALLED[unit]
            )
            if in_function and not optional:
                wrong.append(f"{path.relative_to(REPO)}:{line}: {target}")
    assert wrong == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from iidfusion.fusion import FusionModel\n", ["iidfusion.fusion"]),
        ("from iidfusion.fusion import base\n", ["iidfusion.fusion.base"]),
        ("def f():\n    from ..ot import sinkhorn\n", ["iidfusion.ot.sinkhorn"]),
        ("import iidfusion.data.features.registry as r\n", ["iidfusion.data.features.registry"]),
        ("import torch\nfrom torch import nn\n", ["torch", "torch"]),
        ("def f():\n    import iidfusion.ot\n", ["iidfusion.ot"]),
    ],
)
def test_the_scan_sees_every_kind_of_import(source: str, expected: list[str]) -> None:
    # a file inside a sub-package, so that relative imports resolve as in the package
    path = ROOTS["iidfusion"] / "iidfusion" / "losses" / "iid.py"
    assert [target for target, _, _, _ in _imports(path, source)] == expected


def test_deferred_imports_are_told_apart() -> None:
    path = ROOTS["iidfusion"] / "iidfusion" / "losses" / "iid.py"
    source = (
        "import iidfusion.ot\nif TYPE_CHECKING:\n    import iidfusion.core\ndef f():\n    import iidfusion.fusion\n"
    )
    assert [(target, eager, inside) for target, _, eager, inside in _imports(path, source)] == [
        ("iidfusion.ot", True, False),
        ("iidfusion.core", False, False),
        ("iidfusion.fusion", False, True),
    ]
