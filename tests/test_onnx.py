"""The ONNX export (#38): beside the native one, checked against PyTorch every time, int8 with
its accuracy and latency, predict with ONNX Runtime alone, and the docs' plain script run
without autotransfer."""

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
import yaml

import autotransfer
from autotransfer.contract.collect import get_backbone
from autotransfer.data import load_data
from autotransfer.errors import OptionError
from autotransfer.finetune.trainer import TransferModel
from autotransfer.model import onnx_export
from autotransfer.model.export import export_model, load_model
from autotransfer.model.onnx_export import ExportWarning
from autotransfer.model.predict import predict

pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[1]
BEST = {
    "backbone": "packaged/mobilenetv2_100",
    "params": {"freeze_fraction": 1.0, "lr": 3.0e-3, "batch_size": 32, "image_size": 64},
    "epochs": 1,
    "metric": "accuracy",
}


@pytest.fixture(autouse=True)
def short_latency(monkeypatch):
    monkeypatch.setattr(onnx_export, "LATENCY_BUDGET_S", 0.05)


@pytest.fixture(scope="module")
def image_export(fashion_mnist, tmp_path_factory):
    """A real refit (packaged MobileNetV2, a linear probe at 64 px) exported with int8."""
    work = tmp_path_factory.mktemp("onnx")
    best = work / "best.yaml"
    best.write_text(yaml.safe_dump({**BEST, "source": {"data": str(fashion_mnist)}}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(onnx_export, "LATENCY_BUDGET_S", 0.05)
        outcome = autotransfer.train(best, out=work / "model", export="onnx", quantize="int8")
    return outcome.model_dir


def _manifest(model_dir: Path) -> dict:
    return json.loads((model_dir / "onnx" / "manifest.json").read_text())


@pytest.mark.slow
def test_train_export_onnx_writes_a_checked_folder_beside_the_native_model(image_export):
    meta = json.loads((image_export / "autotransfer.json").read_text())
    assert (image_export / "model.safetensors").is_file()  # the native export stands
    assert meta["library"] == "timm" and meta["exports"]["onnx"]["folder"] == "onnx"
    manifest = _manifest(image_export)
    assert manifest["classes"] == meta["classes"] and manifest["modality"] == "image"
    assert manifest["inputs"] == [{"name": "pixel_values", "shape": ["batch", 3, 64, 64],
                                   "dtype": "float32"}]
    assert manifest["preprocess"]["size"] == 64 and manifest["preprocess"]["resize"] == 73
    assert {"torch", "onnx", "onnxruntime", "timm", "opset"} <= set(manifest["versions"])
    check = manifest["check"]
    assert check["split"] == "val" and check["n"] == 60  # the search's validation split
    assert check["agreement"] >= 0.995 and check["passed"] and check["max_prob_diff"] < 1e-4
    assert set(check["accuracy"]) == {"val", "test"}
    assert meta["exports"]["onnx"]["check"] == check


@pytest.mark.slow
def test_int8_is_static_for_a_cnn_and_checked_with_accuracy_and_latency(image_export):
    manifest = _manifest(image_export)
    int8 = manifest["int8"]
    assert (image_export / "onnx" / int8["file"]).is_file()
    assert int8["method"] == "static" and int8["format"] == "QDQ"
    assert int8["calibration"].startswith("128 samples drawn from the training split")
    assert {"val", "test"} == set(int8["check"]["accuracy"])
    assert 0 <= int8["check"]["agreement"] <= 1 and "passed" in int8["check"]
    for batch in ("batch_1", "batch_32"):
        assert set(manifest["latency_ms"][batch]) == {"pytorch_fp32", "onnxruntime_fp32",
                                                      "onnxruntime_int8"}
        assert all(ms > 0 for ms in manifest["latency_ms"][batch].values())


@pytest.mark.slow
def test_predict_through_onnxruntime_gives_pytorch_labels_on_the_test_split(
        image_export, fashion_mnist):
    native = predict(image_export, [fashion_mnist / "test"])
    for path in (image_export / "onnx" / "model.onnx", image_export / "onnx"):
        onnx = predict(path, [fashion_mnist / "test"])
        assert [p.input for p in onnx] == [p.input for p in native] and len(onnx) == 100
        assert [p.label for p in onnx] == [p.label for p in native]
        assert (max(abs(a.probability - b.probability)
                    for a, b in zip(onnx, native, strict=True))
                   < 1e-4)
    via_dir = predict(image_export, [fashion_mnist / "test"], runtime="onnxruntime")
    assert [p.label for p in via_dir] == [p.label for p in native]


def _docs_script() -> str:
    sys.path.insert(0, str(REPO / "tests"))
    import docblocks

    blocks = [b for b in docblocks.parse(REPO / "docs" / "train-predict.md")
              if b.lang == "python" and "onnxruntime" in b.code]
    assert len(blocks) == 1, "docs/train-predict.md shows one plain onnxruntime script"
    return blocks[0].code


@pytest.mark.slow
def test_the_docs_script_reproduces_predict_without_autotransfer(image_export, fashion_mnist,
                                                                 tmp_path):
    """The docs' script, run with `python -I -S` and only site-packages on sys.path (no .pth
    file is read, so the editable autotransfer is not importable), autotransfer and torch
    blocked outright: a fresh environment as far as the script can tell."""
    (tmp_path / "docs-model").symlink_to(image_export)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "fashion-mnist").symlink_to(fashion_mnist)
    guard = (f"import sys; sys.path[:] = [p for p in sys.path if 'site-packages' not in p] + "
             f"[{sysconfig.get_paths()['purelib']!r}]\n"
             "for name in ('autotransfer', 'torch', 'timm', 'transformers'): "
             "sys.modules[name] = None\n")
    image = sorted((fashion_mnist / "test" / "bag").iterdir())[0]  # the docs' is make demo's
    script = _docs_script().replace("data/fashion-mnist/test/bag/t10k-01566.png", str(image))
    run = subprocess.run([sys.executable, "-I", "-S", "-c", guard + script],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    label, probability = run.stdout.split()
    expected = predict(image_export, [image])[0]
    assert label == expected.label and float(probability) == pytest.approx(
        expected.probability, abs=1e-5)


@pytest.fixture(scope="module")
def small_text(rotten_tomatoes):
    return load_data(rotten_tomatoes, val_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def small_audio(keywords):
    return load_data(keywords, val_fraction=0.2, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize(("backbone_id", "params", "data", "files", "inputs"), [
    ("packaged/all-MiniLM-L6-v2", {"max_length": 32}, "small_text", "tokenizer.json",
     {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}),
    ("packaged/whisper-tiny.en", {"clip_seconds": 0.5}, "small_audio",
     "preprocessor_config.json", {"input_features": ["batch", 80, 50]}),
])
def test_packaged_text_and_audio_encoders_export_and_agree_with_pytorch(
        backbone_id, params, data, files, inputs, request, tmp_path):
    data = request.getfixturevalue(data)
    torch.manual_seed(0)
    backbone = get_backbone(backbone_id).load()
    preprocess = backbone.configured(params)
    model = TransferModel(backbone, len(data.classes)).eval()
    out = export_model(model, preprocess, tmp_path / "model", classes=data.classes,
                       modality=data.modality, backbone=backbone_id, params=params,
                       metrics={}, extra=("onnx",), data=data, quantize="int8")
    manifest = _manifest(out)
    assert (out / "onnx" / files).is_file()
    assert {i["name"]: i["shape"] for i in manifest["inputs"]} == inputs
    assert manifest["check"]["passed"] and manifest["check"]["agreement"] >= 0.995
    assert manifest["check"]["max_prob_diff"] < 1e-4
    assert manifest["int8"]["method"] == "dynamic"  # transformer encoders
    # ONNX Runtime alone, from the folder, gives PyTorch's labels on the validation split
    val = data.val.texts if data.modality == "text" else data.val.paths
    texts, paths = (val, []) if data.modality == "text" else ([], val)
    onnx = predict(out / "onnx", paths, texts=texts)
    native = predict(out, paths, texts=texts)
    assert [p.label for p in onnx] == [p.label for p in native]


def test_a_model_that_cannot_be_exported_says_why_and_the_native_export_completes(
        fashion_mnist, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::made_up' is not supported\nmore")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    data = load_data(fashion_mnist, val_fraction=0.2, seed=0)
    backbone = get_backbone("packaged/mobilenetv2_100").load(pretrained=False)
    preprocess = backbone.configured({"image_size": 32})
    model = TransferModel(backbone, len(data.classes))
    with pytest.warns(ExportWarning) as caught:
        out = export_model(model, preprocess, tmp_path / "m", classes=data.classes,
                           modality="image", backbone="packaged/mobilenetv2_100",
                           params={"image_size": 32}, metrics={}, extra=("onnx",), data=data)
    message = str(caught[0].message)
    assert "\n" not in message and "aten::made_up" in message
    assert message.startswith("ONNX export skipped, the native export is complete")
    meta = json.loads((out / "autotransfer.json").read_text())
    assert meta["exports"]["onnx"] == {"error": message}
    assert load_model(out).classes == data.classes  # the native export is whole


def test_export_and_quantize_are_checked_before_training(fashion_mnist, tmp_path):
    best = {**BEST, "source": {"data": str(fashion_mnist)}}
    cases = [({"export": "tflite"}, "export must be one of onnx, got 'tflite'"),
             ({"quantize": "int8"}, "quantize=int8 quantises the ONNX export; add export onnx"),
             ({"export": "onnx", "quantize": "int4"}, "quantize must be one of int8")]
    for kwargs, expected in cases:
        with pytest.raises(OptionError, match=expected):
            autotransfer.train(best, out=tmp_path / "m", **kwargs)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_latency_can_be_measured_on_what_ships_in_onnxruntime(fashion_mnist):
    from autotransfer.finetune.cost import measure_cost
    from autotransfer.finetune.onnx_graph import OnnxError

    data = load_data(fashion_mnist, val_fraction=0.2, seed=0)
    backbone = get_backbone("packaged/mobilenetv2_100").load(pretrained=False)
    preprocess = backbone.configured({"image_size": 32})
    model = TransferModel(backbone, len(data.classes)).eval()
    cpu = torch.device("cpu")
    for precision in ("fp32", "int8"):
        cost = measure_cost(model, preprocess, data, device=cpu, batch_size=8, budget_s=0.05,
                            runtime="onnxruntime", precision=precision)
        assert cost["latency_runtime"] == f"onnxruntime {precision}"
        assert cost["latency_ms"] > 0 and cost["throughput"] > 0
    eager = measure_cost(model, preprocess, data, device=cpu, batch_size=8, budget_s=0.05)
    assert eager["latency_runtime"] == "pytorch"
    with pytest.raises(OnnxError, match="latency runtime must be one of pytorch, onnxruntime"):
        measure_cost(model, preprocess, data, device=cpu, batch_size=8, precision="int8")


def test_a_space_asks_for_latency_in_onnxruntime_and_int8_needs_it():
    from autotransfer.errors import SpaceError
    from autotransfer.space.schema import parse_space

    space = parse_space({"backbones": ["packaged/mobilenetv2_100"], "epochs": 1,
                         "latency": {"runtime": "onnxruntime", "precision": "int8"}})
    assert (space.latency.runtime, space.latency.precision) == ("onnxruntime", "int8")
    assert parse_space({"backbones": ["packaged/mobilenetv2_100"], "epochs": 1}
                       ).latency.runtime == "pytorch"
    with pytest.raises(SpaceError, match="precision int8 is measured in ONNX Runtime"):
        parse_space({"backbones": ["packaged/mobilenetv2_100"], "epochs": 1,
                     "latency": {"precision": "int8"}})


@pytest.mark.slow
def test_a_search_measures_latency_of_the_exported_model(class_folders, tmp_path):
    # the front and the constraints are about what ships: ONNX Runtime's latency of the export
    import optuna

    from autotransfer.space.schema import parse_space

    space = parse_space({
        "backbones": [{"id": "packaged/mobilenetv2_100", "pretrained": False}], "epochs": 1,
        "params": {"image_size": 32, "batch_size": 8}, "constraints": {"latency_ms": 10_000},
        "latency": {"runtime": "onnxruntime", "precision": "fp32"}})
    storage = f"sqlite:///{tmp_path / 's.db'}"
    autotransfer.search(class_folders, space, trials=1, references=False, storage=storage,
                        out=tmp_path / "out", history=False)
    trial = optuna.load_study(study_name=None, storage=storage).trials[0]
    assert trial.user_attrs["latency_runtime"] == "onnxruntime fp32"
    assert trial.user_attrs["latency_ms"] > 0
