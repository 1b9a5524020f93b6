"""Freeze-thaw continuation end to end (issue 36): a trial that leads and still improves trains
past the space's ``epochs`` up to ``max_epochs``, from the same trainer state; one that does not
lead stops at its planned length; without ``max_epochs`` nothing changes; ``best.yaml`` says what
the pick trained and ``train`` replays it. Tiny timm models built from a config on a few real
Fashion-MNIST images: these tests are about plumbing (the rule alone is in test_rules.py)."""

import json
import math

import optuna
import pytest
import timm
import torch
import yaml

from autotransfer import hookimpl
from autotransfer.contract.backbone import BackboneEntry
from autotransfer.contract.collect import reset_registry
from autotransfer.contract.manager import pm
from autotransfer.data import load_data
from autotransfer.demo import export_fashion_mnist
from autotransfer.finetune.trainer import Trainer
from autotransfer.model.refit import train
from autotransfer.space.hyperparameters import defaults
from autotransfer.space.schema import parse_space
from autotransfer.study.budget import rules
from autotransfer.study.study import search
from autotransfer_timm import backbone_from_timm

CPU = torch.device("cpu")


def _tiny():
    torch.manual_seed(1234)  # "pretrained": the same weights every time
    return backbone_from_timm(timm.create_model("test_efficientnet", num_classes=0))


class TinyZoo:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneEntry("tiny/a", "image", loader=lambda pretrained=True: _tiny()))


@pytest.fixture
def tiny_zoo():
    pm.register(TinyZoo(), name="tiny-continuation-zoo")
    reset_registry()
    try:
        yield
    finally:
        pm.unregister(name="tiny-continuation-zoo")
        reset_registry()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """80 real Fashion-MNIST training images (16 held out for validation), 20 test images."""
    out = tmp_path_factory.mktemp("fm-cont") / "fashion-mnist"
    return export_fashion_mnist(out, per_class=8, test_per_class=2, seed=0)


SPACE = {"backbones": ["tiny/a"], "epochs": 1, "max_epochs": 4, "pruner": "none",
         "params": {"image_size": 32, "batch_size": 16, "augment": "none", "lr": 1e-2,
                    "warmup_fraction": 0.0}}


def _search(images, tmp_path, space, **options):
    storage = f"sqlite:///{tmp_path}/s.db"
    search(images, parse_space(space), device="cpu", storage=storage, study_name="c",
           out=tmp_path / "out", references=False, seed=0, **options)
    return optuna.load_study(study_name="c", storage=storage)


@pytest.fixture
def always_improving(monkeypatch):
    """Every epoch counts as an improvement (the scores of 16 validation images are too coarse
    to rely on), so that what decides is the lead and the room."""
    monkeypatch.setattr(rules, "improves", lambda scores, min_delta=rules.MIN_DELTA: True)


def test_a_leader_that_improves_is_continued_to_max_epochs_and_train_replays_it(
        tiny_zoo, images, tmp_path, always_improving):
    study = _search(images, tmp_path, SPACE, trials=1)
    trial = study.trials[0]
    assert trial.state.name == "COMPLETE"
    assert trial.user_attrs["epochs_trained"] == 4
    assert sorted(trial.intermediate_values) == [1, 2, 3, 4]  # the pruner saw every epoch
    assert [(c["after"], c["epochs"]) for c in trial.user_attrs["continuations"]] == [(1, 2),
                                                                                      (2, 4)]
    best_yaml = tmp_path / "out" / "best.yaml"
    best = yaml.safe_load(best_yaml.read_text())
    assert best["epochs"] == 4
    assert best["training"] == {"epochs": 4, "lengths": [1, 2, 4], "continuations": 2}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "The pick trained 4 epochs, continued 2 times (planned 1 -> 2 -> 4)." in report
    again = train(best_yaml, out=tmp_path / "model", device="cpu", refit_on="train")
    metrics = json.loads((tmp_path / "model" / "autotransfer.json").read_text())["metrics"]
    assert (metrics["epochs"], metrics["lengths"]) == (4, [1, 2, 4])
    assert again.val["accuracy"] == trial.value  # the same plan, the same model


def test_a_trial_that_does_not_lead_is_not_continued(tiny_zoo, images, tmp_path,
                                                     always_improving):
    space = {**SPACE, "max_epochs": 2,
             "params": {**SPACE["params"], "lr": {"type": "categorical", "choices": [1e-2, 1e-7]}}}
    storage = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(study_name="c", storage=storage, direction="maximize")
    study.enqueue_trial({"backbone": "tiny/a", "lr": 1e-2})  # learns: leads, continued to 2
    study.enqueue_trial({"backbone": "tiny/a", "lr": 1e-7})  # barely moves: does not lead
    study = _search(images, tmp_path, space, trials=2)
    leader, weak = study.trials
    assert leader.user_attrs["epochs_trained"] == 2 and len(leader.user_attrs["continuations"]) == 1
    assert weak.intermediate_values[1] < leader.value  # the test's premise: it does not lead
    assert weak.state.name == "COMPLETE" and weak.user_attrs["epochs_trained"] == 1
    assert "continuations" not in weak.user_attrs


