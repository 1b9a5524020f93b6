"""``search --keep-best``: the best trial's model kept as an Optuna artifact, best only.

When a trial finishes with a score above every model kept so far, its network is exported
(:func:`autotransfer.model.export.export_model`), zipped and uploaded to a
``FileSystemArtifactStore``; the previously kept model is removed. The study's user attribute
``kept_model`` says which trial it is. At the end of the search it is unpacked into
``OUT/best-model``, ready for ``autotransfer predict``: no ``train`` is needed when the search's
split is acceptable.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from autotransfer.finetune.records import StudyRecord, set_kept_model
from autotransfer.study.selection import is_best_so_far


def keep_if_best(trial, trainer, *, backbone: Any, params: dict[str, Any], score: float,
                 metric: str, test: dict[str, float] | None, store_dir: str | Path,
                 cost: dict[str, Any] | None = None) -> bool:
    """Export and upload this trial's model when it would be the study's pick
    (:func:`autotransfer.study.selection.is_best_so_far`, given its ``score`` and measured
    ``cost``); True when kept."""
    from optuna.artifacts import FileSystemArtifactStore, upload_artifact

    from autotransfer.model.export import export_model

    study = trial.study
    kept = StudyRecord.of(study).kept_model
    if not is_best_so_far(study, trial.number, score, cost or {}):
        return False
    store_dir = Path(store_dir)
    store_dir.mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(store_dir))
    data = trainer.data
    metrics = {"metric": metric, "search_val_score": score, "refit_on": "none (search trial)",
               "trial": trial.number, "n_train": len(data.train)}
    if test is not None:
        metrics["test"] = test
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = export_model(trainer.model, trainer.preprocess, Path(tmp) / "model",
                                 classes=data.classes, modality=data.modality, backbone=backbone,
                                 params=params, metrics=metrics)
        trainer.model.to(trainer.device)  # export moved it to the CPU
        archive = Path(tmp) / f"trial-{trial.number}-model.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as handle:
            for file in sorted(model_dir.iterdir()):
                handle.write(file, file.name)
        artifact_id = upload_artifact(artifact_store=store, file_path=str(archive),
                                      study_or_trial=trial)
    set_kept_model(study, {"trial": trial.number, "score": score, "artifact": artifact_id})
    if kept is not None:
        with contextlib.suppress(Exception):  # already gone (removed by hand)
            store.remove(kept["artifact"])
    return True


def fetch_best(study, store_dir: str | Path, out: str | Path) -> Path | None:
    """Unpack the kept model into ``out`` (replacing it); None when no model was kept."""
    from optuna.artifacts import FileSystemArtifactStore, download_artifact

    kept = StudyRecord.of(study).kept_model
    if kept is None:
        return None
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "model.zip"
        download_artifact(artifact_store=FileSystemArtifactStore(str(store_dir)),
                          file_path=str(archive), artifact_id=kept["artifact"])
        staged = Path(tmp) / "model"
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(staged)
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(staged, out)
    return out
