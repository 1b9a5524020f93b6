"""Searches logged to real experiment trackers and read back: MLflow (a SQLite tracking store)
and Weights & Biases (offline run files); a tracker that cannot be reached is a warning."""

import json
import warnings

import pytest
import timm
import yaml

from autotransfer import hookimpl
from autotransfer.contract.backbone import BackboneEntry
from autotransfer.errors import OptionError
from autotransfer.space.schema import parse_space
from autotransfer.study.trackers import TrackingWarning
from autotransfer.testing import DeterministicPruner, registered_plugin
from autotransfer_timm import backbone_from_timm

EPOCHS = 2
TRIALS = 4


def _tiny(pretrained=True):
    return backbone_from_timm(timm.create_model("test_efficientnet", num_classes=0))


def _broken(pretrained=True):
    # loads (the check before trial 0 passes), then fails its trial at the first forward pass
    backbone = _tiny()

    def corrupt(module, inputs):
        raise RuntimeError("weights file is corrupt")

    backbone.model.register_forward_pre_hook(corrupt)
    return backbone


class TrackedZoo:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneEntry("tracked/tiny", "image", loader=_tiny))
        register(BackboneEntry("tracked/broken", "image", loader=_broken))


SPACE = {
    "backbones": ["tracked/tiny", "tracked/broken"],
    "epochs": EPOCHS,
    "params": {"image_size": 32, "lr": {"type": "float", "low": 1e-3, "high": 1e-2},
               "batch_size": 8},
}


@pytest.fixture
def tracked(monkeypatch, tmp_path):
    """The zoo, the run folder as working directory (MLflow's artifacts, W&B's files), and a
    pruner that prunes the first trial that reports an epoch, after that epoch."""
    first = []

    def prune_first(number, step):
        first.append(number)
        return number == first[0]

    monkeypatch.chdir(tmp_path)
    pruner = DeterministicPruner(prune_first)
    monkeypatch.setattr("autotransfer.study.study.make_pruner", lambda space, **_: pruner)
    # the run's pruner is the one fitted to its expected trials (autotransfer.study.budget.rungs)
    monkeypatch.setattr("autotransfer.study.budget.rungs.fitted_pruner",
                        lambda space, expected: (pruner, None))
    with registered_plugin(TrackedZoo(), name="tracked-zoo"):
        yield tmp_path


#: the enqueued backbones: trial 0 is pruned after epoch 1, trial 2 fails in its first forward pass
ORDER = ["tracked/tiny", "tracked/tiny", "tracked/broken", "tracked/tiny"]


def _enqueue(tmp_path, backbones=ORDER):
    import optuna

    study = optuna.create_study(study_name="tracked", storage=f"sqlite:///{tmp_path}/s.db",
                                direction="maximize")
    for backbone in backbones:
        study.enqueue_trial({"backbone": backbone})


def _search(tmp_path, trials, **kwargs):
    from autotransfer.study.study import search

    data = tmp_path / "data"
    if not data.exists():
        from conftest import write_images

        for cls, seed in (("cat", 1), ("dog", 2)):
            write_images(data / cls, 10, seed=seed)
    return search(data, parse_space(SPACE), trials=trials, storage=f"sqlite:///{tmp_path}/s.db",
                  study_name="tracked", out=tmp_path / "out", seed=0, references=False,
                  transfer_effect=False, **kwargs)


def _states(study):
    return {t.number: t.state.name.lower() for t in study.trials}


