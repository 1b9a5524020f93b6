"""Experiment trackers: a search shows up where a team already tracks its runs.

``search(..., track="mlflow")`` or ``track="wandb"`` mirrors the study into MLflow or Weights &
Biases: the scores of every epoch of every trial, how each trial ended (complete, pruned or
failed, with the reason) and what it cost, and the search's result files. The registry below
names each tracker's module; its library is imported only when the tracker is asked for, and
a missing library, like an unreachable tracker, is one warning and no tracking
(:class:`~autotransfer.study.trackers._base.Guarded`).

Hooks in the search (each a call into this package): :func:`start_tracking` when the search
or a worker process starts, :func:`epoch_scores` from the objective's per-epoch callback,
:func:`trial_callback` as an Optuna study callback, :func:`result_files` when the results are
written.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

from autotransfer.finetune.records import TrialRecord
from autotransfer.space.objectives import cost_names, get_objective
from autotransfer.study.trackers._base import Guarded, Tracker, TrackingWarning, TrialEnd

__all__ = ["TRACKERS", "Guarded", "Tracker", "TrackingWarning", "TrialEnd", "epoch_scores",
           "result_files", "run_name", "start_tracking", "trial_callback", "trial_end"]

#: tracker name -> "module:class" (imported when asked for).
TRACKERS = {
    "mlflow": "autotransfer.study.trackers._mlflow:MlflowTracker",
    "wandb": "autotransfer.study.trackers._wandb:WandbTracker",
}

#: the result files a search's end hands to the tracker (in ``out``), by pattern.
RESULT_FILES = ("best.yaml", "report.md", "leaderboard.csv", "best_per_backbone.csv", "*.png")


def start_tracking(name: str | None, study, options) -> Guarded | None:
    """The started tracker ``name`` of this process (None when ``name`` is None).

    Never raises: a tracker that cannot be imported or reached is a ``TrackingWarning`` and a
    guard that logs nothing.
    """
    if name is None:
        return None
    module, cls = TRACKERS[name].split(":")
    return Guarded(name, getattr(importlib.import_module(module), cls)()).start(study, options)


def epoch_scores(result) -> dict[str, float]:
    """The scores an epoch (an ``EpochResult``) logs: the study's metric on the validation
    split (``val_score``), each metric computed (``val_<metric>``: accuracy, macro_f1, ...),
    the validation loss and the training loss."""
    scores = {"val_score": result.score,
              **{f"val_{name}": value for name, value in result.scores.items()},
              "train_loss": result.train_loss}
    if not math.isnan(result.val_loss):
        scores["val_loss"] = result.val_loss
    return scores


def trial_end(frozen) -> TrialEnd:
    """How an Optuna ``FrozenTrial`` ended, read through its record (per-epoch scores
    included, so that a tracker can log a trial it did not see run)."""
    record = TrialRecord.from_frozen(frozen)
    epochs: dict[int, dict[str, float]] = {}
    for step, value in sorted(frozen.intermediate_values.items()):
        epochs.setdefault(int(step), {})["val_score"] = value
    for number, metrics in record.epochs.items():
        scores = {**{f"val_{name}": value for name, value in metrics.scores.items()},
                  "train_loss": metrics.train_loss, "val_loss": metrics.val_loss}
        epochs.setdefault(number, {}).update({k: v for k, v in scores.items() if v is not None})
    costs = {"seconds": record.duration_seconds, "seconds_per_epoch": record.seconds_per_epoch,
             "peak_memory_mib": record.peak_memory_mib,
             "parameter_count": record.parameter_count,
             "trainable_parameters": record.trainable_parameters,
             "samples_per_second": record.samples_per_second,
             **{get_objective(name).key: value for name, value in record.costs.items()
                if name in cost_names()}}
    return TrialEnd(number=record.number, state=record.state, reason=record.reason,
                    value=record.value, backbone=record.backbone or record.label,
                    params=record.params or dict(record.sampled), epochs=epochs,
                    costs={k: float(v) for k, v in costs.items() if v is not None},
                    started=unix_seconds(frozen.datetime_start),
                    ended=unix_seconds(frozen.datetime_complete))


def unix_seconds(moment) -> float | None:
    """A trial's ``datetime`` (naive, local time as Optuna stores it) as Unix seconds."""
    return None if moment is None else moment.timestamp()


def run_name(number: int, backbone: str | None, params: dict) -> str:
    """A trial's run name in a tracker: ``trial 3 · packaged/mobilenetv2_100 · lora`` (the
    backbone and the method, as the console shows them)."""
    method = params.get("method") or "finetune"
    return " · ".join([f"trial {number}", *([backbone] if backbone else []), str(method)])


def trial_callback(tracker: Guarded):
    """An Optuna study callback that tells ``tracker`` how each trial ended."""
    def track(_study, frozen) -> None:
        if frozen.state.is_finished():
            tracker.on_trial_end(frozen, trial_end(frozen))

    return track


def result_files(out: str | Path) -> list[Path]:
    """The result files of a search in ``out`` (best.yaml, report.md, the leaderboards and
    the plots), those that exist."""
    out = Path(out)
    found: list[Path] = []
    for pattern in RESULT_FILES:
        found += sorted(p for p in out.glob(pattern) if p.is_file())
    return found


