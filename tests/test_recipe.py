"""The training-recipe seam (what a step is, beside the tuning method), checkpoints at epoch
boundaries, greedy checkpoint averaging, and tuning methods offered by a plugin's
``register_methods`` hook."""

import math
import os
import types

import optuna
import pytest
import torch
import yaml

from autotransfer.cli import main
from autotransfer.contract.collect import get_backbone
from autotransfer.data import load_data
from autotransfer.errors import SpaceError
from autotransfer.finetune.recipe import Supervised
from autotransfer.finetune.trainer import Trainer
from autotransfer.model.refit import train
from autotransfer.space.hyperparameters import defaults
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search
from autotransfer.testing import registered_plugin

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(fashion_mnist):
    return load_data(fashion_mnist, seed=0)


def _trainer(data, recipe=None, cache=False, **extra):
    torch.manual_seed(0)  # random-init weights, as a trial seeds them
    backbone = get_backbone("timm/test_vit").load(pretrained=False)
    params = {**defaults(), "image_size": 32, "lr": 3e-3, **extra}
    return Trainer(backbone, data, params, device=CPU, seed=0, cache=cache, recipe=recipe)


def _epochs(result):
    """Each epoch's numbers, without its timings."""
    return [(h.epoch, h.train_loss, h.accuracy, h.macro_f1, h.score, h.val_loss)
            for h in result.history]


class HeadL2(Supervised):
    """A training recipe that adds a loss term (an L2 penalty on the head): all of it is here."""

    calls = 0

    def loss(self, trainer, batch):
        self.calls += 1
        return super().loss(trainer, batch) + 0.5 * trainer.model.head[1].weight.pow(2).sum()


