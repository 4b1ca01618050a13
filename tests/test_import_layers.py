"""The import graph of ``src/writebehind``: no cycle, and no import from a lower layer up.

Every import counts, at the top of a module, inside a function or under ``TYPE_CHECKING``:
a cycle hidden in a function is still a cycle of the design. Codecs and drivers (backends)
sit below the engine and the store: they never import the store, the node, the core, the
engine or the openmmtools facade. Outside the netCDF backend's package (``drivers/netcdf/``),
nothing imports its HDF5 internals: only the names the package exports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import writebehind

PACKAGE = Path(writebehind.__file__).parent
#: The modules above the codecs and the drivers.
UPPER = frozenset(
    f"writebehind.{name}"
    for name in (
        "_store",
        "_async_store",
        "_node",
        "_core",
        "_catalog",
        "_engine",
        "_legacy",
        "_interop",
    )
)
LOWER_PACKAGES = ("writebehind.codecs", "writebehind.drivers")
#: The netCDF backend's package: its HDF5 internals (journals, superblock, probe...) are
#: reached from outside only through the names the package itself exports.
NETCDF_PACKAGE = "writebehind.drivers.netcdf"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The writebehind modules that module ``name`` (at ``path``) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in known else base)
    return {target for target in found if target in known and target != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected set of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_of_the_package_has_no_cycle() -> None:
    # The package's __init__ imports its public modules; a module importing the package
    # itself (``from . import __version__``) is left out of cycles by importing it last.
    graph = import_graph()
    graph = {name: targets - {"writebehind"} for name, targets in graph.items()}
    assert cycles(graph) == []


def test_codecs_and_drivers_never_import_the_store_node_core_or_engine() -> None:
    graph = import_graph()
    upward = {
        name: sorted(targets & UPPER)
        for name, targets in graph.items()
        if name.startswith(LOWER_PACKAGES) and targets & UPPER
    }
    assert upward == {}


def reaching_in(graph: dict[str, set[str]], package: str) -> dict[str, list[str]]:
    """The modules outside ``package`` that import one of its modules (not the package)."""
    inside = f"{package}."
    found = {
        name: sorted(target for target in targets if target.startswith(inside))
        for name, targets in graph.items()
        if not name.startswith(inside) and name != package
    }
    return {name: targets for name, targets in found.items() if targets}


def test_only_the_netcdf_package_imports_its_hdf5_internals() -> None:
    assert reaching_in(import_graph(), NETCDF_PACKAGE) == {}


def test_the_layer_checker_finds_an_import_of_a_package_internal() -> None:
    graph = {"p": {"p.a"}, "p.a": {"p.b"}, "p.b": set(), "q": {"p"}, "r": {"p.b", "q"}}
    assert reaching_in(graph, "p") == {"r": ["p.b"]}


def test_the_checker_sees_an_import_inside_a_function() -> None:
    # The cycle this test guards against was hidden in functions (issue 12).
    graph = import_graph()
    assert "writebehind._interop" in graph["writebehind._node"]  # imported in to_xarray


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
