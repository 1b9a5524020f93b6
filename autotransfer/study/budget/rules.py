"""Trial control as rules: whether a trial starts, and after each epoch whether it goes on.

A rule is a small callable object with a ``name`` and an ``action``. Called on a view of the
trial (:class:`StartView` before it trains, :class:`EpochView` after each epoch), it returns a
reason (``str``) when the trial must not start or must stop, else None. The objective runs
:data:`START_RULES` and :data:`EPOCH_RULES` (the defaults of
:class:`autotransfer.study.objective.TrialContext`) in order, and the first reason wins: the
later rules are not asked. :func:`enforce` acts on it by the rule's ``action``:

- ``"prune"``: the trial is recorded as pruned (by a start rule: not started, so that it does
  not count towards ``--trials``) with the reason and the rule's name
  (``TrialRecord.prune_reason`` and ``TrialRecord.rule``, :mod:`autotransfer.finetune.records`),
  and Optuna's ``TrialPruned`` ends it;
- ``"interrupt"``: the run was told to stop; the trial fails as interrupted
  (``KeyboardInterrupt``, recorded by the objective);
- ``"continue"`` (a freeze-thaw continuation): the trial trains on past its planned length, to
  the length the rule's ``epochs(view)`` gives, from the same trainer state;
- ``"finish"`` (the rules that subclass :class:`FinishHere`): the trial ends after this epoch
  and completes with what it has (a trial that the time budget stops after an evaluated
  epoch: an anytime search keeps the best model it has seen, so the time budget never prunes
  a trial that has a score).

These last two change the trial's plan: :func:`enforce` records them on the trial
(``TrialRecord.continuations``) and returns the :class:`Verdict`, whose ``epochs`` the objective
gives to ``Trainer.replan``. A rule may also act without stopping (the floor's grace extends
the deadline and returns None); :func:`enforce` refuses an action it does not know rather than
ignore it.

Freeze-thaw continuation (:class:`Continuation`; Swersky et al., 2014, "Freeze-Thaw Bayesian
Optimization", arXiv 1406.3896, for the idea of extending the promising runs rather than
starting new ones): the space's ``epochs`` is the first length a trial gets and
``max_epochs`` (default ``epochs``: no continuation) caps it. A trial that reaches its planned
last epoch continues, its planned length doubled up to ``max_epochs``, when (a) it leads: its
score is at least the value of the study's best completed trial (or none has completed), (b)
it still improves: its last epoch beat the best of its earlier epochs by more than
:data:`MIN_DELTA` (a trial of one epoch has nothing to compare with and counts as improving),
and (c) there is room: its planned length is below ``max_epochs`` and, under a time budget, the
doubled segment at the measured pace (seconds per epoch, validation included) ends in the time
left. A linear probe and a multi-objective trial never continue. While continued, the pruner
still sees every epoch (``trial.report`` steps go on increasing) but does not prune (the trial
already completed what it was planned for), and the time budget ends it with ``"finish"``
(:class:`ContinuationEnd`) rather than pruning it. Without a time budget the outcome depends
only on the scores: the same seeds give the same trials.

The rules, in their order:

- start: :class:`TimeBudgetStart` (:func:`autotransfer.study.budget.timebudget.not_starting`),
  :class:`ReferenceShareStart` (:func:`autotransfer.study.references.share.not_starting`),
  :class:`FloorGraceStart` (the best-ranked default's grace, never stops);
- epoch: :class:`StopSignal`, :class:`Divergence`, :class:`FloorGrace` (never stops),
  :class:`Plateau` (early stopping, the space's ``budget.patience``; before the time
  budget's rules, so that a plateaued trial completes rather than being pruned),
  :class:`ContinuationEnd`, :class:`FirstResult` (the time budget finishes a trial while
  none has completed), :class:`TimeBudgetStop` (it finishes any other), :class:`Pruner`
  (the space's pruner, fitted to the expected trials by
  :mod:`autotransfer.study.budget.rungs`; never a multi-objective trial, whose reports Optuna
  refuses, nor a linear probe, nor the last epoch, nor a continued trial),
  :class:`Continuation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from autotransfer.finetune.records import reference_of
from autotransfer.study.budget import timebudget
from autotransfer.study.budget.backbone_cost import estimate_for
from autotransfer.study.budget.pruners import pruner_says
from autotransfer.study.references import share as reference_share
from autotransfer.study.references.order import prunable
from autotransfer.study.results.scores import divergence
from autotransfer.study.workers import stop_requested

ACTIONS = ("prune", "interrupt", "continue", "finish")
PLAN_ACTIONS = ("continue", "finish")  # they change the trial's planned length
#: how much a trial's last epoch must beat its best earlier one to count as still improving
#: (a fraction of the metric: 0.001 is one sample in a validation split under 1,000)
MIN_DELTA = 1e-3


@dataclass
class StartView:
    """What a start rule sees: the sampled trial before it loads anything.

    ``spec`` is the sampled backbone (its ``id`` and ``label``), ``kind`` the reference kind
    (``"linear_probe"``, ``"default"``; None for a sampled trial) and ``ctx`` the search's
    :class:`~autotransfer.study.objective.TrialContext` (``space``, ``deadline``, ``floor``).
    """

    trial: Any  # optuna.Trial
    spec: Any  # autotransfer.space.schema.BackboneSpec
    params: dict[str, Any]
    kind: str | None
    ctx: Any


@dataclass
class EpochView:
    """What an epoch rule sees: the trial after an epoch was trained, validated and recorded.

    ``result`` is the trainer's ``EpochResult`` (``epoch``, ``score``, ``train_loss``,
    ``seconds`` and ``val_seconds``); ``first_loss`` the loss of the trial's first step;
    ``pace`` the seconds the next epoch is expected to take, validation included;
    ``planned`` the trial's planned length now (0: the space's ``epochs``, never continued);
    ``scores`` the validation score of each epoch so far, this one's last.
    """

    trial: Any  # optuna.Trial
    result: Any  # autotransfer.finetune.trainer.EpochResult
    ctx: Any  # autotransfer.study.objective.TrialContext
    first_loss: float | None
    pace: float
    multi_objective: bool
    planned: int = 0
    scores: Sequence[float] = field(default_factory=tuple)

    @property
    def epochs(self) -> int:
        """The trial's planned length (its last epoch, unless continued again)."""
        return self.planned or self.ctx.space.epochs

    @property
    def continued(self) -> bool:
        """The trial trains past the space's ``epochs`` (a continuation)."""
        return self.epochs > self.ctx.space.epochs

    @property
    def kind(self) -> str | None:
        return reference_of(self.trial)