def test_a_recipe_that_adds_a_loss_term_is_one_subclass_in_this_file(data):
    plain = _trainer(data)
    assert isinstance(plain.recipe, Supervised) and plain.recipe.label_smoothing == 0.1
    plain.fit(1)
    recipe = HeadL2(label_smoothing=0.1)
    penalised = _trainer(data, recipe)
    penalised.fit(1)
    steps = math.ceil(len(data.train) / 32)
    assert recipe.calls == steps  # the trainer asked the recipe for every step's loss
    norm = lambda t: t.model.head[1].weight.norm().item()  # noqa: E731
    assert norm(penalised) < 0.9 * norm(plain)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("extra", [
    {"dropout": 0.2, "augment": "crop_flip", "average_checkpoints": 2},
    {"freeze_fraction": 0.5, "cache": True},  # the frozen prefix served by the activation cache
], ids=["live", "cached"])
def test_training_resumed_from_an_epoch_checkpoint_is_bit_for_bit(data, tmp_path, extra):
    straight_trainer = _trainer(data, **extra)
    straight = straight_trainer.fit(3)
    first = _trainer(data, **extra)

    def stop_after_two(result):
        if result.epoch == 2:
            torch.save(first.checkpoint(), tmp_path / "epoch2.pt")
            raise _Stop

    with pytest.raises(_Stop):
        first.fit(3, stop_after_two)
    again = _trainer(data, **extra)
    resumed = again.fit(3, resume=torch.load(tmp_path / "epoch2.pt", weights_only=False))
    assert _epochs(resumed) == _epochs(straight)
    assert resumed.test == straight.test and resumed.averaging == straight.averaging
    for (name, a), b in zip(straight_trainer.model.state_dict().items(),
                            again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_greedy_averaging_scores_at_least_the_trial_without_it(data):
    without = _trainer(data).fit(4)
    averaged = _trainer(data, average_checkpoints=3).fit(4)
    assert _epochs(averaged) == _epochs(without)  # the same training; only the end differs
    scores = [h.score for h in without.history]
    info = averaged.averaging
    assert averaged.score == info["score"] >= max(scores) >= without.score
    assert info["epochs"][0] == info["best_epoch"] == 1 + scores.index(max(scores))
    assert 1 <= len(info["epochs"]) <= 3 and info["tried"] == 3
    assert info["gain"] == pytest.approx(averaged.score - without.score)
    assert without.averaging is None


SPACE_AVERAGED = {"backbones": [{"id": "timm/test_vit", "pretrained": False}], "epochs": 4,
                  "pruner": "none",
                  "params": {"image_size": 32, "lr": 3e-3, "average_checkpoints": 3}}


def test_a_trial_records_its_soup_and_train_repeats_it(fashion_mnist, tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    result = search(fashion_mnist, parse_space(SPACE_AVERAGED), trials=1, device="cpu",
                    storage=storage, study_name="avg", out=tmp_path / "out", references=False)
    trial = optuna.load_study(study_name="avg", storage=storage).trials[0]
    info = trial.user_attrs["averaging"]
    assert trial.value == info["score"] == result.best["val_score"]
    assert info["gain"] == pytest.approx(info["score"] - trial.user_attrs["epoch_4"]["accuracy"])
    best = tmp_path / "out" / "best.yaml"
    assert yaml.safe_load(best.read_text())["params"]["average_checkpoints"] == 3
    again = train(best, out=tmp_path / "same", device="cpu", refit_on="train")
    assert again.val["accuracy"] == trial.value  # chosen again, the same soup
    merged = train(best, out=tmp_path / "merged", device="cpu")  # train+val: no val to choose
    metrics = yaml.safe_load((tmp_path / "merged" / "autotransfer.json").read_text())["metrics"]
    assert metrics["averaging"] == {"k": 3, "epochs": info["epochs"], "replayed": True}
    assert merged.refit_on == "train+val"


#: a plugin that adds a tuning method: the whole of it (the only file a new method touches)
PLUGIN = '''
from autotransfer.plugin import TuningMethod, hookimpl
from autotransfer.space.hyperparameters import Hyperparameter


def _apply(model, groups, frozen, params, backbone=None, label="backbone"):
    """The biases of the unfrozen groups train (and their norms with ``bias_norms``)."""
    in_groups = {n for g in groups for n in g}
    for name, param in model.named_parameters():
        if name in in_groups and name not in frozen:
            param.requires_grad_(name.endswith("bias")
                                 or (params["bias_norms"] and "norm" in name))


class BiasPlus:
    @hookimpl
    def register_methods(self, register):
        register(TuningMethod(
            "biasplus", "the biases of the unfrozen groups (and their norms), and the head",
            _apply, {"bias_norms": Hyperparameter(False, "also the norms", kind=bool,
                                                  choices=(False, True))},
            reference=True))


plugin = BiasPlus()
'''

SPACE_PLUGIN = """
backbones: [{id: timm/test_vit, pretrained: false}]
epochs: 1
params:
  method: {type: categorical, choices: [finetune, biasplus]}
  bias_norms: true
  image_size: 32
  lr: 3.0e-3
"""


@pytest.fixture
def biasplus():
    module = types.ModuleType("biasplus_plugin")
    exec(PLUGIN, module.__dict__)
    with registered_plugin(module.plugin, "biasplus") as registered:
        yield registered


def _trials(storage, name):
    return {t.user_attrs.get("reference"): t
            for t in optuna.load_study(study_name=name, storage=storage).trials}


def test_a_plugins_method_is_searched_from_the_command_line(biasplus, fashion_mnist, tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE_PLUGIN)
    storage = f"sqlite:///{tmp_path}/s.db"
    main(["search", str(fashion_mnist), "--space", str(tmp_path / "space.yaml"), "--trials",
          "3", "--storage", storage, "--study", "p", "--out", str(tmp_path / "out"),
          "--device", "cpu"])
    trials = _trials(storage, "p")
    assert set(trials) == {"linear_probe", "default", "biasplus"}  # its reference trial
    plugin_trial, default = trials["biasplus"], trials["default"]
    assert plugin_trial.user_attrs["params"]["method"] == "biasplus"
    assert plugin_trial.user_attrs["params"]["bias_norms"] is True
    assert plugin_trial.state.name == "COMPLETE" and plugin_trial.value is not None
    trained = plugin_trial.user_attrs["trainable_parameters"]
    assert trained < default.user_attrs["trainable_parameters"] / 5


def test_without_the_plugin_its_method_is_unknown_again():
    with pytest.raises(SpaceError, match="unknown tuning method 'biasplus'"):
        parse_space({"backbones": ["timm/test_vit"], "epochs": 1,
                     "params": {"method": "biasplus"}})


def test_the_frozen_prefix_is_frozen_once_for_every_method(data, biasplus):
    trainer = _trainer(data, method="biasplus", bias_norms=False, freeze_fraction=0.5)
    prefix = trainer.frozen
    assert prefix and not any(p.requires_grad for n, p in trainer.model.named_parameters()
                              if n in prefix)  # the plugin's apply never froze anything
    trains = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trains - {"head.1.weight", "head.1.bias"} and all(
        n.endswith("bias") for n in trains - {"head.1.weight"})


def test_a_tuning_method_declares_its_traits():
    from autotransfer.finetune.methods import METHODS
    from autotransfer.space.methods import method_traits

    for name, method in METHODS.items():
        traits = method_traits(name)
        assert (traits.reference, traits.cost_follows_freezing) == (
            method.reference, method.cost_follows_freezing), name
    assert [n for n in METHODS if METHODS[n].reference] == ["lora"]
    assert [n for n in METHODS if METHODS[n].cost_follows_freezing] == ["finetune"]


#: a plugin that adds a training recipe with a loss term: the whole of it (no core file changes;
#: the space names it). ``marks`` (a folder) lets the tests see which process built and ran it.
RECIPE_PLUGIN = '''
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from autotransfer.plugin import Recipe, Supervised, hookimpl


@dataclass
class HeadL2(Supervised):
    """Cross-entropy plus ``weight`` times the squared L2 norm of the head's weights."""

    weight: float = 0.5
    marks: str | None = None

    def loss(self, trainer, batch):
        return (super().loss(trainer, batch)
                + self.weight * trainer.model.head[1].weight.pow(2).sum())

    def after_fit(self, trainer, result):
        super().after_fit(trainer, result)
        if self.marks:
            Path(self.marks, f"{os.getpid()}.{uuid.uuid4().hex}").write_text(str(self.weight))


class HeadL2Plugin:
    @hookimpl
    def register_recipes(self, register):
        register(Recipe("head_l2", HeadL2, "cross-entropy plus an L2 penalty on the head"))


plugin = HeadL2Plugin()
'''

SPACE_RECIPE = """
backbones: [{id: timm/test_vit, pretrained: false}]
epochs: 1
recipe: {type: head_l2, weight: 0.5, marks: MARKS}
params:
  image_size: 32
  lr: 3.0e-3
"""


@pytest.fixture
def head_l2():
    module = types.ModuleType("headl2_plugin")
    exec(RECIPE_PLUGIN, module.__dict__)
    with registered_plugin(module.plugin, "head-l2") as registered:
        yield registered


def _marks(folder):
    return sorted(int(p.name.split(".")[0]) for p in folder.iterdir())


def test_a_plugins_recipe_is_named_in_a_space_searched_and_refit(head_l2, fashion_mnist,
                                                                   tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "space.yaml").write_text(SPACE_RECIPE.replace("MARKS", str(marks)))
    storage = f"sqlite:///{tmp_path}/s.db"
    main(["search", str(fashion_mnist), "--space", str(tmp_path / "space.yaml"), "--trials",
          "1", "--storage", storage, "--study", "r", "--out", str(tmp_path / "out"),
          "--device", "cpu", "--no-references"])
    assert _marks(marks) == [os.getpid()]  # the trial trained with the plugin's recipe
    trial = optuna.load_study(study_name="r", storage=storage).trials[0]
    recorded = {"type": "head_l2", "weight": 0.5, "marks": str(marks)}
    assert trial.user_attrs["params"]["recipe"] == recorded
    best_yaml = tmp_path / "out" / "best.yaml"
    best = yaml.safe_load(best_yaml.read_text())
    assert best["params"]["recipe"] == recorded
    again = train(best_yaml, out=tmp_path / "again", device="cpu", refit_on="train")
    assert len(_marks(marks)) == 2 and again.val["accuracy"] == trial.value  # the same trial
    del best["params"]["recipe"]  # the same trial without its loss term trains another model
    plain = train(best, out=tmp_path / "plain", device="cpu", refit_on="train")
    assert len(_marks(marks)) == 2 and plain.history[0].train_loss < again.history[0].train_loss


def test_a_spaces_recipe_is_checked_when_the_space_is_read(head_l2):
    space = {"backbones": ["timm/test_vit"], "epochs": 1}
    with pytest.raises(SpaceError, match=r"recipe: unknown training recipe 'head_l3' \(did you "
                                         r"mean 'head_l2'\?\); expected one of supervised, "
                                         r"head_l2"):
        parse_space({**space, "recipe": "head_l3"})
    with pytest.raises(SpaceError, match="recipe: head_l2: .*unexpected keyword argument 'wait'"):
        parse_space({**space, "recipe": {"type": "head_l2", "wait": 1}})
    with pytest.raises(SpaceError, match="recipe: supervised takes no settings, got weight"):
        parse_space({**space, "recipe": {"type": "supervised", "weight": 1}})
    assert "recipe" not in parse_space({**space, "recipe": "supervised"}).resolve({})
    by_path = parse_space({**space, "recipe": {"factory": "autotransfer.plugin:Supervised"}})
    assert by_path.resolve({})["recipe"] == {"factory": "autotransfer.plugin:Supervised"}


def test_without_the_plugin_its_recipe_is_unknown_again():
    with pytest.raises(SpaceError, match="unknown training recipe 'head_l2'"):
        parse_space({"backbones": ["timm/test_vit"], "epochs": 1, "recipe": "head_l2"})


def test_load_average_is_the_uniform_mean_of_float_entries_and_keeps_integer_buffers():
    from autotransfer.finetune.averaging import load_average

    model = torch.nn.BatchNorm1d(2)
    states = [{"weight": torch.tensor([1.0, 3.0]), "num_batches_tracked": torch.tensor(4)},
              {"weight": torch.tensor([3.0, 5.0]), "num_batches_tracked": torch.tensor(9)}]
    load_average(model, states)
    assert model.weight.tolist() == [2.0, 4.0] and int(model.num_batches_tracked) == 4
    assert model.bias.tolist() == [0.0, 0.0]  # a key the states lack keeps the model's
