"""No import circle among autotransfer's modules.

The layer and independence rules (pyproject.toml [tool.importlinter]) are checked once, by
``make lint`` (lint-imports); this test checks what they do not: that no module of a package
imports, directly or through others, a module that imports it back (a leaf type left in an
orchestrator file makes such a circle). Imports under ``if TYPE_CHECKING:`` count too.
"""

from __future__ import annotations

import grimp
import pytest

#: Packages still allowed a circle (none: the last, around ``data/_source.py``, is gone).
CIRCULAR: tuple[str, ...] = ()
PACKAGES = ["autotransfer", "autotransfer.cli", "autotransfer.contract", "autotransfer.space",
            "autotransfer.data",
            "autotransfer.finetune", "autotransfer.model", "autotransfer.study",
            "autotransfer.testing"]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("autotransfer", cache_dir=None)


def _circles(modules: set[str], imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(imports[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return found


def _excluded(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in CIRCULAR)


def _check(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    modules = {m for m in {package, *graph.find_descendants(package)} if not _excluded(m)}
    imports = {m: graph.find_modules_directly_imported_by(m) & modules for m in modules}
    return _circles(modules, imports)


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_circle_in(package, graph):
    circles = _check(graph, package)
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_a_circle_that_comes_back_is_found():
    # the registry's collector back in the type module: registry -> collect -> registry
    broken = grimp.build_graph("autotransfer", cache_dir=None)
    broken.add_import(importer="autotransfer.contract.registry",
                      imported="autotransfer.contract.collect")
    assert ["autotransfer.contract.collect", "autotransfer.contract.registry"] in _check(
        broken, "autotransfer.contract")


def _unnamed_modules() -> dict[str, list[str]]:
    """Each package's public modules and sub-packages its ``__init__`` docstring never names."""
    import ast
    from pathlib import Path

    import autotransfer

    root = Path(autotransfer.__file__).parent
    missing: dict[str, list[str]] = {}
    for init in sorted(root.rglob("__init__.py")):
        package = init.parent
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        names = [p.stem for p in package.glob("*.py") if not p.name.startswith("_")]
        names += [p.name for p in package.iterdir() if (p / "__init__.py").is_file()]
        unnamed = sorted(n for n in names if f"``{n}``" not in doc and f".{n}`" not in doc)
        if unnamed:
            missing[str(package.relative_to(root.parent))] = unnamed
    return missing


def test_every_package_docstring_names_each_of_its_modules():
    # a newcomer reads the package's __init__ first: a module it does not name is a module lost
    assert _unnamed_modules() == {}
