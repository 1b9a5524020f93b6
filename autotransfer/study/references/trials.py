"""What the search bought: reference trials, and the transfer effect of the best configuration.

Reference trials are enqueued once per study before any trial is sampled (Optuna's
``Study.enqueue_trial``), per backbone of the space: a *linear probe* (``freeze_fraction: 1``,
every other hyperparameter at its default) and the space's *default configuration* (every
searched hyperparameter at its documented default, clipped into the searched range). They are
ordinary trials: the sampler learns from them and they count towards ``--trials``. When the
space's ``method`` includes a method that asks for a reference (``TuningMethod.reference``:
``lora`` does), and its default is another method, a reference of that method per backbone
joins them: the default configuration with ``method`` set to it (LoRA at the default rank),
whose kind is the method's name. Their trial holds ``user_attrs["reference"]``
(``linear_probe``, ``default`` or the method's name, e.g. ``lora``). The pruner
never stops a linear probe, so the floor always has a score; the other references take part in
the rungs like any trial (:func:`autotransfer.study.references.order.prunable`). They run in the
order of :func:`autotransfer.study.references.order.order_references` (promise, then measured
cost), and under a time budget within a share of it (:mod:`autotransfer.study.references.share`).

The *transfer effect* (what the source task's weights add on the target task) is measured by
training the best configuration once more from random weights, with the same seed and budget.
"""

from __future__ import annotations

import warnings
from typing import Any

from pydantic import BaseModel

from autotransfer.contract.collect import get_registry
from autotransfer.finetune.records import (
    StudyRecord,
    reference_attrs,
    reference_of,
    set_pending_references,
    set_references,
    set_transfer_effect,
    trial_records,
)
from autotransfer.space.methods import METHOD_TRAITS, method_traits
from autotransfer.space.schema import (
    HYPERPARAMETERS,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    SearchSpace,
)
from autotransfer.study.references.order import deferred, order_references
from autotransfer.study.references.queue import requeue_interrupted
from autotransfer.study.results.scores import chance_level, chance_warning
from autotransfer.study.selection import best_trial, rule_of, top
from autotransfer.study.workers import tally

#: the reference kinds: the two of every space, then the methods that ask for one (their name)
KINDS = ("linear_probe", "default", *(n for n, t in METHOD_TRAITS.items() if t.reference))
# transfer effect by default from this many completed trials on (--transfer-effect forces it)
TRANSFER_EFFECT_FROM = 8


def _default_in(name: str, spec: Any) -> Any:
    """The documented default of ``name``, moved into ``spec``'s range when it lies outside."""
    default = HYPERPARAMETERS[name].default
    if isinstance(spec, CategoricalDistribution):
        return default if default in spec.choices else spec.choices[0]
    if default is None:  # image_size: the backbone's own size; the largest searched is nearest
        return spec.high
    return type(spec.low)(min(max(default, spec.low), spec.high))


def reference_params(space: SearchSpace) -> list[tuple[str, dict[str, Any]]]:
    """``(kind, enqueued params)`` of every reference trial: the linear probes of all backbones
    first, then their default configurations (a default that equals the probe is left out)."""
    searched = {n: s for n, s in space.params.items() if isinstance(s, BaseModel)}
    defaults = {name: _default_in(name, spec) for name, spec in searched.items()}
    probe = dict(defaults)
    if "freeze_fraction" in searched:
        probe["freeze_fraction"] = _clip(searched["freeze_fraction"], 1.0)
    same = space.resolve(defaults)["freeze_fraction"] >= 1.0
    found = [("linear_probe", {"backbone": b.label, **probe}) for b in space.backbones]
    if not same:
        found += [("default", {"backbone": b.label, **defaults}) for b in space.backbones]
    default_method = space.resolve(defaults)["method"]
    for method in space.methods:
        if method_traits(method).reference and method != default_method:
            same_but = {**defaults, "method": method}
            found += [(method, {"backbone": b.label, **same_but}) for b in space.backbones]
    return [(kind, _of_method(params)) for kind, params in found]


