"""The first fine-tune (autotransfer.space.first_finetune): the family table, its values clipped
into a space, the ``default`` reference that takes them, and, under a time budget, that it is
enqueued before the linear probes. Spaces are parsed, studies in memory or SQLite; one search
of a tiny timm model built from a config."""

import optuna
import pytest

from autotransfer.errors import SpaceError
from autotransfer.finetune.records import StudyRecord, TrialRecord
from autotransfer.space.first_finetune import FAMILIES, family_of, first_finetune
from autotransfer.space.schema import parse_space
from autotransfer.study.references.order import best_ranked, lead_first
from autotransfer.study.references.trials import (
    enqueue_references,
    first_finetune_values,
    reference_params,
)
from autotransfer.study.store.storage import StudyLock, make_storage
from autotransfer.study.study import search

LR = {"type": "float", "low": 1e-5, "high": 3e-3, "log": True}
FREEZE = {"type": "float", "low": 0.0, "high": 1.0}


def _space(backbones, **params):
    return parse_space({"backbones": backbones, "epochs": 2, "pruner": "none",
                        "params": {"freeze_fraction": FREEZE, "lr": LR, **params}})


@pytest.mark.parametrize(("backbone_id", "modality", "family"), [
    ("timm/resnet18.a1_in1k", None, "image-cnn"),
    ("timm/mobilevit_s.cvnets_in1k", None, "image-cnn"),  # a hybrid named *vit: a CNN
    ("timm/vit_small_patch16_224.augreg_in21k", None, "vit"),
    ("timm/tiny_vit_21m_224.dist_in22k_ft_in1k", None, "vit"),
    ("packaged/mobilenetv2_100", "image", "image-cnn"),
    ("packaged/all-MiniLM-L6-v2", "text", "text"),
    ("hf-text/google-bert/bert-base-uncased", None, "text"),
    ("hf-audio/facebook/wav2vec2-base", None, "audio"),
    ("myzoo/resnet50", "image", "generic"),  # a plugin's zoo: unknown here
    ("packaged/something", None, "generic"),  # a zoo of several modalities, none known
])
def test_the_family_comes_from_the_zoo_the_modality_and_the_architecture(
        backbone_id, modality, family):
    assert family_of(backbone_id, modality) == family


def test_each_family_sets_known_hyperparameters_and_the_generic_row_sets_none():
    from autotransfer.space.hyperparameters import HYPERPARAMETERS

    assert first_finetune("myzoo/resnet50", "image").settings == {}
    for recipe in FAMILIES.values():
        for name, value in recipe.settings.items():
            assert HYPERPARAMETERS[name].check(value) is None, (recipe.family, name)
    cnn = first_finetune("timm/resnet18").settings
    assert (cnn["lr"], cnn["freeze_fraction"], cnn["average_checkpoints"]) == (1e-3, 0.5, 3)
    assert cnn["image_size"] is None  # the backbone's own resolution
    assert first_finetune("hf-text/roberta-base").settings["layer_decay"] == 0.9


def test_the_first_fine_tune_is_clipped_into_the_space_and_fixed_values_stay_fixed():
    space = _space(["timm/resnet18"], lr={"type": "float", "low": 1e-4, "high": 5e-4},
                   layer_decay={"type": "float", "low": 0.5, "high": 0.8},
                   average_checkpoints=0, image_size=96)
    searched, unnamed = first_finetune_values(space, "timm/resnet18")
    assert searched == {"freeze_fraction": 0.5, "lr": 5e-4, "layer_decay": 0.8}  # 1e-3, 1.0
    # what the space names nowhere comes from the family; a fixed value stays fixed
    assert unnamed == {"warmup_fraction": 0.1, "head_lr_multiplier": 10.0, "weight_decay": 0.01}
    planned = dict(reference_params(space))
    assert planned["default"] == {"backbone": "timm/resnet18", **searched}
    assert planned["linear_probe"]["lr"] == 5e-4  # the probe keeps the documented defaults
    assert planned["linear_probe"]["layer_decay"] == 0.8


def test_an_unknown_zoo_keeps_the_documented_defaults(monkeypatch):
    space = _space(["myzoo/a"])
    searched, unnamed = first_finetune_values(space, "myzoo/a")
    assert searched == {"freeze_fraction": 0.0, "lr": 1e-3} and unnamed == {}


def test_the_best_ranked_first_fine_tune_is_led_first():
    planned = reference_params(_space(["timm/a", "timm/b"]))
    labels = ["timm/a", "timm/b"]
    assert best_ranked(labels, None, labels) == "timm/a"  # the space's order
    prescreen = {"by": "logme", "scores": {"timm/a": {"logme": 0.1}, "timm/b": {"logme": 0.4}}}
    assert best_ranked(labels, prescreen, labels) == "timm/b"
    assert [(k, p["backbone"]) for k, p in lead_first(planned, "timm/b")] == [
        ("default", "timm/b"), ("linear_probe", "timm/a"), ("linear_probe", "timm/b"),
        ("default", "timm/a")]


