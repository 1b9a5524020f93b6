"""What the search bought: reference trials, the transfer effect, per-class scores, divergence
caught, and where they show (best.yaml, report.md, plots, the console). Tiny timm models built
from a config: these tests are about plumbing, not about how well a backbone transfers."""

import optuna
import pytest
import timm
import torch
import yaml

from autotransfer import hookimpl
from autotransfer.cli import main
from autotransfer.contract.backbone import BackboneEntry
from autotransfer.contract.collect import reset_registry
from autotransfer.contract.manager import pm
from autotransfer.finetune.records import StudyRecord
from autotransfer.space.hyperparameters import for_modality
from autotransfer.space.schema import parse_space
from autotransfer.study.references.trials import enqueue_references, reference_params
from autotransfer.study.results.scores import (
    chance_level,
    divergence,
    per_class_scores,
    worst_class,
)
from autotransfer.study.store.storage import StudyLock, make_storage
from autotransfer.study.study import search
from autotransfer_timm import backbone_from_timm
from conftest import write_images

LOADS: list[tuple[str, bool]] = []


def _loader(name):
    def load(pretrained=True):
        LOADS.append((name, pretrained))
        if pretrained:  # "pretrained": the same weights every time
            torch.manual_seed(1234)
        return backbone_from_timm(timm.create_model("test_efficientnet", num_classes=0))

    return load


class TinyZoo:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneEntry("tiny/a", "image", loader=_loader("a")))
        register(BackboneEntry("tiny/b", "image", loader=_loader("b")))


@pytest.fixture
def tiny_zoo():
    pm.register(TinyZoo(), name="tiny-zoo")
    reset_registry()
    LOADS.clear()
    try:
        yield
    finally:
        pm.unregister(name="tiny-zoo")
        reset_registry()


SPACE = {
    "backbones": ["tiny/a", "tiny/b"],
    "epochs": 1,
    "pruner": "none",
    "params": {
        "image_size": 32,
        "batch_size": 8,
        "freeze_fraction": {"type": "float", "low": 0.0, "high": 1.0},
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "head_lr_multiplier": {"type": "float", "low": 20.0, "high": 30.0},
        "augment": {"type": "categorical", "choices": ["none"]},
    },
}


def _run(data, tmp_path, *, name="s", space=SPACE, **options):
    return search(data, parse_space(space), storage=f"sqlite:///{tmp_path}/s.db",
                  study_name=name, out=tmp_path / "out", seed=0, **options)


def test_reference_params_are_the_documented_defaults_within_the_space():
    found = reference_params(parse_space(SPACE))
    assert [(kind, p["backbone"]) for kind, p in found] == [
        ("linear_probe", "tiny/a"), ("linear_probe", "tiny/b"),
        ("default", "tiny/a"), ("default", "tiny/b")]
    probe, default = found[0][1], found[2][1]
    assert probe["freeze_fraction"] == 1.0 and default["freeze_fraction"] == 0.0
    assert default["lr"] == 1e-3  # the documented default, inside the range
    assert default["head_lr_multiplier"] == 20.0  # default 10 moved into [20, 30]
    assert default["augment"] == "none"  # default "flip" is not a choice
    fixed = {**SPACE, "params": {**SPACE["params"], "freeze_fraction": 1.0}}
    assert [kind for kind, _ in reference_params(parse_space(fixed))] == ["linear_probe"] * 2
    # a categorical freeze_fraction: the probe takes the choice nearest 1 (it crashed)
    listed = {**SPACE, "params": {**SPACE["params"], "freeze_fraction": {
        "type": "categorical", "choices": [0.0, 0.75]}}}
    assert reference_params(parse_space(listed))[0][1]["freeze_fraction"] == 0.75


