"""Trial control as rules (autotransfer.study.budget.rules): each start and epoch rule alone on
fakes (a fake trial, context and epoch result, a real Deadline on a fake clock), then the list:
the first reason wins, and it is recorded with its rule's name."""

import math
from types import SimpleNamespace

import optuna
import pytest

from autotransfer.finetune.records import (
    REFERENCE,
    TrialRecord,
    TrialWriter,
    set_reference_until,
)
from autotransfer.study.budget import rules, timebudget
from autotransfer.study.workers import _STOP


class FakeTrial:
    """What the rules use of an ``optuna.Trial``: its reports and the pruner's answer."""

    def __init__(self, number=1, kind=None, prune=False, study=None):
        self.number, self.study, self.prune = number, study, prune
        self.user_attrs = {REFERENCE: kind} if kind else {}
        self.reports = []

    def report(self, score, step):
        self.reports.append((score, step))

    def should_prune(self):
        return self.prune


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(timebudget, "now", clock)
    return clock


def context(deadline=None, *, floor=False, epochs=3, notes=None, max_epochs=None,
            patience=None):
    space = SimpleNamespace(epochs=epochs, metric="accuracy", epoch_cap=max_epochs or epochs,
                            budget=SimpleNamespace(cost_aware=True, reference_share=0.3,
                                                   patience=patience))
    progress = None if notes is None else SimpleNamespace(
        note=lambda number, line: notes.append(line))
    return SimpleNamespace(space=space, deadline=deadline, floor=floor, grace_said=False,
                           progress=progress)


def epoch_view(trial=None, ctx=None, *, epoch=1, score=0.5, loss=1.0, first_loss=1.0, pace=5.0,
               multi_objective=False, seconds=4.0, planned=0, scores=()):
    result = SimpleNamespace(epoch=epoch, score=score, train_loss=loss, seconds=seconds,
                             val_seconds=1.0)
    return rules.EpochView(trial or FakeTrial(), result, ctx or context(), first_loss=first_loss,
                           pace=pace, multi_objective=multi_objective, planned=planned,
                           scores=scores)


# -- epoch rules, each alone ------------------------------------------------------------------


def test_stop_signal_interrupts_only_when_the_process_was_told_to_stop():
    assert rules.StopSignal()(epoch_view()) is None
    _STOP.set()
    try:
        assert rules.StopSignal()(epoch_view()) == "stop requested"
        assert rules.StopSignal.action == "interrupt"
    finally:
        _STOP.clear()


def test_divergence_stops_a_non_finite_or_exploding_loss():
    assert rules.Divergence()(epoch_view(loss=1.2)) is None
    assert rules.Divergence()(epoch_view(loss=math.nan)).startswith("diverged: training loss nan")
    assert "is over" in rules.Divergence()(epoch_view(loss=1e4, first_loss=1.0))


def test_time_budget_stops_when_the_next_epoch_cannot_end_and_reports_the_score_first(clock):
    deadline = timebudget.Deadline(at=1020.0, reserve=5.0)  # 15 s left for trials
    trial = FakeTrial()
    assert rules.TimeBudgetStop()(epoch_view(trial, context(deadline), pace=10.0)) is None
    reason = rules.TimeBudgetStop()(epoch_view(trial, context(deadline), pace=20.0, score=0.7))
    assert reason == ("time budget: stopped after epoch 1/3, the next needs ~20s and 15s are "
                      "left")
    assert trial.reports == [(0.7, 1)]  # pruned with its last score
    multi = FakeTrial()  # Optuna refuses a multi-objective trial's reports
    assert rules.TimeBudgetStop()(epoch_view(multi, context(deadline), pace=20.0,
                                             multi_objective=True)) is not None
    assert multi.reports == []
    assert rules.TimeBudgetStop()(epoch_view(trial, context(None), pace=1e9)) is None


def test_time_budget_forgets_the_last_batch_check_when_the_trial_goes_on(clock):
    deadline = timebudget.Deadline(at=2000.0, reserve=5.0)
    deadline.check()
    assert deadline._last is not None
    assert rules.TimeBudgetStop()(epoch_view(ctx=context(deadline))) is None
    assert deadline._last is None  # validation is not a batch


