"""The trial and study records: one writer, one reader, the stored keys of 0.1 unchanged."""

import optuna
import pytest

from autotransfer.finetune import records
from autotransfer.finetune.records import (
    EpochMetrics,
    StudyRecord,
    TrialRecord,
    TrialWriter,
    next_worker_number,
    set_kept_model,
    trial_records,
)
from autotransfer.study.results.report import best_config, leaderboard, write_report


def _study():
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(0))


def _objective(trial):
    record = TrialWriter(trial)
    label = trial.suggest_categorical("backbone", ["zoo/a", "zoo/b (random init)"])
    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    params = {"lr": lr, "freeze_fraction": 0.5, "batch_size": 8}
    record.started(backbone=label.split()[0], pretrained="random" not in label, params=params,
                   device="cpu", classes=["cat", "dog"], seed=3)
    record.loaded(1234)
    if trial.number == 1:
        record.failed("RuntimeError: boom")
        raise RuntimeError("boom")
    score = 0.5 + trial.number / 10
    record.epoch(1, EpochMetrics(0.7, {"accuracy": score, "macro_f1": score - 0.1}),
                 activation_cache="miss",
                 cache_seconds=0.25, seconds_per_epoch=1.5, samples_per_second=100.0,
                 peak_memory_mib=321.0)
    trial.report(score, 1)
    if trial.number == 2:
        record.pruned("pruned after epoch 1/1")
        raise optuna.TrialPruned()
    record.finished(n_groups=4, n_frozen_groups=2, trainable_parameters=99, test_score=0.4)
    return score


def test_what_the_writer_stores_the_reader_returns():
    study = _study()
    study.optimize(_objective, n_trials=4, catch=(RuntimeError,))
    by_number = {r.number: r for r in trial_records(study)}
    done = by_number[3]
    assert done.state == "complete" and done.score == pytest.approx(0.8)
    assert done.params["batch_size"] == 8 and done.classes == ["cat", "dog"] and done.seed == 3
    assert done.parameter_count == 1234 and done.trainable_parameters == 99
    assert done.n_groups == 4 and done.n_frozen_groups == 2 and done.test_score == 0.4
    assert done.epochs == {1: EpochMetrics(0.7, {"accuracy": 0.8,
                                                 "macro_f1": pytest.approx(0.7)})}
    assert done.scores == {"accuracy": 0.8, "macro_f1": pytest.approx(0.7)}
    assert done.peak_memory_mib == 321.0 and done.activation_cache == "miss"
    assert by_number[1].state == "fail" and by_number[1].reason == "RuntimeError: boom"
    assert by_number[2].state == "pruned" and by_number[2].score == pytest.approx(0.7)
    assert by_number[2].reason == "pruned after epoch 1/1"
    rows = leaderboard(study)
    assert [r["state"] for r in rows] == ["complete", "complete", "pruned", "fail"]
    assert rows[0]["trial"] == 3 and rows[0]["freeze_fraction"] == 0.5


def test_a_study_written_with_the_0_1_keys_reads_back():
    study = _study()
    trial = study.ask({"backbone": optuna.distributions.CategoricalDistribution(["zoo/a"])})
    for key, value in {"backbone": "zoo/a", "params": {"lr": 0.01}, "peak_memory_mb": 12.5,
                       "oom_retries": 1, "epoch_1": {"train_loss": 1.0, "accuracy": 0.5,
                                                     "macro_f1": 0.4},
                       "test_score": 0.3, "interrupted": True}.items():
        trial.set_user_attr(key, value)
    study.tell(trial, 0.5)
    record = TrialRecord.from_frozen(study.trials[0])
    assert record.peak_memory_mib == 12.5 and record.oom_retries == 1 and record.interrupted
    assert record.epochs[1].accuracy == 0.5 and record.params == {"lr": 0.01}
    assert record.scores == {"accuracy": 0.5, "macro_f1": 0.4}
    assert records.PEAK_MEMORY == "peak_memory_mb"  # the stored key never changes