def test_references_run_first_count_towards_trials_and_are_marked(tiny_zoo, class_folders,
                                                                   tmp_path):
    listed = {**SPACE, "budget": {"reference_order": "listed"}}  # the space's order
    result = _run(class_folders, tmp_path, trials=5, space=listed)
    trials = result.study.get_trials()
    assert len(trials) == 5
    kinds = [t.user_attrs.get("reference") for t in trials]
    assert kinds == ["linear_probe", "linear_probe", "default", "default", None]
    assert [t.params["backbone"] for t in trials[:4]] == ["tiny/a", "tiny/b"] * 2
    assert all(t.user_attrs["params"]["freeze_fraction"] == 1.0 for t in trials[:2])
    assert all(t.user_attrs["params"]["lr"] == 1e-3 for t in trials[:4])
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    for kind in ("linear_probe", "default"):
        ref = best["references"][kind]
        mine = [t for t in trials if t.user_attrs.get("reference") == kind]
        top = max(mine, key=lambda t: t.value)
        assert ref == {"backbone": top.params["backbone"], "val_score": top.value,
                       "test_score": None, "trial": top.number}
    # an image backbone's best.yaml lists the image hyperparameters, not text or audio ones
    assert {"image_size", "augment", "lr"} <= set(best["params"])
    assert not {"max_length", "pooling", "clip_seconds"} & set(best["params"])
    report = (tmp_path / "out" / "report.md").read_text()
    head = report.split("## Best configuration")[0]
    assert "| best linear probe |" in head and "| best first fine-tune |" in head
    assert "Gain of the search over the best reference" in head
    # every score carries its 95% interval; the report says the best val is optimistic
    low, high = best["val_score_ci95"]
    assert low <= best["val_score"] <= high
    assert all(len(r["val_score_ci95"]) == 2 for r in result.leaderboard
               if r["state"] == "complete")
    assert "winner's curse" in report and "| val 95% |" in report

    # resumed: the references are not enqueued again
    again = _run(class_folders, tmp_path, trials=6, space=listed)
    assert [t.user_attrs.get("reference") for t in again.study.get_trials()][4:] == [None] * 2


def test_a_small_budget_gets_the_linear_probes_first(tiny_zoo, class_folders, tmp_path):
    result = _run(class_folders, tmp_path, trials=3)
    kinds = [t.user_attrs.get("reference") for t in result.study.get_trials()]
    assert kinds == ["linear_probe", "linear_probe", "default"]
    off = _run(class_folders, tmp_path, name="off", trials=2, references=False)
    assert [t.user_attrs.get("reference") for t in off.study.get_trials()] == [None, None]
    assert "references" not in off.best or off.best["references"] == {}


def test_references_are_enqueued_once_per_study(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path}/q.db")
    study = optuna.create_study(study_name="q", storage=storage, direction="maximize")
    lock = StudyLock(storage, "q")
    space = parse_space(SPACE)
    lines = enqueue_references(study, lock, space, None)
    # without a pre-screen the probes go first; the defaults wait for their scores
    assert len(lines) == 3 and "wait for the linear probes' scores" in lines[-1]
    assert enqueue_references(study, lock, space, None) == []  # a second worker, a resume
    assert len(study.get_trials()) == 2
    assert len(StudyRecord.of(study).pending_references) == 2
    listed = parse_space({**SPACE, "budget": {"reference_order": "listed"}})
    other = optuna.create_study(study_name="l", storage=storage, direction="maximize")
    assert len(enqueue_references(other, StudyLock(storage, "l"), listed, None)) == 4
    assert len(other.get_trials()) == 4


def test_transfer_effect_trains_the_best_again_from_random_weights(tiny_zoo, class_folders,
                                                                   tmp_path):
    result = _run(class_folders, tmp_path, trials=2, transfer_effect=True)
    assert LOADS[-1][1] is False and all(pretrained for _, pretrained in LOADS[:-1])
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    effect = best["transfer_effect"]
    assert set(effect) == {"val", "test", "scratch_val_score", "scratch_test_score"}
    assert effect["val"] == pytest.approx(best["val_score"] - effect["scratch_val_score"])
    assert effect["test"] is None  # no test split
    assert result.transfer_effect["trial"] == best["source"]["trial"]
    assert "| from scratch (random weights) |" in (tmp_path / "out" / "report.md").read_text()
    # by default only from 8 completed trials on
    LOADS.clear()
    default = _run(class_folders, tmp_path, name="few", trials=2)
    assert all(pretrained for _, pretrained in LOADS) and default.transfer_effect is None
    assert "transfer_effect" not in default.best


