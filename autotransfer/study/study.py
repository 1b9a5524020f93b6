"""The search: an Optuna study whose trials fine-tune candidate backbones.

``search`` = :func:`prepare` -> :func:`run` -> :func:`write_results`; a worker process runs the
same :func:`prepare` (:func:`run_worker`). The checks made before anything heavy loads are in
:mod:`autotransfer.study.checks`.

Over 400 lines for a reason: :func:`search`'s docstring documents each of its options (about
110 lines); the code of the module is about 300.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from autotransfer.data import (
    check_data,
    check_source,
    load_data,
    warn_cross_split_duplicates,
)
from autotransfer.data.checks import check_modality
from autotransfer.data.options import DataOptions
from autotransfer.errors import AutotransferError, first_line
from autotransfer.finetune.records import (
    StudyRecord,
    TrialRecord,
    add_run_start,
    set_write_seconds,
)
from autotransfer.outputs import check_out_dir
from autotransfer.space.defaults import default_space
from autotransfer.space.schema import SearchSpace, load_space

# through their modules: what a test replaces there is what runs (recorded, fitted_pruner)
from autotransfer.study.budget import backbone_cost, cost_aware, rungs, timebudget
from autotransfer.study.budget.backbone_cost import references_only
from autotransfer.study.budget.infeasible import exclude_infeasible
from autotransfer.study.budget.pruners import make_pruner, make_sampler, resumed_line
from autotransfer.study.budget.rungs import expected_trials
from autotransfer.study.checks import (
    check_backbones,
    check_local_weights,
    check_same_origin,
    record_data_options,
)
from autotransfer.study.objective import TrialContext, make_cache, make_objective
from autotransfer.study.options import SearchOptions
from autotransfer.study.progress import Progress
from autotransfer.study.ranked import expand_space
from autotransfer.study.references.share import start_share
from autotransfer.study.references.trials import conclude
from autotransfer.study.results.dashboard import StudyNote
from autotransfer.study.results.report import (
    best_config,
    leaderboard,
    soup_config,
    write_best,
    write_leaderboard_csv,
    write_report,
)
from autotransfer.study.selection import Rule, least_violating, start_selection
from autotransfer.study.store.lost_trials import fail_stopped_trials
from autotransfer.study.store.outage import check_connections
from autotransfer.study.store.storage import (
    DEFAULT_STORAGE,
    StudyLock,
    make_storage,
    mask_url,
)
from autotransfer.study.trackers import start_tracking
from autotransfer.study.warm_start import costs_wanted, prepare_study
from autotransfer.study.workers import (
    WorkerSpec,
    cpu_threads,
    join_study,
    run_local_workers,
    run_trials,
    stop_on_interrupt,
    stop_reason,
    worker_device,
)


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
    transfer_effect: dict[str, Any] | None = None  # see autotransfer.study.references.trials


def search(
    data: str | Path,
    space: str | Path | SearchSpace | None = None,
    *,
    trials: int | None = None,
    timeout: float | None = None,
    time_budget: float | None = None,
    storage: str = DEFAULT_STORAGE,
    study_name: str | None = None,
    out: str | Path = "autotransfer-out",
    device: str = "auto",
    seed: int = 0,
    workers: int = 1,
    progress: Progress | None = None,
    data_options: DataOptions | None = None,
    **keywords: Any,
) -> SearchResult:
    """Search for the best transfer configuration of ``data`` over ``space``.

    The steps: the options are checked (:class:`SearchOptions`), :func:`prepare` loads the
    space, the data and the study, :func:`run` runs the trials here or in worker processes,
    and :func:`write_results` writes ``leaderboard.csv``, ``best.yaml`` and the report.

    Args:
        data: images or audio (class sub-folders, train/val[/test] folders, a path,label
            CSV), text (a CSV, TSV or JSONL file, or a folder of train/val/test files), or a
            Hugging Face dataset.
        space: a search-space YAML file (or a parsed :class:`SearchSpace`); None: the default
            space of the data's modality (:mod:`autotransfer.space.defaults`), said through
            ``progress``.
        trials: the study's total number of trials, over all workers (None: until timeout).
        timeout: stop starting new trials after this many seconds (the running trial
            finishes, then the results are written).
        time_budget: the whole call ends within this many seconds
            (:mod:`autotransfer.study.budget.timebudget`).
        storage: an SQLAlchemy URL; the study resumes when its name exists there.
        study_name: defaults to ``<data folder>-<space file>``.
        out: where ``best.yaml`` and ``leaderboard.csv`` are written.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        seed: seeds the split, each trial's training and the sampler.
        workers: worker processes on this machine (1: trials run in this process).
        progress: receives the live view (trials and epochs).
        data_options: how the data is read (:class:`~autotransfer.data.options.DataOptions`:
            modality, columns, data store), or as keywords: ``modality="text"``,
            ``text_column=``, ``label_column=``, ``image_column=``, ``audio_column=``,
            ``columns=``, ``data_store=``.
        **keywords: any other field of :class:`SearchOptions`, which documents each
            (``heartbeat``, ``trust_remote_code``, ``keep_best``, ``cache``,
            ``cache_memory``, ``cache_dir``, ``cache_views``, ``compile``, ``prescreen``,
            ``prescreen_by``, ``history``, ``warm_start``, ``references``,
            ``transfer_effect``, ``track``, ``tracking_uri``), and the data keywords above.

    Returns:
        The study, the best configuration (``best.yaml``'s mapping, None when no trial
        completed), its path, the leaderboard rows, the workers that exited abnormally, the
        warnings about the study as a whole and the transfer effect (None when not measured).

    Raises:
        OptionError: an unknown keyword or an argument out of range (named by its Python
            name), a bad ``device``, or an ``out`` that cannot be written
            (:func:`autotransfer.outputs.check_out_dir`).
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
    """
    options = SearchOptions.build(
        data, space, trials=trials, timeout=timeout, time_budget=time_budget, storage=storage,
        study_name=study_name, out=out, device=device, seed=seed, workers=workers,
        data_options=data_options, **keywords,
    )
    own_deadline = None if time_budget is None else timebudget.now() + time_budget
    prepared = prepare(options, progress)
    prepared.tracker = _start_tracking(prepared)
    prepared.deadline = timebudget.make_deadline(prepared.study, prepared.lock, own_deadline,
                                                 time_budget)
    start_share(prepared.study, prepared.lock, started=timebudget.now(),  # the references'
                budget=prepared.deadline.left() if prepared.deadline else timeout,
                share=prepared.options.space.budget.reference_share)
    if prepared.deadline is not None and hasattr(progress, "deadline"):
        progress.deadline = prepared.deadline.at  # type: ignore[union-attr]
    _warn_references_only(prepared, progress)

    try:
        failed = run(prepared, progress)
        effect, problems = conclude(  # the transfer effect and warnings about the whole study
            prepared.study, prepared.options.space, prepared.dataset, prepared.device,
            seed=options.seed,
            transfer_effect=timebudget.transfer_effect_fits(
                prepared.deadline, prepared.study, options.transfer_effect, progress),
            trust_remote_code=options.trust_remote_code, progress=progress,
        )
    except KeyboardInterrupt:  # what finished is kept, and the results say so
        _end_tracking(prepared, write_results(prepared))
        raise
    started = timebudget.now()
    result = write_results(prepared, failed)
    _end_tracking(prepared, result)
    if prepared.deadline is not None:  # the next run of this study reserves what this took
        set_write_seconds(prepared.study, timebudget.now() - started)
    none_feasible = least_violating(prepared.study)  # bounds that no completed trial met
    if none_feasible:
        problems = [*problems, none_feasible]
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
    deadline: timebudget.Deadline | None = None  # --time-budget (the study's deadline)
    tracker: Any = None  # the experiment tracker (autotransfer.study.trackers), or None


def prepare(options: SearchOptions, progress: Progress | None = None, *,
            worker: bool = False) -> Prepared:
    """Load the space, the data and the study; in a worker process, join the existing study.

    The search itself (``worker=False``) also checks the backbones against the registry and
    the data, creates the study or checks that a resumed one has the same space, writes the
    dashboard note and runs the pre-screen and warm start (:mod:`.warm_start`).

    Raises:
        The errors of :func:`search`, before any trial runs.

    Long (as a reason): the steps of a search's preparation in their order, each a call.
    """
    import optuna

    began = time.time()  # the run's start-up (data, timing, pre-screen) shows in best_so_far
    space = options.space
    space_file = None if isinstance(space, SearchSpace | None) else str(space)
    space = space if isinstance(space, SearchSpace | None) else load_space(space)
    if space is not None:  # a worker's parsed space: its plugins' methods and objectives
        space.declare_plugins()
    if not worker:
        if space is not None:
            check_backbones(space)
        check_out_dir(options.out)  # a file or an unwritable folder fails before any trial
        if space is not None:  # None: the modality's default space (package data, no weights:)
            check_local_weights(space)  # a weights file that does not fit fails before any trial
    from autotransfer.finetune.device import device_for

    torch_device = device_for(options.device)
    make_cache(options.cache_options)  # a bad AUTOTRANSFER_CACHE_VIEWS fails before any trial
    check_source(options.data)  # a mistyped DATA leaves no empty study database behind
    study_storage = make_storage(options.storage, heartbeat_interval=options.heartbeat)
    if not worker:  # a server with too few connections for the workers: one line, now
        check_connections(study_storage, options.workers, mask_url(options.storage))
    val_fraction = (SearchSpace.model_fields["val_fraction"].default if space is None
                    else space.val_fraction)  # the default spaces keep the default fraction
    dataset = load_data(options.data, val_fraction=val_fraction, seed=options.seed,
                        data_options=options.data_options)
    if space is None:  # the default space of the data's modality (package data)
        space_file, space = _default_space(dataset.modality, progress)
    check_data(dataset)
    # failed trials are reported by the progress view with their reason, not as tracebacks
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    masked = mask_url(options.storage)
    if worker:
        study = optuna.load_study(study_name=options.study_name, storage=study_storage,
                                  pruner=make_pruner(space))
        space = _expanded(study, space, dataset.modality, None,  # the ids the search recorded
                          torch_device)
    else:
        warn_cross_split_duplicates(dataset)
        if isinstance(space.backbones, list):  # a ranked space is checked once expanded
            check_modality([spec.id for spec in space.backbones], dataset)
        name = (options.study_name
                or f"{dataset.source.name}-{Path(space_file or 'space').stem}")
        study = optuna.create_study(study_name=name, storage=study_storage, load_if_exists=True,
                                    directions=Rule.of_space(space).directions,
                                    sampler=make_sampler(space, options.seed),
                                    pruner=make_pruner(space, say=True))
        space = _expanded(study, space, dataset.modality, progress, torch_device)
        check_same_origin(study, space, dataset, masked)
        # what best.yaml's source.data_options records, so that train refits this data
        record_data_options(study, options.data_options, dataset)
        start_selection(study, space)  # the pick rule, and the objectives' names for the dashboard
        add_run_start(study, began)
    lock = StudyLock(study_storage, study.study_name)
    note = StudyNote(dataset, space, space_file=space_file, storage=masked,
                     trials=options.trials)
    prepared = Prepared(replace(options, space=space, study_name=study.study_name), space_file,
                        dataset, study_storage, study, lock, note, torch_device)
    if worker:
        from autotransfer.study.store.history import recorder_for

        engine = getattr(study_storage, "engine", None)  # None: a journal file
        prepared.recorder = recorder_for(study, engine, space) if engine is not None else None
        return prepared
    # in a thread, once the first trial trains here (a worker process would not signal it)
    note.save_soon(study, study_storage, after_first_step=options.workers == 1)

    space, prepared.recorder = prepare_study(
        study, study_storage, lock, space, dataset, progress, prescreen=options.prescreen,
        prescreen_by=options.prescreen_by, history=options.history,
        warm_start=options.warm_start, device=torch_device, seed=options.seed,
        trust_remote_code=options.trust_remote_code, references=options.references,
        trials=options.trials, defer_history=options.workers == 1,
        budgeted=_budgeted(options),
        budget_seconds=options.time_budget if options.time_budget is not None
        else options.timeout,
    )
    prepared.options = replace(prepared.options, space=space)
    return prepared


def _warn_references_only(prepared: Prepared, progress: Progress | None) -> None:
    """Before the first trial: a time budget that fits no more than the references is said."""
    if prepared.deadline is None:
        return
    line = references_only(prepared.options.space, backbone_cost.recorded(prepared.study),
                           prepared.deadline.left())
    if line and progress is not None:
        progress.note(-1, line)
    elif line:
        import warnings

        warnings.warn(line, stacklevel=3)


def _default_space(modality: str, progress: Progress | None) -> tuple[str, SearchSpace]:
    """The default space file of ``modality`` and the space, said on the console."""
    path = default_space(modality)
    space = load_space(path)
    check_backbones(space)
    if progress is not None:
        what = (", ".join(b.label for b in space.backbones) if isinstance(space.backbones, list)
                else "backbones ranked when the study is created")
        progress.note(-1, f"no space given: the default {modality} space ({path}; {what})")
    return str(path), space


def _expanded(study, space: SearchSpace, modality: str, progress: Progress | None,
              device: Any = "cpu") -> SearchSpace:
    """A ranked space's ids (``study.ranked``), said in one line and checked as a list is;
    ``device`` is the one a ``max_latency_ms`` prior is measured on."""
    say = None if progress is None else (lambda line: progress.note(-1, line))
    expanded, note = expand_space(study, space, modality, device=device, say=say)
    if note is not None:
        if progress is not None:
            progress.note(-1, note)
        check_backbones(expanded)
    return expanded


def run(prepared: Prepared, progress: Progress | None = None) -> list[str]:
    """Run the trials, here (one worker) or in local worker processes; returns the workers
    that exited abnormally.

    Raises:
        AutotransferError: every worker process failed.
    """
    options, study, deadline = prepared.options, prepared.study, prepared.deadline
    if options.workers == 1:
        with stop_on_interrupt():
            _run_trials(prepared, progress, options.seed + join_study(study, prepared.lock),
                        checkpoint=True)
        return []
    threads = cpu_threads(options.workers)
    try:
        codes = run_local_workers([
            WorkerSpec(options, index=i, device=worker_device(options.device, i),
                       threads=threads, progress=progress,
                       reserve=deadline.reserve if deadline else 0.0)
            for i in range(options.workers)
        ], target=run_worker, stop_at=deadline.at - deadline.reserve / 2 if deadline else None)
    except KeyboardInterrupt:  # the workers are gone: none of their trials stays RUNNING
        fail_stopped_trials(study, f"interrupted by {stop_reason()}")
        raise
    failed = [f"worker {i} exited with status {c}" for i, c in enumerate(codes) if c]
    if deadline is not None and deadline.left() <= 0:  # stopped by the last resort
        failed = [f"{f} (stopped at the time budget)" for f in failed]
    elif failed and all(codes):
        raise AutotransferError("; ".join(failed))
    return failed


def _shared(options, study) -> bool:
    """Whether other workers may run trials of this study meanwhile: several workers here, a
    storage other machines reach (not an SQLite file), or a resumed study with RUNNING trials."""
    from optuna.trial import TrialState

    return (options.workers > 1 or not options.storage.startswith("sqlite:")
            or bool(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))))


class _PriorOnce:
    """The study's device-aware prior of its backbones (``budget.prior.study_priors``),
    computed at the first call and recorded under the study lock."""

    def __init__(self, prepared: Prepared) -> None:
        self.prepared, self.found = prepared, None

    def __call__(self) -> dict[str, float]:
        if self.found is None:
            from autotransfer.study.budget.prior import study_priors

            p = self.prepared
            with p.lock.held():
                self.found = study_priors(p.study, p.options.space, p.dataset.modality,
                                          p.device)
        return self.found

    def covers(self) -> bool:
        """Every backbone of the space has a prior (False when it cannot be made)."""
        try:
            found = self()
        except Exception:  # noqa: BLE001 - no prior: the step is timed as before
            self.found = {}
            return False
        return {b.label for b in self.prepared.options.space.backbones} <= set(found)

    def replaced_timing(self, costs_due: bool) -> bool:
        """The prior stands in for the timed step (asked for, covering, no step due)."""
        return not costs_due and bool(self.found) and self.covers()

    def note(self) -> str:
        ms = ", ".join(f"{k} {v:.0f} ms" for k, v in (self.found or {}).items())
        source = (StudyRecord.of(self.prepared.study).priors or {}).get("source", "")
        return (f"cost-aware start: the device prior stands in for the timed step ({ms} at "
                f"batch 1; {source})")


def _run_trials(prepared: Prepared, progress: Progress | None, sampler_seed: int,
                checkpoint: bool = False) -> None:
    """This process's share of the trials (the trial loop of :mod:`.workers`); with a time
    budget, ``checkpoint`` writes the results after the first completed trial (the search's
    own process, not a worker's) to size the reserve for the final write."""
    options, study = prepared.options, prepared.study
    prior = _PriorOnce(prepared)
    study.sampler = exclude_infeasible(  # no backbone known to break the params bound
        cost_aware.wrap(make_sampler(options.space, sampler_seed,
                                     shared=_shared(options, study)),
                        options.space, sampler_seed, prior=prior),
        options.space, sampler_seed)
    study.pruner, fitted = _fitted_pruner(prepared)  # the rungs (autotransfer.study.budget.rungs)
    if fitted and checkpoint and progress:
        progress.note(-1, fitted)
    resumed = resumed_line(study, options.seed, sampler_seed)
    if resumed and checkpoint and progress:
        progress.note(-1, resumed)
    context = TrialContext(options.space, prepared.dataset, prepared.device, options.seed,
                           progress, options.trust_remote_code, keep_best=options.keep_dir,
                           soup_dir=_soup_dir(options, study),
                           cache=make_cache(options.cache_options), compile=options.compile,
                           deadline=prepared.deadline, tracker=prepared.tracker,
                           costs_due=costs_wanted(options.space, references=options.references,
                                                  budgeted=_budgeted(options),
                                                  prior_covers=prior.covers),
                           lock=prepared.lock)
    if prior.replaced_timing(context.costs_due) and checkpoint and progress:
        progress.note(-1, prior.note())
    recorder = [prepared.recorder] if prepared.recorder else []
    if prepared.tracker is not None:
        from autotransfer.study.trackers import trial_callback

        recorder.append(trial_callback(prepared.tracker))
    if checkpoint:
        recorder += _measure_write(prepared.deadline, partial(write_results, prepared))
    run_trials(
        study, make_objective(context), lock=prepared.lock, trials=options.trials,
        timeout=options.timeout, poll=min(options.heartbeat, 5), deadline=prepared.deadline,
        callbacks=_callbacks(progress, prepared.note, prepared.lock) + recorder,
    )
    prepared.note.flush(study, prepared.lock)  # a worker process writes no results


def _soup_dir(options: SearchOptions, study) -> str | None:
    """Where this study's trials keep their weights for a soup (None: the space asks for
    none; :mod:`autotransfer.study.results.kept_weights`)."""
    if options.space is None or options.space.soup is None:
        return None
    from autotransfer.study.results.kept_weights import study_folder

    return str(study_folder(options.out, study.study_name))


def _budgeted(options: SearchOptions) -> bool:
    """A time budget or a timeout bounds the search."""
    return options.time_budget is not None or options.timeout is not None


def _fitted_pruner(prepared: Prepared):
    """The pruner fitted to the trials this run can expect, and the line that says so."""
    options = prepared.options
    budget = options.time_budget if options.time_budget is not None else options.timeout
    expected = expected_trials(options.space, options.trials, budget,
                               backbone_cost.recorded(prepared.study))
    return rungs.fitted_pruner(options.space, expected)


def _measure_write(deadline, write) -> list:
    """With a time budget: a callback that writes the results once, after the first completed
    trial (a checkpoint), and sizes the budget's reserve for the final write by it."""
    from optuna.trial import TrialState

    if deadline is None:
        return []

    def checkpoint(_study, t) -> None:
        if t.state == TrialState.COMPLETE and not deadline.measured:
            started = timebudget.now()
            write()
            deadline.measured_write(timebudget.now() - started)

    return [checkpoint]


def write_results(prepared: Prepared, failed: list[str] | None = None) -> SearchResult:
    """The leaderboard and best.yaml of what the study holds now."""
    options, study = prepared.options, prepared.study
    # the first dashboard note is saved, unless the time budget is spent before it began
    until = None if prepared.deadline is None else prepared.deadline.at - 2.0
    prepared.note.wait(cancel=until is not None and timebudget.now() > until)
    prepared.note.flush(study, prepared.lock)  # the best of the trials this process saw end
    rows = leaderboard(study)
    out_dir = Path(options.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_leaderboard_csv(rows, out_dir / "leaderboard.csv")
    exports = None
    if options.keep_dir is not None:
        from autotransfer.study.results.artifacts import fetch_best

        if fetch_best(study, options.keep_dir, out_dir / "best-model") is not None:
            kept = StudyRecord.of(study).kept_model or {}
            exports = [{"path": "best-model", "trial": kept.get("trial")}]
    soup = _soup_section(prepared)
    best = best_config(study, options.space, data=str(prepared.dataset.source),
                       storage=mask_url(options.storage), space_file=prepared.space_file,
                       exports=exports, soup=soup)
    if best is not None and exports and exports[0]["trial"] != best["source"]["trial"]:
        best.pop("exports")  # the kept model is another trial's (kept before a tie rule)
    best_path = None
    if best is not None:
        best_path = out_dir / "best.yaml"
        write_best(best, best_path)
    try:  # plots and report.md; results above are already saved whatever happens here
        write_report(study, out_dir, metric=options.space.metric, best=best, until=until,
                     rows=rows)
    except Exception as exc:
        import warnings

        warnings.warn(f"report not written to {out_dir}: {first_line(exc)}", stacklevel=2)
    return SearchResult(study=study, best=best, best_path=best_path, leaderboard=rows,
                        worker_errors=failed or [])


def _soup_section(prepared: Prepared) -> dict[str, Any] | None:
    """best.yaml's ``soup`` section when the space asks for one (None otherwise), after the
    kept weights are tidied (:func:`autotransfer.study.results.kept_weights.tidy`)."""
    space = prepared.options.space
    if space is None or space.soup is None:
        return None
    from autotransfer.space.objectives import get_objective
    from autotransfer.study.results.kept_weights import tidy

    tidy(prepared.study, max_ingredients=space.soup.max_ingredients,
         maximize=get_objective(space.metric).direction == "maximize")
    return soup_config(prepared.study, space, data=prepared.dataset, device=prepared.device,
                       trust_remote_code=prepared.options.trust_remote_code)


def run_worker(spec: WorkerSpec) -> None:
    """The body of one worker process started by ``search(..., workers=N)``: the same
    :func:`prepare` as the search (joining its study), then the shared trial loop."""
    options = replace(spec.options, device=spec.device)
    prepared = prepare(options, spec.progress, worker=True)
    prepared.tracker = _start_tracking(prepared)  # the same experiment and parent run
    # the deadline the search stored with the study (a worker has no budget of its own)
    prepared.deadline = timebudget.make_deadline(prepared.study, prepared.lock, None, None)
    if prepared.deadline is not None and spec.reserve:
        prepared.deadline.reserve = spec.reserve  # the search writes the results: its reserve
    _run_trials(prepared, spec.progress, options.seed + join_study(prepared.study,
                                                                   prepared.lock))


def _start_tracking(prepared: Prepared):
    """This process's experiment tracker (None when not asked for); under the study lock, so
    that workers starting together find one parent run."""
    if prepared.options.track is None:
        return None

    with prepared.lock.held():
        return start_tracking(prepared.options.track, prepared.study, prepared.options)


def _end_tracking(prepared: Prepared, result: SearchResult) -> None:
    """Hand the written results to the tracker (never raises)."""
    if prepared.tracker is not None:
        from autotransfer.study.trackers import result_files

        prepared.tracker.end(result.best, result_files(prepared.options.out))


def _callbacks(progress, note: StudyNote, lock: StudyLock) -> list:
    def show(_study, t) -> None:
        record = TrialRecord.from_frozen(t)
        progress.trial_done(t.number, record.state, record.value, record.reason)

    def update_note(study, t) -> None:
        note.update(study, t, lock)

    return [update_note] + ([show] if progress else [])
