"""``search --time-budget``: the plumbing of the stop at an epoch or batch boundary, the pruned
record with its reason, the start rule and the deadline shared through the study, on a fake
clock (:func:`autotransfer.study.budget.timebudget.now`) that only moves when a test says so.
No test here measures time; benchmarks/time_budget.py does."""

import time

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState, create_trial

from autotransfer.contract.collect import get_backbone
from autotransfer.data import load_data
from autotransfer.finetune import records
from autotransfer.finetune.trainer import Trainer
from autotransfer.space.hyperparameters import defaults
from autotransfer.space.schema import parse_space
from autotransfer.study.budget import timebudget
from autotransfer.study.options import SearchOptions
from autotransfer.study.store.storage import StudyLock, make_storage
from autotransfer.study.study import run_worker, search
from autotransfer.study.workers import WorkerSpec, tally

SPACE = {
    "backbones": [{"id": "timm/test_efficientnet", "pretrained": False}],
    "epochs": 2,
    "pruner": "none",
    "params": {"image_size": 32, "batch_size": 4, "freeze_fraction": 0.0},
}


class Clock:
    """A wall clock that stands still until :meth:`jump`."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t

    def jump(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(timebudget, "now", fake)
    return fake


class Jumps:
    """A progress view that moves the clock past any deadline at chosen points of the run:
    ``("start", trial)`` or ``("epoch", trial, epoch)``."""

    def __init__(self, clock: Clock, *points) -> None:
        self.clock, self.points = clock, set(points)

    def trial_started(self, number, backbone, params) -> None:
        if ("start", number) in self.points:
            self.clock.jump(1e6)

    def epoch_done(self, number, result, epochs) -> None:
        if ("epoch", number, result.epoch) in self.points:
            self.clock.jump(1e6)

    def trial_done(self, number, state, value, reason) -> None:
        pass

    def note(self, number, message) -> None:
        pass


def _search(root, data, progress, **options):
    return search(data, parse_space(SPACE), storage=f"sqlite:///{root}/s.db", study_name="s",
                  out=root / "out", progress=progress, history=False, **options)


def test_the_running_trial_stops_at_an_epoch_boundary_and_completes_with_its_last_score(
        class_folders, tmp_path, clock):
    result = _search(tmp_path, class_folders, Jumps(clock, ("epoch", 1, 1)), trials=3,
                     time_budget=1000)
    trials = result.study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.COMPLETE]  # no third
    stopped = trials[1]
    assert stopped.value == stopped.intermediate_values[1]  # the last score is its value
    assert stopped.user_attrs["epochs_trained"] == 1
    (end,) = stopped.user_attrs["continuations"]
    assert (end["after"], end["epochs"], end["rule"]) == (1, 1, "time_budget")
    assert end["reason"].startswith("time budget: stopped after epoch 1/2, the next needs ~")
    assert "prune_reason" not in stopped.user_attrs
    rows = {r["trial"]: r for r in result.leaderboard}
    assert rows[1]["state"] == "complete" and rows[1]["reason"] == end["reason"]
    assert rows[0]["reason"] == ""  # it ran its planned length
    assert "time budget: stopped after epoch 1/2" in (tmp_path / "out" / "leaderboard.csv"
                                                      ).read_text()
    attrs = result.study.user_attrs
    assert attrs["deadline"] == pytest.approx(clock.t - 1e6 + 1000, abs=1e-6)
    assert attrs["write_seconds"] >= 0  # measured for the reserve of the next run


def test_a_trial_whose_loading_used_the_time_up_stops_before_its_first_score(
        class_folders, tmp_path, clock):
    result = _search(tmp_path, class_folders, Jumps(clock, ("start", 1)), trials=2,
                     time_budget=1000)
    first, stopped = result.study.trials
    assert first.state == TrialState.COMPLETE
    assert stopped.state == TrialState.PRUNED and stopped.value is None
    assert stopped.intermediate_values == {}
    assert stopped.user_attrs["prune_reason"] == (
        "time budget: stopped in epoch 1/2, before its first score")
    # what it ran without reaching a report is a lower bound for the start rule
    assert stopped.user_attrs["first_report_unreached"] is True
    assert "first_report_seconds" in first.user_attrs
    assert (tmp_path / "out" / "best.yaml").is_file()


def test_the_running_trial_stops_at_a_batch_boundary(class_folders, tmp_path, clock,
                                                      monkeypatch):
    checks = []
    check = timebudget.Deadline.check

    def jump_at_the_second_batch(self) -> None:  # checks: before the split, batch 1, batch 2
        checks.append(1)
        if len(checks) == 3:
            clock.jump(1e6)
        check(self)

    monkeypatch.setattr(timebudget.Deadline, "check", jump_at_the_second_batch)
    result = _search(tmp_path, class_folders, None, trials=1, time_budget=1000)
    (stopped,) = result.study.trials
    assert len(checks) == 3
    assert stopped.state == TrialState.PRUNED and stopped.value is None
    assert stopped.user_attrs["prune_reason"] == (
        "time budget: stopped in epoch 1/2, before its first score")


def test_a_stopped_multi_objective_trial_completes_with_its_measured_costs(
        class_folders, tmp_path, clock):
    """Costs are measured after training: a trial the time budget finishes is measured like
    any completed one (latency, an objective, even with the time spent), so it has every
    objective's value; nothing is reported to Optuna (it refuses several objectives' reports)."""
    space = parse_space({**SPACE, "objectives": ["accuracy", "latency_ms"]})
    result = search(class_folders, space, storage=f"sqlite:///{tmp_path}/s.db", study_name="s",
                    out=tmp_path / "out", progress=Jumps(clock, ("epoch", 1, 1)),
                    history=False, trials=3, time_budget=1000)
    first, stopped = result.study.trials
    assert first.state == stopped.state == TrialState.COMPLETE
    assert stopped.user_attrs["epochs_trained"] == 1
    assert stopped.user_attrs["continuations"][0]["rule"] == "time_budget"
    record = records.TrialRecord.from_frozen(stopped)
    assert stopped.values[0] == record.scores["accuracy"]  # epoch 1's
    assert stopped.values[1] == record.costs["latency_ms"] > 0
    assert stopped.intermediate_values == {}


class AfterEpoch(Jumps):
    """A progress view that counts the epochs done, so that a batch check can jump the clock
    inside a chosen epoch."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.done = 0

    def epoch_done(self, number, result, epochs) -> None:
        self.done = result.epoch


