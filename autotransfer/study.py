"""The search: an Optuna study whose trials fine-tune candidate backbones."""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from autotransfer.backbones import get_registry
from autotransfer.data import (
    LabelledData,
    check_data,
    load_data,
    warn_cross_split_duplicates,
)
from autotransfer.errors import AutotransferError, StorageError, first_line
from autotransfer.report import (
    best_config,
    leaderboard,
    write_best,
    write_leaderboard_csv,
    write_report,
)
from autotransfer.space import SearchSpace, load_space
from autotransfer.storage import (
    DEFAULT_HEARTBEAT,
    DEFAULT_STORAGE,
    StudyLock,
    make_storage,
    mask_url,
)
from autotransfer.workers import (
    WorkerSpec,
    cpu_threads,
    join_study,
    run_local_workers,
    run_trials,
    stop_requested,
    tally,
    worker_device,
)

if TYPE_CHECKING:  # torch loads once the space and its backbones are known to be valid
    from autotransfer.training import EpochResult


class Progress(Protocol):
    """Receives the live view of a search: trials, and the epochs of the running trial."""

    def trial_started(self, number: int, backbone: str, params: dict[str, Any]) -> None: ...
    def epoch_done(self, number: int, result: EpochResult, epochs: int) -> None: ...
    def trial_done(self, number: int, state: str, value: float | None, reason: str) -> None: ...
    def note(self, number: int, message: str) -> None: ...


@dataclass
class SearchResult:
    study: Any  # optuna.Study
    best: dict[str, Any] | None
    best_path: Path | None
    leaderboard: list[dict[str, Any]]
    worker_errors: list[str] = field(default_factory=list)  # workers that exited abnormally


def make_pruner(space: SearchSpace):
    """The pruner named by the space; its resource is the epoch."""
    import optuna

    if space.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=space.epochs, reduction_factor=3
        )
    if space.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def _release_memory(device) -> None:
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def make_cache(options: dict[str, Any] | None):
    """The activation cache shared by a process's trials (None: caching is off)."""
    from autotransfer.cache import ActivationCache

    return None if options is None else ActivationCache(**options)


def make_sampler(seed: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)


def _space_fingerprint(space: SearchSpace) -> str:
    return json.dumps(space.model_dump(mode="json"), sort_keys=True)


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
    cache: Any = None  # an ActivationCache shared by the trials; None: --no-cache
    compile: bool = False  # torch.compile the trained part

    def load_options(self, spec, entry) -> dict[str, Any]:
        options = spec.load_options()
        if self.trust_remote_code and "trust_remote_code" in entry.options:
            options["trust_remote_code"] = True
        return options


