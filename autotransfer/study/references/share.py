"""The references' share of a time budget: at most a stated fraction of it goes to them.

Under ``time_budget`` or ``timeout``, the reference trials of a run must end by
``start + share * B``, where ``start`` is when the trials begin (after the data, the pre-screen
and the timed steps are ready), ``B`` the time for trials from then (``timeout``, or what the
time budget leaves after its reserve for the final writes) and ``share`` the space's
``budget.reference_share`` (:data:`autotransfer.space.budget.REFERENCE_SHARE`, a third,
by default). The end is stored with the study, so that every worker keeps the same one. A
reference whose estimate (the backbone's measured cost times the space's epochs,
:func:`autotransfer.study.budget.backbone_cost.estimate`) does not fit in what is left of the share
does not start: it is recorded as not started (it does not count towards ``trials``) and its
reason, one console line, names the backbone and the estimate. The sampled trials get the
time instead. A reference without a measured cost starts while the share lasts.

Two references are the floor and always start (the time budget's own start rule still
applies): the linear probes (a head fit on cached frozen features, seconds) and the study's
first first fine-tune (kind ``default``): the best-ranked one, which under a time budget runs
before the probes (:func:`autotransfer.study.references.order.lead_first`). At a quarter of
an exhaustive grid's compute on the demo data the share had dropped exactly that default, which
was the grid's best configuration (benchmarks/oracle.py: val 0.815 with it dropped, 0.855
with it run, 3 seeds); it takes part in the rungs, so a weak one costs only its first rung.

The floor stays: the pick is never below the best reference that ran
(:mod:`autotransfer.study.selection`).
"""

from __future__ import annotations

from typing import Any

from autotransfer.finetune.records import (
    StudyRecord,
    reference_name,
    reference_of,
    set_reference_until,
)
from autotransfer.study.budget import timebudget
from autotransfer.study.budget.backbone_cost import estimate_for


def start_share(study, lock, *, started: float, budget: float | None, share: float) -> None:
    """Record when this run's references' share ends: ``share`` of the ``budget`` seconds
    for trials from ``started`` (None without a budget: no share)."""
    with lock.held():
        set_reference_until(study, None if budget is None else started + share * budget)


def not_starting(study, kind: str | None, backbone: str, backbone_id: str,
                 params: dict[str, Any], epochs: int, *, share: float,
                 number: int | None = None) -> str | None:
    """Why the reference trial of ``kind`` must not start (its reason), or None.

    Args:
        kind: the trial's reference kind (None: a sampled trial, which this rule leaves alone).
        backbone: the backbone's label, for the message; ``backbone_id`` keys its cost.
        params: the trial's hyperparameters; ``epochs`` the space's.
        share: the space's share, for the message.
        number: the trial's number; the first default configuration of the study (the best
            ranked) is never stopped by the share, nor is a linear probe.
    """
    if kind is None or kind == "linear_probe" or (kind == "default"
                                                   and is_first_default(study, number)):
        return None
    until = StudyRecord.of(study).reference_until
    if until is None:
        return None
    left = until - timebudget.now()
    need = estimate_for(study, backbone_id, params, epochs)
    if left > 0 and (need is None or need <= left):
        return None
    what = reference_name(kind)
    if need is None:
        return (f"reference share: the {what} of {backbone} not started, the references' "
                f"share ({share:.0%} of the budget) is spent")
    return (f"reference share: the {what} of {backbone} not started, it needs ~{need:.0f}s "
            f"({epochs} epochs at the measured cost) and {max(0.0, left):.0f}s of the "
            f"references' share ({share:.0%} of the budget) are left")


def is_first_default(study, number: int | None) -> bool:
    """Whether trial ``number`` is the study's first default-configuration reference."""
    if number is None:
        return False
    return not any(t.number < number and reference_of(t) == "default"
                   for t in study.get_trials(deepcopy=False))
