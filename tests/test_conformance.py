"""The conformance kit: every builtin backbone passes it, and it catches broken ones."""

import pytest
import timm
import torch

from autotransfer import Backbone, BackboneCatalogue, BackboneEntry, hookimpl
from autotransfer.contract.collect import get_registry
from autotransfer.testing import (
    ConformanceError,
    FakeZoo,
    check_backbone,
    check_catalogue,
    check_plugin_is_light,
    registered_plugin,
    tiny_cnn_backbone,
)

# Packaged zoo: every backbone, with its real weights. timm zoo: the real weights are on the
# hub, so its entries are checked through timm's tiny test architectures (random weights),
# which cover CNN, ViT, ConvNeXt, NFNet, MaxViT, CoAtNet and MambaOut code paths.
PACKAGED = sorted(e.id for e in get_registry().entries(zoo="packaged"))
TIMM_TINY = [f"timm/{name}" for name in timm.list_models("test_*")]


@pytest.mark.parametrize("backbone_id", PACKAGED)
def test_packaged_backbones_conform_with_real_weights(backbone_id):
    report = check_backbone(backbone_id, pretrained=True)
    assert report.n_groups >= 4


@pytest.mark.slow
@pytest.mark.parametrize("backbone_id", TIMM_TINY)
def test_timm_architectures_conform(backbone_id):
    check_backbone(backbone_id)


def test_fake_zoo_conforms():
    with registered_plugin(FakeZoo()):
        assert check_backbone("fake/tiny-cnn").n_groups == 4
        assert check_backbone("fake/tiny-cnn-wide").dim == 16


def _entry(loader):
    return BackboneEntry("broken/net", "image", loader=loader)


def test_wrong_feature_width_is_caught():
    def loader(pretrained=True):
        backbone = tiny_cnn_backbone()
        backbone.dim = 99
        return backbone

    with pytest.raises(ConformanceError, match=r"broken/net: forward: gave \(2, 8\)"):
        check_backbone(_entry(loader))


def test_overlapping_groups_are_caught():
    def loader(pretrained=True):
        backbone = tiny_cnn_backbone()
        backbone.groups[1].append(backbone.groups[0][0])
        return backbone

    with pytest.raises(ConformanceError, match="groups: parameter 'stem.0.weight' is in more"):
        check_backbone(_entry(loader))


def test_groups_in_the_wrong_order_are_caught():
    def loader(pretrained=True):
        backbone = tiny_cnn_backbone()
        backbone.groups.reverse()
        return backbone

    with pytest.raises(ConformanceError, match="not the input end"):
        check_backbone(_entry(loader))


class _NoisyNorm(torch.nn.Module):
    """Normalisation that keeps adapting even when its group is frozen (a contract breach)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("seen", torch.zeros(1))
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        self.seen += 1  # ignores eval mode
        return x * self.scale


def test_frozen_part_that_still_changes_is_caught():
    def loader(pretrained=True):
        backbone = tiny_cnn_backbone()
        backbone.model.stem.append(_NoisyNorm())
        backbone.groups[0] += ["stem.3.scale"]
        return backbone

    with pytest.raises(ConformanceError, match=r"freeze 0.5: body.stem.3.seen changed"):
        check_backbone(_entry(loader))


_LEAK: list = []


def test_a_model_kept_alive_is_caught():
    def loader(pretrained=True):
        backbone = tiny_cnn_backbone()
        _LEAK.append(backbone.model)
        return backbone

    try:
        with pytest.raises(ConformanceError, match="memory: the model is still referenced"):
            check_backbone(_entry(loader))
    finally:
        _LEAK.clear()


def test_loader_returning_something_else_is_caught():
    entry = BackboneEntry("broken/net", "image", loader=lambda pretrained=True: "a model")
    with pytest.raises(Exception, match="expected Backbone"):
        check_backbone(entry)
    assert Backbone  # the contract type plugin authors return


@pytest.mark.parametrize(("zoo", "at_least"), [
    ("packaged", 7), ("hf-text", 8), ("hf-audio", 4), ("timm", 1000),
])
def test_builtin_catalogues_conform(zoo, at_least):
    assert len(check_catalogue(zoo)) >= at_least


@pytest.mark.parametrize(("plugin", "zoo"), [
    ("autotransfer_packaged", "packaged"), ("autotransfer_hf_text", "hf-text"),
    ("autotransfer_hf_audio", "hf-audio"), ("autotransfer_timm", None),
])
def test_builtin_plugins_load_without_a_model_library(plugin, zoo):
    check_plugin_is_light(plugin, zoo=zoo)


class _LyingCatalogue:
    def __init__(self, lookup):
        self.lookup = lookup

    @hookimpl
    def register_backbones(self, register):
        entries = [BackboneEntry(f"liar/n{i}", "image", loader=tiny_cnn_backbone)
                   for i in range(4)]
        register(BackboneCatalogue("liar", ("image",), lambda: entries, lookup=self.lookup))


@pytest.mark.parametrize(("lookup", "check"), [
    (lambda backbone_id: None, r"lookup\('liar/n0'\) gave None"),
    (lambda backbone_id: BackboneEntry(backbone_id, "image", loader=tiny_cnn_backbone),
     "should be None"),
])
def test_check_catalogue_catches_a_lookup_that_disagrees_with_the_listing(lookup, check):
    with registered_plugin(_LyingCatalogue(lookup), "liar"):
        with pytest.raises(ConformanceError, match=f"catalogue 'liar': lookup: .*{check}"):
            check_catalogue("liar")
        with pytest.raises(ConformanceError, match="no loaded plugin registers"):
            check_catalogue("nobody")