class TrialRule(Protocol):
    """A start or epoch rule: ``rule(view) -> reason | None``."""

    name: str
    action: str

    def __call__(self, view: Any) -> str | None: ...


@dataclass(frozen=True)
class Verdict:
    """The first reason of a rule list: which rule gave it, and what happens."""

    rule: str
    reason: str
    action: str = "prune"
    epochs: int | None = None  # a plan action's new planned length (``rule.epochs(view)``)


def first_verdict(rules: Sequence[TrialRule], view: Any) -> Verdict | None:
    """Ask ``rules`` in order; the first reason, or None when every rule lets the trial go on.
    A rule of a plan action (:data:`PLAN_ACTIONS`) also gives the new length
    (its ``epochs(view)``)."""
    for rule in rules:
        reason = rule(view)
        if reason is not None:
            epochs = rule.epochs(view) if rule.action in PLAN_ACTIONS else None  # type: ignore[attr-defined]
            return Verdict(rule.name, reason, rule.action, epochs)
    return None


def enforce(rules: Sequence[TrialRule], view: Any, record, *,
            starting: bool = False) -> Verdict | None:
    """Run ``rules`` on ``view`` and act on the first reason (see the module docstring).

    Args:
        record: the trial's :class:`~autotransfer.finetune.records.TrialWriter`.
        starting: the start rules (a pruned trial is recorded as not started).

    Returns:
        The verdict of a plan action (``"continue"`` or ``"finish"``, recorded on the trial):
        the caller re-plans the trial to its ``epochs``; None when the trial goes on as planned.

    Raises:
        optuna.TrialPruned: a rule of action ``"prune"`` gave a reason (recorded first).
        KeyboardInterrupt: a rule of action ``"interrupt"`` did.
        ValueError: a rule of another action.
    """
    verdict = first_verdict(rules, view)
    if verdict is None:
        return None
    if verdict.action == "interrupt":
        raise KeyboardInterrupt
    if verdict.action in PLAN_ACTIONS and not starting:
        assert verdict.epochs is not None
        record.replanned(after=view.result.epoch, epochs=verdict.epochs, reason=verdict.reason,
                         rule=verdict.rule)
        return verdict
    if verdict.action != "prune":
        raise ValueError(f"trial rule {verdict.rule!r}: action must be one of "
                         f"{', '.join(ACTIONS)}, got {verdict.action!r}")
    import optuna

    if starting:
        record.not_started(verdict.reason, rule=verdict.rule)
    else:
        record.pruned(verdict.reason, rule=verdict.rule)
    raise optuna.TrialPruned(verdict.reason)