def test_pruner_reports_and_prunes_before_the_last_epoch_only():
    trial = FakeTrial(prune=True)
    reason = rules.Pruner()(epoch_view(trial, epoch=1, score=0.25))
    assert reason == "pruned after epoch 1/3: accuracy 0.2500 below the pruner's bar"
    assert trial.reports == [(0.25, 1)]
    assert rules.Pruner()(epoch_view(FakeTrial(prune=True), epoch=3)) is None  # the last epoch
    assert rules.Pruner()(epoch_view(FakeTrial(prune=False), epoch=1)) is None


def test_pruner_spares_a_linear_probe_and_never_reports_a_multi_objective_trial():
    probe = FakeTrial(prune=True, kind="linear_probe")
    assert rules.Pruner()(epoch_view(probe)) is None and probe.reports == [(0.5, 1)]
    default = FakeTrial(prune=True, kind="default")  # a default is pruned like any trial
    assert rules.Pruner()(epoch_view(default)) is not None
    multi = FakeTrial(prune=True)
    assert rules.Pruner()(epoch_view(multi, multi_objective=True)) is None
    assert multi.reports == []


def test_floor_grace_renews_the_floors_grace_at_the_epochs_pace_and_says_so_once(clock):
    notes = []
    deadline = timebudget.Deadline(at=1010.0, reserve=5.0)  # 5 s left, 10 s to the grace's end
    ctx = context(deadline, floor=True, notes=notes)
    # 2 epochs left at 4 + 1 s (the first epoch's pace without its load): 10 s, in the grace
    assert rules.FloorGrace()(epoch_view(ctx=ctx, epoch=1, pace=99.0)) is None
    assert deadline.grace == deadline.reserve + timebudget.FLOOR_GRACE
    assert rules.FloorGrace()(epoch_view(ctx=ctx, epoch=2, pace=3.0)) is None
    assert notes == ["time budget: this first fine-tune is the floor, so it may end up "
                     "to 3s past the budget"]
    other = timebudget.Deadline(at=1010.0, reserve=5.0)
    rules.FloorGrace()(epoch_view(ctx=context(other, floor=False), epoch=1))
    assert other.grace == 0.0  # not the floor: no grace


# -- start rules, each alone (a real in-memory study) -----------------------------------------


def _study_trial(kind=None, *, defaults_before=0):
    study = optuna.create_study()
    for _ in range(defaults_before):
        earlier = study.ask()
        earlier.set_user_attr(REFERENCE, "default")
    trial = study.ask()
    if kind:
        trial.set_user_attr(REFERENCE, kind)
    return trial


def start_view(trial, ctx, kind=None):
    spec = SimpleNamespace(id="fake/tiny-cnn", label="fake/tiny-cnn")
    return rules.StartView(trial, spec, {"batch_size": 8, "freeze_fraction": 0.0}, kind, ctx)


def test_time_budget_start_keeps_a_trial_from_starting_once_the_time_is_spent(clock):
    trial = _study_trial()
    assert rules.TimeBudgetStart()(start_view(trial, context(None))) is None
    spent = timebudget.Deadline(at=1003.0, reserve=5.0)
    assert rules.TimeBudgetStart()(start_view(trial, context(spent))) == (
        "time budget: not started, the time for trials is spent")
    assert spent.skipped == 1
    left = timebudget.Deadline(at=1100.0, reserve=5.0)
    assert rules.TimeBudgetStart()(start_view(trial, context(left))) is None


def test_reference_share_start_stops_a_reference_past_its_share_but_not_the_floor(clock):
    trial = _study_trial("default", defaults_before=1)  # the second default: not the floor
    set_reference_until(trial.study, 990.0)  # the share ended 10 s ago
    reason = rules.ReferenceShareStart()(start_view(trial, context(), "default"))
    assert reason.startswith("reference share: the first fine-tune of fake/tiny-cnn not started")
    first = _study_trial("default")
    set_reference_until(first.study, 990.0)
    assert rules.ReferenceShareStart()(start_view(first, context(), "default")) is None
    assert rules.ReferenceShareStart()(start_view(trial, context(), None)) is None  # sampled