def test_a_trial_stopped_inside_a_later_epoch_completes_with_its_last_scored_epoch(
        class_folders, tmp_path, clock, monkeypatch):
    progress, checks = AfterEpoch(clock), []
    check = timebudget.Deadline.check

    def jump_at_the_second_batch_of_epoch_2(self) -> None:
        if progress.done == 1:
            checks.append(1)
            if len(checks) == 2:
                clock.jump(1e6)
        check(self)

    monkeypatch.setattr(timebudget.Deadline, "check", jump_at_the_second_batch_of_epoch_2)
    result = _search(tmp_path, class_folders, progress, trials=1, time_budget=1000)
    (stopped,) = result.study.trials
    assert len(checks) == 2 and progress.done == 1  # stopped inside epoch 2
    assert stopped.state == TrialState.COMPLETE
    assert stopped.value == stopped.intermediate_values[1]  # epoch 1's score
    assert stopped.user_attrs["epochs_trained"] == 1
    assert stopped.user_attrs["continuations"] == [{
        "after": 1, "epochs": 1, "rule": "time_budget",
        "reason": "time budget: stopped inside epoch 2/2; completed with epoch 1"}]
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert best["epochs"] == 1
    best["training"].pop("averaging")  # a timm backbone's first fine-tune averages epoch ends
    assert best["training"] == {"epochs": 1, "lengths": [2], "continuations": 0,
                                "ended": "time budget: stopped inside epoch 2/2; completed "
                                         "with epoch 1"}


def test_the_trainer_stops_before_the_batch_its_check_refuses(class_folders):
    data = load_data(class_folders, seed=0)  # 16 training images: 4 batches of 4
    backbone = get_backbone("timm/test_efficientnet").load(pretrained=False)
    params = {**defaults(), "image_size": 32, "batch_size": 4, "freeze_fraction": 0.0}
    calls, steps = [], []

    def check() -> None:  # once before the training split is prepared, then before each batch
        calls.append(1)
        if len(calls) == 4:
            raise timebudget.TimeBudgetSpent

    trainer = Trainer(backbone, data, params, device=torch.device("cpu"), seed=0, cache=False,
                      batch_check=check)
    trainer.optimizer.register_step_post_hook(lambda *_: steps.append(1))
    epochs = []
    with pytest.raises(timebudget.TimeBudgetSpent):
        trainer.fit(2, epochs.append)
    assert (len(calls), len(steps), epochs) == (4, 2, [])


