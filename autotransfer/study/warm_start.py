"""Preparing a study to spend its budget well: pre-screen the backbones, warm-start from past
studies (meta-learning), and record this study's trials in the transfer history."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from autotransfer.errors import first_line
from autotransfer.finetune.records import StudyRecord, set_warm_start, warm_start_attrs
from autotransfer.study.loadable import keep_loadable, load_failures
from autotransfer.study.selection import Rule
from autotransfer.study.store import history as transfer_history
from autotransfer.study.store.history import SCALARS, load_datasets, load_transfers
from autotransfer.study.workers import tally


def prepare_study(study, study_storage, lock, space, dataset, progress, *, prescreen,
                  prescreen_by, history, warm_start, device, seed, trust_remote_code,
                  references=False, trials=None, budgeted=False, defer_history=False,
                  budget_seconds=None):
    """Before the first trial: ``prescreen=K`` narrows the space to the K backbones that rank
    best on frozen features, ``warm_start=N`` enqueues the best configurations of the most
    similar past datasets, then ``references`` enqueues the reference trials in the room that
    ``trials`` leaves (:mod:`.references`), ordered by promise and by each backbone's cost,
    timed once per study where something uses it (:func:`costs_wanted`): here when something
    before the first trial reads it (:func:`costs_before_trials`), else by the first trial
    after the linear probes. Returns
    ``(space, recorder)``; the recorder (or None) adds each completed trial to the transfer
    history. ``defer_history`` (the trials run in this process): without a warm start, the
    dataset's meta-features are computed when the first trial completes, not before the first
    trial starts (:class:`DeferredRecorder`)."""
    from autotransfer.study.prescreen import DEFAULT_BY, narrow_space

    if history is None:
        history = os.environ.get("AUTOTRANSFER_HISTORY", "1") != "0"
    say = progress.note if progress else (lambda number, message: None)
    resuming = resumed_line(study, trials)
    if resuming:
        say(-1, resuming)
    engine = getattr(study_storage, "engine", None)
    if engine is None:  # a journal file: the transfer history lives in SQL tables
        if warm_start:
            say(-1, "warm start: needs an SQL storage (the transfer history's tables); skipped")
        history = warm_start = False
    recorder = None
    if history and not warm_start and defer_history:
        recorder = DeferredRecorder(partial(
            transfer_history.start_recording, study, engine, dataset, space, device=device,
            seed=seed), say)
    elif history or warm_start:
        try:
            recorder = transfer_history.start_recording(study, engine, dataset, space,
                                                         device=device, seed=seed)
        except Exception as exc:  # the history helps a search; it never stops one
            say(-1, f"transfer history unavailable: {type(exc).__name__}: {first_line(exc)}")
    recorded = StudyRecord.of(study)
    chosen = []

    def loadable(space, failed):
        return keep_loadable(space, failed, lambda line: say(-1, line))

    def probed(space):  # each backbone that has not loaded in this study yet, loaded once
        return loadable(space, load_failures(space, trust_remote_code=trust_remote_code,
                                             skip=frozenset(recorded.costs or {})))

    timed_first = costs_before_trials(space, references=references, budgeted=budgeted,
                                      trials=trials)
    if not timed_first:  # else the cost step's loads tell (below)
        space = probed(space)
    if prescreen is not None or recorded.prescreen is not None:
        by = prescreen_by or DEFAULT_BY
        space, ranking, dropped = narrow_space(
            study, space, dataset, prescreen or len(space.backbones), by=by, device=device,
            seed=seed, trust_remote_code=trust_remote_code,
            on_score=lambda s: say(-1, f"pre-screen {s.label}: " + (
                s.error or f"knn {s.scores['knn']:.4f}, logme {s.scores['logme']:.4f}")
                + f" in {s.seconds:.1f}s"),
        )
        for label, why in dropped:
            say(-1, f"pre-screen dropped {label}: {why}")
    if warm_start and recorder is not None:
        meta = transfer_history.dataset_meta(engine, study.study_name) or {}
        with lock.held():
            chosen = enqueue_warm_starts(study, engine, meta, space, warm_start)
        for config in chosen:
            say(-1, f"warm start: enqueued trial {config.trial} of study {config.study!r} "
                    f"({config.params['backbone']}, {config.value:.4f}; "
                    f"distance {config.distance:.2f})")
        if not chosen and StudyRecord.of(study).warm_start == []:
            say(-1, "warm start: no past configuration fits this space")
    cost = None
    lead = lead_backbone(space, StudyRecord.of(study).prescreen, references=references,
                         budgeted=budgeted,
                         seconds=_lead_seconds(study, space, dataset, device, budget_seconds,
                                               say=lambda line: say(-1, line)),
                         within=None if budget_seconds is None else LEAD_SHARE * budget_seconds)
    if lead is not None and timed_first:  # no timed step before the first fine-tune: its own
        # first epoch measures it; the others are timed before the first trial after the probes
        space = probed(space)
        lead = space.backbone(lead.label) if lead.label in {b.label for b in space.backbones} \
            else None
        say(-1, "cost: the backbones are timed after the first fine-tune and the linear probes"
                + ("" if lead is None else f" (it runs {lead.label} first)"))
    elif costs_before_trials(space, references=references, budgeted=budgeted,
                             trials=None if chosen else trials):
        from autotransfer.study.budget.backbone_cost import label_seconds, measure_costs

        failed: dict[str, str] = {}
        measured = measure_costs(
            study, lock, space, dataset, device, seed=seed, trust_remote_code=trust_remote_code,
            say=lambda line: say(-1, line), load_failures=failed)
        space = loadable(space, failed)
        cost = label_seconds(space, measured)
    elif timed_first:  # a warm start made the step wait for the first trial: load them now
        space = probed(space)
    if references:
        from autotransfer.study.references.trials import enqueue_references

        for line in enqueue_references(study, lock, space, trials, cost=cost,
                                       lead=None if lead is None else lead.label):
            say(-1, line)
    if not history:
        recorder = None
    return space, recorder


#: Under a time budget the search starts with the best-ranked backbone whose first fine-tune's
#: first epoch, by the device prior, takes at most this share of the budget (else the cheapest)
LEAD_SHARE = 0.25


def lead_backbone(space, prescreen: dict[str, Any] | None, *, references: bool,
                  budgeted: bool, seconds: dict[str, float] | None = None,
                  within: float | None = None):
    """Under a time budget (or timeout) with the references on in ranked order: the backbone
    whose first fine-tune the search starts with, before the linear probes; None otherwise
    (the references run as without a budget, the probes first).

    Args:
        prescreen: the study's pre-screen record, or None.
        seconds: each backbone label's estimated seconds for one epoch of its first fine-tune
            (:func:`_lead_seconds`, from the device prior), where known.
        within: the seconds that epoch may take: the best-ranked backbone
            (:func:`autotransfer.study.references.order.best_ranked`) among those that fit
            (or whose estimate is unknown) leads; when none fits, the cheapest.
    """
    if not (references and budgeted and space.budget.reference_order == "ranked"):
        return None
    from autotransfer.study.references.order import best_ranked
    from autotransfer.study.references.trials import reference_params

    firsts = [params["backbone"] for kind, params in reference_params(space)
              if kind == "default"]
    if seconds and within is not None and firsts:
        fit = [label for label in firsts if seconds.get(label, 0.0) <= within]
        firsts = fit or [min(firsts, key=lambda label: seconds.get(label, float("inf")))]
    label = best_ranked(firsts, prescreen, [b.label for b in space.backbones])
    return None if label is None else space.backbone(label)


def _lead_seconds(study, space, dataset, device, budget: float | None, say
                  ) -> dict[str, float]:
    """Each backbone label's seconds for one epoch of its first fine-tune by the device prior
    (:func:`autotransfer.study.budget.prior.study_priors`: ms per image at batch 1), counting a
    trained image as three forward passes (forward and backward) of its unfrozen part and a
    frozen or validation image as one: ``ms * (3 * (1 - f) * n_train + f * n_train + n_val)``.
    ``{}`` without a budget, with one backbone, or when no prior can be made."""
    if budget is None or len(space.backbones) < 2:
        return {}
    from autotransfer.study.budget.prior import study_priors
    from autotransfer.study.references.trials import first_finetune_values

    try:
        priors = study_priors(study, space, dataset.modality, device)
    except Exception:  # noqa: BLE001 - no prior: the best-ranked backbone leads
        return {}
    n_train, n_val = len(dataset.train), len(dataset.val)
    found = {}
    for spec in space.backbones:
        if spec.label not in priors:
            continue
        values, unnamed = first_finetune_values(space, spec.id)
        frozen = min(1.0, max(0.0, float({**space.resolve(values), **unnamed}[
            "freeze_fraction"])))
        images = 3 * (1 - frozen) * n_train + frozen * n_train + n_val
        found[spec.label] = priors[spec.label] / 1000 * images
    if found:
        say("first fine-tune: one epoch by the device prior: " + ", ".join(
            f"{label} ~{seconds:.0f}s" for label, seconds in found.items()))
    return found


def resumed_line(study, trials: int | None) -> str | None:
    """``resuming: 5 of 8 trials done`` when the study has trials already (None otherwise):
    trials counted as ``--trials`` counts them (interrupted ones do not count), so that trial
    numbers past the total are not taken for an overrun."""
    if not study.get_trials(deepcopy=False):
        return None
    counted = tally(study).counted
    total = f" of {trials}" if trials is not None else ""
    return f"resuming: {counted}{total} trials done"


def costs_wanted(space, *, references: bool, budgeted: bool, trials: int | None = None,
                 prior_covers=None) -> bool:
    """Whether the study times each backbone's step (:mod:`.backbone_cost`). Never with one
    backbone: its own first trials measure it, and the time budget's start rule reads them (the
    step took 5 s of a 17 s budget on text, and the linear probe no longer fitted). With
    several: under a time budget (the start rule and the references' share use it), or when
    the references are ranked or the starts cost-aware (the space's ``budget``), unless
    ``trials`` (with no warm start before the references) is room for the linear probes
    alone in an order the costs cannot change: one probe per backbone, or fewer in the
    space's listed order. Nothing would read the costs then; a later resume with more
    trials times them. Without a time budget, once the trials have started, the cost-aware
    draw is the only reader (the references' order reads costs timed before the first
    trial: :func:`costs_before_trials`): when ``prior_covers()`` (a callable) is true, every
    backbone has a device-aware prior (:mod:`autotransfer.study.budget.prior`), the draw uses
    it and no step is timed."""
    plan = space.budget
    n = len({b.id for b in space.backbones})
    if n == 1:
        return False
    if budgeted:
        return True
    if references and trials is not None and (
            trials == n or (trials < n and plan.reference_order == "listed")):
        return False
    wanted = plan.cost_aware or (references and plan.reference_order == "ranked")
    return wanted and not (prior_covers is not None and plan.cost_aware and prior_covers())


def costs_before_trials(space, *, references: bool, budgeted: bool,
                        trials: int | None) -> bool:
    """Whether :func:`prepare_study` times the backbones before the first trial: when the
    costs are wanted (:func:`costs_wanted`) and something before the first trial reads them:
    a time budget's start rule, or room for fewer linear probes than backbones (the costs
    choose which probes run). Otherwise the first trial that is not a linear probe times them
    (``TrialContext.costs_due``), before its sampler draws the backbone: timed first, they
    delayed the first trial's first batch on ``make demo`` from about 4.7 s to 7.5 s, and
    only the cost-aware draw after the probes read them."""
    if not costs_wanted(space, references=references, budgeted=budgeted, trials=trials):
        return False
    few_probes = references and trials is not None and trials < len(
        {b.id for b in space.backbones})
    return budgeted or few_probes


class DeferredRecorder:
    """The transfer history's recorder, registered when the first trial completes: the
    reference backbone's meta-features (a backbone load and a pass over a sample of the data
    at its own input size, 0.5-1 s) then no longer delay the first trial's first batch."""

    def __init__(self, start, say) -> None:
        self._start, self._say, self._recorder = start, say, None

    def __call__(self, study, trial) -> None:
        from optuna.trial import TrialState

        if trial.state != TrialState.COMPLETE:  # the recorder records completed trials only
            return
        if self._start is not None:
            start, self._start = self._start, None
            try:
                self._recorder = start()
            except Exception as exc:  # the history helps a search; it never stops one
                self._say(-1, f"transfer history unavailable: {type(exc).__name__}: "
                              f"{first_line(exc)}")
        if self._recorder is not None:
            self._recorder(study, trial)