def test_floor_grace_start_marks_only_the_first_default_as_the_floor():
    ctx = context()
    assert rules.FloorGraceStart()(start_view(_study_trial("default"), ctx, "default")) is None
    assert ctx.floor is True
    rules.FloorGraceStart()(start_view(_study_trial("default", defaults_before=1), ctx,
                                       "default"))
    assert ctx.floor is False


# -- the lists --------------------------------------------------------------------------------


class Says:
    def __init__(self, name, reason, action="prune"):
        self.name, self.reason, self.action, self.asked = name, reason, action, 0

    def __call__(self, view):
        self.asked += 1
        return self.reason


def test_the_first_reason_wins_and_later_rules_are_not_asked():
    quiet, first, later = Says("quiet", None), Says("first", "one"), Says("later", "two")
    assert rules.first_verdict([quiet, first, later], None) == rules.Verdict("first", "one")
    assert (quiet.asked, first.asked, later.asked) == (1, 1, 0)
    assert rules.first_verdict([quiet], None) is None


def test_enforce_records_the_reason_with_its_rule_on_the_trial():
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="too slow"):
        rules.enforce([Says("quiet", None), Says("slow", "too slow")], None, TrialWriter(trial))
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    record = TrialRecord.from_frozen(study.trials[0])
    assert (record.prune_reason, record.rule, record.not_started) == ("too slow", "slow", False)


def test_a_start_rules_reason_marks_the_trial_not_started():
    study = optuna.create_study()
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        rules.enforce([Says("memory", "no room")], None, TrialWriter(trial), starting=True)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    record = TrialRecord.from_frozen(study.trials[0])
    assert (record.prune_reason, record.rule, record.not_started) == ("no room", "memory", True)


def test_an_interrupting_rule_raises_keyboard_interrupt_and_an_unknown_action_is_refused():
    with pytest.raises(KeyboardInterrupt):
        rules.enforce([Says("stop", "stop requested", "interrupt")], None, None)
    with pytest.raises(ValueError, match="trial rule 'later': action must be one of prune, "
                                         "interrupt, continue, finish, got 'pause'"):
        rules.enforce([Says("later", "resume me", "pause")], None, None)


def test_the_default_lists_keep_todays_order():
    assert [r.name for r in rules.START_RULES] == ["time_budget", "reference_share",
                                                   "floor_grace"]
    assert [r.name for r in rules.EPOCH_RULES] == ["stop_signal", "divergence", "floor_grace",
                                                   "plateau", "continuation_end", "first_result",
                                                   "time_budget", "pruner", "continuation"]


# -- freeze-thaw continuation -----------------------------------------------------------------


def _study_with_best(value):
    """A real in-memory study whose best completed trial scored ``value`` (None: none did)."""
    study = optuna.create_study(direction="maximize")
    if value is not None:
        study.add_trial(optuna.trial.create_trial(value=value))
    return study


def _at_last_epoch(*, best=0.6, score=0.7, scores=(0.5, 0.6, 0.7), epochs=3, max_epochs=12,
                   deadline=None, kind=None, multi_objective=False, pace=5.0):
    trial = FakeTrial(kind=kind, study=_study_with_best(best))
    ctx = context(deadline, epochs=epochs, max_epochs=max_epochs)
    return epoch_view(trial, ctx, epoch=len(scores), score=score, scores=scores, pace=pace,
                      multi_objective=multi_objective)


def test_continuation_doubles_a_leader_that_still_improves_up_to_max_epochs():
    rule = rules.Continuation()
    view = _at_last_epoch()
    assert rule(view) == ("continued after epoch 3 to 6 epochs: it leads with accuracy 0.7000 "
                          "and still improves, best earlier 0.6000")
    assert rule.action == "continue" and rule.epochs(view) == 6
    capped = _at_last_epoch(max_epochs=5)
    assert rule.epochs(capped) == 5  # the doubling is cut at max_epochs
    assert rule(_at_last_epoch(best=None)) is not None  # the first trial to complete leads


def test_continuation_needs_the_lead_the_improvement_and_room():
    rule = rules.Continuation()
    assert rule(_at_last_epoch(best=0.8)) is None  # does not lead
    assert rule(_at_last_epoch(scores=(0.5, 0.7, 0.7))) is None  # no better than epoch 2
    assert rule(_at_last_epoch(scores=(0.5, 0.6995, 0.7))) is None  # by less than MIN_DELTA
    assert rule(_at_last_epoch(max_epochs=None)) is None  # max_epochs unset: epochs is the cap
    assert rule(_at_last_epoch(kind="linear_probe")) is None
    assert rule(_at_last_epoch(multi_objective=True)) is None
    before_last = _at_last_epoch()
    before_last.result.epoch = 2
    assert rule(before_last) is None  # only at the planned last epoch


