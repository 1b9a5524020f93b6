"""Testing: conformance checks and fakes for plugin authors' tests (and this project's own).

In a plugin's test suite::

    from autotransfer.testing import check_backbone

    def test_my_backbones_conform():
        check_backbone("myzoo/tiny-net")   # raises ConformanceError naming what broke

Owns the conformance check (``conformance``: :func:`check_backbone`), the lazy-catalogue
checks (``catalogue``: :func:`check_catalogue`, :func:`check_plugin_is_light`,
:func:`check_ranking` of a zoo's ranking metadata) and the fakes
(``fakes``: :class:`FakeZoo`, a plugin offering tiny real CNNs; :func:`registered_plugin`, a plugin
registered for the duration of a ``with`` block; :class:`DeterministicPruner`).

May import: ``autotransfer.finetune``, ``autotransfer.data``, ``autotransfer.contract``,
``autotransfer.errors`` and public libraries; never search, model or cli.
"""

from autotransfer.testing.catalogue import check_catalogue, check_plugin_is_light, check_ranking
from autotransfer.testing.conformance import (
    FREEZE_FRACTIONS,
    ConformanceError,
    ConformanceReport,
    check_backbone,
)
from autotransfer.testing.fakes import (
    DeterministicPruner,
    FakeZoo,
    TinyCNN,
    registered_plugin,
    tiny_cnn_backbone,
)

__all__ = [
    "FREEZE_FRACTIONS",
    "ConformanceError",
    "ConformanceReport",
    "DeterministicPruner",
    "FakeZoo",
    "TinyCNN",
    "check_backbone",
    "check_catalogue",
    "check_plugin_is_light",
    "check_ranking",
    "registered_plugin",
    "tiny_cnn_backbone",
]