def test_without_max_epochs_every_trial_trains_the_spaces_epochs(tiny_zoo, images, tmp_path,
                                                                 always_improving):
    space = {k: v for k, v in SPACE.items() if k != "max_epochs"}
    study = _search(images, tmp_path, space, trials=1)
    trial = study.trials[0]
    assert trial.user_attrs["epochs_trained"] == 1 and "continuations" not in trial.user_attrs
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert best["epochs"] == 1 and "training" not in best


def _trainer(data):
    params = {**defaults(), "image_size": 32, "batch_size": 16, "augment": "none", "lr": 1e-2}
    return Trainer(_tiny(), data, params, device=CPU, seed=0, cache=False)


def _epochs(result):
    return [(h.epoch, h.train_loss, h.score, h.val_loss) for h in result.history]


class _Stop(Exception):
    pass


def test_a_replanned_fit_goes_on_from_its_state_and_resumes_bit_for_bit(images, tmp_path):
    data = load_data(images, seed=0)
    plain = _trainer(data).fit(2)
    continued = _trainer(data)
    rates = []

    def double_at_2(result):
        if result.epoch == 2 and continued.epochs == 2:
            continued.replan(4)
            group = continued.optimizer.param_groups[0]
            rates.append(group["lr"] / continued.scheduler.base_lrs[0])

    longer = continued.fit(2, double_at_2)
    assert _epochs(longer)[:2] == _epochs(plain)  # the first length trained as before
    assert (longer.epochs, longer.lengths, longer.continuations) == (4, [2, 4], 1)
    # the next step's rate: the cosine re-planned over 4 epochs (4 steps each) from step 8,
    # the warm-up kept at its first plan's steps
    steps, warmup = 4 * 2, int(defaults()["warmup_fraction"] * 4 * 2)
    factor = 0.5 * (1 + math.cos(math.pi * (steps - warmup) / (4 * 4 - warmup)))
    assert rates == [pytest.approx(factor)]

    first = _trainer(data)

    def replan_then_stop(result):
        if result.epoch == 2 and first.epochs == 2:
            first.replan(4)
        if result.epoch == 3:
            torch.save(first.checkpoint(), tmp_path / "epoch3.pt")
            raise _Stop

    with pytest.raises(_Stop):
        first.fit(2, replan_then_stop)
    resumed = _trainer(data).fit(2, resume=torch.load(tmp_path / "epoch3.pt",
                                                      weights_only=False))
    assert _epochs(resumed) == _epochs(longer) and resumed.lengths == [2, 4]
    assert resumed.test == longer.test


def test_a_continuation_stopped_inside_an_epoch_completes_from_its_last_epoch_end(images):
    data = load_data(images, seed=0)
    straight = _trainer(data)

    def double_at_1(result):
        if result.epoch == 1 and straight.epochs == 1:
            straight.replan(3)

    reference = straight.fit(1, double_at_1)
    stopped = _trainer(data)
    kept = []

    def continue_and_keep(result):
        if result.epoch == 1 and stopped.epochs == 1:
            stopped.replan(3)
        kept[:] = [stopped.checkpoint()]  # the objective's freeze at each epoch end
        if result.epoch == 2:
            stopped.batch_check = _raise_stop  # the time runs out inside epoch 3

    with pytest.raises(_Stop):
        stopped.fit(1, continue_and_keep)
    stopped.rewind(kept[0])
    result = stopped.finish()
    assert _epochs(result) == _epochs(reference)[:2] and result.lengths == [1, 3]
    cut = _trainer(data)  # ended at epoch 2 by a plan verdict (ContinuationEnd's "finish")

    def continue_then_finish_at_2(result):
        if result.epoch == 1 and cut.epochs == 1:
            cut.replan(3)
        elif result.epoch == 2:
            cut.replan(2)

    ended = cut.fit(1, continue_then_finish_at_2)
    assert _epochs(ended) == _epochs(result) and ended.test == result.test  # epoch 2's weights


def _raise_stop():
    raise _Stop