def test_study_record_and_worker_numbers():
    study = _study()
    assert StudyRecord.of(study) == StudyRecord()
    assert [next_worker_number(study) for _ in range(3)] == [0, 1, 2]
    set_kept_model(study, {"trial": 0, "score": 0.9, "artifact": "x"})
    assert StudyRecord.of(study).kept_model["score"] == 0.9
    assert study.user_attrs["workers_joined"] == 3


def test_report_names_a_mapping_backbone_by_its_id(tmp_path):
    # best.yaml's backbone is a mapping when the space gave options; the report used to print
    # the whole dict (review finding report.py:243).
    from autotransfer.space.schema import parse_space

    study = _study()
    study.optimize(_objective, n_trials=4, catch=(RuntimeError,))
    space = parse_space({"backbones": ["zoo/a", {"id": "zoo/b", "pretrained": False}],
                         "epochs": 1}, "space")
    best = best_config(study, space, data="d", storage="s", space_file=None)
    best["backbone"] = {"id": "zoo/b", "pretrained": False}
    report = write_report(study, tmp_path, metric="accuracy", best=best).read_text()
    assert "`zoo/b`: val" in report
    assert "{'id'" not in report


def test_a_running_trial_reads_as_a_record_so_far_and_a_soup_is_read_back():
    study = _study()
    seen = {}

    def objective(trial):
        record = TrialWriter(trial)
        record.started(backbone="zoo/a", pretrained=True, params={"lr": 0.1}, device="cpu",
                       classes=["cat", "dog"], seed=0)
        seen["running"] = TrialRecord.from_frozen(trial)  # a live optuna.Trial, not frozen
        seen["kind"] = records.reference_of(trial)
        record.averaged({"epochs": [3, 2], "score": 0.9, "gain": 0.01})
        return 0.9

    study.enqueue_trial({}, user_attrs=records.reference_attrs("default"))
    study.optimize(objective, n_trials=1)
    running = seen["running"]
    assert (running.state, running.backbone, running.params, running.values) == (
        "running", "zoo/a", {"lr": 0.1}, None)
    assert seen["kind"] == "default" == running.reference
    done = trial_records(study)[0]
    assert done.averaging == {"epochs": [3, 2], "score": 0.9, "gain": 0.01}
    assert done.state == "complete" and done.value == 0.9


def test_the_data_fingerprint_is_a_study_record():
    study = _study()
    assert StudyRecord.of(study).data_fingerprint is None
    records.set_data_fingerprint(study, {"train": [4, "abc"]})
    assert StudyRecord.of(study).data_fingerprint == {"train": [4, "abc"]}
    assert study.user_attrs["data_fingerprint"] == {"train": [4, "abc"]}  # the stored key kept


def test_the_measured_costs_and_how_latency_was_measured_read_back():
    study = _study()

    def objective(trial):
        TrialWriter(trial).measured({"latency_ms": 1.5, "size_mb": 2.0, "latency_threads": 4,
                                     "latency_runtime": "onnxruntime fp32"}, seconds=0.25)
        return 0.5

    study.optimize(objective, n_trials=1)
    record = trial_records(study)[0]
    assert record.costs == {"latency_ms": 1.5, "size_mb": 2.0}
    assert (record.latency_threads, record.latency_runtime) == (4, "onnxruntime fp32")
    assert record.measure_seconds == 0.25


def test_only_the_records_module_reads_user_attrs():
    # #35: refit, soup and the benchmarks read trials through TrialRecord and studies through
    # StudyRecord; a read by key elsewhere bypasses the one schema (its keys, 0.1's fallbacks).
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    read = re.compile(r"\.user_attrs\s*(\[|\.get\(|\.items\(|\.keys\(|\.values\()"
                      r"|= *\w+\.user_attrs\b")
    readers = sorted(
        str(path.relative_to(root)) for folder in ("autotransfer", "plugins", "benchmarks")
        for path in (root / folder).rglob("*.py")
        if path != root / "autotransfer/finetune/records.py" and read.search(path.read_text()))
    assert readers == []
