"""The search: an Optuna study whose trials fine-tune candidate backbones."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from autotransfer.contract.registry import get_registry
from autotransfer.contract.space import SearchSpace, load_space
from autotransfer.data import (
    check_data,
    load_data,
    warn_cross_split_duplicates,
)
from autotransfer.errors import AutotransferError, StorageError, first_line
from autotransfer.search.dashboard import StudyNote
from autotransfer.search.objective import TrialContext, make_cache, make_objective
from autotransfer.search.options import SearchOptions
from autotransfer.search.prescreen import check_modality
from autotransfer.search.pruners import make_pruner, make_sampler
from autotransfer.search.records import StudyRecord, TrialRecord, set_study_origin
from autotransfer.search.report import (
    best_config,
    leaderboard,
    write_best,
    write_leaderboard_csv,
    write_report,
)
from autotransfer.search.storage import (
    DEFAULT_HEARTBEAT,
    DEFAULT_STORAGE,
    StudyLock,
    make_storage,
    mask_url,
)
from autotransfer.search.workers import (
    WorkerSpec,
    cpu_threads,
    join_study,
    run_local_workers,
    run_trials,
    stop_on_interrupt,
    worker_device,
)
from autotransfer.train.device import device_for
from autotransfer.train.trainer import EpochResult


class Progress(Protocol):
    """Receives the live view of a search: trials, and the epochs of the running trial."""

    def trial_started(self, number: int, backbone: str, params: dict[str, Any]) -> None: ...
    def epoch_done(self, number: int, result: EpochResult, epochs: int) -> None: ...
    def trial_done(self, number: int, state: str, value: float | None, reason: str) -> None: ...
    def note(self, number: int, message: str) -> None: ...


@dataclass
class SearchResult:
    """What :func:`search` returns: the study, ``best.yaml``'s mapping and path (None when no
    trial completed), the leaderboard rows, and the workers that exited abnormally."""

    study: Any  # optuna.Study
    best: dict[str, Any] | None
    best_path: Path | None
    leaderboard: list[dict[str, Any]]
    worker_errors: list[str] = field(default_factory=list)  # workers that exited abnormally
    warnings: list[str] = field(default_factory=list)  # e.g. every trial at chance level
    transfer_effect: dict[str, Any] | None = None  # see autotransfer.search.references


def _space_fingerprint(space: SearchSpace) -> str:
    """The space as sorted JSON; the default sampler is left out, so that studies created before
    the space had a ``sampler`` key keep their fingerprint."""
    data = space.model_dump(mode="json")
    if data.get("sampler") == "tpe":
        del data["sampler"]
    return json.dumps(data, sort_keys=True)


def search(
    data: str | Path,
    space: str | Path | SearchSpace,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    storage: str = DEFAULT_STORAGE,
    study_name: str | None = None,
    out: str | Path = "autotransfer-out",
    device: str = "auto",
    seed: int = 0,
    workers: int = 1,
    heartbeat: int = DEFAULT_HEARTBEAT,
    progress: Progress | None = None,
    trust_remote_code: bool = False,
    modality: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    keep_best: bool = False,
    cache: bool = True,
    cache_memory: str | int | None = None,
    cache_dir: str | Path | None = None,
    compile: bool = False,
    prescreen: int | None = None,
    prescreen_by: str | None = None,
    history: bool | None = None,
    warm_start: int | None = None,
    references: bool = True,
    transfer_effect: bool | None = None,
) -> SearchResult:
    """Search for the best transfer configuration of ``data`` over ``space``.

    The steps: the options are checked (:class:`SearchOptions`), :func:`prepare` loads the
    space, the data and the study, :func:`run` runs the trials here or in worker processes,
    and :func:`write_results` writes ``leaderboard.csv``, ``best.yaml`` and the report.

    Args:
        data: images or audio (class sub-folders, train/val[/test] folders, a path,label
            CSV) or text (a CSV, TSV or JSONL file, or a folder of train/val/test files).
        space: a search-space YAML file (or a parsed :class:`SearchSpace`).
        trials: the study's total number of trials, over all workers (None: until timeout).
            A trial of a dead worker that is retried is replaced by its retry.
        timeout: stop starting new trials after this many seconds.
        storage: an SQLAlchemy URL; the study resumes when its name exists there, and workers
            started anywhere with the same storage and study name join it.
        study_name: defaults to ``<data folder>-<space file>``.
        out: where ``best.yaml`` and ``leaderboard.csv`` are written.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; with several GPUs, ``auto`` and
            ``cuda`` give worker i the GPU ``i % n_gpus``.
        seed: seeds the split and each trial's training; a worker's sampler is seeded with
            ``seed`` plus its worker number in the study, so that workers sample differently.
        workers: worker processes on this machine (1: trials run in this process). Each gets
            ``cores // workers`` torch threads.
        heartbeat: seconds between heartbeats of a running trial; a trial silent for three
            intervals is failed and retried by the next worker that starts a trial.
        progress: receives the live view (trials and epochs).
        trust_remote_code: passed to backbones whose loader takes it (Hugging Face models);
            code shipped with a checkpoint never runs otherwise.
        modality: ``image``, ``text`` or ``audio``; detected from ``data`` when None.
        text_column: the text column of CSV / TSV / JSONL text data.
        label_column: the label column of CSV / TSV / JSONL text data.
        keep_best: keep the best trial's model (an Optuna artifact under ``out/artifacts``,
            replaced when a better trial finishes) and unpack it into ``out/best-model``.
        cache: reuse the frozen groups' outputs across epochs and trials (see
            :mod:`autotransfer.train.cache`); False computes them every step, as without a cache.
        cache_memory: the cache's memory bound per process, e.g. ``"2G"`` (default: 2 GiB,
            at most a quarter of the device's memory).
        cache_dir: a folder for a disk tier of the cache, shared by this machine's workers.
        compile: run the trained part of each trial through ``torch.compile``.
        prescreen: keep the K backbones that rank best on frozen features (see
            :mod:`autotransfer.search.prescreen`); a study keeps its first pre-screen when resumed.
        prescreen_by: the pre-screen's ranking (default ``prescreen.DEFAULT_BY``).
        history: record every completed trial and the dataset's meta-features in the
            storage's transfer-history tables (:mod:`autotransfer.search.history`); None: yes,
            unless the environment sets ``AUTOTRANSFER_HISTORY=0``.
        warm_start: enqueue up to N best configurations of the most similar past datasets in
            the transfer history (once per study).
        references: enqueue a linear probe and the default configuration of each backbone
            before any trial is sampled (once per study; :mod:`autotransfer.search.references`).
        transfer_effect: train the best configuration again from random weights at the end
            and report the difference; None: when at least 8 trials completed.

    Returns:
        The study, the best configuration (``best.yaml``'s mapping, None when no trial
        completed), its path, the leaderboard rows, the workers that exited abnormally, the
        warnings about the study as a whole and the transfer effect (None when not measured).

    Raises:
        OptionError: an argument out of range (named by its Python name), or a bad ``device``.
        SpaceError: the space file is missing or invalid.
        DataError: the data cannot be read or is unusable for classification.
        BackboneError: a backbone id of the space is unknown.
        StorageError: the storage cannot be reached, or the study was created with another
            space.
        AutotransferError: a backbone does not take the data's modality or an option it was
            given, or every worker process failed.
        KeyboardInterrupt: after writing the results of what finished.

    Example:
        >>> result = search("data/fashion-mnist", "search_spaces/image-quick.yaml",
        ...                 trials=8, workers=2)  # doctest: +SKIP
        >>> result.best["backbone"], result.best["val_score"]  # doctest: +SKIP

    Long (as a reason): the docstring documents each of the 25 options; the body is
    three steps.
    """
    options = SearchOptions(
        data=data, space=space, trials=trials, timeout=timeout, storage=storage,
        study_name=study_name, out=out, device=device, seed=seed, workers=workers,
        heartbeat=heartbeat, trust_remote_code=trust_remote_code, modality=modality,
        text_column=text_column, label_column=label_column, keep_best=keep_best, cache=cache,
        cache_memory=cache_memory, cache_dir=cache_dir, compile=compile, prescreen=prescreen,
        prescreen_by=prescreen_by, history=history, warm_start=warm_start,
        references=references, transfer_effect=transfer_effect,
    )
    prepared = prepare(options, progress)
    from autotransfer.search.references import conclude

    try:
        failed = run(prepared, progress)
        effect, problems = conclude(  # the transfer effect and warnings about the whole study
            prepared.study, prepared.options.space, prepared.dataset, prepared.device,
            seed=options.seed, transfer_effect=options.transfer_effect,
            trust_remote_code=options.trust_remote_code, progress=progress,
        )
    except KeyboardInterrupt:  # what finished is kept, and the results say so
        write_results(prepared)
        raise
    result = write_results(prepared, failed)
    result.warnings, result.transfer_effect = problems, effect
    return result


@dataclass
class Prepared:
    """A search ready to run: what :func:`prepare` built from the options."""

    options: SearchOptions  # space: the parsed (and pre-screened) SearchSpace
    space_file: str | None
    dataset: Any  # LabelledData
    storage: Any  # the Optuna storage
    study: Any  # optuna.Study
    lock: StudyLock
    note: StudyNote
    device: Any  # torch.device
    recorder: Any = None  # the transfer-history callback, or None


def prepare(options: SearchOptions, progress: Progress | None = None, *,
            worker: bool = False) -> Prepared:
    """Load the space, the data and the study; in a worker process, join the existing study.

    The search itself (``worker=False``) also checks the backbones against the registry and
    the data, creates the study or checks that a resumed one has the same space, writes the
    dashboard note and runs the pre-screen and warm start (:mod:`.warm_start`).

    Raises:
        The errors of :func:`search`, before any trial runs.
    """
    import optuna

    space = options.space
    space_file = None if isinstance(space, SearchSpace) else str(space)
    space = space if isinstance(space, SearchSpace) else load_space(space)
    torch_device = device_for(options.device)
    if not worker:
        check_backbones(space)
    study_storage = make_storage(options.storage, heartbeat_interval=options.heartbeat)
    dataset = load_data(options.data, val_fraction=space.val_fraction, seed=options.seed,
                        **options.data_options)
    check_data(dataset)
    # failed trials are reported by the progress view with their reason, not as tracebacks
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    masked = mask_url(options.storage)
    if worker:
        study = optuna.load_study(study_name=options.study_name, storage=study_storage,
                                  pruner=make_pruner(space))
    else:
        warn_cross_split_duplicates(dataset)
        check_modality(space, dataset)
        name = (options.study_name
                or f"{dataset.source.name}-{Path(space_file or 'space').stem}")
        study = optuna.create_study(study_name=name, storage=study_storage, load_if_exists=True,
                                    direction="maximize", sampler=make_sampler(space, options.seed),
                                    pruner=make_pruner(space))
        _check_same_space(study, space, dataset, masked)
    lock = StudyLock(study_storage, study.study_name)
    note = StudyNote(dataset, space, space_file=space_file, storage=masked,
                     trials=options.trials)
    prepared = Prepared(replace(options, space=space, study_name=study.study_name), space_file,
                        dataset, study_storage, study, lock, note, torch_device)
    if worker:
        from autotransfer.search.history import recorder_for

        prepared.recorder = recorder_for(study, study_storage.engine, space)
        return prepared
    with lock.held():
        note.save(study)
    from autotransfer.search.warm_start import prepare_study

    space, prepared.recorder = prepare_study(
        study, study_storage, lock, space, dataset, progress, prescreen=options.prescreen,
        prescreen_by=options.prescreen_by, history=options.history,
        warm_start=options.warm_start, device=torch_device, seed=options.seed,
        trust_remote_code=options.trust_remote_code, references=options.references,
        trials=options.trials,
    )
    prepared.options = replace(prepared.options, space=space)
    return prepared


def check_backbones(space: SearchSpace) -> None:
    """Unknown backbone ids and options fail before any trial runs.

    Raises:
        BackboneError: an id no plugin registers.
        AutotransferError: an option the backbone's loader does not take.
    """
    registry = get_registry()
    for spec in space.backbones:
        entry = registry.get(spec.id)
        unknown = sorted(set(spec.load_options()) - set(entry.options))
        if unknown:
            raise AutotransferError(
                f"{spec.id}: option {unknown[0]!r} is not supported; "
                f"expected one of: pretrained{''.join(', ' + o for o in entry.options)}"
            )


def _check_same_space(study, space: SearchSpace, dataset, masked_storage: str) -> None:
    """Record a new study's space and data; a resumed study must have the same space."""
    fingerprint = _space_fingerprint(space)
    known = StudyRecord.of(study).space
    if known is None:
        set_study_origin(study, fingerprint, str(dataset.source))
    elif known != fingerprint:
        raise StorageError(
            f"study {study.study_name!r} in {masked_storage} was created with another search "
            "space; pass a new study name or the original space file"
        )