def make_objective(ctx: TrialContext):
    """The objective: one trial fine-tunes one sampled backbone and returns its val score."""
    import optuna

    registry = get_registry()
    space, data, device, progress = ctx.space, ctx.data, ctx.device, ctx.progress

    def objective(trial: optuna.Trial) -> float:
        _release_memory(device)  # whatever the last trial left, before this one allocates
        spec, params = space.suggest(trial)
        entry = registry.get(spec.id)
        trial.set_user_attr("backbone", spec.id)
        trial.set_user_attr("pretrained", spec.pretrained)
        trial.set_user_attr("params", params)
        trial.set_user_attr("device", str(device))
        trial.set_user_attr("classes", data.classes)
        trial.set_user_attr("seed", ctx.seed)  # the split's; training used seed + trial number
        if progress:
            progress.trial_started(trial.number, spec.label, params)
        try:
            return _fine_tune_with_retries(trial, entry, spec, params, ctx)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C or a stopped worker)")
            trial.set_user_attr("interrupted", True)  # does not count towards --trials
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", describe(exc))
            raise
        finally:
            _release_memory(device)

    return objective


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, for a trial's recorded reason."""
    return f"{type(exc).__name__}: {first_line(exc, 300)}"


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA or host out-of-memory, however the allocator reported it."""
    import torch

    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _fine_tune_with_retries(trial, entry, spec, params, ctx: TrialContext) -> float:
    """Fine-tune; out of memory retries at half the batch size, a non-finite loss prunes."""
    import optuna

    while True:
        try:
            return _fine_tune(trial, entry, spec, params, ctx)
        except FloatingPointError as exc:  # the loss became NaN or inf: a diverged setting
            reason = f"pruned: {exc}"
            trial.set_user_attr("prune_reason", reason)
            raise optuna.TrialPruned(reason) from None
        except Exception as exc:
            if not is_out_of_memory(exc) or params["batch_size"] <= 1:
                raise
            failed = params["batch_size"]
        # out of the except block, so the traceback no longer holds the model
        _release_memory(ctx.device)
        params = {**params, "batch_size": max(1, failed // 2)}
        trial.set_user_attr("params", params)
        retries = trial.user_attrs.get("oom_retries", 0) + 1
        trial.set_user_attr("oom_retries", retries)
        trial.set_user_attr(
            "oom_note", f"out of memory at batch size {failed}; retried at {params['batch_size']}"
        )
        if ctx.progress:
            ctx.progress.note(trial.number, f"out of memory at batch size {failed}; retrying at "
                                        f"{params['batch_size']}")


def report_epoch(trial, score: float, epoch: int, epochs: int, metric: str) -> None:
    """Report an epoch's val ``score`` to the pruner; prune unless it was the last epoch.

    A trial that trained all its epochs is complete whatever the pruner thinks: its score
    costs nothing more, and Hyperband's top rung would otherwise discard it.

    Raises:
        optuna.TrialPruned: after an epoch before the last one, when the pruner says so.
    """
    import optuna

    trial.report(score, epoch)
    if epoch < epochs and trial.should_prune():
        reason = f"pruned after epoch {epoch}/{epochs}: {metric} {score:.4f} below the pruner's bar"
        trial.set_user_attr("prune_reason", reason)
        raise optuna.TrialPruned(reason)


def _fine_tune(trial, entry, spec, params, ctx: TrialContext) -> float:
    """One trial's training; the model and optimizer are freed when this returns."""
    import torch

    from autotransfer.training import Trainer, peak_memory_mb

    space, device, progress = ctx.space, ctx.device, ctx.progress
    torch.manual_seed(ctx.seed + trial.number)  # random-init weights are part of the trial
    backbone = entry.load(pretrained=spec.pretrained, **ctx.load_options(spec, entry))
    trainer = Trainer(
        backbone, ctx.data, params, device=device, metric=space.metric,
        seed=ctx.seed + trial.number, cache=ctx.cache if ctx.cache is not None else False,
        compile=ctx.compile, label=spec.id,
    )
    trial.set_user_attr("parameter_count", sum(p.numel() for p in backbone.model.parameters()))
    seconds: list[float] = []

    def on_epoch(result: EpochResult) -> None:
        seconds.append(result.seconds)
        trial.set_user_attr("activation_cache", trainer.cache_status)
        trial.set_user_attr("first_batch_at", trainer.first_batch_at)
        trial.set_user_attr("cache_seconds", round(trainer.cache_seconds, 3))
        trial.set_user_attr("seconds_per_epoch", round(sum(seconds) / len(seconds), 3))
        trial.set_user_attr("samples_per_second", round(result.samples_per_second, 1))
        trial.set_user_attr("peak_memory_mb", round(peak_memory_mb(device), 1))
        trial.set_user_attr(f"epoch_{result.epoch}", {
            "train_loss": round(result.train_loss, 5),
            "accuracy": round(result.accuracy, 5),
            "macro_f1": round(result.macro_f1, 5),
        })
        if progress:
            progress.epoch_done(trial.number, result, space.epochs)
        if stop_requested():
            raise KeyboardInterrupt
        report_epoch(trial, result.score, result.epoch, space.epochs, space.metric)

    result = trainer.fit(space.epochs, on_epoch)
    trial.set_user_attr("n_groups", result.n_groups)
    trial.set_user_attr("n_frozen_groups", result.n_frozen_groups)
    trial.set_user_attr("trainable_parameters", result.n_trainable)
    if result.test is not None:
        trial.set_user_attr("test_score", result.test[space.metric])
    if ctx.keep_best is not None:
        from autotransfer.keep import keep_if_best

        keep_if_best(trial, trainer, backbone=spec.to_yaml(), params=params, score=result.score,
                     metric=space.metric, test=result.test, store_dir=ctx.keep_best)
    return result.score


