"""MLflow: one experiment per study, one parent run per search, one nested run per trial.

Written against ``mlflow.MlflowClient`` with explicit run ids, never the fluent API's active
run: a trial's run names its parent by the ``mlflow.parentRunId`` tag, so nesting holds in
worker processes and on other machines (optuna-integration's ``MLflowCallback`` nests under
the process's active run, which a worker does not have: optuna-integration #153). A trial's
run ends with the trial's state as its status (``FINISHED``, ``KILLED`` for pruned, ``FAILED``),
where that callback ends every run ``FINISHED`` (optuna #3524).

Runs are found again by tags: the parent by ``autotransfer.study_key`` (the study name and
storage), a trial's run by ``autotransfer.trial`` as well, so a resumed search reuses its
parent, never logs a trial twice, and catches up at its end with the trials the tracker did
not see (logged while it was off, or in a run before tracking was asked for); a run caught up
so keeps its trial's own start and end (Optuna's ``datetime_start``/``datetime_complete``). A
parent run deleted in MLflow is replaced by a new one that the earlier trial runs are moved
under, with one warning (the study's trials are never split across two parents).

A trial's run is named ``trial 3 · packaged/mobilenetv2_100 · lora``. The experiment carries
``mlflow.experimentKind = custom_model_development`` (the tag MLflow's UI sets when a user picks
the experiment's type), so that the UI opens it on its runs, not on the GenAI traces page.
MLflow's own INFO lines (database set-up) stay out of the console unless
``MLFLOW_LOGGING_LEVEL`` asks for them. A file store (``./mlruns``), which MLflow 3 refuses
unless ``MLFLOW_ALLOW_FILE_STORE`` is set, is used with one warning that names its replacement
(``sqlite:///mlflow.db``).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from autotransfer.finetune.records import TrialRecord
from autotransfer.study.store.storage import mask_url
from autotransfer.study.trackers import run_name, trial_end, unix_seconds
from autotransfer.study.trackers._base import TrackingWarning, TrialEnd, require, study_key, warn

STUDY_KEY = "autotransfer.study_key"
STUDY = "autotransfer.study"
STORAGE = "autotransfer.storage"
KIND = "autotransfer.kind"  # "search" (the parent) or "trial"
TRIAL = "autotransfer.trial"
STATE = "autotransfer.state"
REASON = "autotransfer.reason"
PARENT = "mlflow.parentRunId"
#: the experiment type MLflow 3's UI reads to open an experiment on its runs (not its traces)
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
#: a trial's state -> the status its run ends with
STATUS = {"complete": "FINISHED", "pruned": "KILLED", "fail": "FAILED"}
# An unreachable server is retried with back-off for minutes by default; these bound it
# (the user's own settings win).
ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 # a run's URL printed after every trial would break the progress view
                 "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def is_file_store(uri: str) -> bool:
    """Whether a tracking URI names MLflow's file store (a path or ``file:``; ``C:\\`` too)."""
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or len(scheme) == 1


def _quiet_mlflow() -> None:
    """MLflow's INFO lines ("Creating initial MLflow database tables...") off the console,
    unless ``MLFLOW_LOGGING_LEVEL`` sets a level; alembic's migration lines too."""
    if not os.environ.get("MLFLOW_LOGGING_LEVEL"):
        for name in ("mlflow", "alembic"):
            if logging.getLogger(name).getEffectiveLevel() < logging.WARNING:
                logging.getLogger(name).setLevel(logging.WARNING)


def _allow_file_store(uri: str) -> None:
    """MLflow 3 raises on a file store unless ``MLFLOW_ALLOW_FILE_STORE`` is set: asked for by
    name, it is used, with one warning (a user who set the variable either way decides)."""
    if is_file_store(uri) and "MLFLOW_ALLOW_FILE_STORE" not in os.environ:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        warn(f"MLflow's file store ({uri}) is in maintenance mode since MLflow 3; tracking "
             f"goes on, but --tracking-uri sqlite:///mlflow.db is what MLflow recommends "
             f"(`mlflow migrate-filestore` moves existing runs)")


