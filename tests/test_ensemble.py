"""The ensemble of a study's own trials: the selection on synthetic probabilities whose answer
is known, the kept predictions, and the plumbing (best.yaml, the leaderboard row, the console,
``autotransfer ensemble``) on tiny models built from a config."""

import json

import numpy as np
import pytest
import timm
import torch
import yaml

from autotransfer import hookimpl
from autotransfer.cli import main
from autotransfer.contract.backbone import BackboneEntry
from autotransfer.contract.collect import reset_registry
from autotransfer.contract.manager import pm
from autotransfer.errors import SpaceError
from autotransfer.finetune import ensemble, predictions
from autotransfer.finetune.records import trial_records
from autotransfer.space.objectives import accuracy
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search
from autotransfer_timm import backbone_from_timm
from conftest import write_images


def _one_hot_probs(preds: np.ndarray, n_classes: int, confidence: float) -> np.ndarray:
    probs = np.full((len(preds), n_classes), (1 - confidence) / (n_classes - 1))
    probs[np.arange(len(preds)), preds] = confidence
    return probs


def _complementary(n: int = 40):
    """Two models, each wrong (with low confidence) on its own half of the examples and right
    (confidently) elsewhere: each alone scores 0.5, their average is right everywhere. A third
    model is confidently wrong everywhere."""
    labels = np.arange(n) % 2
    a = _one_hot_probs(labels, 2, 0.9)
    b = _one_hot_probs(labels, 2, 0.9)
    a[: n // 2] = _one_hot_probs(1 - labels[: n // 2], 2, 0.6)  # a wrong on the first half
    b[n // 2:] = _one_hot_probs(1 - labels[n // 2:], 2, 0.6)  # b wrong on the second
    bad = _one_hot_probs(1 - labels, 2, 0.99)
    return np.stack([a, b, bad]), labels


def test_selection_averages_two_complementary_models_and_leaves_out_the_bad_one():
    probs, labels = _complementary()
    assert accuracy(labels, probs[0].argmax(-1)) == accuracy(labels, probs[1].argmax(-1)) == 0.5
    chosen = ensemble.select(probs, labels, accuracy)
    assert chosen.weights == {0: 0.5, 1: 0.5}  # the earliest round that reaches 1.0: two
    assert chosen.first_score == 0.5 and chosen.score == 1.0
    assert accuracy(labels, chosen.predict(probs)) == 1.0


def test_one_member_is_the_best_single_model_and_a_bound_keeps_a_member_out():
    probs, labels = _complementary()
    probs = np.concatenate([probs, _one_hot_probs(labels, 2, 0.7)[None]])  # 4th: right always
    assert ensemble.select(probs, labels, accuracy, max_members=1).weights == {3: 1.0}
    # without model 3 allowed, the complementary pair is what reaches 1.0
    chosen = ensemble.select(probs, labels, accuracy, fits=lambda members: 3 not in members)
    assert set(chosen.weights) == {0, 1}


def test_an_addition_that_buys_nothing_is_not_kept():
    labels = np.arange(20) % 2
    good = _one_hot_probs(labels, 2, 0.8)
    chosen = ensemble.select(np.stack([good, good * 0.5 + 0.25]), labels, accuracy)
    assert chosen.rounds == 1 and chosen.weights == {0: 1.0}


def test_the_halves_are_fixed_disjoint_and_stratified():
    labels = np.array([0] * 7 + [1] * 5 + [2] * 4)
    a, b = ensemble.halves(labels)
    assert sorted([*a, *b]) == list(range(16)) and not set(a) & set(b)
    assert abs(len(a) - len(b)) <= 1
    for c in (0, 1, 2):
        assert abs((labels[a] == c).sum() - (labels[b] == c).sum()) <= 1
    again = ensemble.halves(labels)
    assert np.array_equal(a, again[0]) and np.array_equal(b, again[1])


def test_cross_fitting_predicts_each_half_with_the_other_half_s_selection():
    probs, labels = _complementary()
    fit = ensemble.cross_fit(probs, labels, accuracy)
    assert np.array_equal(fit.preds[fit.b], fit.on_a.predict(probs[:, fit.b]))
    assert np.array_equal(fit.preds[fit.a], fit.on_b.predict(probs[:, fit.a]))
    assert accuracy(labels, fit.preds) == 1.0  # the pair generalises across the halves
    single = ensemble.cross_fit(probs, labels, accuracy, max_members=1)
    assert accuracy(labels, single.preds) == 0.5


def test_predictions_round_trip_in_float16_and_their_size_is_small():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 300)
    logits = rng.normal(size=(300, 10)) + 3 * np.eye(10)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    stored = predictions.encode({"val": (probs, labels)})
    back = predictions.decode(stored)
    assert np.abs(back["val"][0] - probs).max() < 1e-3
    assert np.array_equal(back["val"][1], labels)
    assert len(stored["npz"]) < 10_000  # ~8 KB of text for 10 classes x 300 examples
    with pytest.raises(ValueError, match="unknown format"):
        predictions.decode({"format": "pickle", "npz": ""})


def test_an_ensemble_s_costs_are_its_members_costs_combined():
    from autotransfer.finetune.records import TrialRecord
    from autotransfer.study.results.ensemble import combined_costs

    def record(number, **costs):
        return TrialRecord(number=number, state="complete", value=0.5, score=0.5, label="x",
                           sampled={}, epochs_reported=1, costs=costs)

    found = combined_costs([record(0, latency_ms=2.0, params=100, throughput=100.0),
                            record(1, latency_ms=3.5, params=50, throughput=100.0,
                                   size_mb=1.0)])
    # latency adds up, a count stays a count, a rate is 1 / sum(1 / rate), size_mb: one lacks it
    assert found == {"latency_ms": 5.5, "params_count": 150, "throughput": 50.0}


def test_the_space_s_ensemble_key():
    base = {"backbones": ["tiny/a"], "epochs": 1}
    assert parse_space(base).ensemble.max_members == 5
    assert parse_space({**base, "ensemble": {"max_members": 2}}).ensemble.max_members == 2
    assert parse_space({**base, "ensemble": False}).ensemble is None
    with pytest.raises(SpaceError, match="ensemble.max_members"):
        parse_space({**base, "ensemble": {"max_members": 0}})


# --- plumbing: a tiny search ----------------------------------------------------------------


def _loader(seed: int):
    def load(pretrained=True):
        torch.manual_seed(seed)
        return backbone_from_timm(timm.create_model("test_efficientnet", num_classes=0))

    return load


class TinyZoo:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneEntry("tiny/a", "image", loader=_loader(1)))
        register(BackboneEntry("tiny/b", "image", loader=_loader(2)))


