"""What the search bought: reference trials, and the transfer effect of the best configuration.

Reference trials are enqueued once per study before any trial is sampled (Optuna's
``Study.enqueue_trial``), per backbone of the space: a *linear probe* (``freeze_fraction: 1``,
every other hyperparameter at its default) and its *first fine-tune* (kind ``default``, the
stored name of the earlier "default configuration": the settings of the backbone's family,
:mod:`autotransfer.space.first_finetune`, clipped into the searched range, a fixed value kept,
the documented defaults for the rest; :func:`first_finetune_values`). They are
ordinary trials: the sampler learns from them and they count towards ``--trials``. When the
space's ``method`` includes a method that asks for a reference (``TuningMethod.reference``:
``lora`` does), and its default is another method, a reference of that method per backbone
joins them: the first fine-tune with ``method`` set to it (LoRA at the default rank),
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

from autotransfer.contract.backbone import split_id
from autotransfer.contract.collect import get_registry
from autotransfer.finetune.records import (
    StudyRecord,
    reference_attrs,
    reference_name,
    reference_of,
    set_pending_references,
    set_references,
    set_transfer_effect,
    trial_records,
)
from autotransfer.space.first_finetune import KNOWN_ZOOS, FirstFinetune, first_finetune
from autotransfer.space.methods import METHOD_TRAITS, method_traits
from autotransfer.space.schema import (
    HYPERPARAMETERS,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    SearchSpace,
)
from autotransfer.study.references.order import deferred, lead_first, order_references
from autotransfer.study.references.queue import requeue_interrupted
from autotransfer.study.results.scores import chance_level, chance_warning
from autotransfer.study.selection import best_trial, rule_of, top
from autotransfer.study.workers import tally

#: the reference kinds: the two of every space, then the methods that ask for one (their name)
KINDS = ("linear_probe", "default", *(n for n, t in METHOD_TRAITS.items() if t.reference))
# transfer effect by default from this many completed trials on (--transfer-effect forces it)
TRANSFER_EFFECT_FROM = 8


def _value_in(spec: Any, value: Any) -> Any:
    """``value`` moved into ``spec`` where it lies outside: clipped to a range, the nearest
    numeric choice, else the first choice; None (``image_size``: the backbone's own size) is
    the largest of a searched range, the nearest to it."""
    if isinstance(spec, CategoricalDistribution):
        if value in spec.choices:
            return value
        numbers = [c for c in spec.choices
                   if isinstance(c, (int, float)) and not isinstance(c, bool)]
        if numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
            return min(numbers, key=lambda choice: abs(float(choice) - value))
        return spec.choices[0]
    if value is None:
        return spec.high
    return type(spec.low)(min(max(value, spec.low), spec.high))


def _searched(space: SearchSpace) -> dict[str, Any]:
    return {n: s for n, s in space.params.items() if isinstance(s, BaseModel)}


def first_finetune_of(backbone_id: str) -> FirstFinetune:
    """The first fine-tune of ``backbone_id``'s family
    (:func:`autotransfer.space.first_finetune.first_finetune`; the registry says the modality
    of a zoo of several; an id it does not know gets the generic row)."""
    zoo = split_id(backbone_id)[0]
    modality = None
    if zoo in KNOWN_ZOOS and KNOWN_ZOOS[zoo] is None:
        try:
            modality = get_registry().get(backbone_id).modality
        except Exception:  # noqa: BLE001 - an id the registry does not know: generic
            modality = None
    return first_finetune(backbone_id, modality)


def first_finetune_values(space: SearchSpace, backbone_id: str
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The first fine-tune of ``backbone_id`` in ``space``: ``(searched, unnamed)``.

    ``searched``: a value for each hyperparameter the space searches, the family's setting
    (:mod:`autotransfer.space.first_finetune`) or else the documented default, moved into the
    searched range; what the reference trial is enqueued with. ``unnamed``: the family's
    settings of the hyperparameters the space names nowhere (neither searched nor fixed), which
    :func:`apply_reference` sets on the trial; a hyperparameter the space fixes stays fixed.
    """
    settings = first_finetune_of(backbone_id).settings
    searched = {name: _value_in(spec, settings.get(name, HYPERPARAMETERS[name].default))
                for name, spec in _searched(space).items()}
    unnamed = {name: value for name, value in settings.items() if name not in space.params}
    return searched, unnamed


def reference_params(space: SearchSpace) -> list[tuple[str, dict[str, Any]]]:
    """``(kind, enqueued params)`` of every reference trial: the linear probes of all backbones
    first (every other hyperparameter at its documented default), then their first fine-tunes
    (kind ``default``, :func:`first_finetune_values`; one that freezes the whole backbone
    equals the probe and is left out), then the references of the methods that ask for one."""
    searched = _searched(space)
    defaults = {name: _value_in(spec, HYPERPARAMETERS[name].default)
                for name, spec in searched.items()}
    probe = dict(defaults)
    if "freeze_fraction" in searched:
        probe["freeze_fraction"] = _clip(searched["freeze_fraction"], 1.0)
    found = [("linear_probe", {"backbone": b.label, **probe}) for b in space.backbones]
    firsts = {b.label: first_finetune_values(space, b.id) for b in space.backbones}
    found += [("default", {"backbone": label, **values})
              for label, (values, unnamed) in firsts.items()
              if {**space.resolve(values), **unnamed}["freeze_fraction"] < 1.0]
    for method in space.methods:
        for label, (values, _unnamed) in firsts.items():
            if method_traits(method).reference and method != space.resolve(values)["method"]:
                found.append((method, {"backbone": label, **values, "method": method}))
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
                       cost: dict[str, float] | None = None,
                       lead: str | None = None) -> list[str]:
    """Enqueue the reference trials on ``study`` (once per study, as many as ``trials`` leaves
    room for, in the order of :func:`autotransfer.study.references.order.order_references`;
    ``cost`` is each backbone label's measured seconds per epoch). References that wait for
    the linear probes' scores are recorded as pending instead
    (:mod:`autotransfer.study.references.queue` enqueues them). ``lead`` (a time budget, in
    ranked order: :func:`autotransfer.study.warm_start.lead_backbone`): the label of the
    backbone whose first fine-tune goes first, before the linear probes
    (:func:`autotransfer.study.references.order.lead_first`). Returns one line per
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
        first = None
        if lead is not None and order == "ranked":
            planned = lead_first(planned, lead)
            first = planned[0] if planned and planned[0][0] == "default" else None

        def waits(item: tuple[str, dict[str, Any]]) -> bool:
            return item is not first and deferred(item[0], record.prescreen, order)

        room = len(planned) if trials is None else max(0, trials - tally(study).counted)
        held = [item for item in planned if waits(item)]
        chosen = [item for item in planned if not waits(item)][:room]
        held = held if room > len(chosen) else []  # the room left is counted at release
        for kind, params in chosen:
            study.enqueue_trial(params, user_attrs=reference_attrs(kind))
        if held:
            set_pending_references(study, [[kind, params, (cost or {}).get(params["backbone"])]
                                           for kind, params in held])
        set_references(study, [kind for kind, _ in chosen + held])
    lines = [f"reference: enqueued the {reference_name(kind)} of {params['backbone']}"
             + (" first, before the linear probes" if item is first else "")
             for item in chosen for kind, params in [item]]
    if held:
        lines.append(f"reference: {len(held)} first fine-tune(s) wait for the linear "
                     "probes' scores, which order them")
    return lines


def apply_reference(trial, params: dict[str, Any], space: SearchSpace | None = None,
                    backbone_id: str | None = None) -> dict[str, Any]:
    """A reference trial's hyperparameters from the sampled ``params``: a linear probe
    freezes the whole backbone even where the space fixes ``freeze_fraction`` or keeps it
    below 1; a first fine-tune (and a method's reference, built from it) takes its family's
    settings of the hyperparameters that ``space`` names nowhere (:func:`first_finetune_values`;
    ``average_checkpoints: 3``, say, where the space leaves it at its default)."""
    kind = reference_of(trial)
    if kind == "linear_probe":
        return {**params, "freeze_fraction": 1.0}
    if kind is None or space is None or backbone_id is None:
        return params
    return _of_method({**params, **first_finetune_values(space, backbone_id)[1]})


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
