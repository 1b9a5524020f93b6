"""Trial faults: out of memory retries at half batch, a diverging loss prunes, Ctrl-C leaves a
resumable study; unsafe checkpoints are never executed; the same seed gives the same search."""

import os
import pickle
import signal
import subprocess
import sys

import optuna
import pytest
import torch
import yaml

from autotransfer import BackboneEntry, hookimpl
from autotransfer.contract.collect import get_backbone
from autotransfer.errors import BackboneError
from autotransfer.space.schema import parse_space
from autotransfer.study.study import search
from autotransfer.testing import registered_plugin, tiny_cnn_backbone


class _MemoryBound(torch.nn.Module):
    """Wraps a body and runs out of memory on training batches larger than ``limit``."""

    def __init__(self, body, limit):
        super().__init__()
        self.body, self.limit = body, limit

    def forward(self, x):
        if self.training and len(x) > self.limit:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {len(x)} GiB")
        return self.body(x)


def _memory_bound(limit):
    def loader(pretrained=True):
        backbone = tiny_cnn_backbone(pretrained)
        backbone.model = _MemoryBound(backbone.model, limit)
        backbone.groups = [[f"body.{n}" for n in g] for g in backbone.groups]
        return backbone

    return loader


class FaultyZoo:
    @hookimpl
    def register_backbones(self, register):
        register(BackboneEntry("faulty/oom-above-4", "image", loader=_memory_bound(4)))
        register(BackboneEntry("faulty/oom-always", "image", loader=_memory_bound(0)))
        register(BackboneEntry("faulty/tiny", "image", loader=tiny_cnn_backbone))


def _search(data, tmp_path, backbone, trials=1, **params):
    space = parse_space({"backbones": [backbone], "epochs": 1, "pruner": "none",
                         "params": {"image_size": 32, **params}})
    return search(data, space, trials=trials, storage=f"sqlite:///{tmp_path}/s.db",
                  study_name="faults", out=tmp_path / "out", references=False)


def test_out_of_memory_retries_at_half_batch_and_records_it(class_folders, tmp_path):
    with registered_plugin(FaultyZoo(), "faulty"):
        result = _search(class_folders, tmp_path, "faulty/oom-above-4", batch_size=16)
    trial = result.study.trials[0]
    assert trial.state.name == "COMPLETE"
    assert trial.user_attrs["oom_retries"] == 2  # 16 -> 8 -> 4
    assert trial.user_attrs["params"]["batch_size"] == 4
    assert trial.user_attrs["oom_note"] == "out of memory at batch size 8; retried at 4"
    assert result.best["params"]["batch_size"] == 4  # best.yaml re-runs what actually ran


def test_out_of_memory_at_batch_one_fails_the_trial_with_the_reason(class_folders, tmp_path):
    with registered_plugin(FaultyZoo(), "faulty"):
        result = _search(class_folders, tmp_path, "faulty/oom-always", batch_size=2)
    trial = result.study.trials[0]
    assert trial.state.name == "FAIL"
    assert trial.user_attrs["fail_reason"].startswith("OutOfMemoryError: CUDA out of memory")
    assert result.best is None


def test_a_diverging_loss_prunes_the_trial_with_the_reason(class_folders, tmp_path):
    with registered_plugin(FaultyZoo(), "faulty"):
        result = _search(class_folders, tmp_path, "faulty/tiny", lr=1e30, batch_size=4,
                         warmup_fraction=0.0, head_lr_multiplier=1.0)
    trial = result.study.trials[0]
    assert trial.state.name == "PRUNED"
    assert trial.user_attrs["prune_reason"].startswith("diverged: loss is ")