def test_a_batch_check_stops_when_the_next_batch_would_overrun(clock):
    deadline = timebudget.Deadline(at=clock.t + 100, reserve=10)  # 90 s for trials
    deadline.trial_started()
    deadline.check()  # before the training split is encoded (75 s here): not a batch's time
    clock.jump(75)
    deadline.check()  # the first batch: 15 s left, no batch time measured yet
    clock.jump(5)
    deadline.check()  # a batch took 5 s; 10 s are left
    clock.jump(5)
    with pytest.raises(timebudget.TimeBudgetSpent):  # 5 s left: the next batch would end at 90
        deadline.check()
    with pytest.raises(timebudget.TimeBudgetSpent):
        deadline.check()
    deadline.trial_started()  # a new trial: the old batch times are forgotten
    deadline.check()


def _study_with(measured):
    study = optuna.create_study(direction="maximize")
    for backbone, size, freeze, batch, seconds in measured:
        study.add_trial(create_trial(
            state=TrialState.COMPLETE, value=0.5,
            user_attrs={"backbone": backbone, records.FIRST_REPORT_SECONDS: seconds,
                        "params": {"image_size": size, "freeze_fraction": freeze,
                                   "batch_size": batch}}))
    return study


def test_the_start_rule_estimates_from_the_nearest_measured_configuration(clock):
    study = _study_with([("a", 96, 0.0, 32, 80.0), ("a", 96, 0.9, 32, 20.0),
                         ("a", 224, 0.9, 32, 200.0), ("b", 96, 0.5, 32, 5.0)])
    estimate = timebudget.estimate_first_report
    assert estimate(study, "a", {"image_size": 96, "freeze_fraction": 0.8, "batch_size": 32}) \
        == 20.0
    assert estimate(study, "a", {"image_size": 96, "freeze_fraction": 0.1, "batch_size": 32}) \
        == 80.0
    assert estimate(study, "a", {"image_size": 224, "freeze_fraction": 0.1,
                                 "batch_size": 64}) == 200.0
    assert estimate(study, "a", {"image_size": 128, "freeze_fraction": 0.1}) is None
    assert estimate(study, "c", {"image_size": 96}) is None

    deadline = timebudget.Deadline(at=clock.t + 60, reserve=10)  # 50 s for trials
    slow = {"image_size": 96, "freeze_fraction": 0.0, "batch_size": 32}
    fast = {"image_size": 96, "freeze_fraction": 0.9, "batch_size": 32}
    assert timebudget.not_starting(deadline, study, "a", fast) is None
    assert timebudget.not_starting(deadline, study, "c", slow) is None  # not measured: starts
    assert timebudget.not_starting(deadline, study, "a", slow) == (
        "time budget: not started, a needs ~80s to its first report and 50s are left")
    assert deadline.can_start(study)  # "b" fits
    clock.jump(46)  # 4 s left: not even the fastest configuration reaches a report
    assert not deadline.can_start(study)


def test_a_worker_stops_after_too_many_configurations_too_slow_to_start(clock):
    study = _study_with([("a", 96, 0.0, 32, 80.0), ("b", 96, 0.0, 32, 5.0)])
    deadline = timebudget.Deadline(at=clock.t + 60, reserve=10)
    slow = {"image_size": 96, "freeze_fraction": 0.0, "batch_size": 32}
    for _ in range(timebudget.MAX_SKIPS):
        assert deadline.can_start(study)
        assert timebudget.not_starting(deadline, study, "a", slow) is not None
    assert not deadline.can_start(study)


