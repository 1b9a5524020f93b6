"""The search: an Optuna study whose trials fine-tune candidate backbones."""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from autotransfer.backbones import get_registry
from autotransfer.data import LabelledData, check_data, load_data
from autotransfer.errors import AutotransferError, StorageError
from autotransfer.report import best_config, leaderboard, write_best, write_leaderboard_csv
from autotransfer.space import SearchSpace, load_space
from autotransfer.storage import DEFAULT_STORAGE, make_storage, mask_url
from autotransfer.training import EpochResult, Trainer, peak_memory_mb, resolve_device


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
    progress: Progress | None = None,
    modality: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
) -> SearchResult:
    """Search for the best transfer configuration of ``data`` over ``space``.

    Args:
        data: images or audio (class sub-folders, train/val[/test] folders, a path,label
            CSV) or text (a CSV, TSV or JSONL file, or a folder of train/val/test files).
        space: a search-space YAML file (or a parsed :class:`SearchSpace`).
        trials: the study's total number of finished trials to reach (None: until timeout).
        timeout: stop starting new trials after this many seconds.
        storage: an SQLAlchemy URL; the study resumes when its name exists there.
        study_name: defaults to ``<data folder>-<space file>``.
        out: where ``best.yaml`` and ``leaderboard.csv`` are written.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        seed: seeds the sampler, the split and each trial's training.
        modality: ``image``, ``text`` or ``audio``; detected from ``data`` when None.
        text_column: the text column of CSV / TSV / JSONL text data.
        label_column: the label column of CSV / TSV / JSONL text data.

    Example:
        >>> result = search("data/fashion-mnist", "search_spaces/image-quick.yaml",
        ...                 trials=8)  # doctest: +SKIP
        >>> result.best["backbone"], result.best["val_score"]  # doctest: +SKIP
    """
    import optuna
    from optuna.trial import TrialState

    if trials is not None and trials < 1:
        raise AutotransferError(f"--trials must be >= 1, got {trials}")
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
    study_storage = make_storage(storage)
    dataset = load_data(
        data, val_fraction=space.val_fraction, seed=seed, modality=modality,
        text_column=text_column, label_column=label_column,
    )
    check_data(dataset)
    for spec in space.backbones:
        if registry.get(spec.id).modality != dataset.modality:
            raise AutotransferError(
                f"{spec.id} is a {registry.get(spec.id).modality} backbone, but {dataset.source} "
                f"holds {dataset.modality} data; pick {dataset.modality} backbones "
                f"(autotransfer backbones --modality {dataset.modality})"
            )

    name = study_name or f"{dataset.source.name}-{Path(space_file or 'space').stem}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name,
        storage=study_storage,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=5),
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

    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    remaining = None
    if trials is not None:
        remaining = trials - len(study.get_trials(deepcopy=False, states=finished))
    if remaining is None or remaining > 0:
        callbacks = []
        if progress:
            callbacks.append(
                lambda _study, t: progress.trial_done(
                    t.number, t.state.name.lower(), t.value,
                    t.user_attrs.get("fail_reason") or t.user_attrs.get("prune_reason") or "",
                )
            )
        study.optimize(
            make_objective(space, dataset, torch_device, seed, progress),
            n_trials=remaining,
            timeout=timeout,
            catch=(Exception,),
            callbacks=callbacks,
        )

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
    return SearchResult(study=study, best=best, best_path=best_path, leaderboard=rows)