def say_grace(ctx, number: int) -> None:
    """One console line, once per trial, when the running trial may use the floor's grace."""
    if ctx.progress is None or ctx.deadline is None or ctx.deadline.grace <= 0 or ctx.grace_said:
        return
    ctx.grace_said = True
    what = ("this first fine-tune is the floor, so it" if ctx.floor else
            "nothing has completed yet, so this linear probe")
    ctx.progress.note(number, f"time budget: {what} may end up to "
                      f"{timebudget.FLOOR_GRACE:.0f}s past the budget")


# -- start rules ------------------------------------------------------------------------------


class TimeBudgetStart:
    """Not started: the configuration cannot reach its first report in the time left
    (:func:`autotransfer.study.budget.timebudget.not_starting`; a first linear probe may use the
    grace)."""

    name: ClassVar[str] = "time_budget"
    action: ClassVar[str] = "prune"

    def __call__(self, view: StartView) -> str | None:
        ctx = view.ctx
        return timebudget.not_starting(ctx.deadline, view.trial.study, view.spec.id, view.params,
                                       costs=ctx.space.budget.cost_aware,
                                       probe=view.kind == "linear_probe")


class ReferenceShareStart:
    """Not started: a reference beyond the references' share of the budget
    (:func:`autotransfer.study.references.share.not_starting`)."""

    name: ClassVar[str] = "reference_share"
    action: ClassVar[str] = "prune"

    def __call__(self, view: StartView) -> str | None:
        space = view.ctx.space
        return reference_share.not_starting(
            view.trial.study, view.kind, view.spec.label, view.spec.id, view.params,
            space.epochs, share=space.budget.reference_share, number=view.trial.number)


class FloorGraceStart:
    """Never stops: marks the study's best-ranked default configuration as the floor
    (``ctx.floor``) and gives it the grace past the deadline when its epochs at the backbone's
    measured cost end within it (:func:`autotransfer.study.budget.timebudget.floor_grace`)."""

    name: ClassVar[str] = "floor_grace"
    action: ClassVar[str] = "prune"

    def __call__(self, view: StartView) -> None:
        ctx, study = view.ctx, view.trial.study
        ctx.floor = view.kind == "default" and reference_share.is_first_default(
            study, view.trial.number)
        if ctx.floor:
            timebudget.floor_grace(ctx.deadline, estimate_for(study, view.spec.id, view.params,
                                                              ctx.space.epochs))
        return None


# -- epoch rules ------------------------------------------------------------------------------


class StopSignal:
    """Interrupted: the process was told to stop (a signal, or a stopped worker)."""

    name: ClassVar[str] = "stop_signal"
    action: ClassVar[str] = "interrupt"

    def __call__(self, view: EpochView) -> str | None:
        return "stop requested" if stop_requested() else None


class Divergence:
    """Pruned: the epoch's training loss is non-finite or far above the first step's
    (:func:`autotransfer.study.results.scores.divergence`)."""

    name: ClassVar[str] = "divergence"
    action: ClassVar[str] = "prune"

    def __call__(self, view: EpochView) -> str | None:
        result = view.result
        return divergence(result.train_loss, view.first_loss, result.epoch)


class FloorGrace:
    """Never stops: the floor's grace, renewed at the pace of the epoch just run (the first
    epoch's without its load), and the console line that says so."""

    name: ClassVar[str] = "floor_grace"
    action: ClassVar[str] = "prune"

    def __call__(self, view: EpochView) -> None:
        ctx, result = view.ctx, view.result
        if ctx.floor:
            pace = view.pace if result.epoch > 1 else result.seconds + result.val_seconds
            # its first planned length only: a continuation never runs on the grace
            timebudget.floor_grace(ctx.deadline,
                                   max(0, ctx.space.epochs - result.epoch) * pace)
        say_grace(ctx, view.trial.number)
        return None


class FinishHere:
    """What the rules of action ``"finish"`` share: the trial ends after this epoch, its plan's
    length is that epoch (:meth:`epochs`), and :meth:`finish` reports the epoch's score to
    Optuna before the rule gives its reason (the pruner's view of the trial has every epoch),
    except for a multi-objective trial (Optuna refuses its reports)."""

    action: ClassVar[str] = "finish"

    def epochs(self, view: EpochView) -> int:
        return int(view.result.epoch)

    @staticmethod
    def finish(view: EpochView, reason: str) -> str:
        """``reason``, once the epoch's score is reported."""
        if not view.multi_objective:
            view.trial.report(view.result.score, view.result.epoch)
        return reason