def test_a_first_linear_probe_may_use_the_grace_when_nothing_has_completed(clock):
    """At an eighth of a grid's compute on text, start-up left 2 s and every search ended with
    ``no trial completed``: a first linear probe now starts when it can end within
    ``FLOOR_GRACE`` past the deadline, and keeps that grace while it runs; nothing else does."""
    study = optuna.create_study(direction="maximize")
    records.set_costs(study, {"a": {"load_seconds": 1.0, "train_sample_seconds": 0.01,
                                    "eval_sample_seconds": 0.01, "size": None,
                                    "size_key": None, "batch_size": 16, "n_train": 300,
                                    "n_val": 200}})
    probe = {"freeze_fraction": 1.0, "batch_size": 16}  # 1 + 500 x 0.01 = 6 s
    deadline = timebudget.Deadline(at=clock.t + 7, reserve=5)  # 2 s for trials
    assert timebudget.not_starting(deadline, study, "a", probe) == (
        "time budget: not started, a needs ~6s to its first report and 2s are left")
    assert timebudget.not_starting(deadline, study, "a", probe, probe=True) is None
    assert deadline.grace == 5 + timebudget.FLOOR_GRACE
    assert deadline.left() == pytest.approx(7 + timebudget.FLOOR_GRACE)  # its batches go on
    deadline.trial_started()  # the next trial has no grace
    assert deadline.left() == pytest.approx(2)
    clock.jump(3)  # the time for trials is spent, the probe could still end in the grace
    assert deadline.can_start(study)
    late = timebudget.Deadline(at=clock.t + 1, reserve=5)  # 4 s with the grace: too short
    assert timebudget.not_starting(late, study, "a", probe, probe=True) is not None
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.5))  # a result exists
    assert not deadline.can_start(study)
    assert timebudget.not_starting(deadline, study, "a", probe, probe=True) is not None


def test_a_first_linear_probe_that_started_in_time_goes_on_into_the_grace(clock):
    """A probe that fitted the start rule but whose frozen features took longer (a text probe
    at an eighth of the grid's compute was stopped at 8.9 s of its batches, and the search
    returned nothing) keeps going into the grace; once a trial completed, none does."""
    study = optuna.create_study(direction="maximize")
    probe = {"freeze_fraction": 1.0, "batch_size": 16}
    deadline = timebudget.Deadline(at=clock.t + 20, reserve=5)  # 15 s, nothing measured
    assert timebudget.not_starting(deadline, study, "a", probe, probe=True) is None
    assert deadline.probe_floor and deadline.grace == 0
    for _ in range(15):  # 1 s batches; the last one starts with 1 s left: the grace goes on
        deadline.check()
        clock.jump(1)
    assert deadline.grace == 5 + timebudget.FLOOR_GRACE
    with pytest.raises(timebudget.TimeBudgetSpent):  # and ends 3 s past the deadline
        for _ in range(15):
            deadline.check()
            clock.jump(1)
    assert clock.t - deadline.at == pytest.approx(timebudget.FLOOR_GRACE - 1)  # its last batch
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.5))
    later = timebudget.Deadline(at=clock.t + 20, reserve=5)
    assert timebudget.not_starting(later, study, "a", probe, probe=True) is None
    assert not later.probe_floor
    later.trial_started()
    assert not later.probe_floor


def test_the_best_ranked_default_may_finish_in_the_grace_when_what_it_has_left_ends_there(
        clock):
    """At a quarter of the oracle's image grid (37 s) MobileNetV2's default, the grid's best,
    started with 16 s left and was stopped after 2 of its 3 epochs: the floor's default now
    gets the grace when what it has left to run ends within it, and not otherwise."""
    fits = timebudget.Deadline(at=clock.t + 20, reserve=5)  # 15 s for trials, 23 s with grace
    assert not timebudget.floor_grace(fits, 15)  # it fits: no grace
    assert timebudget.floor_grace(fits, 16)
    assert fits.left() == pytest.approx(20 + timebudget.FLOOR_GRACE)  # its batches go on
    assert timebudget.stopping_after(fits, 2, 3, epoch_seconds=16) is None
    assert not timebudget.floor_grace(fits, 16)  # once per trial
    fits.trial_started()
    assert fits.left() == pytest.approx(15)
    tight = timebudget.Deadline(at=clock.t + 12, reserve=5)  # 15 s with the grace
    assert not timebudget.floor_grace(tight, 16)
    assert tight.left() == pytest.approx(7)
    assert timebudget.stopping_after(tight, 2, 3, epoch_seconds=16) is not None
    assert not timebudget.floor_grace(tight, None)  # nothing known: no grace


class Notes(Jumps):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.lines: list[str] = []

    def note(self, number, message) -> None:
        self.lines.append(message)


