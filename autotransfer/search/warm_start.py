"""Spend the search budget well: pre-screen the backbones, warm-start from past studies, and
record this study's trials in the transfer history (``search --prescreen/--warm-start``)."""

from __future__ import annotations

import os

from autotransfer.errors import AutotransferError, first_line


def check_options(*, prescreen: int | None, prescreen_by: str | None,
                  warm_start: int | None) -> None:
    """Bad values of ``--prescreen``, ``--prescreen-by`` and ``--warm-start`` fail at the door."""
    from autotransfer.search.prescreen import METHODS

    if prescreen is not None and prescreen < 1:
        raise AutotransferError(f"--prescreen must be >= 1, got {prescreen}")
    if prescreen_by is not None and prescreen_by not in METHODS:
        raise AutotransferError(
            f"--prescreen-by must be one of {', '.join(METHODS)}, got {prescreen_by!r}"
        )
    if warm_start is not None and warm_start < 1:
        raise AutotransferError(f"--warm-start must be >= 1, got {warm_start}")


def spend_budget_well(study, study_storage, lock, space, dataset, progress, *, prescreen,
                      prescreen_by, history, warm_start, device, seed, trust_remote_code,
                      references=False, trials=None):
    """``search --prescreen K`` narrows the space, ``--warm-start N`` enqueues past bests,
    then the reference trials (``references``) in the room ``trials`` leaves; the recorder (or
    None) adds each completed trial to the transfer history."""
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
    if prescreen is not None or "prescreen" in study.user_attrs:
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
        if not chosen and study.user_attrs.get("warm_start") == []:
            say(-1, "warm start: no past configuration fits this space")
    if references:
        from autotransfer.search.references import enqueue_references

        for line in enqueue_references(study, lock, space, trials):
            say(-1, line)
    if not history:
        recorder = None
    return space, recorder
