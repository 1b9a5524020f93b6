"""A modality is a plugin point: a package outside the core (``tests/toy_vector_modality.py``)
adds the ``vector`` modality with its reader, detection and per-file check, and a zoo for it,
through the ``register_modalities`` hook, and a search, a refit and predict run on it end to
end with no core file knowing it."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from autotransfer.cli import main
from autotransfer.contract.collect import get_modalities, get_registry
from autotransfer.contract.manager import _state
from autotransfer.data import detect_modality, load_data
from autotransfer.data.inspect import inspect
from autotransfer.data.options import DataOptions, column_roles
from autotransfer.errors import DataError, OptionError
from autotransfer.model.predict import predict
from autotransfer.model.refit import train
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search
from autotransfer.testing import check_backbone, registered_plugin
from toy_vector_modality import DIM, SUFFIX, VectorPlugin, write_vector

SPACE = {"backbones": ["toyvec/mlp"], "epochs": 3, "pruner": "none",
         "params": {"lr": 1e-2, "freeze_fraction": 0.0, "batch_size": 8}}


@pytest.fixture
def vectors(tmp_path) -> Path:
    """``root/train/<up|down>/`` (24 each) and ``root/val/<up|down>/`` (8 each): classes far
    apart (means +1 and -1, noise 0.3), and one training file that is not a vector."""
    rng = np.random.default_rng(0)
    root = tmp_path / "vectors"
    for split, n in (("train", 24), ("val", 8)):
        for name, sign in (("up", 1.0), ("down", -1.0)):
            for i in range(n):
                write_vector(root / split / name / f"{i}{SUFFIX}",
                             sign + 0.3 * rng.normal(size=DIM))
    (root / "train" / "up" / f"broken{SUFFIX}").write_text("not numbers\n")
    return root


@pytest.fixture
def plugin():
    with registered_plugin(VectorPlugin(), "toy-vectors") as registered:
        yield registered


def test_the_plugin_registers_a_modality_beside_the_builtins(plugin, vectors):
    assert list(get_modalities()) == ["image", "text", "audio", "vector"]
    assert column_roles()["vector"] is None  # its column role, for tables and HF datasets
    assert DataOptions(columns={"vector": "v"}).column("vector") == "v"
    assert detect_modality(vectors) == "vector"
    data = load_data(vectors)
    assert (data.modality, data.classes, len(data.train), len(data.val)) == (
        "vector", ["down", "up"], 49, 16)
    found = inspect(vectors)  # the per-file check before trial 1 names the broken file
    assert [p.name for p, _ in found.skipped] == [f"broken{SUFFIX}"]
    assert found.counts["train"] == {"down": 24, "up": 24}
    check_backbone("toyvec/mlp")  # the conformance kit writes samples with the modality's writer


def test_a_search_and_a_refit_run_on_the_plugins_modality(plugin, vectors, tmp_path):
    with pytest.warns(UserWarning, match=f"skipped 1 unusable vector file.*broken{SUFFIX}"):
        result = search(vectors, parse_space(SPACE), trials=2, device="cpu",
                        storage=f"sqlite:///{tmp_path}/s.db", out=tmp_path / "out")
    assert result.best is not None and result.best["backbone"] == "toyvec/mlp"
    assert result.best["val_score"] >= 0.9  # the classes are far apart: it did learn
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert best["source"]["data_options"]["modality"] == "vector"  # detected, recorded resolved
    with pytest.warns(UserWarning, match="skipped 1 unusable vector file"):  # the refit too
        outcome = train(tmp_path / "out" / "best.yaml", out=tmp_path / "model", device="cpu",
                        refit_on="train")
    assert outcome.val is not None and outcome.val["accuracy"] >= 0.9
    predictions = predict(tmp_path / "model", [vectors / "val"], device="cpu")
    assert len(predictions) == 16  # the folder's .vec files, found by the modality's suffix
    right = sum(p.label == Path(p.input).parent.name for p in predictions)
    assert right >= 14


def test_the_command_line_takes_a_plugins_modality_and_refuses_an_unknown_one(plugin, vectors,
                                                                               capsys):
    main(["inspect", str(vectors), "--modality", "vector"])
    assert "vector, 2 classes" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:
        main(["inspect", str(vectors), "--modality", "video"])
    assert usage.value.code == 2
    assert "'video' is not one of 'image', 'text', 'audio', 'vector'" in capsys.readouterr().err


def test_without_the_plugin_its_data_and_backbones_are_refused(vectors, capsys):
    with pytest.raises(DataError, match="cannot tell the modality .*no image or audio files"):
        detect_modality(vectors)
    with pytest.raises(DataError, match="modality must be one of image, text, audio, got "
                                        "'vector'"):
        load_data(vectors, modality="vector")
    with pytest.raises(OptionError, match="unknown column role 'vector'"):
        DataOptions(columns={"vector": "v"})

    class ZooOnly:  # the zoo without its modality: its entry is reported, the others work
        register_backbones = VectorPlugin.register_backbones

    with registered_plugin(ZooOnly(), "zoo-only"):
        registry = get_registry()
        assert not registry.entries(zoo="toyvec")
        assert registry.entries("image")
        error = _state.errors.pop("zoo-only")
    assert "toyvec/mlp: modality must be one of image, text, audio" in error
    assert "got 'vector'" in error and "zoo-only" in capsys.readouterr().err