class MlflowTracker:
    """Logs a search to MLflow (see the module docstring). The tracking URI is
    ``options.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's default."""

    def __init__(self) -> None:
        self.client: Any = None
        self.study: Any = None
        self.experiment_id = ""
        self.parent_id = ""
        self.key = ""
        self.children: dict[int, Any] = {}  # trial number -> its run (an mlflow Run)

    def start(self, study, options) -> None:
        mlflow = require("mlflow", "mlflow")

        for name, value in ENV_DEFAULTS.items():
            os.environ.setdefault(name, value)
        _quiet_mlflow()
        uri = options.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None
        _allow_file_store(uri or mlflow.get_tracking_uri())
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.study, storage = study, mask_url(options.storage)
        self.key = study_key(study.study_name, storage)
        experiment = self.client.get_experiment_by_name(study.study_name)
        if experiment is None:
            self.experiment_id = self._create_experiment(study.study_name)
        else:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            self.experiment_id = experiment.experiment_id
            for tag, value in EXPERIMENT_KIND.items():  # made before the tag, or by hand
                if tag not in experiment.tags:
                    self.client.set_experiment_tag(self.experiment_id, tag, value)
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.`{STUDY_KEY}` = '{self.key}'", max_results=10000)
        parents = sorted((r for r in runs if r.data.tags.get(KIND) == "search"),
                         key=lambda r: r.info.start_time)
        if parents:  # a resumed search, or a worker of it: the first parent is the search's
            self.parent_id = parents[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            self.parent_id = self.client.create_run(
                self.experiment_id, run_name=study.study_name,
                tags={STUDY_KEY: self.key, STUDY: study.study_name, STORAGE: storage,
                      KIND: "search"}).info.run_id
            self._adopt(runs)
        for run in runs:
            if run.data.tags.get(KIND) == "trial" and run.data.tags.get(TRIAL, "").isdigit():
                self.children.setdefault(int(run.data.tags[TRIAL]), run)

    def _adopt(self, runs) -> None:
        """A new parent run while trial runs of this study exist: their parent was deleted
        (MLflow's search skips deleted runs). Nest them under the new parent, and say so once,
        so that the study's trials are never split silently across two parents."""
        orphans = [r for r in runs if r.data.tags.get(KIND) == "trial"
                   and r.data.tags.get(PARENT) != self.parent_id]
        if not orphans:
            return
        for run in orphans:
            self.client.set_tag(run.info.run_id, PARENT, self.parent_id)
        old = sorted({r.data.tags.get(PARENT, "?") for r in orphans})
        warnings.warn(TrackingWarning(
            f"mlflow: the parent run {', '.join(old)} of study {self.study.study_name!r} is "
            f"deleted; a new parent run {self.parent_id} holds its {len(orphans)} earlier "
            "trial run(s) and the new ones"), stacklevel=3)

    def _create_experiment(self, name: str) -> str:
        import mlflow

        try:
            return self.client.create_experiment(name, tags=EXPERIMENT_KIND)
        except mlflow.exceptions.MlflowException:  # another worker created it just now
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def _child(self, number: int, backbone: str | None, params: dict[str, Any],
               started: float | None = None):
        """The run of trial ``number``: found by its tag, else created with its params,
        starting at ``started`` (Unix seconds; now when None)."""
        from mlflow.entities import Param

        if number in self.children:
            return self.children[number]
        found = self.client.search_runs(
            [self.experiment_id],
            f"tags.`{STUDY_KEY}` = '{self.key}' and tags.`{TRIAL}` = '{number}'", max_results=1)
        if found:
            self.children[number] = found[0]
            return found[0]
        run = self.client.create_run(
            self.experiment_id, run_name=run_name(number, backbone, params),
            start_time=_ms(started),
            tags={STUDY_KEY: self.key, STUDY: self.study.study_name, KIND: "trial",
                  TRIAL: str(number), PARENT: self.parent_id, STATE: "running"})
        logged = {"backbone": backbone, **params}
        self.client.log_batch(run.info.run_id, params=[
            Param(k, str(v)[:6000]) for k, v in logged.items() if v is not None])
        self.children[number] = run
        return run

    def on_epoch(self, trial, epoch: int, scores: dict[str, float]) -> None:
        record = TrialRecord.from_frozen(trial)
        run = self._child(trial.number, record.backbone, record.params or dict(trial.params),
                          unix_seconds(getattr(trial, "datetime_start", None)))
        self._log_epoch(run.info.run_id, epoch, scores)

    def _log_epoch(self, run_id: str, epoch: int, scores: dict[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = _now_ms()
        self.client.log_batch(run_id, metrics=[
            Metric(k, float(v), stamp, int(epoch)) for k, v in scores.items() if v is not None])

    def on_trial_end(self, trial, end: TrialEnd) -> None:
        from mlflow.entities import Metric, RunTag

        run = self._child(end.number, end.backbone, end.params, end.started)
        run_id = run.info.run_id
        if run.info.status != "RUNNING":
            return  # already ended: logged by an earlier run of this search
        logged = self.client.get_metric_history(run_id, "val_score")
        seen = {m.step for m in logged}
        for epoch, scores in end.epochs.items():  # epochs it did not see (it was off, or
            if epoch not in seen:                   # the trial ran before tracking was on)
                self._log_epoch(run_id, epoch, scores)
        stamp = _now_ms()
        metrics = [Metric(f"cost_{k}" if k == "seconds" else k, v, stamp, 0)
                   for k, v in end.costs.items()]
        if end.value is not None:
            metrics.append(Metric("score", float(end.value), stamp, 0))
        tags = [RunTag(STATE, end.state)] + ([RunTag(REASON, end.reason[:5000])]
                                             if end.reason else [])
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.client.set_terminated(run_id, status=STATUS.get(end.state, "FAILED"),
                                   end_time=_ms(end.ended))
        self.children[end.number] = self.client.get_run(run_id)

    def end(self, best: dict[str, Any] | None, artifacts: list[Path]) -> None:
        from mlflow.entities import Metric, RunTag

        for frozen in self.study.get_trials(deepcopy=False):  # catch up with the study
            if frozen.state.is_finished():
                self.on_trial_end(frozen, trial_end(frozen))
        for path in artifacts:
            self.client.log_artifact(self.parent_id, str(path))
        if best is not None:
            source = best.get("source", {})
            self.client.log_batch(self.parent_id, metrics=[
                Metric("best_val_score", float(best["val_score"]), _now_ms(), 0)], tags=[
                RunTag("autotransfer.best_trial", str(source.get("trial", ""))),
                RunTag("autotransfer.best_backbone", str(best.get("backbone", ""))[:5000])])
        self.client.set_terminated(self.parent_id, status="FINISHED")