def distances(current: dict[str, Any], past: list[dict[str, Any]]) -> list[float]:
    """Distance of each past dataset's meta-features to ``current`` (same modality only; others
    get ``inf``).

    Each scalar meta-feature (``SCALARS``: log2 classes, log2 samples, log2 imbalance, k-NN and
    LogME of the reference features) is z-scored over the current and past datasets; the
    domain term is the cosine distance between mean reference features, scaled by its mean over
    the candidates. The distance is the root mean square of the available terms.
    """
    metas = [current] + [p["meta"] for p in past]
    scales = {}
    for key in SCALARS:
        values = [m[key] for m in metas if m.get(key) is not None]
        if len(values) >= 2 and np.std(values) > 0:
            scales[key] = float(np.std(values))
    domain = [_cosine_distance(current, p["meta"]) for p in past]
    known = [d for d in domain if d is not None]
    domain_scale = float(np.mean(known)) if known and np.mean(known) > 0 else None
    result = []
    for p, dom in zip(past, domain, strict=True):
        meta = p["meta"]
        if meta.get("modality") != current.get("modality"):
            result.append(math.inf)
            continue
        terms = [
            ((meta[k] - current[k]) / s) ** 2 for k, s in scales.items()
            if meta.get(k) is not None and current.get(k) is not None
        ]
        if dom is not None and domain_scale:
            terms.append((dom / domain_scale) ** 2)
        result.append(math.sqrt(sum(terms) / len(terms)) if terms else 0.0)
    return result