@pytest.fixture
def tiny_zoo():
    pm.register(TinyZoo(), name="tiny-ensemble-zoo")
    reset_registry()
    try:
        yield
    finally:
        pm.unregister(name="tiny-ensemble-zoo")
        reset_registry()


@pytest.fixture
def three_splits(tmp_path):
    """train/, val/ and test/ of three classes of random images."""
    for split, n in (("train", 8), ("val", 6), ("test", 4)):
        for cls, seed in (("cat", 1), ("dog", 2), ("fox", 3)):
            write_images(tmp_path / "data" / split / cls, n, seed=seed + 10 * len(split))
    return tmp_path / "data"


SPACE = {"backbones": ["tiny/a", "tiny/b"], "epochs": 1, "pruner": "none",
         "params": {"image_size": 32, "batch_size": 8, "augment": "none",
                    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}}


def test_a_search_keeps_predictions_and_writes_the_ensemble(tiny_zoo, three_splits, tmp_path,
                                                           capsys):
    storage = f"sqlite:///{tmp_path}/s.db"
    main(["search", str(three_splits), "--space", _space_file(tmp_path, SPACE), "--trials",
          "4", "--storage", storage, "--study", "s", "--out", str(tmp_path / "out"),
          "--no-transfer-effect"])
    said = capsys.readouterr().out
    records = trial_records(__import__("optuna").load_study(study_name="s", storage=storage),
                            ("complete",))
    kept = records[0].probabilities()
    assert kept["val"][0].shape == (18, 3) and kept["test"][0].shape == (12, 3)
    assert np.allclose(kept["val"][0].sum(1), 1.0, atol=1e-2)
    # the kept predictions are those the trial was scored with
    matrix = np.asarray(records[0].confusion["val"])
    assert (kept["val"][0].argmax(1) == kept["val"][1]).sum() == np.trace(matrix)

    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    section = best["ensemble"]
    assert section["kind"] == "ensemble" and section["members"]
    assert sum(m["weight"] for m in section["members"]) == pytest.approx(1.0, abs=1e-3)
    assert {"val_score", "val_score_ci95", "single_val_score", "test_score",
            "test_score_ci95", "latency_ms", "note"} <= set(section)
    assert section["single"]["trial"] == best["source"]["trial"]
    assert section["latency_ms"] == pytest.approx(
        sum(m["latency_ms"] for m in section["members"]), rel=1e-3)
    assert "ensemble of trials" in said  # the console line and the leaderboard row
    assert "ensemble of trials" in (tmp_path / "out" / "report.md").read_text()
    assert "ens" not in {str(r["trial"]) for r in _csv(tmp_path / "out" / "leaderboard.csv")}

    # again from the stored study, with another bound: no trial runs
    main(["ensemble", "s", "--storage", storage, "--max-members", "1", "--out",
          str(tmp_path / "out")])
    said = capsys.readouterr().out
    assert "Single pick vs ensemble" in said and "no ensemble beyond one model" in said
    again = yaml.safe_load((tmp_path / "out" / "ensemble.yaml").read_text())["ensemble"]
    assert len(again["members"]) == 1
    assert yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())["ensemble"] == again
    assert len(trial_records(__import__("optuna").load_study(study_name="s",
                                                             storage=storage))) == 4


