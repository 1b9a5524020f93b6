"""Trial control as rules: whether a trial starts, and after each epoch whether it goes on.

A rule is a small callable object with a ``name`` and an ``action``. Called on a view of the
trial (:class:`StartView` before it trains, :class:`EpochView` after each epoch), it returns a
reason (``str``) when the trial must not start or must stop, else None. The objective runs
:data:`START_RULES` and :data:`EPOCH_RULES` (the defaults of
:class:`autotransfer.study.objective.TrialContext`) in order, and the first reason wins: the
later rules are not asked. :func:`enforce` acts on it by the rule's ``action``:

- ``"prune"``: the trial is recorded as pruned (by a start rule: not started, so that it does
  not count towards ``--trials``) with the reason and the rule's name
  (``TrialRecord.prune_reason`` and ``TrialRecord.rule``, :mod:`autotransfer.study.records`),
  and Optuna's ``TrialPruned`` ends it;
- ``"interrupt"``: the run was told to stop; the trial fails as interrupted
  (``KeyboardInterrupt``, recorded by the objective).

A rule may act without stopping (the floor's grace extends the deadline and returns None).
A trial that goes on past its planned epochs, or pauses to be continued later (freeze-thaw,
DESIGN.md "Trial control"), is a further action of the same list once the trainer can
checkpoint a trial at an epoch boundary; no rule here asks for it, and :func:`enforce` refuses
an action it does not know rather than ignore it.

The rules, in their order:

- start: :class:`TimeBudgetStart` (:func:`autotransfer.study.budget.timebudget.not_starting`),
  :class:`ReferenceShareStart` (:func:`autotransfer.study.references.share.not_starting`),
  :class:`FloorGraceStart` (the best-ranked default's grace, never stops);
- epoch: :class:`StopSignal`, :class:`Divergence`, :class:`FloorGrace` (never stops),
  :class:`TimeBudgetStop`, :class:`Pruner` (the space's pruner, fitted to the expected trials by
  :mod:`autotransfer.study.budget.rungs`; never a multi-objective trial, whose reports Optuna
  refuses, nor a linear probe, nor the last epoch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from autotransfer.study.budget import timebudget
from autotransfer.study.budget.backbone_cost import estimate_for
from autotransfer.study.budget.pruners import pruner_says
from autotransfer.study.references import share as reference_share
from autotransfer.study.references.order import prunable
from autotransfer.study.results.scores import divergence
from autotransfer.study.workers import stop_requested

ACTIONS = ("prune", "interrupt")


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
    ``pace`` the seconds the next epoch is expected to take, validation included.
    """

    trial: Any  # optuna.Trial
    result: Any  # autotransfer.finetune.trainer.EpochResult
    ctx: Any  # autotransfer.study.objective.TrialContext
    first_loss: float | None
    pace: float
    multi_objective: bool

    @property
    def epochs(self) -> int:
        return self.ctx.space.epochs

    @property
    def kind(self) -> str | None:
        from autotransfer.study.records import REFERENCE

        return self.trial.user_attrs.get(REFERENCE)


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


def first_verdict(rules: Sequence[TrialRule], view: Any) -> Verdict | None:
    """Ask ``rules`` in order; the first reason, or None when every rule lets the trial go on."""
    for rule in rules:
        reason = rule(view)
        if reason is not None:
            return Verdict(rule.name, reason, rule.action)
    return None


def enforce(rules: Sequence[TrialRule], view: Any, record, *, starting: bool = False) -> None:
    """Run ``rules`` on ``view`` and act on the first reason (see the module docstring).

    Args:
        record: the trial's :class:`~autotransfer.study.records.TrialWriter`.
        starting: the start rules (a pruned trial is recorded as not started).

    Raises:
        optuna.TrialPruned: a rule of action ``"prune"`` gave a reason (recorded first).
        KeyboardInterrupt: a rule of action ``"interrupt"`` did.
        ValueError: a rule of another action.
    """
    verdict = first_verdict(rules, view)
    if verdict is None:
        return
    if verdict.action == "interrupt":
        raise KeyboardInterrupt
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
    what = ("this default configuration is the floor, so it" if ctx.floor else
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
            timebudget.floor_grace(ctx.deadline, (view.epochs - result.epoch) * pace)
        say_grace(ctx, view.trial.number)
        return None


class TimeBudgetStop:
    """Pruned with its last score: the next epoch, as long as this one, cannot end in the time
    left (:func:`autotransfer.study.budget.timebudget.stopping_after`). The score is reported to
    Optuna first, except for a multi-objective trial (Optuna refuses its reports)."""

    name: ClassVar[str] = "time_budget"
    action: ClassVar[str] = "prune"

    def __call__(self, view: EpochView) -> str | None:
        deadline, result = view.ctx.deadline, view.result
        stop = timebudget.stopping_after(deadline, result.epoch, view.epochs, view.pace)
        if stop is not None:
            if not view.multi_objective:
                view.trial.report(result.score, result.epoch)
            return stop
        if deadline is not None:
            deadline.epoch_ended()
        return None


class Pruner:
    """Pruned: the study's pruner says so after an epoch before the last
    (:func:`autotransfer.study.budget.pruners.pruner_says`). A multi-objective trial is never
    reported (optuna #3450); a linear probe always finishes, a default configuration is pruned
    like any trial (:func:`autotransfer.study.references.order.prunable`)."""

    name: ClassVar[str] = "pruner"
    action: ClassVar[str] = "prune"

    def __call__(self, view: EpochView) -> str | None:
        if view.multi_objective:
            return None
        result, space = view.result, view.ctx.space
        return pruner_says(view.trial, result.score, result.epoch, view.epochs, space.metric,
                           prunable=prunable(view.kind))


START_RULES: tuple[TrialRule, ...] = (TimeBudgetStart(), ReferenceShareStart(),
                                      FloorGraceStart())
EPOCH_RULES: tuple[TrialRule, ...] = (StopSignal(), Divergence(), FloorGrace(), TimeBudgetStop(),
                                      Pruner())
