import subprocess
import sys

import pytest
import torch

from autotransfer import Backbone, BackboneEntry, hookimpl
from autotransfer.contract.manager import get_plugins
from autotransfer.contract.registry import get_registry
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
        "autotransfer_timm": ["register_backbones", "register_model_formats"],
        "autotransfer_hf_text": ["register_backbones", "register_model_formats",
                                 "resolve_backbone"],
        "autotransfer_hf_audio": ["register_backbones", "register_model_formats",
                                  "resolve_backbone"],
        "autotransfer_packaged": ["register_backbones"],
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
        BackboneEntry("a/b", "video", loader=_tiny)
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
    assert out.stdout.strip() == "autotransfer_packaged"
