import math

import pytest
import torch

from autotransfer.contract.collect import get_backbone
from autotransfer.data import load_data
from autotransfer.finetune.device import resolve_device
from autotransfer.finetune.metrics import classification_scores
from autotransfer.finetune.optim import warmup_cosine
from autotransfer.finetune.trainer import Trainer
from autotransfer.space.hyperparameters import defaults

DEFAULTS = defaults()


def test_warmup_then_cosine_to_zero():
    factor = warmup_cosine(total_steps=100, warmup_steps=10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5)
    assert factor(100) == pytest.approx(0.0, abs=1e-12)
    no_warmup = warmup_cosine(total_steps=10, warmup_steps=0)
    assert no_warmup(0) == pytest.approx(1.0)


def test_accuracy_and_macro_f1_match_hand_computation():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 0])
    accuracy, macro_f1 = classification_scores(preds, labels, 3)
    f1 = [2 * 1 / (2 + 2), 2 * 2 / (2 + 3), 2 * 1 / (2 + 1)]
    assert accuracy == pytest.approx(4 / 6)
    assert macro_f1 == pytest.approx(sum(f1) / 3)


def test_device_validation_names_the_device():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' asked for, but no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")


def test_half_frozen_fine_tune_learns_and_leaves_frozen_weights_untouched(fashion_mnist):
    data = load_data(fashion_mnist, seed=0)
    backbone = get_backbone("packaged/mobilenetv2_100").load()
    params = {**DEFAULTS, "freeze_fraction": 0.5, "lr": 1e-3, "image_size": 64,
              "layer_decay": 0.8}
    trainer = Trainer(backbone, data, params, device=torch.device("cpu"), seed=0)
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
              if n in trainer.frozen}
    bn_before = trainer.model.body.bn1.running_mean.clone()
    trained = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
               if n not in trainer.frozen}
    seen = []
    result = trainer.fit(2, on_epoch=seen.append)
    assert [r.epoch for r in seen] == [1, 2]
    assert result.n_frozen_groups == math.floor(0.5 * result.n_groups)
    for name, before in frozen.items():
        assert torch.equal(dict(trainer.model.named_parameters())[name], before), name
    assert torch.equal(trainer.model.body.bn1.running_mean, bn_before)
    changed = [n for n, p in trainer.model.named_parameters()
               if n in trained and not torch.equal(p, trained[n])]
    assert "head.1.weight" in changed and len(changed) > 10
    assert result.history[-1].accuracy > 0.4  # 10 classes: chance is 0.1
    assert result.test is not None and 0.0 <= result.test["accuracy"] <= 1.0


def test_nan_loss_stops_the_trial_with_a_reason(fashion_mnist):
    data = load_data(fashion_mnist, seed=0)
    backbone = get_backbone("timm/test_efficientnet").load(pretrained=False)
    params = {**DEFAULTS, "lr": 1e30, "image_size": 32, "warmup_fraction": 0.0}
    trainer = Trainer(backbone, data, params, device=torch.device("cpu"), seed=0)
    with pytest.raises(FloatingPointError, match="loss is"):
        trainer.fit(3)


def test_batch_size_one_trains_with_batch_norm_statistics_fixed(class_folders):
    """MobileNetV2 at 32 px ends in 1x1 maps: a batch of one sample gives BatchNorm one value
    per channel, which PyTorch refuses in training mode. With ``batch_size: 1`` every
    BatchNorm layer normalises with its pretrained running statistics (left unchanged) while
    the weights train, and the trial ends with a score."""
    data = load_data(class_folders, seed=0)
    backbone = get_backbone("packaged/mobilenetv2_100").load()
    params = {**DEFAULTS, "freeze_fraction": 0.5, "lr": 1e-3, "image_size": 32,
              "batch_size": 1}
    trainer = Trainer(backbone, data, params, device=torch.device("cpu"), seed=0)
    running = trainer.model.body.bn2.running_mean.clone()
    weights = trainer.model.body.conv_head.weight.detach().clone()
    result = trainer.fit(1)
    assert math.isfinite(result.score)
    assert torch.equal(trainer.model.body.bn2.running_mean, running)  # statistics fixed
    assert not torch.equal(trainer.model.body.conv_head.weight, weights)  # weights trained
