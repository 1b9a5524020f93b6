"""No import circle inside autotransfer's packages (review fault 6, issue #28).

The graph is grimp's (the library under import-linter): every ``import`` statement counts,
those inside functions and under ``TYPE_CHECKING`` too, so a circle cannot hide in a lazy import.
"""

import grimp
import pytest

#: packages kept free of circles; add one here once its circle is gone
ACYCLIC = ["autotransfer.data", "autotransfer.finetune", "autotransfer.model",
           "autotransfer.testing"]


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("autotransfer")


def circles(graph, package: str) -> list[str]:
    """One circle per import that closes one, as ``a -> b -> ... -> a``, among ``package``'s
    modules (the package's ``__init__`` included)."""
    inside = {m for m in graph.modules if m == package or m.startswith(package + ".")}
    found = []
    for importer in sorted(inside):
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & inside):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                found.append(" -> ".join((importer, *back)))
    return found


@pytest.mark.parametrize("package", ACYCLIC)
def test_no_import_circle(graph, package):
    assert circles(graph, package) == []


def test_a_lazy_import_that_closes_a_circle_is_found(graph):
    # the leaf types importing the top, inside a function: a circle grimp must see
    graph.add_import(importer="autotransfer.data.dataset", imported="autotransfer.data.load",
                     line_number=1, line_contents="from autotransfer.data.load import load_data")
    found = circles(graph, "autotransfer.data")
    assert any(c.startswith("autotransfer.data.dataset -> autotransfer.data.load") for c in found)