def test_for_modality_drops_only_other_modalities_hyperparameters():
    params = {"lr": 1e-3, "image_size": 96, "augment": "flip", "max_length": 64,
              "pooling": "cls", "clip_seconds": 2.0, "custom": 1}
    assert for_modality(params, "text") == {"lr": 1e-3, "max_length": 64, "pooling": "cls",
                                            "custom": 1}
    assert for_modality(params, "audio") == {"lr": 1e-3, "clip_seconds": 2.0, "custom": 1}


def test_per_class_scores_from_a_confusion_matrix():
    # rows: true class; 8 of 10 'big' right, 1 of 4 'small' right, 'none' never occurs
    found = per_class_scores([[8, 2, 0], [3, 1, 0], [0, 0, 0]], ["big", "small", "none"])
    assert found["big"] == {"precision": round(8 / 11, 4), "recall": 0.8,
                            "f1": round(2 * 8 / (10 + 11), 4), "support": 10}
    assert found["small"]["recall"] == 0.25 and found["small"]["support"] == 4
    assert found["none"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert worst_class(found) == ("small", 0.25)


@pytest.fixture
def imbalanced(tmp_path):
    """train 160 / 20 / 6 images (majority, minority, rare); val 40 / 5 / 2."""
    root = tmp_path / "imbalanced"
    for cls, (n_train, n_val), seed in (("majority", (160, 40), 1), ("minority", (20, 5), 2),
                                        ("rare", (6, 2), 3)):
        write_images(root / "train" / cls, n_train, seed=seed, size=(16, 16))
        write_images(root / "val" / cls, n_val, seed=seed + 10, size=(16, 16))
    return root


def test_per_class_scores_show_the_minority_classes(tiny_zoo, imbalanced, tmp_path, capsys):
    space = {**SPACE, "backbones": ["tiny/a"]}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    main(["search", str(imbalanced), "--space", str(tmp_path / "space.yaml"), "--trials", "2",
          "--storage", f"sqlite:///{tmp_path}/i.db", "--out", str(tmp_path / "out")])
    shown = capsys.readouterr().out
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    per_class = best["per_class"]
    assert {c: per_class[c]["support"] for c in per_class} == {
        "majority": 40, "minority": 5, "rare": 2}
    # per-class recalls weighted by support give back the study's accuracy
    correct = sum(c["recall"] * c["support"] for c in per_class.values())
    assert correct / 47 == pytest.approx(best["val_score"], abs=1e-3)
    assert best["macro_f1"] == pytest.approx(
        sum(c["f1"] for c in per_class.values()) / 3, abs=1e-3)
    assert f"macro-F1 (val) {best['macro_f1']:.4f}" in shown
    name, recall = worst_class(per_class)
    assert (f"worst class: {name} recall {recall:.4f}" in shown) == (
        recall < best["val_score"] / 2)
    for plot in ("confusion_matrix", "best_so_far"):
        assert (tmp_path / "out" / f"{plot}.png").stat().st_size > 1000
        assert (tmp_path / "out" / f"{plot}.html").is_file()
    assert "## Per-class scores of the best (validation)" in (
        tmp_path / "out" / "report.md").read_text()
    # both trials are references: the search gained nothing over them, and says so once
    assert "gain of the search over the best reference: +0.0000 val" in shown
    assert "transfer effect: not measured (2 completed trials" in shown
    # asked for on the finished study, it is measured without running new trials
    main(["search", str(imbalanced), "--space", str(tmp_path / "space.yaml"), "--trials", "2",
          "--storage", f"sqlite:///{tmp_path}/i.db", "--out", str(tmp_path / "out"),
          "--transfer-effect"])
    effect = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())["transfer_effect"]
    assert (f"transfer effect: val {effect['val']:+.4f} (from scratch: val "
            f"{effect['scratch_val_score']:.4f})") in capsys.readouterr().out


def test_chance_level_is_the_majority_rate():
    labels = [0] * 40 + [1] * 5 + [2] * 2
    assert chance_level(labels, 3, "accuracy") == pytest.approx(40 / 47)
    # macro-F1 of always "0": F1 of class 0 is 2*40/(40+47), the others 0
    assert chance_level(labels, 3, "macro_f1") == pytest.approx(80 / 87 / 3)


