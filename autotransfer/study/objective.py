"""A trial's objective: build the backbone, fine-tune it (retrying on out-of-memory), record it."""

from __future__ import annotations

import gc
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autotransfer.contract.collect import get_registry
from autotransfer.data import LabelledData
from autotransfer.errors import first_line
from autotransfer.finetune.records import EpochMetrics, TrialWriter, reference_name, reference_of
from autotransfer.space.objectives import get_objective
from autotransfer.space.schema import SearchSpace
from autotransfer.study.budget import rules as control
from autotransfer.study.budget import timebudget
from autotransfer.study.budget.backbone_cost import measure_costs
from autotransfer.study.budget.measure import (
    check_params_before_load,
    check_params_bound,
    measure_trial,
    trial_value,
)
from autotransfer.study.budget.prior import check_latency_before_load
from autotransfer.study.references.trials import apply_reference
from autotransfer.study.results.kept_weights import keep_weights
from autotransfer.study.results.scores import confusion
from autotransfer.study.selection import Rule
from autotransfer.study.workers import stop_reason

if TYPE_CHECKING:  # torch loads when a trial runs, not when the search is set up
    from autotransfer.finetune.trainer import EpochResult
    from autotransfer.study.progress import Progress


def _release_memory(device) -> None:
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def make_cache(options: dict[str, Any] | None):
    """The activation cache shared by a process's trials (None: caching is off)."""
    from autotransfer.finetune.cache import ActivationCache

    return None if options is None else ActivationCache(**options)


@dataclass
class TrialContext:
    """What every trial of one search shares."""

    space: SearchSpace
    data: LabelledData
    device: Any  # torch.device
    seed: int = 0
    progress: Progress | None = None
    trust_remote_code: bool = False
    keep_best: str | None = None  # artifact folder of --keep-best
    soup_dir: str | None = None  # where trials keep their weights for a soup (space soup)
    cache: Any = None  # an ActivationCache shared by the trials; None: --no-cache
    compile: bool = False  # torch.compile the trained part
    deadline: timebudget.Deadline | None = None  # --time-budget
    started_at: float = 0.0  # the running trial's start (timebudget.now())
    floor: bool = False  # the running trial is the best-ranked default (timebudget.floor_grace)
    grace_said: bool = False  # the console was told of the running trial's grace
    tracker: Any = None  # an experiment tracker (autotransfer.study.trackers), or None
    costs_due: bool = False  # the backbones' costs are wanted: timed (or read back) before
    # the first trial that is not a linear probe (warm_start.costs_before_trials)
    lock: Any = None  # the StudyLock (the timed step records its costs under it)
    # whether a trial starts, and after each epoch whether it goes on (study.budget.rules)
    start_rules: tuple[control.TrialRule, ...] = control.START_RULES
    epoch_rules: tuple[control.TrialRule, ...] = control.EPOCH_RULES

    def load_options(self, spec, entry) -> dict[str, Any]:
        return spec.load_options(entry, trust_remote_code=self.trust_remote_code)


def make_objective(ctx: TrialContext):
    """The objective: one trial fine-tunes one sampled backbone and returns its val score."""
    import optuna

    registry = get_registry()
    space, data, device, progress = ctx.space, ctx.data, ctx.device, ctx.progress

    def objective(trial: optuna.Trial) -> float | tuple[float, ...]:
        _release_memory(device)  # whatever the last trial left, before this one allocates
        record = TrialWriter(trial)
        if ctx.costs_due and reference_of(trial) != "linear_probe" and not _leads(trial):
            ctx.costs_due = False  # before the sampler draws (the cost-aware draw reads them)
            try:
                _time_backbones(ctx, trial.study)
            except KeyboardInterrupt:  # a stop during the step: the trial says so
                record.failed(f"interrupted by {stop_reason()}", interrupted=True)
                raise
        ctx.started_at = timebudget.now()
        if ctx.deadline is not None:
            ctx.deadline.trial_started()
        try:
            spec, params = space.suggest(trial)
        except Exception as exc:  # a sampler's fault still leaves the trial a reason
            record.failed(f"sampling failed: {describe(exc)}")
            raise
        params = apply_reference(trial, params, space, spec.id)
        entry = registry.get(spec.id)
        record.started(backbone=spec.id, pretrained=spec.pretrained, params=params,
                       device=str(device), classes=data.classes, seed=ctx.seed)
        kind = reference_of(trial)
        ctx.grace_said = False
        # a trial not started does not count towards --trials
        control.enforce(ctx.start_rules, control.StartView(trial, spec, params, kind, ctx),
                        record, starting=True)
        if progress:
            label = spec.label + (f" ({reference_name(kind)})" if kind else "")
            progress.trial_started(trial.number, label, params)
            control.say_grace(ctx, trial.number)
        try:
            return _fine_tune_with_retries(trial, entry, spec, params, ctx)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            record.failed(f"interrupted by {stop_reason()}", interrupted=True)
            raise
        except Exception as exc:
            record.failed(describe(exc))
            raise
        finally:
            if ctx.deadline is not None:
                ctx.deadline.grace = 0.0  # the floor's grace ends with its trial
            _release_memory(device)

    return objective