def run(prepared: Prepared, progress: Progress | None = None) -> list[str]:
    """Run the trials, here (one worker) or in local worker processes; returns the workers
    that exited abnormally.

    Raises:
        AutotransferError: every worker process failed.
    """
    options, study = prepared.options, prepared.study
    if options.workers == 1:
        with stop_on_interrupt():
            _run_trials(prepared, progress, options.seed + join_study(study, prepared.lock))
        return []
    threads = cpu_threads(options.workers)
    codes = run_local_workers([
        WorkerSpec(options, index=i, device=worker_device(options.device, i), threads=threads,
                   progress=progress)
        for i in range(options.workers)
    ], target=run_worker)
    failed = [f"worker {i} exited with status {c}" for i, c in enumerate(codes) if c]
    if failed and all(codes):
        raise AutotransferError("; ".join(failed))
    return failed


def _run_trials(prepared: Prepared, progress: Progress | None, sampler_seed: int) -> None:
    """This process's share of the trials (the trial loop of :mod:`.workers`)."""
    options, study = prepared.options, prepared.study
    study.sampler = make_sampler(options.space, sampler_seed)
    context = TrialContext(options.space, prepared.dataset, prepared.device, options.seed,
                           progress, options.trust_remote_code, keep_best=options.keep_dir,
                           cache=make_cache(options.cache_options), compile=options.compile)
    recorder = [prepared.recorder] if prepared.recorder else []
    run_trials(
        study, make_objective(context), lock=prepared.lock, trials=options.trials,
        timeout=options.timeout, poll=min(options.heartbeat, 5),
        callbacks=_callbacks(progress, prepared.note, prepared.lock) + recorder,
    )


