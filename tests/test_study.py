"""The search through the Python API, with a fake zoo at the edge: failures are recorded and the
study goes on, memory is released, and a study keeps its search space."""

import gc

import pytest
import timm
import yaml

from autotransfer import hookimpl
from autotransfer.contract.backbone import BackboneEntry
from autotransfer.contract.space import parse_space
from autotransfer.errors import StorageError
from autotransfer.search.study import search
from autotransfer.testing import registered_plugin
from autotransfer.train.trainer import TransferModel
from autotransfer_timm import backbone_from_timm


def _tiny(pretrained=True):
    return backbone_from_timm(timm.create_model("test_efficientnet", num_classes=0))


def _broken(pretrained=True):
    raise RuntimeError("weights file is corrupt")


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
