import subprocess
import sys

import pytest
import torch

from autotransfer import Backbone, BackboneCatalogue, BackboneEntry, hookimpl
from autotransfer.contract.collect import get_registry
from autotransfer.contract.manager import _state, get_plugins, plugin_errors
from autotransfer.errors import BackboneError, PluginError
from autotransfer.testing import registered_plugin, tiny_cnn_backbone


class FakeZoo:
    """A fake third-party zoo offering one tiny backbone and one id that clashes."""

    @hookimpl
    def register_backbones(self, register):
        register(BackboneEntry("fake/tiny", "image", loader=_tiny, params=12))
        register(BackboneEntry("packaged/mobilenetv2_100", "image", loader=_tiny))


def _tiny(pretrained=True):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 4))
    return Backbone(model=model, dim=4, groups=[["1.weight", "1.bias"]], preprocess=None)


@pytest.fixture
def fake_zoo():
    get_registry()  # builtins first
    with registered_plugin(FakeZoo()):
        yield get_registry()


def test_builtin_zoos_are_plugins_with_their_hooks():
    names = {p["name"]: p for p in get_plugins()}
    expected = {
        "autotransfer_timm": ["register_backbones", "register_model_formats", "register_ranking"],
        "autotransfer_hf_text": ["register_backbones", "register_model_formats",
                                 "register_ranking", "resolve_backbone"],
        "autotransfer_hf_audio": ["register_backbones", "register_model_formats",
                                  "register_ranking", "resolve_backbone"],
        "autotransfer_packaged": ["register_backbones", "register_ranking"],
    }
    for builtin, hooks in expected.items():
        assert names[builtin]["hooks"] == hooks, builtin


def test_registered_plugin_adds_backbones_and_first_registration_of_an_id_wins(fake_zoo):
    entry = fake_zoo.get("fake/tiny")
    assert entry.load().dim == 4 and entry.zoo == "fake"
    assert "packaged/mobilenetv2_100" in fake_zoo.duplicates
    assert fake_zoo.get("packaged/mobilenetv2_100").params == 3_504_872  # the builtin


class ResolvingZoo:
    """Serves any ``acme/w<width>`` id without listing it."""

    @hookimpl
    def resolve_backbone(self, backbone_id):
        zoo, _, name = backbone_id.partition("/")
        if zoo != "acme" or not name.startswith("w"):
            return None
        width = int(name[1:])
        return BackboneEntry(backbone_id, "image",
                             loader=lambda pretrained=True: tiny_cnn_backbone(width=width))


def test_resolve_backbone_serves_ids_that_nobody_listed():
    with registered_plugin(ResolvingZoo(), "acme"):
        registry = get_registry()
        assert "acme/w12" not in {e.id for e in registry.entries()}
        assert registry.get("acme/w12").load().dim == 12
        assert "acme/w12" in {e.id for e in registry.entries()}  # kept once resolved
        with pytest.raises(BackboneError, match="unknown backbone 'acme/x'"):
            registry.get("acme/x")


def test_unknown_id_suggests_close_ids_and_the_listing_command():
    with pytest.raises(BackboneError) as info:
        get_registry().get("packaged/mobilenetv2_10")
    message = str(info.value)
    assert "did you mean packaged/mobilenetv2_100" in message
    assert "autotransfer backbones" in message


def test_entry_contract_is_checked():
    with pytest.raises(PluginError, match="zoo/name"):
        BackboneEntry("noslash", "image", loader=_tiny)
    with pytest.raises(PluginError, match="modality"):
        BackboneEntry("a/b", "", loader=_tiny)  # a registered name is checked at registration
    entry = BackboneEntry("a/b", "image", loader=lambda pretrained=True: "nope")
    with pytest.raises(PluginError, match="expected Backbone"):
        entry.load()
    with pytest.raises(BackboneError, match="unknown option 'colour'"):
        BackboneEntry("a/b", "image", loader=_tiny).load(colour=1)