def _cosine_distance(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    if a.get("ref_backbone") is None or a.get("ref_backbone") != b.get("ref_backbone"):
        return None
    u, v = np.asarray(a["ref_mean"]), np.asarray(b["ref_mean"])
    if u.shape != v.shape:
        return None
    denominator = np.linalg.norm(u) * np.linalg.norm(v)
    return float(1.0 - u @ v / denominator) if denominator > 0 else None


def fits(space, label: str, params: dict[str, Any]) -> dict[str, Any] | None:
    """The part of a past configuration that ``space`` can express: its backbone (None when the
    space lacks it) plus each sampled value inside the space's distribution for it."""
    from autotransfer.space.schema import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if label not in {b.label for b in space.backbones}:
        return None
    kept: dict[str, Any] = {"backbone": label}
    for name, spec in space.params.items():
        value = params.get(name)
        if value is None:
            continue
        if isinstance(spec, CategoricalDistribution):
            ok = value in spec.choices
        elif isinstance(spec, (FloatDistribution, IntDistribution)):
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and spec.low <= value <= spec.high)
            if ok and isinstance(spec, IntDistribution):
                ok = int(value) == value and (int(value) - spec.low) % spec.step == 0
        else:
            continue  # fixed in this space: not a study parameter
        if ok:
            kept[name] = value
    return kept