def test_continuation_under_a_time_budget_needs_the_new_segment_to_fit(clock):
    rule = rules.Continuation()
    deadline = timebudget.Deadline(at=clock.t + 40.0, reserve=5.0)  # 35 s for trials
    assert rule(_at_last_epoch(deadline=deadline, pace=12.0)) is None  # 3 x 12 s > 35 s
    assert rule(_at_last_epoch(deadline=deadline, pace=11.0)) is not None  # 33 s fit
    deadline.grace = 10.0  # the floor's grace past the deadline pays for no continuation
    assert rule(_at_last_epoch(deadline=deadline, pace=11.0)) is not None
    assert rule(_at_last_epoch(deadline=deadline, pace=12.0)) is None


def test_a_continued_trial_is_reported_but_never_pruned_and_the_deadline_finishes_it(clock):
    trial = FakeTrial(prune=True)
    ctx = context(timebudget.Deadline(at=clock.t + 12.0, reserve=2.0), epochs=3, max_epochs=12)
    view = epoch_view(trial, ctx, epoch=4, score=0.8, planned=6, pace=5.0)
    assert view.continued and view.epochs == 6
    assert rules.Pruner()(view) is None and trial.reports == [(0.8, 4)]
    assert rules.ContinuationEnd()(view) is None  # 10 s left, the next epoch needs 5
    clock.t += 6.0
    reason = rules.ContinuationEnd()(view)
    assert reason == ("time budget: continuation ended after epoch 4/6, the next needs ~5s and "
                      "4s are left")
    assert rules.ContinuationEnd.action == "finish" and rules.ContinuationEnd().epochs(view) == 4
    assert trial.reports[-1] == (0.8, 4)  # the pruner's view still has this epoch
    not_continued = epoch_view(FakeTrial(), ctx, epoch=2, planned=3)
    assert rules.ContinuationEnd()(not_continued) is None  # TimeBudgetStop's, that one


def test_enforce_returns_a_plan_verdict_and_records_it_on_the_trial():
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    view = _at_last_epoch(best=None)
    verdict = rules.enforce([rules.Continuation()], view, TrialWriter(trial))
    assert (verdict.action, verdict.epochs, verdict.rule) == ("continue", 6, "continuation")
    study.tell(trial, 0.7)
    record = TrialRecord.from_frozen(study.trials[0])
    assert record.continuations == [{"after": 3, "epochs": 6, "rule": "continuation",
                                     "reason": verdict.reason}]
    assert record.continued == 1


def test_improves_compares_the_last_epoch_with_the_best_earlier_one():
    assert rules.improves([0.5])  # one epoch: nothing to compare with
    assert rules.improves([0.5, 0.7, 0.6, 0.702])
    assert not rules.improves([0.5, 0.7, 0.6, 0.7005])
    assert rules.improves([0.5, 0.5], min_delta=-1.0)


def test_the_time_budget_finishes_a_trial_while_none_has_completed(clock):
    """FirstResult: the stop TimeBudgetStop would give becomes a finish at this epoch while
    the study has no completed trial; once one has, it leaves the trial to TimeBudgetStop."""
    study = optuna.create_study(direction="maximize")
    deadline = timebudget.Deadline(at=clock.t + 20.0, reserve=5.0)  # 15 s left for trials
    trial = FakeTrial(study=study)
    rule = rules.FirstResult()
    assert rule(epoch_view(trial, context(deadline), epoch=2, pace=10.0)) is None  # it fits
    view = epoch_view(trial, context(deadline), epoch=2, pace=20.0, score=0.9)
    assert rule(view) == ("time budget: finished after epoch 2/3, the next needs ~20s and 15s "
                          "are left; no trial had completed, so it is the study's first result")
    assert rules.FirstResult.action == "finish" and rule.epochs(view) == 2
    assert trial.reports == [(0.9, 2)]
    study.add_trial(optuna.trial.create_trial(value=0.5))
    assert rule(view) is None  # TimeBudgetStop finishes it, with its own reason
    assert rules.TimeBudgetStop()(view) is not None