def check_space(space: str | Path | SearchSpace) -> SearchSpace:
    """The parsed space, its backbone ids known and their options supported.

    Loads no model library (only the zoos of the space's ids are asked), so that a bad space
    is reported at once.

    Raises:
        SpaceError: the file is missing or invalid.
        BackboneError: an id that no zoo serves.
        AutotransferError: an option that the backbone's loader does not take.
    """
    space = space if isinstance(space, SearchSpace) else load_space(space)
    registry = get_registry()
    for spec in space.backbones:  # unknown ids and options fail before any trial runs
        entry = registry.get(spec.id)
        unknown = sorted(set(spec.load_options()) - set(entry.options))
        if unknown:
            raise AutotransferError(
                f"{spec.id}: option {unknown[0]!r} is not supported; "
                f"expected one of: pretrained{''.join(', ' + o for o in entry.options)}"
            )
    return space


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
    cache_views: int | None = None,
    compile: bool = False,
    prescreen: int | None = None,
    prescreen_by: str | None = None,
    history: bool | None = None,
    warm_start: int | None = None,
) -> SearchResult:
    """Search for the best transfer configuration of ``data`` over ``space``.

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
            :mod:`autotransfer.cache`); False computes them every step, as without a cache.
        cache_memory: the cache's memory bound per process, e.g. ``"2G"`` (default: 2 GiB,
            at most a quarter of the device's memory).
        cache_dir: a folder for a disk tier of the cache, shared by this machine's workers.
        cache_views: K, the random augmented views per training sample that the cache holds
            for ``crop_flip`` and other continuous augmentations (an approximation of live
            augmentation; default 8, at most the epochs; 0: such trials train live). Finite
            augmentations (``flip``) always cache every view (:mod:`autotransfer.cache_views`).
        compile: run the trained part of each trial through ``torch.compile``.
        prescreen: keep the K backbones that rank best on frozen features (see
            :mod:`autotransfer.prescreen`); a study keeps its first pre-screen when resumed.
        prescreen_by: the pre-screen's ranking (default ``prescreen.DEFAULT_BY``).
        history: record every completed trial and the dataset's meta-features in the
            storage's transfer-history tables (:mod:`autotransfer.history`); None: yes,
            unless the environment sets ``AUTOTRANSFER_HISTORY=0``.
        warm_start: enqueue up to N best configurations of the most similar past datasets in
            the transfer history (once per study).

    Example:
        >>> result = search("data/fashion-mnist", "search_spaces/image-quick.yaml",
        ...                 trials=8, workers=2)  # doctest: +SKIP
        >>> result.best["backbone"], result.best["val_score"]  # doctest: +SKIP
    """
    import optuna

    failed: list[str] = []
    if trials is not None and trials < 1:
        raise AutotransferError(f"--trials must be >= 1, got {trials}")
    if workers < 1:
        raise AutotransferError(f"--workers must be >= 1, got {workers}")
    from autotransfer.budget import check_options, spend_budget_well

    check_options(prescreen=prescreen, prescreen_by=prescreen_by, warm_start=warm_start)
    space_file = None if isinstance(space, SearchSpace) else str(space)
    space = check_space(space)
    registry = get_registry()
    from autotransfer.cache import parse_size
    from autotransfer.training import resolve_device

    cache_options = ({"max_bytes": parse_size(cache_memory), "directory": cache_dir,
                      "views": cache_views} if cache else None)
    make_cache(cache_options)  # a bad --cache-views fails here, before any trial
    try:
        torch_device = resolve_device(device)
    except ValueError as exc:
        raise AutotransferError(f"--device: {exc}") from None

    study_storage = make_storage(storage, heartbeat_interval=heartbeat)
    keep_dir = str((Path(out) / "artifacts").resolve()) if keep_best else None
    data_options = {"modality": modality, "text_column": text_column,
                    "label_column": label_column}
    dataset = load_data(data, val_fraction=space.val_fraction, seed=seed, **data_options)
    check_data(dataset)
    warn_cross_split_duplicates(dataset)
    for spec in space.backbones:
        if registry.get(spec.id).modality != dataset.modality:
            raise AutotransferError(
                f"{spec.id} is a {registry.get(spec.id).modality} backbone, but {dataset.source} "
                f"holds {dataset.modality} data; pick {dataset.modality} backbones "
                f"(autotransfer backbones --modality {dataset.modality})"
            )

    name = study_name or f"{dataset.source.name}-{Path(space_file or 'space').stem}"
    # failed trials are reported by the progress view with their reason, not as tracebacks
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        study_name=name,
        storage=study_storage,
        load_if_exists=True,
        direction="maximize",
        sampler=make_sampler(seed),
        pruner=make_pruner(space),
    )
    fingerprint = _space_fingerprint(space)
    known = study.user_attrs.get("space")
    if known is None:
        study.set_user_attr("space", fingerprint)
        study.set_user_attr("data", str(dataset.source))
    elif known != fingerprint:
        raise StorageError(
            f"study {name!r} in {mask_url(storage)} was created with another search space; "
            "pass a new --study name or the original space file"
        )
    lock = StudyLock(study_storage, name)
    note = StudyNote(dataset, space, space_file=space_file, storage=mask_url(storage),
                     trials=trials)
    with lock.held():
        note.save(study)
    space, recorder = spend_budget_well(
        study, study_storage, lock, space, dataset, progress, prescreen=prescreen,
        prescreen_by=prescreen_by, history=history, warm_start=warm_start, device=torch_device,
        seed=seed, trust_remote_code=trust_remote_code,
    )

    try:
        if workers == 1:
            study.sampler = make_sampler(seed + join_study(study, lock))
            context = TrialContext(space, dataset, torch_device, seed, progress,
                                   trust_remote_code, keep_best=keep_dir,
                                   cache=make_cache(cache_options), compile=compile)
            run_trials(
                study, make_objective(context), lock=lock, trials=trials, timeout=timeout,
                poll=min(heartbeat, 5),
                callbacks=_callbacks(progress, note, lock) + ([recorder] if recorder else []),
            )
        else:
            threads = cpu_threads(workers)
            codes = run_local_workers([
                WorkerSpec(
                    index=i, data=str(data), space=space, storage=storage, study_name=name,
                    trials=trials, timeout=timeout, device=worker_device(device, i),
                    seed=seed, threads=threads, heartbeat=heartbeat, progress=progress,
                    trust_remote_code=trust_remote_code, data_options=data_options,
                    keep_best=keep_dir,
                    cache=cache_options, compile=compile,
                )
                for i in range(workers)
            ])
            failed = [f"worker {i} exited with status {c}" for i, c in enumerate(codes) if c]
            if failed and all(codes):
                raise AutotransferError("; ".join(failed))
    except KeyboardInterrupt:  # what finished is kept, and the results say so
        _write_results(study, space, dataset, storage, space_file, out, keep_dir=keep_dir)
        raise
    return _write_results(study, space, dataset, storage, space_file, out, failed,
                          keep_dir=keep_dir)


