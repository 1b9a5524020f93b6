"""Preparing a study to spend its budget well: pre-screen the backbones, warm-start from past
studies (meta-learning), and record this study's trials in the transfer history."""

from __future__ import annotations

import os

from autotransfer.errors import first_line
from autotransfer.search.records import StudyRecord


def prepare_study(study, study_storage, lock, space, dataset, progress, *, prescreen,
                  prescreen_by, history, warm_start, device, seed, trust_remote_code):
    """Before the first trial: ``prescreen=K`` narrows the space to the K backbones that rank
    best on frozen features, ``warm_start=N`` enqueues the best configurations of the most
    similar past datasets. Returns ``(space, recorder)``; the recorder (or None) adds each
    completed trial to the transfer history."""
    from autotransfer.search import history as transfer_history
    from autotransfer.search.prescreen import DEFAULT_BY, narrow_space

    if history is None:
        history = os.environ.get("AUTOTRANSFER_HISTORY", "1") != "0"
    say = progress.note if progress else (lambda number, message: None)
    engine = study_storage.engine
    recorder = None
    if history or warm_start:
        try:
            recorder = transfer_history.start_recording(study, engine, dataset, space,
                                                         device=device, seed=seed)
        except Exception as exc:  # the history helps a search; it never stops one
            say(-1, f"transfer history unavailable: {type(exc).__name__}: {first_line(exc)}")
    recorded = StudyRecord.of(study)
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
            chosen = transfer_history.warm_start(study, engine, meta, space, warm_start)
        for config in chosen:
            say(-1, f"warm start: enqueued trial {config.trial} of study {config.study!r} "
                    f"({config.params['backbone']}, {config.value:.4f}; "
                    f"distance {config.distance:.2f})")
        if not chosen and StudyRecord.of(study).warm_start == []:
            say(-1, "warm start: no past configuration fits this space")
    if not history:
        recorder = None
    return space, recorder


#: The 0.1 name of :func:`prepare_study` (one release).
spend_budget_well = prepare_study