def test_environment_variable_limits_which_plugins_load():
    code = (
        "from autotransfer.contract.manager import get_plugins;"
        "print(','.join(p['name'] for p in get_plugins()))"
    )
    env = {"AUTOTRANSFER_LOAD_PLUGINS": "autotransfer_packaged", "HF_HUB_OFFLINE": "1",
           "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    # the core's default plugin (the builtin modalities) loads whatever the variable says
    assert out.stdout.strip() == "autotransfer.data.modality,autotransfer_packaged"


class LazyZoo:
    """A zoo with a lazy catalogue that counts how often it is listed and looked up."""

    def __init__(self, lookup=True):
        self.listed = self.looked_up = 0
        self.lookup = lookup

    def _entries(self):
        self.listed += 1
        return [BackboneEntry(f"lazy/w{w}", "image", loader=_tiny, params=w) for w in (8, 16)]

    def _lookup(self, backbone_id):
        self.looked_up += 1
        return {e.id: e for e in self._entries()}.get(backbone_id)

    @hookimpl
    def register_backbones(self, register):
        register(BackboneCatalogue("lazy", ("image",), self._entries,
                                   lookup=self._lookup if self.lookup else None))


def test_a_lazy_catalogue_is_listed_only_when_its_zoo_is_asked():
    zoo = LazyZoo(lookup=False)
    with registered_plugin(zoo, "lazy-zoo"):
        registry = get_registry()
        assert zoo.listed == 0 and "lazy" in registry.zoos() and "lazy" not in registry.listed
        assert registry.entries("text") and zoo.listed == 0  # an image zoo: not asked
        assert [e.id for e in registry.entries(zoo="packaged")][0].startswith("packaged/")
        assert zoo.listed == 0 and "lazy" not in registry.listed
        assert "timm" not in registry.listed  # an image zoo: not listed for text
        assert registry.get("lazy/w16").params == 16 and zoo.listed == 1
        assert [e.id for e in registry.entries(zoo="lazy")] == ["lazy/w8", "lazy/w16"]
        assert zoo.listed == 1  # once per registry


def test_a_catalogue_lookup_serves_one_id_without_listing_and_unknown_ids_are_hinted():
    zoo = LazyZoo()
    with registered_plugin(zoo, "lazy-zoo"):
        registry = get_registry()
        assert registry.get("lazy/w8").params == 8
        assert (zoo.looked_up, zoo.listed) == (1, 1)  # _lookup builds its dict via _entries
        with pytest.raises(BackboneError, match=r"did you mean lazy/w8, lazy/w16\?"):
            registry.get("lazy/w9")
        with pytest.raises(BackboneError, match=r"no zoo is called 'lazzy' .*did you mean lazy/w8"):
            registry.get("lazzy/w8")
        assert [e.id for e in registry.entries(zoo="lazy")] == ["lazy/w8", "lazy/w16"]
        assert not registry.duplicates  # w8 found by lookup, then listed: one registration


class EagerClash:
    @hookimpl(trylast=True)
    def register_backbones(self, register):
        register(BackboneEntry("lazy/w8", "image", loader=_tiny, params=99))


class EarlyEager:
    @hookimpl(tryfirst=True)
    def register_backbones(self, register):
        register(BackboneEntry("lazy/w8", "image", loader=_tiny, params=99))


def test_the_first_registration_of_an_id_wins_also_against_a_catalogue(capsys):
    with registered_plugin(LazyZoo(), "lazy-zoo"), registered_plugin(EagerClash(), "late"):
        registry = get_registry()
        assert registry.get("lazy/w8").params == 8 and registry.duplicates == ["lazy/w8"]
    with registered_plugin(LazyZoo(), "lazy-zoo"), registered_plugin(EarlyEager(), "early"):
        registry = get_registry()
        assert registry.get("lazy/w8").params == 99  # registered before the catalogue
        registry.entries(zoo="lazy")
        assert registry.duplicates == ["lazy/w8"]
    assert "already registered; the first one is kept" in capsys.readouterr().err


class BrokenCatalogues:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneCatalogue("broken", ("image",), lambda: 1 / 0))
        register(BackboneCatalogue("liar", ("text",), lambda: [
            BackboneEntry("other/x", "text", loader=_tiny)]))


def test_a_broken_catalogue_is_reported_by_plugin_and_the_others_work(capsys):
    with registered_plugin(BrokenCatalogues(), "broken-zoo"):
        registry = get_registry()
        assert registry.entries(zoo="broken") == [] and registry.entries(zoo="liar") == []
        assert registry.get("packaged/mobilenetv2_100").params == 3_504_872
        errors = plugin_errors()["broken-zoo"]
        del _state.errors["broken-zoo"]
    err = capsys.readouterr().err
    assert "failed listing zoo 'broken': ZeroDivisionError" in err
    assert "catalogue 'liar' (text) gave 'other/x'" in errors
    with pytest.raises(PluginError, match="zoo is the id prefix"):
        BackboneCatalogue("a/b", ("image",), list)
    with pytest.raises(PluginError, match="modalities must be registered modalities"):
        BackboneCatalogue("a", (), list)