def test_same_seed_same_trials_and_scores(class_folders, tmp_path):
    space = {"backbones": [{"id": "timm/test_efficientnet", "pretrained": False}],
             "epochs": 1, "pruner": "none",
             "params": {"image_size": 32, "lr": {"type": "float", "low": 1e-4, "high": 1e-1,
                                                  "log": True},
                        "freeze_fraction": {"type": "float", "low": 0.0, "high": 1.0}}}
    runs = []
    for name in ("a", "b"):
        result = search(class_folders, parse_space(space), trials=3, seed=7,
                        storage=f"sqlite:///{tmp_path}/{name}.db", out=tmp_path / name)
        runs.append(result.study.trials)
    for first, second in zip(*runs, strict=True):
        assert first.params == second.params
        assert first.value == pytest.approx(second.value, abs=1e-6)
        assert first.user_attrs["epoch_1"]["train_loss"] == pytest.approx(
            second.user_attrs["epoch_1"]["train_loss"], rel=1e-4)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_checkpoint_is_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker
    checkpoint = tmp_path / "evil.pth"
    with checkpoint.open("wb") as handle:
        pickle.dump({"conv_stem.weight": payload}, handle)
    with pytest.raises(BackboneError) as info:
        get_backbone("timm/test_efficientnet").load(weights=str(checkpoint))
    assert str(info.value).startswith("timm/test_efficientnet: could not")
    assert not marker.exists()
    pickle.loads(pickle.dumps(payload))  # the payload is real: plain unpickling runs it
    assert marker.exists()


SPACE = """
backbones: [{id: timm/test_efficientnet, pretrained: false}]
epochs: 6
pruner: none
params: {image_size: 32, batch_size: 16}
"""


def test_ctrl_c_marks_the_running_trial_and_the_study_resumes(fashion_mnist, tmp_path):
    (tmp_path / "space.yaml").write_text(SPACE)

    def command(trials):
        return [sys.executable, "-c", "from autotransfer.cli import main; main()", "search",
                str(fashion_mnist), "--space", "space.yaml", "--trials", str(trials),
                "--storage", "sqlite:///s.db", "--study", "ctrl-c", "--out", "out"]

    first_run = subprocess.run(command(1), cwd=tmp_path, capture_output=True, text=True)
    assert first_run.returncode == 0, first_run.stderr
    process = subprocess.Popen(command(2), cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    for line in process.stdout:  # interrupt trial #1 in the middle of its epochs
        if "epoch 1/6" in line:
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted; the study is saved and resumes with the same command" in err
    study = optuna.load_study(study_name="ctrl-c", storage=f"sqlite:///{tmp_path}/s.db")
    first, second = study.trials
    assert first.state.name == "COMPLETE" and second.state.name == "FAIL"
    assert second.user_attrs["fail_reason"] == "interrupted by Ctrl-C (SIGINT)"
    assert len(second.intermediate_values) < 6  # stopped in the middle
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert best["source"]["trial"] == 0  # results were written at the interruption
    rerun = subprocess.run(command(2), cwd=tmp_path, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    states = [t.state.name for t in optuna.load_study(
        study_name="ctrl-c", storage=f"sqlite:///{tmp_path}/s.db").trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE"]  # the interrupted one does not count


def test_remote_code_in_a_checkpoint_does_not_run_without_the_flag(tmp_path):
    import json

    marker = tmp_path / "ran"
    model_dir = tmp_path / "remote-model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({
        "model_type": "evil", "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}}))
    (model_dir / "configuration_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('x')\n"
        "from transformers import PretrainedConfig\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil'\n")
    entry = get_backbone(f"hf-text/{model_dir}")
    assert "trust_remote_code" in entry.options
    with pytest.raises(BackboneError, match="contains custom code which must be executed"):
        entry.load()
    assert not marker.exists()
    with pytest.raises(BackboneError):  # the flag lets it run (it then lacks a tokenizer)
        entry.load(trust_remote_code=True)
    assert marker.exists()


def test_trust_remote_code_flag_reaches_only_loaders_that_take_it():
    from autotransfer.space.schema import BackboneSpec
    from autotransfer.study.objective import TrialContext

    hf = get_backbone("hf-text/bert-base-uncased")
    timm_entry = get_backbone("timm/test_vit")
    spec = BackboneSpec(id="x/y")
    off = TrialContext(space=None, data=None, device=None)
    on = TrialContext(space=None, data=None, device=None, trust_remote_code=True)
    assert off.load_options(spec, hf) == {}
    assert on.load_options(spec, hf) == {"trust_remote_code": True}
    assert on.load_options(spec, timm_entry) == {}
