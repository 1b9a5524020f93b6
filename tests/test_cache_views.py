"""The activation cache under augmentation: every flip view cached and drawn exactly as live
augmentation draws it; a bank of K random crops, shared by matching trials, drawn per epoch."""

import optuna
import pytest
import torch

from autotransfer.cli import main
from autotransfer.contract.collect import get_backbone
from autotransfer.data import ImagePreprocess, augment, load_data
from autotransfer.finetune.cache import ActivationCache
from autotransfer.finetune.cache_views import BANK_SEED, ViewPlan, plan_views
from test_cache import CPU, _fit, _params, _tiny


@pytest.fixture(scope="module")
def data(fashion_mnist):
    return load_data(fashion_mnist, seed=0)


def test_flip_views_are_drawn_with_the_generator_calls_of_live_flips():
    pre = ImagePreprocess(8, (0.5,) * 3, (0.5,) * 3, augment="flip")
    batch = torch.randint(0, 255, (16, 3, 8, 8), dtype=torch.uint8)
    live = augment(batch, "flip", torch.Generator().manual_seed(3))
    views = pre.draw_views(16, torch.Generator().manual_seed(3))
    assert 0 < int(views.sum()) < 16
    drawn = torch.stack([pre.to_view(batch[i:i + 1], int(v), device=CPU)[0]
                         for i, v in enumerate(views)])
    torch.testing.assert_close(drawn, pre.normalize(live))


@pytest.mark.parametrize(("family", "fraction"), [("mobilenetv3", 1.0), ("tinycnn", 0.5)])
def test_flip_with_the_cache_trains_exactly_as_live_flips(data, family, fraction):
    params = _params(freeze_fraction=fraction, augment="flip")
    plain, uncached = _fit(_tiny(family), data, params, cache=False)
    cache = ActivationCache()
    trainer, cached = _fit(_tiny(family), data, params, cache=cache, epochs=2)
    assert plain.cache_status == "off" and trainer.cache_status == "miss (flip: 2 views)"
    held = trainer._activations["train"]
    assert held.shape[:2] == (2, len(data.train)) and not torch.equal(held[0], held[1])
    for a, b in zip(uncached.history, cached.history, strict=True):
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-4)
        assert b.score == pytest.approx(a.score, abs=1e-6)
    again, _ = _fit(_tiny(family), data, {**params, "lr": 3e-3}, cache=cache)
    assert again.cache_status == "hit (flip: 2 views)" and cache.stats.computed == 3


def test_crop_flip_bank_is_shared_drawn_per_epoch_and_keyed_by_its_size(data):
    load = get_backbone("packaged/mobilenetv2_100").load
    cache = ActivationCache(views=3)
    probe = _params(freeze_fraction=1.0, augment="crop_flip", lr=1e-2)
    first, result = _fit(load(), data, probe, cache, epochs=3)
    assert first.cache_status == "miss (crop_flip: bank of 3 views)"
    bank = first._activations["train"]
    assert bank.shape[:2] == (3, len(data.train))
    # view k is the live transform with seed BANK_SEED + k (rows 0-3, first batch)
    images, _ = first.preprocess.encode(data, "train")
    live = first.preprocess.to_input(images[:32], device=CPU, train=True,
                                     generator=torch.Generator().manual_seed(BANK_SEED + 2))
    with torch.no_grad():
        first.model.body.eval()
        torch.testing.assert_close(first.model.body(live)[:4], bank[2, :4], atol=1e-4,
                                   rtol=1e-4)
    assert not torch.equal(bank[0], bank[1])
    computed = cache.stats.computed  # train bank, val, test
    other, _ = _fit(load(), data, {**probe, "lr": 3e-3}, cache, epochs=3)
    assert other.cache_status == "hit (crop_flip: bank of 3 views)"
    assert cache.stats.computed == computed
    # fewer epochs than K: a smaller bank (another entry); flip shares val and test
    short, _ = _fit(load(), data, probe, cache, epochs=1)
    assert short.cache_status == "miss (crop_flip: bank of 1 view)"
    flip, _ = _fit(load(), data, {**probe, "augment": "flip"}, cache, epochs=1)
    assert flip.cache_status == "miss (flip: 2 views)"
    assert cache.stats.computed == computed + 2  # the two train entries only
    assert result.score > 0.3  # it learned from the bank (10 classes)


def test_no_bank_trains_live_and_the_plan_follows_the_preprocess():
    pre = ImagePreprocess(8, (0.5,) * 3, (0.5,) * 3)
    assert plan_views(pre, 8, 10) is None
    assert plan_views(pre.configure({"augment": "flip"}), 0, 10) == ViewPlan("flip", 2, False)
    assert plan_views(pre.configure({"augment": "crop_flip"}), 8, 10) == ViewPlan(
        "crop_flip", 8, True)
    assert plan_views(pre.configure({"augment": "crop_flip"}), 0, 10) == (
        "training input is random (augment=crop_flip) and cache_views is 0")

    class ZooAugment:  # a zoo's own random transform, declared, with no finite views
        random_in_training = True

    assert plan_views(ZooAugment(), 4, 10) == ViewPlan("random", 4, True)


def test_no_bank_setting_trains_live(data):
    trainer, _ = _fit(_tiny("mobilenetv3"), data,
                      _params(freeze_fraction=1.0, augment="crop_flip"),
                      ActivationCache(views=0), epochs=1)
    assert trainer.cache_status == (
        "unused: training input is random (augment=crop_flip) and cache_views is 0")
    assert trainer.prefix is None


SPACE = """
backbones: [packaged/mobilenetv2_100]
epochs: 2
pruner: none
params:
  freeze_fraction: 1.0
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  augment: flip
  image_size: 32
"""


def test_cli_flip_trials_say_hit_or_miss_and_match_no_cache(fashion_mnist, tmp_path,
                                                            monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(SPACE)
    storage = "sqlite:///study.db"
    runs = {}
    for name, flags in (("cached", ["--cache-views", "2"]), ("plain", ["--no-cache"])):
        main(["search", str(fashion_mnist), "--space", "space.yaml", "--trials", "2",
              "--storage", storage, "--study", name, "--out", name, *flags])
        runs[name] = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert [t.user_attrs["activation_cache"] for t in runs["cached"]] == [
        "miss (flip: 2 views)", "hit (flip: 2 views)"]
    assert [t.user_attrs["activation_cache"] for t in runs["plain"]] == ["off", "off"]
    for cached, plain in zip(runs["cached"], runs["plain"], strict=True):
        assert cached.value == pytest.approx(plain.value, abs=1e-6)