def _of_method(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` without the hyperparameters of a method other than its own."""
    method = params.get("method", HYPERPARAMETERS["method"].default)
    return {n: v for n, v in params.items()
            if n not in HYPERPARAMETERS or HYPERPARAMETERS[n].method in (None, method)}


def _clip(spec: FloatDistribution | IntDistribution | CategoricalDistribution,
          value: float) -> float:
    """``value`` moved into ``spec``: clipped to a range, or the nearest of the choices."""
    if isinstance(spec, CategoricalDistribution):
        return min(spec.choices, key=lambda choice: abs(float(choice) - value))
    return min(max(value, spec.low), spec.high)


def enqueue_references(study, lock, space: SearchSpace, trials: int | None, *,
                       cost: dict[str, float] | None = None) -> list[str]:
    """Enqueue the reference trials on ``study`` (once per study, as many as ``trials`` leaves
    room for, in the order of :func:`autotransfer.study.references.order.order_references`;
    ``cost`` is each backbone label's measured seconds per epoch). References that wait for
    the linear probes' scores are recorded as pending instead
    (:mod:`autotransfer.study.references.queue` enqueues them). Returns one line per
    enqueued reference, and one for those held back. On a resumed study, the references a
    stop interrupted are enqueued again instead
    (:func:`autotransfer.study.references.queue.requeue_interrupted`)."""
    order = space.budget.reference_order
    with lock.held():
        record = StudyRecord.of(study)
        if record.references is not None:
            now = tally(study)
            return requeue_interrupted(
                study, None if trials is None else max(0, trials - now.counted - now.waiting))
        planned = order_references(reference_params(space), record.prescreen, cost=cost,
                                   order=order)
        room = len(planned) if trials is None else max(0, trials - tally(study).counted)
        held = [(k, p) for k, p in planned if deferred(k, record.prescreen, order)]
        chosen = [(k, p) for k, p in planned if not deferred(k, record.prescreen, order)]
        chosen = chosen[:room]
        held = held if room > len(chosen) else []  # the room left is counted at release
        for kind, params in chosen:
            study.enqueue_trial(params, user_attrs=reference_attrs(kind))
        if held:
            set_pending_references(study, [[kind, params, (cost or {}).get(params["backbone"])]
                                           for kind, params in held])
        set_references(study, [kind for kind, _ in chosen + held])
    lines = [f"reference: enqueued the {kind.replace('_', ' ')} of {params['backbone']}"
             for kind, params in chosen]
    if held:
        lines.append(f"reference: {len(held)} default configuration(s) wait for the linear "
                     "probes' scores, which order them")
    return lines


def apply_reference(trial, params: dict[str, Any]) -> dict[str, Any]:
    """A linear probe freezes the whole backbone even where the space fixes
    ``freeze_fraction`` or keeps it below 1."""
    if reference_of(trial) == "linear_probe":
        return {**params, "freeze_fraction": 1.0}
    return params


def best_references(study) -> dict[str, dict[str, Any]]:
    """The best completed reference trial of each kind:
    ``{kind: {backbone, val_score, test_score, trial}}`` (kinds without one are left out).
    Best as :func:`autotransfer.study.selection.top` says: within the space's constraints,
    the first of the kind's Pareto front by the pick rule (one objective: the highest score)."""
    rule = rule_of(study)
    records = trial_records(study, ("complete",))
    found: dict[str, dict[str, Any]] = {}
    for kind in dict.fromkeys([*KINDS, *(r.reference for r in records if r.reference)]):
        t = top([r for r in records if r.reference == kind], rule)
        if t is not None:
            found[kind] = {"backbone": t.backbone or t.label, "val_score": float(t.value),
                           "test_score": None if t.test_score is None else float(t.test_score),
                           "trial": t.number}
    return found


def measure_transfer_effect(study, space: SearchSpace, data, device, *, seed: int,
                            trust_remote_code: bool = False, say=None) -> dict[str, Any] | None:
    """Train the best trial's configuration again from random weights (same seed, epochs and
    hyperparameters) and store ``{trial, val, test, scratch_val_score, scratch_test_score}``
    in the study's ``transfer_effect`` user attribute; returns it (None when no trial completed
    or the best backbone is randomly initialised already). ``val`` and ``test`` are pretrained
    minus scratch; ``test`` is None without a test split. A result already measured for the
    same best trial is returned as it is."""
    import torch

    from autotransfer.finetune.trainer import Trainer

    best = _best_trial(study)
    if best is None:
        return None
    known = StudyRecord.of(study).transfer_effect
    if known and known.get("trial") == best.number:
        return known
    spec = space.backbone(best.sampled["backbone"])
    if not spec.pretrained:
        return None
    if say:
        say(f"transfer effect: training trial {best.number}'s configuration from random weights")
    entry = get_registry().get(spec.id)
    options = spec.load_options()
    if trust_remote_code and "trust_remote_code" in entry.options:
        options["trust_remote_code"] = True
    trial_seed = seed + best.number
    torch.manual_seed(trial_seed)
    backbone = entry.load(pretrained=False, **options)
    params = best.params or space.resolve(best.sampled)
    trainer = Trainer(backbone, data, params, device=device, metric=space.metric,
                      seed=trial_seed, cache=False, label=spec.id)
    try:
        result = trainer.fit(space.epochs)
    except FloatingPointError as exc:
        if say:
            say(f"transfer effect: not measured, training from random weights diverged ({exc})")
        return None
    scratch_val = float(result.score)
    scratch_test = None if result.test is None else float(result.test[space.metric])
    test = best.test_score
    effect = {
        "trial": best.number,
        "val": round(float(best.value) - scratch_val, 6),
        "test": None if test is None or scratch_test is None else round(test - scratch_test, 6),
        "scratch_val_score": scratch_val,
        "scratch_test_score": scratch_test,
    }
    set_transfer_effect(study, effect)
    return effect


def transfer_effect_of(study) -> dict[str, Any] | None:
    """The stored transfer effect when it belongs to the current best trial, else None."""
    known = StudyRecord.of(study).transfer_effect
    best = _best_trial(study)
    if not known or best is None or known.get("trial") != best.number:
        return None
    return known


def _best_trial(study):
    return best_trial(study)


def conclude(study, space: SearchSpace, data, device, *, seed: int,
             transfer_effect: bool | None, trust_remote_code: bool = False,
             progress=None) -> tuple[dict[str, Any] | None, list[str]]:
    """The end of a search: the transfer effect (when asked for, or by default from
    ``TRANSFER_EFFECT_FROM`` completed trials on) and the warnings of the study as a whole
    (each also issued with ``warnings.warn``). Returns ``(transfer effect or None, warnings)``."""
    from optuna.trial import TrialState

    def say(message: str) -> None:
        if progress:
            progress.note(-1, message)

    completed = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    effect = transfer_effect_of(study)
    wanted = completed >= TRANSFER_EFFECT_FROM if transfer_effect is None else transfer_effect
    if wanted and effect is None and completed:
        effect = measure_transfer_effect(study, space, data, device, seed=seed,
                                         trust_remote_code=trust_remote_code, say=say)
    elif effect is None and completed and transfer_effect is None:
        say(f"transfer effect: not measured ({completed} completed trials; it is measured from "
            f"{TRANSFER_EFFECT_FROM} on, or when asked: --transfer-effect, "
            "transfer_effect=True)")
    problems = []
    chance = chance_level(data.val.labels, data.n_classes, space.metric)
    problem = chance_warning(study, chance, space.metric)
    if problem:
        problems.append(problem)
        warnings.warn(problem, stacklevel=3)
    return effect, problems
