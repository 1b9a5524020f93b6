"""Reference trials held back until the linear probes have scored, then enqueued in order.

Without a pre-screen, the linear probe of each backbone is what ranks the backbones (a probe is
a pre-screen that also gives a floor), so the default configurations
(:func:`autotransfer.study.references.order.deferred`) are recorded as pending when the study
starts and enqueued by the first worker that finds the queue empty once every probe has
finished: best probe score first, ties by measured cost. A worker that finds the queue empty
while a probe still runs elsewhere waits for it (seconds), rather than sampling a trial that
would jump the queue. The trial count is kept: only as many as ``trials`` still leaves room for
are enqueued.

A reference that a stop interrupted (Ctrl-C, SIGTERM: failed with ``interrupted``) is enqueued
again when the search resumes (:func:`requeue_interrupted`), with the same parameters, so that
a stop never loses a study its linear probe or default configuration; like every interrupted
trial, the failed one does not count towards ``--trials``.
"""

from __future__ import annotations

import json
from typing import Any

from autotransfer.finetune.records import (
    StudyRecord,
    TrialRecord,
    reference_attrs,
    reference_name,
    reference_of,
    set_pending_references,
)
from autotransfer.study.references.order import order_references


def probe_scores(study) -> tuple[dict[str, float], bool]:
    """The best completed linear-probe value per backbone label, and whether any probe is
    still queued or running."""
    from optuna.trial import TrialState

    scores: dict[str, float] = {}
    unfinished = False
    for t in study.get_trials(deepcopy=False):
        if reference_of(t) != "linear_probe":
            continue
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            unfinished = True
        elif t.state == TrialState.COMPLETE and t.values:
            label = t.params.get("backbone")
            scores[label] = max(scores.get(label, -float("inf")), float(t.values[0]))
    return scores, unfinished


def release_pending(study, room: int | None) -> bool:
    """Run under the study lock before a worker takes a trial: enqueue the pending references
    once every probe has finished (at most ``room`` of them; None: no limit). Returns True
    when this worker should wait instead: references are pending, the queue is empty, and a
    probe still runs."""
    from optuna.trial import TrialState

    pending: list[list[Any]] | None = StudyRecord.of(study).pending_references
    if not pending:
        return False
    if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return False  # queued trials (the probes among them) go first
    scores, unfinished = probe_scores(study)
    if unfinished:
        return True

    items = [(kind, params) for kind, params, _seconds in pending]
    cost = {params["backbone"]: seconds for _kind, params, seconds in pending
            if seconds is not None}
    ordered = order_references(items, None, cost=cost, probe_scores=scores)
    for kind, params in ordered[: len(ordered) if room is None else max(0, room)]:
        study.enqueue_trial(params, user_attrs=reference_attrs(kind))
    set_pending_references(study, [])
    return False


def requeue_interrupted(study, room: int | None) -> list[str]:
    """Enqueue again each reference trial that a stop interrupted, unless the same reference
    (kind and enqueued parameters) has run to an end since or waits in the queue, and at most
    ``room`` of them (None: no limit): a worker requeued after the others filled the study
    must not run one past ``--trials``. Run under the study lock when a search resumes.
    Returns one line per reference enqueued again."""
    from optuna.trial import TrialState

    def key(trial) -> tuple[str, str]:
        fixed = trial.system_attrs.get("fixed_params") or {}  # what enqueue_trial recorded
        return reference_of(trial), json.dumps(fixed, sort_keys=True, default=str)

    trials = [t for t in study.get_trials(deepcopy=False) if reference_of(t)]
    lost = [t for t in trials if t.state == TrialState.FAIL
            and TrialRecord.from_frozen(t).interrupted and t.system_attrs.get("fixed_params")]
    settled = {key(t) for t in trials if not any(t is s for s in lost)}
    lines = []
    for trial in lost:
        if key(trial) in settled or (room is not None and len(lines) >= room):
            continue
        settled.add(key(trial))
        kind = str(reference_of(trial))
        params = trial.system_attrs["fixed_params"]
        study.enqueue_trial(params, user_attrs=reference_attrs(kind))
        lines.append(f"reference: enqueued again the {reference_name(kind)} of "
                     f"{params.get('backbone')} (trial {trial.number} was interrupted)")
    return lines
