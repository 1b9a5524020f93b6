"""The search: an Optuna study whose trials fine-tune candidate backbones."""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from autotransfer.backbones import get_registry
from autotransfer.data import LabelledData, check_images, load_data
from autotransfer.errors import AutotransferError, StorageError
from autotransfer.report import best_config, leaderboard, write_best, write_leaderboard_csv
from autotransfer.space import SearchSpace, load_space
from autotransfer.storage import (
    DEFAULT_HEARTBEAT,
    DEFAULT_STORAGE,
    StudyLock,
    make_storage,
    mask_url,
)
from autotransfer.training import EpochResult, Trainer, peak_memory_mb, resolve_device
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


class Progress(Protocol):
    """Receives the live view of a search: trials, and the epochs of the running trial."""

    def trial_started(self, number: int, backbone: str, params: dict[str, Any]) -> None: ...
    def epoch_done(self, number: int, result: EpochResult, epochs: int) -> None: ...
    def trial_done(self, number: int, state: str, value: float | None, reason: str) -> None: ...


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


def make_sampler(seed: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5)


def _space_fingerprint(space: SearchSpace) -> str:
    return json.dumps(space.model_dump(mode="json"), sort_keys=True)


def make_objective(space: SearchSpace, data: LabelledData, device, seed: int, progress=None):
    """The objective: one trial fine-tunes one sampled backbone and returns its val score."""
    import optuna

    registry = get_registry()

    def objective(trial: optuna.Trial) -> float:
        _release_memory(device)  # whatever the last trial left, before this one allocates
        spec, params = space.suggest(trial)
        entry = registry.get(spec.id)
        trial.set_user_attr("backbone", spec.id)
        trial.set_user_attr("pretrained", spec.pretrained)
        trial.set_user_attr("params", params)
        trial.set_user_attr("device", str(device))
        trial.set_user_attr("classes", data.classes)
        if progress:
            progress.trial_started(trial.number, spec.label, params)
        try:
            return _fine_tune(trial, entry, spec, params, space, data, device, seed, progress)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted (Ctrl-C or a stopped worker)")
            trial.set_user_attr("interrupted", True)  # does not count towards --trials
            raise
        except Exception as exc:
            detail = (str(exc).strip().splitlines() or [""])[0][:300]
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {detail}")
            raise
        finally:
            _release_memory(device)

    return objective


def _fine_tune(trial, entry, spec, params, space, data, device, seed, progress) -> float:
    """One trial's training; the model and optimizer are freed when this returns."""
    import optuna

    backbone = entry.load(pretrained=spec.pretrained, **spec.load_options())
    trainer = Trainer(
        backbone, data, params, device=device, metric=space.metric, seed=seed + trial.number
    )
    trial.set_user_attr("parameter_count", sum(p.numel() for p in backbone.model.parameters()))
    seconds: list[float] = []

    def on_epoch(result: EpochResult) -> None:
        seconds.append(result.seconds)
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
        trial.report(result.score, result.epoch)
        if trial.should_prune():
            reason = (
                f"pruned after epoch {result.epoch}/{space.epochs}: "
                f"{space.metric} {result.score:.4f} below the pruner's bar"
            )
            trial.set_user_attr("prune_reason", reason)
            raise optuna.TrialPruned(reason)

    result = trainer.fit(space.epochs, on_epoch)
    trial.set_user_attr("n_groups", result.n_groups)
    trial.set_user_attr("n_frozen_groups", result.n_frozen_groups)
    trial.set_user_attr("trainable_parameters", result.n_trainable)
    if result.test is not None:
        trial.set_user_attr("test_score", result.test[space.metric])
    return result.score


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
) -> SearchResult:
    """Search for the best transfer configuration of ``data`` over ``space``.

    Args:
        data: a folder of class sub-folders, train/val[/test] folders, or a path,label CSV.
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
    space_file = None if isinstance(space, SearchSpace) else str(space)
    space = space if isinstance(space, SearchSpace) else load_space(space)
    try:
        torch_device = resolve_device(device)
    except ValueError as exc:
        raise AutotransferError(f"--device: {exc}") from None
    registry = get_registry()
    for spec in space.backbones:  # unknown ids and options fail before any trial runs
        entry = registry.get(spec.id)
        unknown = sorted(set(spec.load_options()) - set(entry.options))
        if unknown:
            raise AutotransferError(f"{spec.id}: option {unknown[0]!r} is not supported")
    study_storage = make_storage(storage, heartbeat_interval=heartbeat)
    dataset = load_data(data, val_fraction=space.val_fraction, seed=seed)
    check_images(dataset)

    name = study_name or f"{dataset.source.name}-{Path(space_file or 'space').stem}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
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

    if workers == 1:
        study.sampler = make_sampler(seed + join_study(study, lock))
        run_trials(
            study, make_objective(space, dataset, torch_device, seed, progress),
            lock=lock, trials=trials, timeout=timeout, poll=min(heartbeat, 5),
            callbacks=_callbacks(progress, note, lock),
        )
    else:
        threads = cpu_threads(workers)
        codes = run_local_workers([
            WorkerSpec(
                index=i, data=str(data), space=space, storage=storage, study_name=name,
                trials=trials, timeout=timeout, device=worker_device(device, i), seed=seed,
                threads=threads, heartbeat=heartbeat, progress=progress,
            )
            for i in range(workers)
        ])
        failed = [f"worker {i} exited with status {c}" for i, c in enumerate(codes) if c]
        if failed and all(codes):
            raise AutotransferError("; ".join(failed))

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
    return SearchResult(study=study, best=best, best_path=best_path, leaderboard=rows,
                        worker_errors=failed)


def run_worker(spec: WorkerSpec) -> None:
    """The body of one worker process started by ``search(..., workers=N)``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study_storage = make_storage(spec.storage, heartbeat_interval=spec.heartbeat)
    dataset = load_data(spec.data, val_fraction=spec.space.val_fraction, seed=spec.seed)
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
    run_trials(
        study, make_objective(spec.space, dataset, torch_device, spec.seed, spec.progress),
        lock=lock, trials=spec.trials, timeout=spec.timeout, poll=min(spec.heartbeat, 5),
        callbacks=_callbacks(spec.progress, note, lock),
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

        sizes = ", ".join(f"{len(s.paths)} {k}" for k, s in dataset.splits().items())
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