def write_results(prepared: Prepared, failed: list[str] | None = None) -> SearchResult:
    """The leaderboard and best.yaml of what the study holds now."""
    options, study = prepared.options, prepared.study
    rows = leaderboard(study)
    out_dir = Path(options.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_leaderboard_csv(rows, out_dir / "leaderboard.csv")
    best = best_config(study, options.space, data=str(prepared.dataset.source),
                       storage=mask_url(options.storage), space_file=prepared.space_file)
    best_path = None
    if best is not None:
        best_path = out_dir / "best.yaml"
        write_best(best, best_path)
    if options.keep_dir is not None:
        from autotransfer.search.artifacts import fetch_best

        fetch_best(study, options.keep_dir, out_dir / "best-model")
    try:  # plots and report.md; results above are already saved whatever happens here
        write_report(study, out_dir, metric=options.space.metric, best=best)
    except Exception as exc:
        import warnings

        warnings.warn(f"report not written to {out_dir}: {first_line(exc)}", stacklevel=2)
    return SearchResult(study=study, best=best, best_path=best_path, leaderboard=rows,
                        worker_errors=failed or [])


def run_worker(spec: WorkerSpec) -> None:
    """The body of one worker process started by ``search(..., workers=N)``: the same
    :func:`prepare` as the search (joining its study), then the shared trial loop."""
    options = replace(spec.options, device=spec.device)
    prepared = prepare(options, spec.progress, worker=True)
    _run_trials(prepared, spec.progress, options.seed + join_study(prepared.study,
                                                                   prepared.lock))


def _callbacks(progress, note: StudyNote, lock: StudyLock) -> list:
    from optuna.trial import TrialState

    def show(_study, t) -> None:
        record = TrialRecord.from_frozen(t)
        progress.trial_done(t.number, record.state, record.value, record.reason)

    def update_note(study, t) -> None:
        if t.state == TrialState.COMPLETE and study.best_trial.number == t.number:
            with lock.held():
                note.save(study)

    return [update_note] + ([show] if progress else [])