def _write_results(
    study, space, dataset, storage, space_file, out, failed: list[str] | None = None,
    keep_dir: str | None = None,
) -> SearchResult:
    """The leaderboard and best.yaml of what the study holds now."""
    rows = leaderboard(study)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_leaderboard_csv(rows, out_dir / "leaderboard.csv")
    best = best_config(
        study, space, data=str(dataset.source), storage=mask_url(storage), space_file=space_file
    )
    best_path = None
    if best is not None:
        best_path = out_dir / "best.yaml"
        write_best(best, best_path)
    if keep_dir is not None:
        from autotransfer.keep import fetch_best

        fetch_best(study, keep_dir, out_dir / "best-model")
    try:  # plots and report.md; results above are already saved whatever happens here
        write_report(study, out_dir, metric=space.metric, best=best)
    except Exception as exc:
        import warnings

        warnings.warn(f"report not written to {out_dir}: {first_line(exc)}", stacklevel=2)
    return SearchResult(study=study, best=best, best_path=best_path, leaderboard=rows,
                        worker_errors=failed or [])


def run_worker(spec: WorkerSpec) -> None:
    """The body of one worker process started by ``search(..., workers=N)``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study_storage = make_storage(spec.storage, heartbeat_interval=spec.heartbeat)
    dataset = load_data(spec.data, val_fraction=spec.space.val_fraction, seed=spec.seed,
                        **spec.data_options)
    check_data(dataset)
    from autotransfer.training import resolve_device

    try:
        torch_device = resolve_device(spec.device)
    except ValueError as exc:
        raise AutotransferError(f"--device: {exc}") from None
    lock = StudyLock(study_storage, spec.study_name)
    study = optuna.load_study(study_name=spec.study_name, storage=study_storage,
                              pruner=make_pruner(spec.space))
    study.sampler = make_sampler(spec.seed + join_study(study, lock))
    note = StudyNote(dataset, spec.space, space_file=None, storage=mask_url(spec.storage),
                     trials=spec.trials)
    from autotransfer.history import recorder_for

    recorder = recorder_for(study, study_storage.engine, spec.space)
    run_trials(
        study,
        make_objective(TrialContext(spec.space, dataset, torch_device, spec.seed, spec.progress,
                                    spec.trust_remote_code, keep_best=spec.keep_best,
                                    cache=make_cache(spec.cache), compile=spec.compile)),
        lock=lock, trials=spec.trials, timeout=spec.timeout, poll=min(spec.heartbeat, 5),
        callbacks=_callbacks(spec.progress, note, lock) + ([recorder] if recorder else []),
    )


def _callbacks(progress, note: StudyNote, lock: StudyLock) -> list:
    from optuna.trial import TrialState

    def show(_study, t) -> None:
        progress.trial_done(
            t.number, t.state.name.lower(), t.value,
            t.user_attrs.get("fail_reason") or t.user_attrs.get("prune_reason") or "",
        )

    def update_note(study, t) -> None:
        if t.state == TrialState.COMPLETE and study.best_trial.number == t.number:
            with lock.held():
                note.save(study)

    return [update_note] + ([show] if progress else [])


class StudyNote:
    """The study's note in optuna-dashboard: data, space, storage (masked) and the best so far."""

    def __init__(self, dataset: LabelledData, space: SearchSpace, *, space_file: str | None,
                 storage: str, trials: int | None) -> None:
        import yaml

        sizes = ", ".join(f"{len(s)} {k}" for k, s in dataset.splits().items())
        self.head = "\n".join([
            "# autotransfer study",
            "",
            f"- **data**: `{dataset.source}` ({len(dataset.classes)} classes; {sizes})",
            f"- **storage**: `{storage}`",
            f"- **trials**: {trials if trials is not None else 'until timeout'}",
            "",
            "## Search space" + (f" (`{space_file}`)" if space_file else ""),
            "",
            "```yaml",
            yaml.safe_dump(space.model_dump(mode="json"), sort_keys=False).rstrip(),
            "```",
        ])

    def body(self, study) -> str:
        from optuna.trial import TrialState

        done = tally(study)
        lines = [self.head, "", "## Best so far", ""]
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not completed:
            lines.append("no completed trial yet")
        else:
            best = max(completed, key=lambda t: t.value)
            attrs = best.user_attrs
            test = attrs.get("test_score")
            lines.append(
                f"trial {best.number}: `{attrs.get('backbone', '?')}` val {best.value:.4f}"
                + (f", test {test:.4f}" if test is not None else "")
                + f" ({done.counted} trials so far)"
            )
            lines += ["", "```yaml", _yaml(attrs.get("params", best.params)), "```"]
        return "\n".join(lines) + "\n"

    def save(self, study) -> None:
        from optuna_dashboard import save_note

        save_note(study, self.body(study))


def _yaml(value) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False).rstrip()