def test_the_time_budget_finishes_a_scored_trial_at_this_epoch_rather_than_pruning_it(clock):
    """TimeBudgetStop: a trial whose next epoch cannot end in time completes with this epoch
    (a plan verdict to its epoch, recorded with the reason), whatever the study has; the score
    is reported first, so the pruner's view of the trial has this epoch."""
    study = _study_with_best(0.95)  # a better trial has completed
    deadline = timebudget.Deadline(at=clock.t + 20.0, reserve=5.0)  # 15 s left for trials
    trial = FakeTrial(study=study)
    view = epoch_view(trial, context(deadline), epoch=2, pace=20.0, score=0.9)
    assert rules.TimeBudgetStop.action == "finish"
    real = study.ask()
    verdict = rules.enforce([rules.TimeBudgetStop()], view, TrialWriter(real))
    assert (verdict.rule, verdict.action, verdict.epochs) == ("time_budget", "finish", 2)
    assert verdict.reason == "time budget: stopped after epoch 2/3, the next needs ~20s and 15s " \
                             "are left"
    assert trial.reports == [(0.9, 2)]
    study.tell(real, 0.9)
    record = TrialRecord.from_frozen(study.trials[-1])
    assert record.state == "complete" and record.prune_reason is None
    assert record.ended == record.reason == verdict.reason
    assert rules.TimeBudgetStop()(epoch_view(FakeTrial(study=study), context(deadline), epoch=2,
                                             pace=10.0)) is None  # the next epoch fits


# -- early stopping on a plateau --------------------------------------------------------------


def _plateau_view(scores, *, patience=2, planned=12, kind=None, trial=None):
    ctx = context(epochs=3, max_epochs=12, patience=patience)
    return epoch_view(trial or FakeTrial(kind=kind), ctx, epoch=len(scores), score=scores[-1],
                      scores=scores, planned=planned)


def test_plateau_since_finds_the_last_improvement_by_more_than_min_delta():
    assert rules.plateau_since([0.5]) == (1, 0.5)
    assert rules.plateau_since([0.5, 0.7, 0.7005, 0.69]) == (2, 0.7)  # 0.7005: within delta
    assert rules.plateau_since([0.5, 0.7, 0.6, 0.75]) == (4, 0.75)
    with pytest.raises(ValueError, match="scores is empty"):
        rules.plateau_since([])


def test_plateau_finishes_a_trial_after_patience_epochs_without_improvement():
    rule = rules.Plateau()
    assert rule(_plateau_view([0.5, 0.7, 0.69])) is None  # 1 epoch since the best, patience 2
    trial = FakeTrial()
    view = _plateau_view([0.5, 0.7, 0.69, 0.7], trial=trial)
    assert rule(view) == ("plateau: accuracy has not beaten 0.7000 (epoch 2) by more than "
                          "0.001 for 2 epochs (patience 2); finished after epoch 4 of 12")
    assert rule.action == "finish" and rule.epochs(view) == 4
    assert trial.reports == [(0.7, 4)]  # the pruner's view has the epoch it ended on
    # off by default; never a linear probe; never at the planned last epoch (it ends there)
    assert rule(_plateau_view([0.5, 0.7, 0.69, 0.7], patience=None)) is None
    assert rule(_plateau_view([0.5, 0.7, 0.69, 0.7], kind="linear_probe")) is None
    assert rule(_plateau_view([0.5, 0.7, 0.69, 0.7], planned=4)) is None


def test_a_plateau_completes_the_trial_with_its_reason_recorded():
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    view = _plateau_view([0.5, 0.7, 0.69, 0.7])
    verdict = rules.enforce(rules.EPOCH_RULES, view, TrialWriter(trial))
    assert (verdict.action, verdict.epochs, verdict.rule) == ("finish", 4, "plateau")
    study.tell(trial, 0.7)  # the objective completes it with what it has
    record = TrialRecord.from_frozen(study.trials[0])
    assert record.state == "complete" and record.continued == 0
    assert record.ended == verdict.reason and verdict.reason.startswith("plateau: ")