def _leads(trial) -> bool:
    """Whether ``trial`` is the first fine-tune that a time budget (or timeout) runs before
    the linear probes (:func:`autotransfer.study.warm_start.lead_backbone`): it starts without
    the other backbones' timed steps, which the next trial that is not a probe runs."""
    return reference_of(trial) == "default" and not any(
        t.number < trial.number and reference_of(t) in ("default", "linear_probe")
        for t in trial.study.get_trials(deepcopy=False))


def _time_backbones(ctx: TrialContext, study) -> None:
    """The study's timed step (:func:`autotransfer.study.budget.backbone_cost.measure_costs`): read
    back when recorded, else measured and recorded now."""
    say = ctx.progress.note if ctx.progress else (lambda number, message: None)
    measure_costs(study, ctx.lock, ctx.space, ctx.data, ctx.device, seed=ctx.seed,
                  trust_remote_code=ctx.trust_remote_code, say=lambda line: say(-1, line))


REASON_LIMIT = 1000  # characters of a recorded reason; a longer one loses its middle


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, for a trial's recorded reason. A first line over
    :data:`REASON_LIMIT` characters loses its middle, never its end, where the project's
    errors put their hint (a cut at 300 characters hid the offline hint of a hub error)."""
    line = first_line(exc, 10**6)
    if len(line) > REASON_LIMIT:
        half = REASON_LIMIT // 2
        line = f"{line[:half - 3]} … {line[-half + 2:]}"
    return f"{type(exc).__name__}: {line}"


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA or host out-of-memory, however the allocator reported it."""
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _fine_tune_with_retries(trial, entry, spec, params, ctx: TrialContext
                            ) -> float | tuple[float, ...]:
    """Fine-tune; out of memory retries at half the batch size, a non-finite loss prunes."""
    import optuna

    record = TrialWriter(trial)
    while True:
        try:
            return _fine_tune(trial, entry, spec, params, ctx)
        except FloatingPointError as exc:  # the loss became NaN or inf: a diverged setting
            reason = f"diverged: {exc}"
            record.pruned(reason, rule="divergence")
            raise optuna.TrialPruned(reason) from None
        except Exception as exc:
            if not is_out_of_memory(exc) or params["batch_size"] <= 1:
                raise
            failed = params["batch_size"]
        # out of the except block, so the traceback no longer holds the model
        _release_memory(ctx.device)
        params = {**params, "batch_size": max(1, failed // 2)}
        record.retried_out_of_memory(params, failed)
        if ctx.progress:
            ctx.progress.note(trial.number, f"out of memory at batch size {failed}; retrying at "
                                        f"{params['batch_size']}")


def _stopped_by_budget(record: TrialWriter, ctx: TrialContext, done: int, epochs: int):
    """The ``TrialPruned`` of a trial stopped by the time budget after ``done`` epochs, its
    reason recorded; before its first report, the seconds it ran are the start rule's lower
    bound for its configuration."""
    import optuna

    reason = (f"time budget: stopped in epoch {done + 1}/{epochs}"
              + (f", scored after epoch {done}" if done else ", before its first score"))
    if not done:
        record.first_report(timebudget.now() - ctx.started_at, reached=False)
    record.pruned(reason, rule="time_budget")
    return optuna.TrialPruned(reason)


def _completed_from(trainer, kept: dict, record: TrialWriter, ctx: TrialContext,
                    number: int):
    """The ``TrainResult`` of a trial that the time budget stopped inside an epoch after at
    least one was scored: the trainer rewound to ``kept``, its last epoch end's checkpoint
    (``Trainer.rewind``), and finished there, the stop recorded as a plan change (the rule
    ``time_budget``, or ``continuation_end`` for a continued trial) that ``train`` replays."""
    inside, planned = trainer.epoch + 1, trainer.epochs
    continued = len(trainer.lengths) > 1
    trainer.rewind(kept)
    what = "continuation ended" if continued else "stopped"
    reason = (f"time budget: {what} inside epoch {inside}/{planned}; completed with epoch "
              f"{trainer.epoch}")
    record.replanned(after=trainer.epoch, epochs=trainer.epoch, reason=reason,
                     rule="continuation_end" if continued else "time_budget")
    if ctx.progress:
        ctx.progress.note(number, reason)
    return trainer.finish()


def _record_epoch(trial, record: TrialWriter, trainer, result: EpochResult, ctx: TrialContext,
                  seconds: list[float], marks: list[float]) -> None:
    """An epoch's record, console line and tracker report (``seconds``: each epoch's training
    seconds so far; ``marks``: the trial's start, then each epoch's report)."""
    from autotransfer.finetune.device import peak_memory_mib

    if result.epoch == 1:  # load, cache, one epoch and validation: the start rule's measure
        record.first_report(marks[1] - marks[0])
    record.epoch(
        result.epoch, EpochMetrics(result.train_loss, result.scores, result.val_loss),
        activation_cache=trainer.cache_status, cache_seconds=trainer.cache_seconds,
        seconds_per_epoch=sum(seconds) / len(seconds),
        samples_per_second=result.samples_per_second,
        peak_memory_mib=peak_memory_mib(ctx.device), first_batch_at=trainer.first_batch_at,
    )
    if ctx.progress:
        ctx.progress.epoch_done(trial.number, result, trainer.epochs)
    if ctx.tracker is not None:  # never raises: a tracking error is a warning
        from autotransfer.study.trackers import epoch_scores

        ctx.tracker.on_epoch(trial, result.epoch, epoch_scores(result))


def _fine_tune(trial, entry, spec, params, ctx: TrialContext) -> float | tuple[float, ...]:
    """One trial's training; the model and optimizer are freed when this returns. After each
    epoch: record it, then run the epoch rules (:mod:`autotransfer.study.budget.rules`); a
    plan verdict (a continuation, or its end) re-plans the trainer (``Trainer.replan``). Under a
    time budget a trial keeps a checkpoint of its last epoch end (one copy of its weights and
    optimiser state), so that a stop inside a later epoch completes it from there
    (:func:`_completed_from`) instead of pruning it; a stop before its first score prunes it.

    Long (as a reason): the trial's one story, from load to its value, with its epoch hook.
    """
    import torch

    from autotransfer.finetune.trainer import Trainer

    space, device = ctx.space, ctx.device
    rule = Rule.of_space(space)  # a configuration over the params bound never loads
    check_params_before_load(trial, entry, ctx.load_options(spec, entry), ctx.data.n_classes,
                             params, rule)
    # a backbone whose prior latency is far over the latency_ms bound never loads
    check_latency_before_load(trial, spec.id, ctx.data.modality, device, params, rule,
                              runtime=space.latency.runtime)
    torch.manual_seed(ctx.seed + trial.number)  # random-init weights are part of the trial
    backbone = entry.load(pretrained=spec.pretrained, **ctx.load_options(spec, entry))
    if ctx.deadline is not None and ctx.deadline.left() <= 0:  # loading used the time up
        raise _stopped_by_budget(TrialWriter(trial), ctx, 0, space.epochs)
    trainer = Trainer(
        backbone, ctx.data, params, device=device, metric=space.metric,
        seed=ctx.seed + trial.number, cache=ctx.cache if ctx.cache is not None else False,
        compile=ctx.compile, label=spec.id,
        batch_check=ctx.deadline.check if ctx.deadline is not None else None,
    )
    check_params_bound(trial, trainer.model, rule)  # a configuration over the bound never trains
    record = TrialWriter(trial)
    record.loaded(sum(p.numel() for p in backbone.model.parameters()))
    seconds: list[float] = []
    marks = [ctx.started_at]  # when the trial started, then when each epoch was reported
    kept: list[dict] = []  # a continued trial's last epoch end, under a time budget

    def on_epoch(result: EpochResult) -> None:
        seconds.append(result.seconds)
        marks.append(timebudget.now())
        _record_epoch(trial, record, trainer, result, ctx, seconds, marks)
        # the next epoch lasts as long as this one did, validation included (the first one
        # also loaded the backbone: its training time, plus a quarter for validation)
        pace = marks[-1] - marks[-2] if result.epoch > 1 else 1.25 * result.seconds
        verdict = control.enforce(ctx.epoch_rules, control.EpochView(
            trial, result, ctx, first_loss=trainer.first_loss, pace=pace,
            multi_objective=rule.multi_objective, planned=trainer.epochs,
            scores=tuple(h.score for h in trainer.history)), record)
        if verdict is not None:  # continued, or its continuation ended: a new plan
            trainer.replan(int(verdict.epochs or result.epoch))
            if ctx.deadline is not None:
                ctx.deadline.grace = 0.0  # the floor's grace was for its first length
            if ctx.progress:
                ctx.progress.note(trial.number, verdict.reason)
        if ctx.deadline is not None and trainer.epoch < trainer.epochs:
            kept[:] = [trainer.checkpoint()]

    try:
        result = trainer.fit(space.epochs, on_epoch)
    except timebudget.TimeBudgetSpent:  # at a batch boundary
        if not kept:  # before its first score: pruned
            raise _stopped_by_budget(record, ctx, len(seconds),
                                     trainer.epochs or space.epochs) from None
        result = _completed_from(trainer, kept[0], record, ctx, trial.number)
    record.finished(n_groups=result.n_groups, n_frozen_groups=result.n_frozen_groups,
                    trainable_parameters=result.n_trainable,
                    test_score=None if result.test is None else result.test[space.metric],
                    epochs_trained=result.epochs)
    if result.averaging is not None:
        record.averaged(result.averaging)
    record.scored({split: confusion(preds, labels, ctx.data.n_classes)
                   for split, (preds, labels) in trainer.predictions.items()},
                  test_scores=result.test)
    record.predicted({split: (trainer.probabilities[split].numpy(), labels.numpy())
                      for split, (_, labels) in trainer.predictions.items()})
    cost = measure_trial(trial, trainer, rule, started_at=ctx.started_at, network=spec.id,
                         runtime=ctx.space.latency.runtime, precision=ctx.space.latency.precision,
                         deadline=ctx.deadline)
    if ctx.keep_best is not None:
        from autotransfer.study.results.artifacts import keep_if_best

        keep_if_best(trial, trainer, backbone=spec.to_yaml(), params=params, score=result.score,
                     metric=space.metric, test=result.test, store_dir=ctx.keep_best,
                     cost=cost)
    value = trial_value(rule, result.score, cost)
    if ctx.soup_dir is not None and space.soup is not None:  # last: it merges the adapters
        _keep_weights(trial, trainer, spec, params, result.score, ctx)
    return value


def _keep_weights(trial, trainer, spec, params, score: float, ctx: TrialContext) -> None:
    """Keep the trial's weights for a soup (:mod:`autotransfer.study.results.kept_weights`);
    a file that cannot be written is said, and the trial still completes."""
    assert ctx.space.soup is not None and ctx.soup_dir is not None
    if not math.isfinite(score):
        return
    try:
        keep_weights(trial, trainer.model, params, backbone=spec.id, pretrained=spec.pretrained,
                     score=score, folder=ctx.soup_dir,
                     max_ingredients=ctx.space.soup.max_ingredients,
                     maximize=get_objective(ctx.space.metric).direction == "maximize",
                     lock=ctx.lock)
    except (OSError, RuntimeError) as exc:  # a full disk: the trial's result stands
        if ctx.progress:
            ctx.progress.note(trial.number, f"weights not kept for the soup: {describe(exc)}")