class TimeBudgetStop(FinishHere):
    """Finished after this epoch: the next epoch, as long as this one, cannot end in the time
    left (:func:`autotransfer.study.budget.timebudget.stopping_after`). The trial completes
    with the model it has and its score (its last epoch's, or its checkpoint average's, as for
    a trial that ran its planned length), so that the search keeps the best model it has seen
    (at ``--time-budget 60`` a default configuration at val 0.785 after epoch 2 was pruned
    here, and the pick was a 0.775 linear probe); ``train`` replays it (the planned length's
    schedule, stopped at this epoch). The score is reported to Optuna first, except for a
    multi-objective trial (Optuna refuses its reports). A trial the budget stops before its
    first score is pruned (at a batch boundary, by the objective)."""

    name: ClassVar[str] = "time_budget"

    def __call__(self, view: EpochView) -> str | None:
        deadline, result = view.ctx.deadline, view.result
        stop = timebudget.stopping_after(deadline, result.epoch, view.epochs, view.pace)
        if stop is not None:
            return self.finish(view, stop)
        if deadline is not None:
            deadline.epoch_ended()
        return None


class ContinuationEnd(FinishHere):
    """Finished after this epoch: a continued trial whose next epoch, as long as this one,
    cannot end in the time left (:func:`autotransfer.study.budget.timebudget.stopping_after`).
    It completed its first planned length before it was continued, so the time budget ends it
    with what it has (:class:`TimeBudgetStop`, after this rule, finishes the trials that are
    not continued alike, with their own reason)."""

    name: ClassVar[str] = "continuation_end"

    def __call__(self, view: EpochView) -> str | None:
        if not view.continued:
            return None
        result = view.result
        stop = timebudget.stopping_after(view.ctx.deadline, result.epoch, view.epochs, view.pace)
        if stop is None:
            return None
        return self.finish(view, stop.replace("stopped after", "continuation ended after", 1))


class FirstResult(FinishHere):
    """Finished after this epoch: the time budget stops a trial (as :class:`TimeBudgetStop`
    would, which finishes it alike) while no trial of the study has completed; its reason says
    that it is the study's first result, so the search ends with one rather than ``no trial
    completed``; its record and
    ``best.yaml`` say the epochs it trained, which ``train`` replays. On a busy machine a
    30 s budget stopped the first linear probe after epoch 2 of 3 at val 1.0 and the search
    ended in an error."""

    name: ClassVar[str] = "first_result"

    def __call__(self, view: EpochView) -> str | None:
        result = view.result
        stop = timebudget.stopping_after(view.ctx.deadline, result.epoch, view.epochs, view.pace)
        if stop is None or timebudget.completed(view.trial.study):
            return None
        return self.finish(view, stop.replace("stopped after", "finished after", 1)
                           + "; no trial had completed, so it is the study's first result")


class Pruner:
    """Pruned: the study's pruner says so after an epoch before the last
    (:func:`autotransfer.study.budget.pruners.pruner_says`). A multi-objective trial is never
    reported (optuna #3450); a linear probe always finishes, a default configuration is pruned
    like any trial (:func:`autotransfer.study.references.order.prunable`); a continued trial
    is reported (the steps go on increasing) but never pruned."""

    name: ClassVar[str] = "pruner"
    action: ClassVar[str] = "prune"

    def __call__(self, view: EpochView) -> str | None:
        if view.multi_objective:
            return None
        result, space = view.result, view.ctx.space
        return pruner_says(view.trial, result.score, result.epoch, view.epochs, space.metric,
                           prunable=prunable(view.kind) and not view.continued)


def leads(study, score: float) -> bool:
    """Whether ``score`` is at least the value of ``study``'s best completed trial
    (:func:`autotransfer.study.selection.best_trial`; the metric is maximised), or no trial
    has completed."""
    from autotransfer.study.selection import best_trial

    best = best_trial(study)
    return best is None or best.value is None or score >= best.value


def improves(scores: Sequence[float], min_delta: float = MIN_DELTA) -> bool:
    """Whether the last of ``scores`` (each epoch's validation score) beats the best earlier
    one by more than ``min_delta``; a single score has nothing to compare with and does."""
    if not scores:
        return False
    *earlier, last = scores
    return not earlier or last > max(earlier) + min_delta