def test_mlflow_logs_a_parent_run_and_one_nested_run_per_trial_per_epoch(tracked, capfd):
    import mlflow

    uri = f"sqlite:///{tracked}/mlflow.db"
    _enqueue(tracked)
    result = _search(tracked, TRIALS, track="mlflow", tracking_uri=uri)
    states = _states(result.study)
    assert set(states.values()) == {"complete", "pruned", "fail"}, states
    console = capfd.readouterr()
    assert " INFO " not in console.err + console.out  # MLflow's database set-up lines

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tracked")
    # the UI opens the experiment on its runs, not on the GenAI traces page
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags["autotransfer.kind"] == "search"]
    children = [r for r in runs if r.data.tags["autotransfer.kind"] == "trial"]
    assert len(parents) == 1 and len(children) == TRIALS
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["best_val_score"] == pytest.approx(result.best["val_score"])
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best.yaml", "report.md", "leaderboard.csv"} <= names
    assert any(n.endswith(".png") for n in names), names
    status = {"complete": "FINISHED", "pruned": "KILLED", "fail": "FAILED"}
    for run in children:
        number = int(run.data.tags["autotransfer.trial"])
        trial = result.study.trials[number]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == f"trial {number} · {trial.params['backbone']} · finetune"
        assert run.data.tags["autotransfer.state"] == states[number]
        assert run.info.status == status[states[number]]
        assert run.data.params["backbone"] == trial.params["backbone"]
        assert float(run.data.params["lr"]) == pytest.approx(trial.params["lr"])
        assert run.data.params["batch_size"] == "8"  # fixed hyperparameters too
        history = client.get_metric_history(run.info.run_id, "val_score")
        assert [m.step for m in history] == sorted(trial.intermediate_values)
        assert [m.value for m in history] == [trial.intermediate_values[s]
                                              for s in sorted(trial.intermediate_values)]
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) == len(history)
        val_loss = client.get_metric_history(run.info.run_id, "val_loss")  # the loss
        assert len(val_loss) == len(history) and all(m.value > 0 for m in val_loss)
        if states[number] == "complete":
            assert len(history) == EPOCHS
            assert run.data.metrics["score"] == pytest.approx(trial.value)
            assert run.data.metrics["trainable_parameters"] > 0
            assert run.data.metrics["peak_memory_mib"] >= 0
            assert run.data.metrics["cost_seconds"] > 0
        elif states[number] == "pruned":
            assert len(history) == 1
            assert run.data.tags["autotransfer.reason"].startswith("pruned after epoch 1/2")
        else:
            assert history == []
            assert run.data.tags["autotransfer.reason"] == "RuntimeError: weights file is corrupt"

    # resumed: the same parent, the old trials' runs untouched, one run per new trial
    more = _search(tracked, TRIALS + 2, track="mlflow", tracking_uri=uri)
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs if r.data.tags["autotransfer.kind"] == "search"] == [
        parent.info.run_id]
    numbers = sorted(int(r.data.tags["autotransfer.trial"]) for r in runs
                     if r.data.tags["autotransfer.kind"] == "trial")
    assert numbers == list(range(len(more.study.trials))) == list(range(TRIALS + 2))
    for run in children:  # no epoch logged twice
        again = client.get_metric_history(run.info.run_id, "val_score")
        assert len(again) == len(result.study.trials[int(run.data.tags["autotransfer.trial"])]
                                 .intermediate_values)
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


def test_mlflow_catches_up_at_the_end_with_trials_it_did_not_see(tracked):
    """A search run without tracking, then resumed with it: its trials are logged once, with
    their per-epoch history read from the study and their own start and end times."""
    import mlflow

    uri = f"sqlite:///{tracked}/mlflow.db"
    _enqueue(tracked, ORDER[:2])  # (queued trials all run, whatever the total)
    first = _search(tracked, 2)
    _search(tracked, 3, track="mlflow", tracking_uri=uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("tracked").experiment_id],
                              "tags.`autotransfer.kind` = 'trial'")
    assert sorted(int(r.data.tags["autotransfer.trial"]) for r in runs) == [0, 1, 2]
    for run in runs:
        number = int(run.data.tags["autotransfer.trial"])
        if number < 2:
            steps = first.study.trials[number].intermediate_values
            history = client.get_metric_history(run.info.run_id, "val_score")
            assert [m.step for m in history] == sorted(steps)
            assert run.info.status != "RUNNING"
            trial = first.study.trials[number]
            assert run.info.start_time == int(trial.datetime_start.timestamp() * 1000)
            assert run.info.end_time == int(trial.datetime_complete.timestamp() * 1000)


