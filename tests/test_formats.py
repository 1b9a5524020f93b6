"""Native model formats come from the zoos (hook register_model_formats), third-party ones too."""

from pathlib import Path

import pytest
import safetensors.torch
import torch

from autotransfer.errors import BackboneError
from autotransfer.model.export import ModelDirError, export_model, load_model
from autotransfer.plugin import ImagePreprocess, ModelFormat, TransferModel, hookimpl
from autotransfer.testing import FakeZoo, TinyCNN, registered_plugin, tiny_cnn_backbone


def _export(model, preprocess, out: Path, classes):
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                                out / "tiny.safetensors")
    return {"preprocess": {"size": preprocess.size}, "width": model.body.norm.num_features}


def _load(directory: Path, meta, trust_remote_code=False):
    backbone = tiny_cnn_backbone(width=meta["width"])
    model = TransferModel(backbone, len(meta["classes"]))
    model.load_state_dict(safetensors.torch.load_file(directory / "tiny.safetensors"))
    return model, ImagePreprocess(meta["preprocess"]["size"], (0.5,) * 3, (0.5,) * 3,
                                  "bilinear", 1.0)


class TinyFormatZoo(FakeZoo):
    """A third-party zoo that also saves its networks natively."""

    @hookimpl
    def register_model_formats(self, register) -> None:
        register(ModelFormat("tiny-cnn", can_export=lambda body, modality: isinstance(
            body, TinyCNN), export=_export, load=_load, modality="image"))


def _model():
    backbone = tiny_cnn_backbone()
    return TransferModel(backbone, 3).eval(), backbone.preprocess


def test_a_third_party_zoo_exports_natively_and_predict_loads_it_back(tmp_path):
    model, preprocess = _model()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        expected = model(x)
    with registered_plugin(TinyFormatZoo()):
        out = export_model(model, preprocess, tmp_path / "m", classes=["a", "b", "c"],
                           modality="image", backbone="fake/tiny-cnn", params={}, metrics={})
        loaded = load_model(out)
    assert loaded.meta["library"] == "tiny-cnn" and loaded.classes == ["a", "b", "c"]
    with torch.inference_mode():
        assert torch.allclose(loaded.model(x), expected)


def test_without_a_format_export_and_load_say_so_in_one_line(tmp_path):
    model, preprocess = _model()
    with registered_plugin(FakeZoo()), pytest.raises(BackboneError, match="no loaded zoo offers"):
        export_model(model, preprocess, tmp_path / "m", classes=["a", "b", "c"],
                     modality="image", backbone="fake/tiny-cnn", params={}, metrics={})
    with registered_plugin(TinyFormatZoo()):
        out = export_model(model, preprocess, tmp_path / "m", classes=["a", "b", "c"],
                           modality="image", backbone="fake/tiny-cnn", params={}, metrics={})
    with registered_plugin(FakeZoo()), pytest.raises(ModelDirError, match="library 'tiny-cnn'"):
        load_model(out)