def test_ensemble_false_writes_none(tiny_zoo, three_splits, tmp_path):
    result = search(three_splits, parse_space({**SPACE, "ensemble": False}),
                    storage=f"sqlite:///{tmp_path}/s.db", study_name="off",
                    out=tmp_path / "out", trials=2, transfer_effect=False)
    assert "ensemble" not in result.best


def _space_file(tmp_path, space) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return str(path)


def _csv(path):
    import csv

    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --- the ensemble refit, exported and predicted (train --ensemble) ---------------------------

PARAMS = {"image_size": 32, "batch_size": 8, "augment": "none"}


def _best_with_ensemble(tmp_path, data, *, pick: int = 0) -> str:
    """A best.yaml whose ensemble is trials 0 (tiny/a) and 1 (tiny/b), written by hand: the
    members' configurations come from the section itself, no study is read."""
    members = [{"trial": 0, "backbone": "tiny/a", "params": {**PARAMS, "lr": 0.01},
                "val_score": 0.5, "weight": 0.6},
               {"trial": 1, "backbone": "tiny/b", "params": {**PARAMS, "lr": 0.03},
                "val_score": 0.4, "weight": 0.4},
               {"trial": 2, "backbone": "tiny/b", "params": {**PARAMS, "lr": 0.002},
                "val_score": 0.45, "weight": 0.0}]
    chosen = next(m for m in members if m["trial"] == pick)
    best = {"schema": 2, "backbone": chosen["backbone"], "params": chosen["params"],
            "epochs": 1, "metric": "accuracy", "classes": ["cat", "dog", "fox"],
            "source": {"study": "s", "trial": pick, "seed": 0, "data": str(data)},
            "pareto_front": None,
            "ensemble": {"kind": "ensemble", "members": members[:2], "val_score": 0.6}}
    path = tmp_path / "best.yaml"
    path.write_text(yaml.safe_dump(best, sort_keys=False))
    return str(path)


def test_train_ensemble_exports_each_member_once_and_predict_averages_them(
        tiny_zoo, three_splits, tmp_path, capsys):
    best = _best_with_ensemble(tmp_path, three_splits)
    out = tmp_path / "ens"
    main(["train", best, "--out", str(out), "--ensemble", "--device", "cpu"])
    said = capsys.readouterr().out
    manifest = json.loads((out / "ensemble.json").read_text())
    # the pick (trial 0) is a member: two models trained, not three
    assert sorted(p.name for p in out.iterdir()) == ["ensemble.json", "trial-0", "trial-1"]
    assert [(m["trial"], m["weight"]) for m in manifest["members"]] == [(0, 0.6), (1, 0.4)]
    assert manifest["pick"]["member"] and manifest["classes"] == ["cat", "dog", "fox"]
    assert "ensemble of 2" in said and "2 models trained" in said
    # each member is an ordinary model folder of its own backbone
    assert json.loads((out / "trial-1" / "autotransfer.json").read_text())["backbone"] == "tiny/b"

    test_images = str(three_splits / "test")
    main(["predict", str(out), test_images, "--json", "--device", "cpu"])
    together = json.loads(capsys.readouterr().out)
    alone = []
    for member in ("trial-0", "trial-1"):
        main(["predict", str(out / member), test_images, "--json", "--device", "cpu"])
        alone.append(json.loads(capsys.readouterr().out))
    assert [p["input"] for p in together] == [p["input"] for p in alone[0]]
    for row, a, b in zip(together, *alone, strict=True):
        for c in ("cat", "dog", "fox"):
            assert row["probabilities"][c] == pytest.approx(
                0.6 * a["probabilities"][c] + 0.4 * b["probabilities"][c], abs=1e-6)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)

    # evaluate scores the same ensemble as the refit did on the test split
    main(["evaluate", str(out), str(three_splits), "--json", "--device", "cpu"])
    scored = json.loads(capsys.readouterr().out)
    assert scored["examples"] == 12
    assert scored["accuracy"] == pytest.approx(manifest["test"]["accuracy"], abs=1e-4)


def test_train_ensemble_adds_a_pick_that_is_not_a_member_and_refuses_no_ensemble(
        tiny_zoo, three_splits, tmp_path):
    from autotransfer import train_ensemble

    outcome = train_ensemble(_best_with_ensemble(tmp_path, three_splits, pick=2),
                             out=tmp_path / "ens", device="cpu")
    assert outcome.trained == 3 and outcome.pick == 2 and 2 not in outcome.weights
    assert not outcome.manifest["pick"]["member"]
    assert (tmp_path / "ens" / "trial-2" / "autotransfer.json").is_file()

    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    best["ensemble"] = {"kind": "ensemble", "members": [], "note": "not built: no trial"}
    with pytest.raises(SpaceError, match="no ensemble with members .not built: no trial"):
        train_ensemble(best, out=tmp_path / "none")
