"""The search through the Python API, with a fake zoo at the edge: failures are recorded and the
study goes on, memory is released, and a study keeps its search space."""

import gc

import pytest
import timm
import yaml

from autotransfer import hookimpl
from autotransfer.contract.backbone import BackboneEntry
from autotransfer.data import DataWarning
from autotransfer.errors import StorageError
from autotransfer.finetune.trainer import TransferModel
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search
from autotransfer.testing import registered_plugin
from autotransfer_timm import backbone_from_timm
from conftest import write_images


def _tiny(pretrained=True):
    return backbone_from_timm(timm.create_model("test_efficientnet", num_classes=0))


def _broken(pretrained=True):
    # loads (the check before trial 0 passes; a backbone that cannot load is skipped there,
    # tests/test_first_hour.py), then fails its trials at the first forward pass
    backbone = _tiny()

    def corrupt(module, inputs):
        raise RuntimeError("weights file is corrupt")

    backbone.model.register_forward_pre_hook(corrupt)
    return backbone


class FlakyZoo:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneEntry("flaky/tiny", "image", loader=_tiny))
        register(BackboneEntry("flaky/broken", "image", loader=_broken))


@pytest.fixture
def flaky_zoo():
    with registered_plugin(FlakyZoo(), name="flaky-zoo"):
        yield


SPACE = {
    "backbones": ["flaky/tiny", "flaky/broken"],
    "epochs": 1,
    "pruner": "none",
    "params": {"image_size": 32, "lr": {"type": "float", "low": 1e-3, "high": 1e-2}},
}


def test_failed_trials_keep_their_reason_and_the_study_goes_on(flaky_zoo, class_folders,
                                                              tmp_path):
    result = search(class_folders, parse_space(SPACE), trials=6,
                    storage=f"sqlite:///{tmp_path}/s.db", study_name="flaky",
                    out=tmp_path / "out", seed=0)
    states = {t.state.name for t in result.study.trials}
    assert states == {"COMPLETE", "FAIL"}
    for trial in result.study.trials:
        if trial.state.name == "FAIL":
            assert trial.user_attrs["fail_reason"] == "RuntimeError: weights file is corrupt"
            assert trial.params["backbone"] == "flaky/broken"
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert best["backbone"] == "flaky/tiny" and best["source"]["study"] == "flaky"
    gc.collect()
    alive = [o for o in gc.get_objects() if type(o) is TransferModel]
    assert alive == []  # every trial's model was released


def test_a_study_keeps_its_search_space(flaky_zoo, class_folders, tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    space = {**SPACE, "backbones": ["flaky/tiny"]}
    search(class_folders, parse_space(space), trials=1, storage=storage, study_name="s",
           out=tmp_path / "out")
    changed = {**space, "epochs": 2}
    with pytest.raises(StorageError, match="study 's' .* was created with another search space"):
        search(class_folders, parse_space(changed), trials=2, storage=storage, study_name="s",
               out=tmp_path / "out")


def test_a_study_keeps_its_data(flaky_zoo, tmp_path):
    """Two folders named ``data`` get the same default study name: resuming one study with the
    other's classes would mix their trials, so it is a one-line error; the same classes in
    another folder resume with a warning that names both."""
    space = parse_space({**SPACE, "backbones": ["flaky/tiny"]})
    storage = f"sqlite:///{tmp_path}/s.db"
    folders = {}
    for case, classes in (("arrows", ("down", "up")), ("shapes", ("circle", "square")),
                          ("copy", ("down", "up"))):
        folders[case] = tmp_path / case / "data"
        for seed, cls in enumerate(classes):
            write_images(folders[case] / cls, 6, seed=seed, size=(16, 16))
    first = search(folders["arrows"], space, trials=1, storage=storage, out=tmp_path / "out")
    name = first.study.study_name
    with pytest.raises(StorageError, match=(
            f"study '{name}' .* was created with data .*arrows/data \\(classes down, up\\), not "
            ".*shapes/data \\(classes circle, square\\); pass a new study name")):
        search(folders["shapes"], space, trials=2, storage=storage, out=tmp_path / "out")
    with pytest.warns(DataWarning, match=f"resuming study '{name}', created with data "
                                         ".*arrows/data, on .*copy/data"):
        again = search(folders["copy"], space, trials=2, storage=storage, out=tmp_path / "out")
    assert again.study.study_name == name and len(again.study.trials) == 2


@pytest.mark.parametrize("pruner", ["hyperband", "median"])
def test_a_trial_that_trains_all_its_epochs_is_complete_whatever_the_pruner(pruner):
    """Real Optuna pruners (the space's), scores shaped so that they would prune some trials at
    the last epoch: those trials complete; earlier epochs are still pruned."""
    import optuna

    from autotransfer.study.budget.pruners import make_pruner, report_epoch

    epochs = 3
    space = parse_space({"backbones": ["packaged/mobilenetv2_100"], "epochs": epochs,
                         "pruner": pruner})
    # a fixed name: Hyperband assigns brackets by a hash of the study's name, and a random
    # name made the bracket mix (and this test) change from run to run
    study = optuna.create_study(direction="maximize", pruner=make_pruner(space),
                                sampler=optuna.samplers.RandomSampler(0), study_name="rungs")
    pruned_at, would_prune_last = [], 0
    for i in range(20):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        # pruners compare a trial's best score so far with the others' at that epoch: a late
        # starter ahead early but behind at the end, a steady climber, and a weak one
        scores = ([0.55, 0.65, 0.7], [0.5, 0.6, 0.9], [0.3, 0.3, 0.3])[i % 3]
        try:
            for epoch, score in enumerate(scores, start=1):
                report_epoch(trial, score, epoch, epochs, "accuracy")
        except optuna.TrialPruned:
            pruned_at.append(epoch)
            assert trial.user_attrs["prune_reason"].startswith(f"pruned after epoch {epoch}/3")
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        would_prune_last += trial.should_prune()  # what the pruner says after the last report
        study.tell(trial, scores[-1])
    assert pruned_at and epochs not in pruned_at, pruned_at
    assert would_prune_last > 0, "the scores must make the pruner want a last-epoch prune"