@pytest.mark.parametrize("past", [1.0, 10.0])
def test_the_floor_default_finishes_in_the_grace_only_when_its_last_epoch_ends_there(
        class_folders, tmp_path, clock, monkeypatch, past):
    """Through a real search (a linear probe, then the best-ranked default of 2 epochs): after
    the default's first epoch the clock is moved ``past`` seconds beyond the time for trials.
    1 s past, its last epoch ends within the grace and it completes both epochs; 10 s past,
    it does not: it is stopped after epoch 1, as any trial is, and completes with it."""
    real = timebudget.floor_grace
    calls = []

    def at_epoch_end(deadline, need):
        calls.append(need)
        if len(calls) == 2:  # the first call is at its start, the second after epoch 1
            clock.t = deadline.at - deadline.reserve + past
        return real(deadline, need)

    monkeypatch.setattr(timebudget, "floor_grace", at_epoch_end)
    # listed: the probe first, so that the default is not the study's first result (under a
    # time budget in ranked order the first fine-tune runs first; FirstResult then finishes it)
    space = {**SPACE, "params": {**SPACE["params"],
                                 "freeze_fraction": {"type": "float", "low": 0.0, "high": 1.0}},
             "budget": {"reference_order": "listed"}}
    notes = Notes(clock)
    result = search(class_folders, parse_space(space), storage=f"sqlite:///{tmp_path}/s.db",
                    study_name="s", out=tmp_path / "out", progress=notes, history=False,
                    trials=3, time_budget=1000)
    default = next(t for t in result.study.trials if t.user_attrs.get("reference") == "default")
    assert len(calls) >= 2 and calls[1] > 0, "the floor default was not offered the grace"
    granted = any("this first fine-tune is the floor" in line for line in notes.lines)
    if past < timebudget.FLOOR_GRACE:
        assert granted, notes.lines
        assert default.state == TrialState.COMPLETE, default.user_attrs.get("prune_reason")
        assert sorted(default.intermediate_values) == [1, 2]
    else:
        assert not granted and default.state == TrialState.COMPLETE
        assert sorted(default.intermediate_values) == [1]
        assert records.TrialRecord.from_frozen(default).ended.startswith(
            "time budget: stopped after epoch 1")
    assert len(result.study.trials) == 2  # nothing starts after it


def test_a_trial_not_started_does_not_count_towards_trials(clock):
    study = optuna.create_study()
    study.add_trial(create_trial(state=TrialState.PRUNED,
                                 user_attrs={records.NOT_STARTED: True}))
    study.add_trial(create_trial(state=TrialState.COMPLETE, value=1.0))
    assert tally(study).counted == 1


def test_the_deadline_is_shared_through_the_study(tmp_path, clock):
    storage = make_storage(f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(study_name="s", storage=storage)
    lock = StudyLock(storage, "s")
    t = clock.t
    assert timebudget.share(study, lock, None) is None  # no budget anywhere
    assert timebudget.share(study, lock, t + 100) == t + 100  # stored for the others
    assert timebudget.share(study, lock, None) == t + 100  # a worker without a budget obeys
    assert timebudget.share(study, lock, t + 500) == t + 100  # the earlier one holds
    assert timebudget.share(study, lock, t + 50) == t + 50
    assert study.user_attrs["deadline"] == t + 50
    clock.jump(60)  # the deadline of a run that is over does not bind the next one
    assert timebudget.share(study, lock, None) is None
    assert timebudget.share(study, lock, clock.t + 10) == clock.t + 10
    records.set_write_seconds(study, 2.0)  # measured by an earlier write
    deadline = timebudget.make_deadline(study, lock, None, None)
    assert deadline.reserve == timebudget.reserve_for(2.0) == 5.0


def test_a_worker_without_a_budget_stops_by_the_study_deadline(class_folders, tmp_path, clock):
    """What every worker process of ``--workers N`` (or on another machine) runs: it reads the
    deadline that the run with ``--time-budget`` stored with the study."""
    storage = f"sqlite:///{tmp_path}/s.db"
    _search(tmp_path, class_folders, None, trials=1, time_budget=1000)
    options = SearchOptions(data=str(class_folders), space=parse_space(SPACE), trials=2,
                            storage=storage, study_name="s", out=tmp_path / "out", cache=False,
                            history=False)
    spec = WorkerSpec(options, index=0, device="cpu", threads=1,
                      progress=Jumps(clock, ("start", 1)))
    run_worker(spec)
    study = optuna.load_study(study_name="s", storage=storage)
    first, second = study.trials
    assert first.state == TrialState.COMPLETE
    assert second.state == TrialState.PRUNED
    assert second.user_attrs["prune_reason"].startswith("time budget: stopped in epoch 1/2")


def test_a_budget_must_be_positive(class_folders, tmp_path):
    from autotransfer.errors import AutotransferError

    with pytest.raises(AutotransferError, match="time_budget must be > 0 seconds, got 0"):
        _search(tmp_path, class_folders, None, time_budget=0)


def test_process_age_counts_this_process(clock):
    assert 0.0 < timebudget.process_age() < 24 * 3600


def test_the_command_line_counts_from_the_process_start_and_shows_the_time_left(
        class_folders, tmp_path, capsys):
    from autotransfer.cli import main

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    main(["search", str(class_folders), "--space", str(space), "--trials", "1",
          "--time-budget", "3600", "--storage", f"sqlite:///{tmp_path}/s.db", "--study", "s",
          "--out", str(tmp_path / "out"), "--no-history"])
    out = capsys.readouterr().out
    assert "trial #0 of 1" in out and "s left" in out
    deadline = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db"
                                 ).user_attrs["deadline"]
    started = time.time() - timebudget.process_age()  # this process's start
    assert started + 3600 - 5 < deadline <= started + 3600 + 5