@dataclass
class WarmStart:
    """A configuration enqueued from a past study."""

    params: dict[str, Any]
    study: str
    trial: int
    value: float
    distance: float
    source: str


def warm_start_configs(engine, study_name: str, current_meta: dict[str, Any], space, n: int,
                       *, max_datasets: int = 3) -> list[WarmStart]:
    """Up to ``n`` configurations from the ``max_datasets`` nearest past datasets, taken in
    turn (nearest first), each dataset's best first by the current space's rule
    (:mod:`autotransfer.study.selection`: its bounds exclude a past trial that exceeds them,
    its objectives order the rest); duplicates are skipped."""
    rule = Rule.of_space(space)
    past = load_datasets(engine, exclude_study=study_name)
    if not past:
        return []
    dist = distances(current_meta, past)
    order = [i for i in np.argsort(dist, kind="stable") if math.isfinite(dist[i])]
    queues = []
    for i in order[:max_datasets]:
        found = []
        for row in load_transfers(engine, past[i]["id"], rule):
            params = fits(space, row["backbone"], row["params"])
            if params is not None:
                found.append(WarmStart(params, row["study"], row["trial"], row["value"],
                                       float(dist[i]), past[i]["source"]))
        queues.append(found)
    chosen: list[WarmStart] = []
    seen: set[str] = set()
    while len(chosen) < n and any(queues):
        for queue in queues:
            while queue:
                candidate = queue.pop(0)
                key = json.dumps(candidate.params, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    chosen.append(candidate)
                    break
            if len(chosen) >= n:
                break
    return chosen


def enqueue_warm_starts(study, engine, current_meta: dict[str, Any], space,
                        n: int) -> list[WarmStart]:
    """Enqueue up to ``n`` past configurations on ``study`` (once per study); returns them."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if StudyRecord.of(study).warm_start is not None:
        return []
    chosen = warm_start_configs(engine, study.study_name, current_meta, space, n)
    for config in chosen:
        study.enqueue_trial(config.params, user_attrs=warm_start_attrs({
            "study": config.study, "trial": config.trial, "value": config.value,
            "distance": round(config.distance, 4), "data": config.source,
        }))
    set_warm_start(study, [
        {"study": c.study, "trial": c.trial, "value": c.value} for c in chosen
    ])
    return chosen


#: The 0.1 name of :func:`prepare_study` (one release).
spend_budget_well = prepare_study