def test_divergence_rule():
    assert divergence(2.0, 2.3, 1) is None
    assert divergence(25.0, 2.3, 2).startswith("diverged: training loss 25 at epoch 2 is over")
    assert divergence(float("nan"), 2.3, 1) == "diverged: training loss nan at epoch 1"


def test_a_diverging_learning_rate_is_pruned_and_the_study_says_so(tiny_zoo, class_folders,
                                                                  tmp_path):
    space = {**SPACE, "backbones": ["tiny/a"],
             "params": {**SPACE["params"],
                        "lr": {"type": "float", "low": 10.0, "high": 1000.0, "log": True}}}
    with pytest.warns(UserWarning, match="every finished trial diverged .* lower learning-rate"):
        result = _run(class_folders, tmp_path, space=space, trials=3)
    trials = result.study.get_trials()
    assert [t.state.name for t in trials] == ["PRUNED"] * 3
    assert all(t.user_attrs["prune_reason"].startswith("diverged: ") for t in trials)
    assert len(result.warnings) == 1


STOP_AT: list[int] = []  # the load of tiny/stop (counted from 1) that a Ctrl-C interrupts
STOP_LOADS: list[bool] = []


def _stopping(pretrained=True):
    STOP_LOADS.append(pretrained)
    if STOP_AT and len(STOP_LOADS) == STOP_AT[0]:
        raise KeyboardInterrupt
    return _loader("stop")(pretrained)


class StoppingZoo:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneEntry("tiny/stop", "image", loader=_stopping))


def test_a_reference_a_stop_interrupted_runs_again_on_resume(tiny_zoo, class_folders,
                                                             tmp_path):
    """Ctrl-C during the default reference: the resumed search runs that default (the first
    try does not count), and says how many trials were done before."""
    from autotransfer.study.warm_start import resumed_line

    one = {**SPACE, "backbones": ["tiny/stop"]}
    pm.register(StoppingZoo(), name="stopping-zoo")
    reset_registry()
    try:
        STOP_LOADS.clear()
        # the check before trial 0 loads it, then the probe, then the default: stopped as it
        # loads
        STOP_AT[:] = [3]
        with pytest.raises(KeyboardInterrupt):
            _run(class_folders, tmp_path, trials=3, space=one)
        study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
        stopped = study.get_trials()[1]
        assert stopped.user_attrs["reference"] == "default" and stopped.state.name == "FAIL"
        assert stopped.user_attrs["interrupted"] is True
        assert resumed_line(study, 3) == "resuming: 1 of 3 trials done"
        # a worker requeued after the others filled the study (1 of 1 done): nothing to rerun
        full = StudyLock(make_storage(f"sqlite:///{tmp_path}/s.db"), "s")
        assert enqueue_references(study, full, parse_space(one), 1) == []
        assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))
        STOP_AT.clear()
        again = _run(class_folders, tmp_path, trials=3, space=one)
    finally:
        pm.unregister(name="stopping-zoo")
        reset_registry()
    trials = again.study.get_trials()
    done = [t.user_attrs.get("reference") for t in trials if t.state.name == "COMPLETE"]
    assert done[:2] == ["linear_probe", "default"] and len(done) == 3, done
    default = next(t for t in trials[2:] if t.user_attrs.get("reference") == "default")
    assert default.user_attrs["params"] == stopped.user_attrs["params"]  # the same reference
    # a third resume enqueues nothing again (the default ran to its end)
    lock = StudyLock(make_storage(f"sqlite:///{tmp_path}/s.db"), "s")
    assert enqueue_references(again.study, lock, parse_space(one), 3) == []


def test_the_console_does_not_number_a_trial_past_the_total_as_of_it(capsys):
    from autotransfer.cli.console import ConsoleProgress

    params = {"freeze_fraction": 0.5, "lr": 1e-3, "head_lr_multiplier": 10, "layer_decay": 1,
              "batch_size": 8}
    progress = ConsoleProgress(8)
    progress.trial_started(7, "tiny/a", params)
    progress.trial_started(8, "tiny/a", params)  # the ninth: one before did not count
    lines = capsys.readouterr().out.splitlines()
    assert "trial #7 of 8 " in lines[0]
    assert "trial #8 tiny/a" in lines[1] and " of 8" not in lines[1]