def test_mlflow_tracks_to_a_file_store_with_one_whole_line_warning(tracked, monkeypatch):
    """``--tracking-uri ./mlruns``: MLflow 3 refuses a file store unless told; asked for by
    name, it tracks, and the notice is one warning that names the replacement."""
    import mlflow

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    _enqueue(tracked, ["tracked/tiny"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _search(tracked, 1, track="mlflow", tracking_uri="./mlruns")
    tracking = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
    assert len(tracking) == 1 and "maintenance mode" in tracking[0], tracking
    assert "sqlite:///mlflow.db" in tracking[0] and "\n" not in tracking[0]
    client = mlflow.MlflowClient(tracking_uri=str(tracked / "mlruns"))
    runs = client.search_runs([client.get_experiment_by_name("tracked").experiment_id],
                              "tags.`autotransfer.kind` = 'trial'")
    assert [r.info.status for r in runs] == ["KILLED"]  # (the fixture prunes the first)


def test_a_tracker_warning_is_cut_only_at_a_sentence_end():
    from autotransfer.study.trackers._base import one_line

    long = ("The filesystem tracking backend (e.g., './mlruns') is in maintenance mode and "
            "will not receive further updates. Please migrate to a database backend (e.g., "
            "'sqlite:///mlflow.db') to access the latest MLflow features. The `mlflow "
            "migrate-filestore` tool migrates your existing data losslessly. See https://"
            "mlflow.org/docs/latest/self-hosting/migrate-from-file-store for guidance.")
    assert one_line(RuntimeError(long), limit=200) == long.split(" Please")[0]
    assert one_line(RuntimeError(long)).endswith("losslessly.")
    assert one_line(RuntimeError("short\nsecond line")) == "short"
    word = one_line(RuntimeError("a " * 200), limit=50)
    assert word.endswith("a...") and len(word) <= 53

    from autotransfer.study.trackers import Guarded

    class Failing:
        def start(self, study, options):
            raise RuntimeError(long)

    with pytest.warns(TrackingWarning) as caught:
        Guarded("mlflow", Failing()).start(None, None)
    assert str(caught[0].message) == (f"tracking with mlflow is off: {long.split(' See')[0][:-1]}"
                                      "; the search goes on (the study database keeps every "
                                      "trial)")


def test_an_unreachable_tracker_is_one_warning_and_the_search_goes_on(tracked):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _search(tracked, 2, track="mlflow", tracking_uri="http://127.0.0.1:9")
    tracking = [w for w in caught if issubclass(w.category, TrackingWarning)]
    assert len(tracking) == 1, [str(w.message) for w in tracking]
    message = str(tracking[0].message)
    assert message.startswith("tracking with mlflow is off: ") and "\n" not in message
    assert len(result.study.trials) == 2


def test_an_unknown_tracker_is_an_option_error(tracked):
    with pytest.raises(OptionError, match="track must be one of mlflow, wandb, got 'neptune'"):
        _search(tracked, 1, track="neptune")


def _records(path):
    """The protobuf records of a ``.wandb`` file: a 7-byte header (``:W&B``, magic, version),
    then LevelDB's log format (32 KiB blocks of chunks: CRC, 2-byte length, type)."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    offset, block, pending = 7, 32768, b""
    while offset + 7 <= len(data):
        if block - offset % block < 7:  # the block's tail is padding
            offset += block - offset % block
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, offset)
        if length == 0 and kind == 0:
            break
        pending += data[offset + 7:offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _items(items):
    """Key -> value of a record's items (a key is ``key`` or the parts of ``nested_key``)."""
    return {i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in items}


def _offline_runs(folder):
    """The W&B offline runs under ``folder``, read from their ``.wandb`` files: group, job
    type, config, history rows, summary and exit code of each."""
    runs = []
    for run_dir in sorted((folder / "wandb").glob("offline-run-*")):
        (log,) = run_dir.glob("*.wandb")
        info = {"history": [], "summary": {}, "config": {}}
        for record in _records(log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                info.setdefault("group", record.run.run_group)
                info.setdefault("job_type", record.run.job_type)
                info.setdefault("name", record.run.display_name)
                info["config"].update(_items(record.run.config.update))
            elif kind == "history":
                info["history"].append(_items(record.history.item))
            elif kind == "summary":
                info["summary"].update(_items(record.summary.update))
            elif kind == "artifact":
                info.setdefault("artifacts", []).extend(
                    entry.path for entry in record.artifact.manifest.contents)
            elif kind == "exit":
                info["exit_code"] = record.exit.exit_code
        runs.append(info)
    return runs


def test_wandb_offline_logs_one_run_per_trial_grouped_under_the_study(tracked, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tracked))
    monkeypatch.setenv("WANDB_SILENT", "true")
    _enqueue(tracked)
    result = _search(tracked, TRIALS, track="wandb")
    states = _states(result.study)
    runs = _offline_runs(tracked)
    trials = [r for r in runs if r["job_type"] == "trial"]
    assert len(trials) == TRIALS and len(runs) == TRIALS + 1
    assert {r["group"] for r in runs} == {"tracked"}
    for run in trials:
        number = run["config"]["trial"]
        trial = result.study.trials[number]
        assert run["config"]["backbone"] == trial.params["backbone"]
        assert run["name"] == f"trial {number} · {trial.params['backbone']} · finetune"
        assert run["summary"]["state"] == states[number]
        epochs = [h["_step"] for h in run["history"] if "val_score" in h]
        assert epochs == sorted(trial.intermediate_values)
        assert run["exit_code"] == (1 if states[number] == "fail" else 0)
    (search_run,) = [r for r in runs if r["job_type"] == "search"]
    assert search_run["summary"]["best_val_score"] == pytest.approx(result.best["val_score"])
    assert {"best.yaml", "report.md", "leaderboard.csv"} <= set(search_run["artifacts"])
    best = yaml.safe_load((tracked / "out" / "best.yaml").read_text())
    assert search_run["summary"]["best_trial"] == best["source"]["trial"]


def test_a_missing_tracker_library_is_a_warning_that_names_the_extra(tracked, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    with pytest.warns(TrackingWarning, match=r"pip install 'autotransfer\[wandb\]'"):
        result = _search(tracked, 1, track="wandb")
    assert len(result.study.trials) == 1


def test_the_cli_tracker_choices_are_the_registry():
    from typing import get_args

    from autotransfer.cli.app import TrackWith
    from autotransfer.study.trackers import TRACKERS

    assert get_args(TrackWith) == tuple(TRACKERS)


WORKER_SPACE = """
backbones:
  - {id: timm/test_efficientnet, pretrained: false}
epochs: 2
pruner: none
params:
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  batch_size: 8
  image_size: 32
"""


def test_workers_log_their_trials_under_the_one_parent_run(class_folders, tmp_path):
    """``--workers 2 --track mlflow``: each worker process logs the trials it runs, nested
    under the search's parent run, through the real CLI."""
    import subprocess
    import sys

    import mlflow

    space = tmp_path / "space.yaml"
    space.write_text(WORKER_SPACE)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run = subprocess.run(
        [sys.executable, "-c", "from autotransfer.cli import main; main()", "search",
         str(class_folders), "--space", str(space), "--trials", "4", "--workers", "2",
         "--storage", f"sqlite:///{tmp_path}/s.db", "--study", "two", "--out",
         str(tmp_path / "out"), "--no-references", "--track", "mlflow", "--tracking-uri", uri],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "tracking" not in run.stderr  # no tracking warning
    import optuna

    study = optuna.load_study(study_name="two", storage=f"sqlite:///{tmp_path}/s.db")
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("two").experiment_id])
    (parent,) = [r for r in runs if r.data.tags["autotransfer.kind"] == "search"]
    children = [r for r in runs if r.data.tags["autotransfer.kind"] == "trial"]
    assert len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert len({t.user_attrs["worker_pid"] for t in study.trials}) == 2  # both ran trials
    for child in children:
        assert child.info.status == "FINISHED"
        assert len(client.get_metric_history(child.info.run_id, "val_score")) == 2


def test_a_tracker_failing_mid_search_warns_once_and_fails_no_trial(tracked, monkeypatch):
    from autotransfer.study.trackers._mlflow import MlflowTracker

    def broken(self, *args):
        raise ConnectionError("server went away")

    monkeypatch.setattr(MlflowTracker, "on_epoch", broken)
    _enqueue(tracked, ["tracked/tiny", "tracked/tiny"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _search(tracked, 2, track="mlflow", tracking_uri=f"sqlite:///{tracked}/m.db")
    tracking = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
    assert tracking == ["tracking with mlflow stopped (on_epoch): server went away; the search "
                        "goes on (the study database keeps every trial)"]
    assert [t.state.name for t in result.study.trials] == ["PRUNED", "COMPLETE"]


def test_mlflow_a_deleted_parent_run_is_replaced_once_and_keeps_the_trials_together(tmp_path):
    """The parent run deleted in MLflow between two runs of a study: the resumed search makes
    a new parent, moves the earlier trial runs under it and says so in one warning, so the
    study's trials are never split across two parents."""
    from types import SimpleNamespace

    import mlflow
    import optuna

    from autotransfer.study.trackers._base import TrackingWarning
    from autotransfer.study.trackers._mlflow import PARENT, MlflowTracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    options = SimpleNamespace(tracking_uri=uri, storage=f"sqlite:///{tmp_path}/s.db")
    study = optuna.create_study(study_name="gone", storage=options.storage)
    first = MlflowTracker()
    first.start(study, options)
    first._child(0, "packaged/mobilenetv2_100", {"lr": 1e-3})
    client = mlflow.MlflowClient(tracking_uri=uri)
    client.delete_run(first.parent_id)
    again = MlflowTracker()
    with pytest.warns(TrackingWarning, match=f"parent run {first.parent_id} of study 'gone' "
                      "is deleted; a new parent run .* holds its 1 earlier trial run"):
        again.start(study, options)
    assert again.parent_id != first.parent_id
    assert again._child(0, None, {}).info.run_id == first.children[0].info.run_id
    moved = client.get_run(first.children[0].info.run_id)
    assert moved.data.tags[PARENT] == again.parent_id
    again._child(1, "packaged/mobilenetv2_100", {"lr": 2e-3})
    parents = {client.get_run(again.children[n].info.run_id).data.tags[PARENT] for n in (0, 1)}
    assert parents == {again.parent_id}