def test_the_report_skips_the_plots_that_would_end_after_the_budget(tmp_path, clock):
    from autotransfer.study.results.report import write_report

    study = _study_with([("a", 96, 0.0, 32, 8.0), ("a", 96, 0.5, 32, 6.0)])
    path = write_report(study, tmp_path, metric="accuracy", until=clock.t - 1)
    text = path.read_text()
    assert "not drawn, the time budget was spent" in text
    assert not list(tmp_path.glob("*.png"))
    assert (tmp_path / "leaderboard.csv").is_file()  # the tables are always written


def test_a_budget_spent_by_start_up_is_one_line_at_once(class_folders, tmp_path, capsys,
                                                        monkeypatch):
    """On a busy machine Python and its imports took most of a 3 s budget, and the run went
    on to read the data and ended at 14 s with "see the reasons above" and none above: now
    the budget is refused at once, naming the start-up measured and what to give instead."""
    from conftest import cli_error

    monkeypatch.setattr(timebudget, "process_age", lambda: 2.5)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    started = time.monotonic()
    err = cli_error(capsys, "search", str(class_folders), "--space", str(space),
                    "--time-budget", "3", "--storage", f"sqlite:///{tmp_path}/s.db",
                    "--out", str(tmp_path / "out"))
    assert time.monotonic() - started < 3
    assert "--time-budget 3 s is too short to start a search" in err
    assert "took 2.5 s" in err and "give --time-budget 30 or more" in err
    assert not (tmp_path / "s.db").exists() and not (tmp_path / "out").exists()
    # a quiet machine's 1.2 s of start-up: 3 s cannot prepare a study either (it ran 7.8 s)
    monkeypatch.setattr(timebudget, "process_age", lambda: 1.2)
    err = cli_error(capsys, "search", str(class_folders), "--space", str(space),
                    "--time-budget", "3", "--storage", f"sqlite:///{tmp_path}/s.db",
                    "--out", str(tmp_path / "out"))
    assert "--time-budget 3 s is too short to start a search" in err


def test_nothing_completed_always_says_why(tmp_path):
    """No reason above to point at: the line itself holds the trials' reasons, or, when no
    trial ran under a budget, the time the run took before one could start."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", study_name="s")
    line = timebudget.nothing_completed_line(study, 0.0, 12.0, 25.4)
    assert "see the reasons above" not in line
    assert "none could start within --time-budget 12 s" in line and "took 25 s" in line
    trial = study.ask()
    records.TrialWriter(trial).not_started("time budget: needs 40 s to its first score, 3 s left")
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    line = timebudget.nothing_completed_line(study, 0.0, 12.0, 25.4)
    assert line.endswith(": time budget: needs 40 s to its first score, 3 s left")