def test_the_picks_line_says_its_epochs_continuations_and_what_averaging_bought():
    from autotransfer.study.results.report import training_summary

    assert training_summary({"epochs": 3}) == "the pick trained 3 epochs, not continued"
    best = {"epochs": 5, "training": {
        "epochs": 5, "lengths": [3, 6], "continuations": 1,
        "ended": "time budget: continuation ended after epoch 5/6, the next needs ~9s and 4s "
                 "are left",
        "averaging": {"k": 3, "epochs": [5, 4], "gain": 0.0125, "score": 0.9}}}
    assert training_summary(best) == (
        "the pick trained 5 epochs, continued 1 time (planned 3 -> 6); time budget: "
        "continuation ended after epoch 5/6, the next needs ~9s and 4s are left; checkpoint "
        "averaging of epochs [5, 4]: +0.0125 val over its last epoch")


# -- a trial the time budget stops (issue 36: an anytime search keeps what it has seen) -------


class _Clock:
    """A wall clock for the time budget that stands still until a test moves it."""

    def __init__(self) -> None:
        import time

        self.t = time.time()

    def __call__(self) -> float:
        return self.t


class _JumpAfter:
    """A progress view that moves the clock past the deadline after ``epoch`` of trial
    ``number``."""

    def __init__(self, clock: _Clock, number: int, epoch: int) -> None:
        self.clock, self.at = clock, (number, epoch)

    def trial_started(self, number, backbone, params) -> None:
        pass

    def epoch_done(self, number, result, epochs) -> None:
        if (number, result.epoch) == self.at:
            self.clock.t += 1e6

    def trial_done(self, number, state, value, reason) -> None:
        pass

    def note(self, number, message) -> None:
        pass


@pytest.fixture
def schedules(monkeypatch):
    """Every lr schedule a Trainer plans, in order (its total and warm-up steps)."""
    from autotransfer.finetune import trainer as trainer_module

    made = []

    class Recorded(trainer_module.WarmupCosine):
        def __init__(self, total_steps, warmup_steps):
            super().__init__(total_steps, warmup_steps)
            made.append((total_steps, warmup_steps))

    monkeypatch.setattr(trainer_module, "WarmupCosine", Recorded)
    return made


def test_a_trial_the_deadline_stops_after_one_epoch_completes_and_train_replays_its_plan(
        tiny_zoo, images, tmp_path, monkeypatch, schedules):
    """Trial 0 completes its 3 epochs; the deadline passes after trial 1's first: trial 1
    completes with that epoch's score (not pruned), and its refit plans the cosine over 3
    epochs as the trial did, and stops after 1."""
    from autotransfer.study.budget import timebudget

    clock = _Clock()
    monkeypatch.setattr(timebudget, "now", clock)
    space = {**SPACE, "epochs": 3,
             "params": {**SPACE["params"], "warmup_fraction": 0.1,
                        "lr": {"type": "categorical", "choices": [1e-2, 1e-3]}}}
    del space["max_epochs"]
    storage = f"sqlite:///{tmp_path}/s.db"
    queued = optuna.create_study(study_name="c", storage=storage, direction="maximize")
    queued.enqueue_trial({"backbone": "tiny/a", "lr": 1e-3})
    queued.enqueue_trial({"backbone": "tiny/a", "lr": 1e-2})
    study = _search(images, tmp_path, space, trials=3, time_budget=1000,
                    progress=_JumpAfter(clock, 1, 1))
    first, trial = study.trials  # nothing started after the deadline
    assert first.state.name == "COMPLETE" and first.user_attrs["epochs_trained"] == 3
    assert trial.state.name == "COMPLETE"
    assert trial.value == trial.intermediate_values[1]  # its one epoch's score
    assert trial.user_attrs["epochs_trained"] == 1
    (end,) = trial.user_attrs["continuations"]
    assert (end["after"], end["epochs"], end["rule"]) == (1, 1, "time_budget")
    assert end["reason"].startswith("time budget: stopped after epoch 1/3, the next needs ~")
    assert schedules == [(3 * 4, 1)] * 2  # 64 training images in batches of 16: 4 steps
    best_yaml = tmp_path / "out" / "best.yaml"
    best = yaml.safe_load(best_yaml.read_text())
    assert best["source"]["trial"] == 1  # the test's premise: 1e-3 barely learns in 3 epochs
    assert best["epochs"] == 1 and best["val_score"] == trial.value
    assert best["training"] == {"epochs": 1, "lengths": [3], "continuations": 0,
                                "ended": end["reason"]}
    report = (tmp_path / "out" / "report.md").read_text()
    assert "The pick trained 1 epoch, not continued; time budget: stopped after epoch 1/3" in report
    again = train(best_yaml, out=tmp_path / "model", device="cpu", refit_on="train")
    assert schedules[2:] == [(3 * 4, 1)]  # the cosine planned over 3 epochs, as the trial's
    assert again.epochs == 1 and len(again.history) == 1  # and stopped after the first
    metrics = json.loads((tmp_path / "model" / "autotransfer.json").read_text())["metrics"]
    assert (metrics["epochs"], metrics["lengths"]) == (1, [3])
    assert again.val["accuracy"] == trial.value  # the same plan, the same model