def test_the_lead_is_the_best_ranked_backbone_whose_first_epoch_the_budget_affords():
    from autotransfer.study.warm_start import lead_backbone

    space = _space(["timm/a", "timm/b", "timm/c"])
    lead = lead_backbone(space, None, references=True, budgeted=True,
                         seconds={"timm/a": 400.0, "timm/b": 50.0, "timm/c": 20.0}, within=75.0)
    assert lead.label == "timm/b"  # timm/a ranks first but its epoch takes more than a quarter
    cheapest = lead_backbone(space, None, references=True, budgeted=True,
                             seconds={"timm/a": 400.0, "timm/b": 90.0, "timm/c": 80.0},
                             within=75.0)
    assert cheapest.label == "timm/c"  # none fits: the cheapest
    assert lead_backbone(space, None, references=True, budgeted=False) is None  # no budget


def test_under_a_time_budget_the_first_fine_tune_is_enqueued_before_the_probes(tmp_path):
    storage = make_storage(f"sqlite:///{tmp_path}/q.db")
    space = _space(["timm/a", "timm/b"])
    study = optuna.create_study(study_name="q", storage=storage, direction="maximize")
    lines = enqueue_references(study, StudyLock(storage, "q"), space, None, lead="timm/a")
    assert lines[0] == ("reference: enqueued the first fine-tune of timm/a first, before the "
                        "linear probes")
    kinds = [(t.user_attrs["reference"], t.system_attrs["fixed_params"]["backbone"])
             for t in study.get_trials()]
    assert kinds == [("default", "timm/a"), ("linear_probe", "timm/a"),
                     ("linear_probe", "timm/b")]
    pending = StudyRecord.of(study).pending_references  # the other waits for the probes
    assert [(kind, params["backbone"]) for kind, params, _ in pending] == [("default", "timm/b")]
    without = optuna.create_study(study_name="w", storage=storage, direction="maximize")
    enqueue_references(without, StudyLock(storage, "w"), space, None)  # no budget: as before
    assert [t.user_attrs["reference"] for t in without.get_trials()] == ["linear_probe"] * 2


def test_budget_patience_is_off_by_default_and_checked():
    assert _space(["timm/a"]).budget.patience is None
    space = parse_space({"backbones": ["timm/a"], "epochs": 2, "budget": {"patience": 3}})
    assert space.budget.patience == 3
    with pytest.raises(SpaceError, match="budget.patience: .*whole number of epochs >= 1"):
        parse_space({"backbones": ["timm/a"], "epochs": 2, "budget": {"patience": 0}})


class Notes:
    """A progress view that keeps the console's notes."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def trial_started(self, number, backbone, params) -> None:
        pass

    def epoch_done(self, number, result, epochs) -> None:
        pass

    def trial_done(self, number, state, value, reason) -> None:
        pass

    def note(self, number, message) -> None:
        self.lines.append(message)


def test_a_search_under_a_time_budget_starts_with_the_first_fine_tune(class_folders, tmp_path):
    """Two tiny timm backbones: the first trial is the first backbone's first fine-tune, with
    its family's settings (half frozen, 3 checkpoints averaged); no backbone was timed before
    it."""
    progress = Notes()
    tiny = [{"id": f"timm/{name}", "pretrained": False, "name": name[5:]}
            for name in ("test_efficientnet", "test_resnet")]
    space = parse_space({"backbones": tiny, "epochs": 1, "pruner": "none",
                         "params": {"image_size": 32, "batch_size": 4, "freeze_fraction": FREEZE,
                                    "augment": "none"}})
    result = search(class_folders, space, storage=f"sqlite:///{tmp_path}/s.db", study_name="s",
                    out=tmp_path / "out", trials=2, time_budget=600, history=False,
                    progress=progress)
    first = TrialRecord.from_frozen(result.study.trials[0])
    assert (first.reference, first.backbone) == ("default", "timm/test_efficientnet")
    assert result.study.trials[0].params["backbone"] == "efficientnet"
    assert first.params["freeze_fraction"] == 0.5 and first.params["average_checkpoints"] == 3
    assert result.study.trials[1].user_attrs["reference"] == "linear_probe"
    assert any(line.startswith("cost: the backbones are timed after the first fine-tune")
               for line in progress.lines), progress.lines
    timed = [i for i, line in enumerate(progress.lines) if line.startswith("cost of ")]
    enqueued = [i for i, line in enumerate(progress.lines) if line.startswith("reference: ")]
    assert not timed or min(timed) > max(enqueued)  # none before the trials
