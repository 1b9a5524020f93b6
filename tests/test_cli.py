"""The real CLI: an end-to-end search on Fashion-MNIST with packaged ImageNet weights, and the
one-line errors that bad input gets."""

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from autotransfer.cli import main
from autotransfer.finetune.records import TrialRecord
from autotransfer.space.hyperparameters import HYPERPARAMETERS
from autotransfer.study.results.intervals import val_examples
from conftest import cli_error as _error
from conftest import write_images

SPACE = """
backbones:
  - packaged/mobilenetv2_100
  - {id: packaged/mobilenetv2_100, pretrained: false}
epochs: 2
pruner: median
params:
  freeze_fraction: {type: float, low: 0.5, high: 1.0}
  lr: {type: float, low: 3.0e-4, high: 3.0e-3, log: true}
  batch_size: 32
  image_size: 64
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from autotransfer.cli import main; main()", *args],
        cwd=cwd, capture_output=True, text=True, timeout=900,
    )


@pytest.fixture(scope="module")
def searched(fashion_mnist, tmp_path_factory):
    """One real search of 5 trials, run as a user would run it."""
    work = tmp_path_factory.mktemp("search")
    (work / "space.yaml").write_text(SPACE)
    args = (str(fashion_mnist), "--space", "space.yaml", "--trials", "5", "--seed", "1",
            "--storage", "sqlite:///study.db", "--study", "fm", "--out", "out", "--keep-best",
            "--no-references")  # five sampled trials, so that the median pruner has work
    run = _cli("search", *args, cwd=work)
    assert run.returncode == 0, run.stderr
    return work, run, args


def test_search_records_every_trial_with_its_attributes(searched):
    work, run, _ = searched
    study = optuna.load_study(study_name="fm", storage=f"sqlite:///{work / 'study.db'}")
    trials = study.get_trials()
    assert len(trials) == 5
    states = [t.state for t in trials]
    assert optuna.trial.TrialState.COMPLETE in states
    for trial in trials:
        attrs = trial.user_attrs
        assert attrs["backbone"] == "packaged/mobilenetv2_100"
        assert attrs["device"] == "cpu" and attrs["parameter_count"] > 2_000_000
        assert attrs["seconds_per_epoch"] > 0 and attrs["samples_per_second"] > 0
        assert attrs["peak_memory_mb"] > 0
        assert len(trial.intermediate_values) >= 1
        assert attrs["first_batch_at"] > trial.datetime_start.timestamp()
    assert "Leaderboard" in run.stdout and "best" in run.stdout
    first = float(run.stdout.split("first trial's first batch after ")[1].split("s")[0])
    assert 0 < first < min(t.duration.total_seconds() for t in trials) + 60


def test_a_weak_trial_is_pruned_with_its_reason(searched):
    work, _, _ = searched
    study = optuna.load_study(study_name="fm", storage=f"sqlite:///{work / 'study.db'}")
    pruned = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "the run is sized so that the median pruner stops a weak trial"
    for trial in pruned:
        assert len(trial.intermediate_values) < 2
        assert trial.user_attrs["prune_reason"].startswith("pruned after epoch 1/2")


def test_best_yaml_holds_the_best_trial_and_where_it_came_from(searched, fashion_mnist):
    work, _, _ = searched
    best = yaml.safe_load((work / "out" / "best.yaml").read_text())
    study = optuna.load_study(study_name="fm", storage=f"sqlite:///{work / 'study.db'}")
    # the picked trial: the top score, or a cheaper one tied with it (intervals.RULE)
    picked = study.trials[best["source"]["trial"]]
    assert best["val_score"] == pytest.approx(picked.value)
    assert picked.value >= study.best_value - 1 / val_examples(TrialRecord.from_frozen(picked))
    assert best["backbone"] == "packaged/mobilenetv2_100"  # pretrained beats random init
    # every hyperparameter an image model reads, none that only text or audio read
    # (and none that only another tuning method reads: lora_rank is LoRA's)
    assert set(best["params"]) == {n for n, h in HYPERPARAMETERS.items()
                                   if h.modality in (None, "image") and h.method is None}
    assert best["params"]["lr"] == pytest.approx(picked.params["lr"])
    assert best["params"]["image_size"] == 64 and best["epochs"] == 2
    assert best["metric"] == "accuracy" and 0.0 <= best["test_score"] <= 1.0
    assert best["val_score"] > 0.5
    assert best["source"] == {
        "study": "fm", "trial": picked.number, "data": str(fashion_mnist.resolve()),
        "space": "space.yaml", "val_fraction": 0.2, "seed": 1, "storage": "sqlite:///study.db",
        # what train reads back, so that it needs no data flag repeated
        # as the search resolved them: the detected modality, no column of a folder's
        "data_options": {"columns": {}, "data_store": None, "modality": "image"},
    }
    assert (work / "out" / "leaderboard.csv").read_text().count("\n") == 6


def test_search_ends_with_the_report(searched):
    work, _, _ = searched
    out = work / "out"
    assert "## Best configuration" in (out / "report.md").read_text()
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert set(best["per_class"]) == set(best["classes"])
    # 300 training images, val_fraction 0.2
    assert sum(c["support"] for c in best["per_class"].values()) == 60
    assert 0.0 <= best["macro_f1"] <= 1.0 and best["references"] == {}
    for name in ("optimization_history", "score_per_backbone", "best_so_far",
                 "confusion_matrix"):
        assert (out / f"{name}.png").is_file() and (out / f"{name}.html").is_file()


def test_keep_best_leaves_the_best_trials_model_ready_for_predict(searched, fashion_mnist):
    import autotransfer

    work, run, _ = searched
    best = yaml.safe_load((work / "out" / "best.yaml").read_text())
    meta = json.loads((work / "out" / "best-model" / "autotransfer.json").read_text())
    assert meta["metrics"]["trial"] == best["source"]["trial"]
    assert meta["metrics"]["search_val_score"] == pytest.approx(best["val_score"])
    assert len(list((work / "out" / "artifacts").rglob("*"))) == 1  # the best only
    predictions = autotransfer.predict(work / "out" / "best-model", [fashion_mnist / "test"])
    correct = [p.label == Path(p.input).parent.name for p in predictions]
    # the kept network is the trial's own: it scores the trial's test accuracy again
    assert sum(correct) / len(correct) == pytest.approx(best["test_score"], abs=0.011)
    assert "best trial's model ->" in run.stdout


def test_study_resumes_by_name_and_trials_counts_the_total(searched):
    work, _, args = searched
    args = list(args)
    args[args.index("--trials") + 1] = "6"
    run = _cli("search", *args, cwd=work)
    assert run.returncode == 0, run.stderr
    study = optuna.load_study(study_name="fm", storage=f"sqlite:///{work / 'study.db'}")
    assert len(study.get_trials()) == 6


# -- bad input: one line on stderr, exit status 1, no traceback ------------------------------


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    return path


def test_missing_folder(capsys, tmp_path, space_file, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the default sqlite:///autotransfer.db would go
    err = _error(capsys, "search", str(tmp_path / "nope"), "--space", str(space_file),
                 "--trials", "1")
    assert "nope: no such file or folder" in err
    assert not (tmp_path / "autotransfer.db").exists()  # no empty study database left behind


def test_empty_class(capsys, class_folders, space_file):
    (class_folders / "bird").mkdir()
    err = _error(capsys, "search", str(class_folders), "--space", str(space_file), "--trials", "1")
    assert "bird: empty class folder" in err


def test_single_class(capsys, tmp_path, space_file):
    write_images(tmp_path / "one" / "cat", 3)
    err = _error(capsys, "search", str(tmp_path / "one"), "--space", str(space_file),
                 "--trials", "1")
    assert "single class 'cat'" in err


def test_unreadable_images_beyond_the_threshold(capsys, class_folders, space_file):
    for i in range(3):
        (class_folders / "dog" / f"bad{i}.jpg").write_bytes(b"\x00garbage")
    err = _error(capsys, "search", str(class_folders), "--space", str(space_file), "--trials", "1",
                 "--storage", "sqlite://")
    assert "3 of 23 images are unusable (more than 5%)" in err and "bad0.jpg" in err


def test_unknown_backbone_suggests_close_ids(capsys, class_folders, tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("backbones: [packaged/mobilenet_v2]\nepochs: 1\n")
    err = _error(capsys, "search", str(class_folders), "--space", str(space), "--trials", "1")
    assert "unknown backbone 'packaged/mobilenet_v2'" in err
    assert "did you mean packaged/mobilenetv2_100" in err


def test_bad_yaml_key_and_range(capsys, class_folders, tmp_path):
    space = tmp_path / "s.yaml"
    space.write_text("backbones: [packaged/mobilenetv2_100]\nepochs: 1\n"
                     "params: {layerdecay: 0.9}\n")
    err = _error(capsys, "search", str(class_folders), "--space", str(space), "--trials", "1")
    assert ("s.yaml:3: params.layerdecay: unknown hyperparameter (did you mean 'layer_decay'?)"
            in err)
    space.write_text("backbones: [packaged/mobilenetv2_100]\nepochs: 1\n"
                     "params: {freeze_fraction: {type: float, low: 0, high: 2}}\n")
    err = _error(capsys, "search", str(class_folders), "--space", str(space), "--trials", "1")
    assert "params.freeze_fraction.high: must be <= 1, got 2.0" in err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not-a-url", "bad storage URL 'not-a-url': expected an SQLAlchemy URL"),
        ("mysql+nodriver://u:secret@h/db", "no database driver for 'mysql+nodriver'"),
        ("sqlite:////no/such/dir/x.db", "folder /no/such/dir does not exist"),
    ],
)
def test_bad_storage_url(capsys, class_folders, space_file, url, message):
    err = _error(capsys, "search", str(class_folders), "--space", str(space_file),
                 "--trials", "1", "--storage", url)
    assert message in err and "secret" not in err


def test_unbounded_search_and_bad_device(capsys, class_folders, space_file):
    assert "give --trials N, --timeout S or --time-budget S" in _error(
        capsys, "search", str(class_folders), "--space", str(space_file))
    assert "--device" in _error(
        capsys, "search", str(class_folders), "--space", str(space_file), "--trials", "1",
        "--device", "tpu")


def test_backbones_and_plugins_commands(capsys):
    main(["backbones", "packaged/", "--modality", "image"])
    out = capsys.readouterr().out
    assert out.count("packaged/") == 4 and "packaged/tf_efficientnet_lite2" in out
    main(["plugins"])
    out = capsys.readouterr().out
    assert "autotransfer_timm" in out and "register_backbones" in out
    with pytest.raises(SystemExit) as info:  # a bad choice is a usage error (test_bad_input)
        main(["backbones", "--modality", "video"])
    assert info.value.code == 2
    assert "'video' is not one of 'image', 'text', 'audio'" in capsys.readouterr().err
