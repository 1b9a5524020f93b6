"""Weights & Biases: one W&B run per trial, grouped under the study, and one for the search.

Each trial's run is ``wandb.init(group=<study>, job_type="trial", reinit="create_new")`` with
the backbone and every hyperparameter as its config, ``run.log(scores, step=epoch)`` after each
epoch, and its state (``complete``, ``pruned``, ``fail``), reason and costs in its summary and
tags; a failed trial's run exits with code 1. The search's own run (``job_type="search"``)
holds the result files as an artifact and the best score in its summary. Runs are made
through the ``Run`` objects, never the module-level ``wandb.log`` (several runs are open in one
process). The mode comes from ``WANDB_MODE`` (``offline`` writes ``wandb/offline-run-*``
folders for ``wandb sync``, with no network), the project from ``WANDB_PROJECT`` (default
``autotransfer``), the folder from ``WANDB_DIR``; ``tracking_uri`` is the server's base URL.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from autotransfer.finetune.records import TrialRecord
from autotransfer.study.store.storage import mask_url
from autotransfer.study.trackers import run_name
from autotransfer.study.trackers._base import TrialEnd, require, study_key

DEFAULT_PROJECT = "autotransfer"


def _run_id(study_name: str, key: str, suffix: str) -> str:
    """A W&B run id (no ``/ \\ # ? % :``), the same for the same trial of the same study."""
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', study_name)[:48]}-{key[:8]}-{suffix}"


class WandbTracker:
    """Logs a search to Weights & Biases (see the module docstring)."""

    def __init__(self) -> None:
        self.wandb: Any = None
        self.study: Any = None
        self.key = ""
        self.settings: Any = None
        self.runs: dict[int, Any] = {}  # trial number -> its open wandb Run

    def start(self, study, options) -> None:
        self.wandb = require("wandb", "wandb")
        self.study, self.key = study, study_key(study.study_name, mask_url(options.storage))
        mode = os.environ.get("WANDB_MODE", "online")
        if mode not in ("online", "offline", "disabled", "dryrun", "run", "shared"):
            raise ValueError(f"WANDB_MODE must be online, offline or disabled, got {mode!r}")
        kwargs = {"x_disable_stats": True, "console": "off", "silent": True}
        if options.tracking_uri:
            kwargs["base_url"] = options.tracking_uri
        self.settings = self.wandb.Settings(**kwargs)

    def _init(self, suffix: str, name: str, job_type: str, config: dict[str, Any],
              tags: list[str]):
        return self.wandb.init(
            project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT,
            group=self.study.study_name, name=name, job_type=job_type, config=config,
            tags=tags, id=_run_id(self.study.study_name, self.key, suffix), resume="allow",
            reinit="create_new", settings=self.settings)

    def _run(self, number: int, backbone: str | None, params: dict[str, Any]):
        if number not in self.runs:
            self.runs[number] = self._init(
                f"t{number}", run_name(number, backbone, params), "trial",
                {"backbone": backbone, "trial": number, **params},
                [t for t in ("trial", backbone and backbone.split("/")[0]) if t])
        return self.runs[number]

    def on_epoch(self, trial, epoch: int, scores: dict[str, float]) -> None:
        record = TrialRecord.from_frozen(trial)
        run = self._run(trial.number, record.backbone, record.params or dict(trial.params))
        run.log({k: v for k, v in scores.items() if v is not None}, step=int(epoch))

    def on_trial_end(self, trial, end: TrialEnd) -> None:
        seen = end.number in self.runs
        run = self._run(end.number, end.backbone, end.params)
        if not seen:  # it failed before its first epoch (or ran while tracking was off)
            for epoch, scores in end.epochs.items():
                run.log(scores, step=int(epoch))
        run.summary.update({"state": end.state, "reason": end.reason, "score": end.value,
                            **{f"cost_{k}" if k == "seconds" else k: v
                               for k, v in end.costs.items()}})
        run.tags = (*run.tags, end.state)
        run.finish(exit_code=1 if end.state == "fail" else 0)
        del self.runs[end.number]

    def end(self, best: dict[str, Any] | None, artifacts: list[Path]) -> None:
        run = self._init("search", self.study.study_name, "search",
                         {"study": self.study.study_name}, ["search"])
        if artifacts:
            artifact = self.wandb.Artifact(
                _run_id(self.study.study_name, self.key, "results"), type="search-results")
            for path in artifacts:
                artifact.add_file(str(path))
            run.log_artifact(artifact)
        if best is not None:
            run.summary.update({"best_val_score": best["val_score"],
                                "best_trial": best.get("source", {}).get("trial"),
                                "best_backbone": str(best.get("backbone"))})
        run.finish()