def plateau_since(scores: Sequence[float], min_delta: float = MIN_DELTA) -> tuple[int, float]:
    """``(epoch, score)`` of the last improvement in ``scores`` (each epoch's validation
    score, the first epoch 1): the epoch whose score beat the best before it by more than
    ``min_delta`` (the first epoch always counts as one).

    Raises:
        ValueError: ``scores`` is empty.
    """
    if not scores:
        raise ValueError("scores is empty: a plateau needs at least one epoch's score")
    best, at = scores[0], 1
    for epoch, score in enumerate(scores[1:], start=2):
        if score > best + min_delta:
            best, at = score, epoch
    return at, best


class Plateau(FinishHere):
    """Finished after this epoch: early stopping on a plateau (the space's ``budget.patience``;
    off by default). A trial whose validation score has not beaten its best earlier one by
    more than ``min_delta`` for ``patience`` epochs (:func:`plateau_since`) ends and completes
    with what it has: it is not pruned, and the reason is recorded on the trial with the rule's
    name (``TrialRecord.continuations``; :attr:`TrialRecord.ended
    <autotransfer.finetune.records.TrialRecord.ended>`). It matters most to a continued
    trial (``max_epochs`` above ``epochs``), whose continuation would otherwise run to its
    planned length. Never a linear probe (seconds a head fit) nor a trial at its planned last
    epoch (it ends there anyway, as planned).

    Args:
        min_delta: see :func:`plateau_since` (default :data:`MIN_DELTA`).
    """

    name: ClassVar[str] = "plateau"

    def __init__(self, min_delta: float = MIN_DELTA) -> None:
        self.min_delta = min_delta

    def __call__(self, view: EpochView) -> str | None:
        patience = view.ctx.space.budget.patience
        result = view.result
        if (patience is None or view.kind == "linear_probe" or result.epoch >= view.epochs):
            return None
        scores = list(view.scores) or [result.score]
        at, best = plateau_since(scores, self.min_delta)
        if len(scores) - at < patience:
            return None
        return self.finish(view, f"plateau: {view.ctx.space.metric} has not beaten {best:.4f} "
                                 f"(epoch {at}) by more than {self.min_delta:g} for "
                                 f"{len(scores) - at} epochs (patience {patience}); finished "
                                 f"after epoch {result.epoch} of {view.epochs}")


class Continuation:
    """Continued (freeze-thaw; see the module docstring): a trial at its planned last epoch
    that leads (:func:`leads`), still improves (:func:`improves` by ``min_delta``) and has
    room (below the space's ``max_epochs``; under a time budget the doubled segment fits in
    the time left at the epoch's ``pace``) trains on to :meth:`epochs`: its planned length
    doubled, at most ``max_epochs``.

    Args:
        min_delta: see :func:`improves` (default :data:`MIN_DELTA`).
    """

    name: ClassVar[str] = "continuation"
    action: ClassVar[str] = "continue"

    def __init__(self, min_delta: float = MIN_DELTA) -> None:
        self.min_delta = min_delta

    def epochs(self, view: EpochView) -> int:
        """The new planned length: double the current one, at most ``max_epochs``."""
        return min(2 * view.epochs, view.ctx.space.epoch_cap)

    def __call__(self, view: EpochView) -> str | None:
        ctx, result = view.ctx, view.result
        if (view.multi_objective or view.kind == "linear_probe" or result.epoch < view.epochs
                or view.epochs >= ctx.space.epoch_cap):
            return None
        scores = list(view.scores) or [result.score]
        if not improves(scores, self.min_delta):
            return None
        if not leads(view.trial.study, result.score):
            return None
        to = self.epochs(view)
        need = (to - view.epochs) * view.pace
        # the floor's grace (past the deadline) is for its first planned length only
        if ctx.deadline is not None and need > ctx.deadline.left() - ctx.deadline.grace:
            return None
        earlier = f", best earlier {max(scores[:-1]):.4f}" if len(scores) > 1 else ""
        return (f"continued after epoch {result.epoch} to {to} epochs: it leads with "
                f"{ctx.space.metric} {result.score:.4f} and still improves{earlier}")


START_RULES: tuple[TrialRule, ...] = (TimeBudgetStart(), ReferenceShareStart(),
                                      FloorGraceStart())
EPOCH_RULES: tuple[TrialRule, ...] = (StopSignal(), Divergence(), FloorGrace(), Plateau(),
                                      ContinuationEnd(), FirstResult(), TimeBudgetStop(), Pruner(),
                                      Continuation())
