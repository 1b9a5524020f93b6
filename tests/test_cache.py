"""The frozen-prefix activation cache: same scores as without it, reuse across trials, a miss
whenever anything the frozen output depends on changes, bounds, and the CLI switch."""

from pathlib import Path

import optuna
import pytest
import timm
import torch

from autotransfer.cli import main
from autotransfer.contract.backbone import BackboneEntry
from autotransfer.contract.collect import get_backbone
from autotransfer.contract.stages import Stage, sequential_split
from autotransfer.data import ImagePreprocess, load_data
from autotransfer.finetune.cache import ActivationCache, cache_key, nbytes
from autotransfer.finetune.trainer import Trainer
from autotransfer.space.hyperparameters import defaults
from autotransfer.testing import ConformanceError, check_backbone, tiny_cnn_backbone
from autotransfer_timm import backbone_from_timm
from conftest import cli_error

DEFAULTS = defaults()
CPU = torch.device("cpu")
TINY_TIMM = {  # one small model per family that the timm zoo can cut into a prefix and a rest
    "efficientnet": ("tf_efficientnet_lite0", {}),
    "mobilenetv3": ("mobilenetv3_small_050", {}),
    "resnet": ("resnet10t", {}),
    "vit": ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8, "depth": 3}),
}


def _tiny(family: str):
    if family == "tinycnn":  # a third-party zoo's split, with dropout in the trained blocks
        return _tiny_cnn_with_split()
    name, kwargs = TINY_TIMM[family]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    size = kwargs.get("img_size")  # a ViT's position table fixes its input size
    preprocess = ImagePreprocess(size, (0.5,) * 3, (0.5,) * 3, fixed_size=True) if size else None
    return backbone_from_timm(model, preprocess)


def _params(**changes):
    return {**DEFAULTS, "augment": "none", "image_size": 32, "lr": 1e-3, "batch_size": 32,
            **changes}


def _fit(backbone, data, params, cache, epochs=2):
    trainer = Trainer(backbone, data, params, device=CPU, seed=0, cache=cache)
    return trainer, trainer.fit(epochs)


@pytest.fixture(scope="module")
def data(fashion_mnist):
    return load_data(fashion_mnist, seed=0)


@pytest.mark.parametrize("family", sorted(TINY_TIMM))
def test_timm_split_reproduces_the_forward_at_every_depth(family):
    backbone = _tiny(family)
    model = backbone.model.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        for k in range(1, len(backbone.groups) + 1):
            found = backbone.split(k)
            assert found is not None, k
            prefix, rest = found
            frozen = {id(p) for g in backbone.groups[:k] for n, p in model.named_parameters()
                      if n in set(g)}
            assert all(id(p) in frozen for p in prefix.parameters()), k
            torch.testing.assert_close(rest(prefix(x)), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("family", "fraction"), [("vit", 0.5), ("mobilenetv3", 1.0),
                                                  ("mobilenetv3", 0.5), ("tinycnn", 0.5)])
def test_cached_and_uncached_training_give_the_same_scores(data, family, fraction):
    params = _params(freeze_fraction=fraction)
    plain, uncached = _fit(_tiny(family), data, params, cache=False)
    cached_trainer, cached = _fit(_tiny(family), data, params, cache=True)
    assert plain.cache_status == "off" and cached_trainer.cache_status == "miss"
    for a, b in zip(uncached.history, cached.history, strict=True):
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-4)
        assert b.score == pytest.approx(a.score, abs=1e-6)
    assert cached.test == pytest.approx(uncached.test, abs=1e-6)


def test_a_later_trial_reuses_the_features_and_a_changed_input_recomputes(data, fashion_mnist):
    cache = ActivationCache()
    load = get_backbone("packaged/mobilenetv2_100").load
    probe = _params(freeze_fraction=1.0)
    first, result = _fit(load(), data, probe, cache)
    assert first.cache_status == "miss" and cache.stats.computed == 3  # train, val, test
    # another trial: other training settings, same frozen part -> every split is a hit
    again, other = _fit(load(), data, {**probe, "lr": 3e-3, "batch_size": 16,
                                       "label_smoothing": 0.0}, cache)
    assert again.cache_status == "hit" and cache.stats.computed == 3
    assert other.history[0].train_loss != result.history[0].train_loss  # it did train anew
    # a half-frozen trial caches its own (deeper) activations, and matches the uncached run
    half = _params(freeze_fraction=0.5)
    half_trainer, half_cached = _fit(load(), data, half, cache)
    assert half_trainer.cache_status == "miss" and cache.stats.computed == 6
    _, half_plain = _fit(load(), data, half, cache=False)
    assert half_cached.score == pytest.approx(half_plain.score, abs=1e-6)
    # anything the frozen output depends on is part of the key: each of these recomputes
    changed = [  # (what changes, splits recomputed)
        (load(), data, {**probe, "image_size": 48}, 3),                    # preprocessing
        (load(), load_data(fashion_mnist, seed=1), probe, 2),              # other train/val
        (load(pretrained=False), data, probe, 3),                          # other weights
    ]
    for backbone, other_data, params, recomputed in changed:
        before = cache.stats.computed
        trainer, _ = _fit(backbone, other_data, params, cache, epochs=1)
        assert trainer.cache_status == "miss"
        assert cache.stats.computed == before + recomputed


def test_nothing_frozen_is_not_cached(data):
    nothing, _ = _fit(_tiny("mobilenetv3"), data, _params(freeze_fraction=0.0),
                      ActivationCache(), epochs=1)
    assert nothing.cache_status == "unused: nothing frozen"


def test_the_key_ignores_training_settings_only():
    args = ("d" * 32, 3, 9, "i" * 32)
    base = cache_key(*args, _params(), CPU, "fp32")
    assert cache_key(*args, _params(lr=0.1, batch_size=8, dropout=0.3), CPU, "fp32") == base
    assert cache_key(*args, _params(pooling="cls"), CPU, "fp32") != base
    assert cache_key(*args, _params(max_length=64), CPU, "fp32") != base
    assert cache_key(*args, _params(), CPU, "bf16") != base
    assert cache_key(*args, _params(augment="flip"), CPU, "fp32") == base  # eval: no views
    assert cache_key(*args, _params(), CPU, "fp32", "flip:all2:1") != base
    assert cache_key("e" * 32, *args[1:], _params(), CPU, "fp32") != base


def test_memory_bound_evicts_least_recently_used_and_disk_tier_is_bounded(tmp_path):
    entry = torch.zeros(256, 256)  # 256 KiB
    cache = ActivationCache(max_bytes=3 * nbytes(entry))
    for key in "abc":
        assert cache.put(key, entry.clone(), CPU)
    cache.get("a", CPU)  # a is now the most recently used
    cache.put("d", entry.clone(), CPU)
    assert cache.get("b", CPU) is None and cache.get("a", CPU) is not None
    assert cache.bytes_held <= 3 * nbytes(entry) and cache.stats.evicted == 1
    assert not cache.put("big", torch.zeros(4 * 256, 256), CPU)  # serves its own trial only

    disk = ActivationCache(max_bytes=0, directory=tmp_path, max_disk_bytes=int(2.5 * 2**18))
    for key in "xyz":
        disk.put(key, {"h": entry + ord(key)}, CPU)
    assert len(disk) == 0 and len(list(tmp_path.glob("*.pt"))) == 2  # oldest file deleted
    other_process = ActivationCache(max_bytes=0, directory=tmp_path)
    assert other_process.get("x", CPU) is None
    assert torch.equal(other_process.get("z", CPU)["h"], entry + ord("z"))
    assert other_process.stats.disk_hits == 1


SPACE = """
backbones: [packaged/mobilenetv2_100]
epochs: 1
pruner: none
params:
  freeze_fraction: 1.0
  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}
  augment: none
  image_size: 32
"""


def test_cli_trials_reuse_features_and_no_cache_gives_the_same_scores(fashion_mnist, tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(SPACE)
    storage = "sqlite:///study.db"
    runs = {}
    for name, flags in (("cached", []), ("plain", ["--no-cache"])):
        main(["search", str(fashion_mnist), "--space", "space.yaml", "--trials", "2",
              "--storage", storage, "--study", name, "--out", name, *flags])
        runs[name] = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert [t.user_attrs["activation_cache"] for t in runs["cached"]] == ["miss", "hit"]
    assert [t.user_attrs["activation_cache"] for t in runs["plain"]] == ["off", "off"]
    for cached, plain in zip(runs["cached"], runs["plain"], strict=True):
        assert cached.params == plain.params
        assert cached.value == pytest.approx(plain.value, abs=1e-6)


def _tiny_cnn_with_split(broken: bool = False):
    backbone = tiny_cnn_backbone()
    model = backbone.model
    stages = [model.stem]
    for block in model.blocks:
        residual = (lambda b: (lambda x: b(x)) if broken else (lambda x: x + b(x)))(block)
        stages.append(Stage(residual, {"block": block}))
    stages.append(model.norm)
    backbone.split = sequential_split(model, backbone.groups, stages, lambda x: x.mean((2, 3)))
    return backbone


def test_conformance_checks_a_zoo_split():
    # a third-party zoo's split through sequential_split: conforms, and trains with the cache
    assert check_backbone(BackboneEntry("fake/split-cnn", "image",
                                        loader=lambda pretrained=True: _tiny_cnn_with_split()))
    with pytest.raises(ConformanceError, match=r"split\(1\): rest\(prefix\(x\)\) differs"):
        check_backbone(BackboneEntry("fake/broken-split", "image",
                                     loader=lambda pretrained=True: _tiny_cnn_with_split(True)))


def test_text_linear_probe_cached_matches_uncached_and_pooling_is_part_of_the_key(
        rotten_tomatoes):
    # batches are cut to their longest text, so the cached features saw other padding than
    # the training batches: equal within float tolerance
    import transformers

    from autotransfer_hf_text import backbone_from_hf_text
    from autotransfer_packaged import PACKAGED_HF, packaged_files

    folder = packaged_files(PACKAGED_HF["all-MiniLM-L6-v2"])[0].parent
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=37, vocab_size=tokenizer.vocab_size)

    def tiny_bert():
        torch.manual_seed(0)
        model = transformers.AutoModel.from_config(config)
        return backbone_from_hf_text(model, tokenizer, name="tiny-bert", label="tiny-bert")

    text = load_data(rotten_tomatoes, seed=0)
    params = _params(freeze_fraction=1.0, max_length=32, lr=1e-2)
    cache = ActivationCache()
    _, plain = _fit(tiny_bert(), text, params, cache=False)
    trainer, cached = _fit(tiny_bert(), text, params, cache)
    assert trainer.cache_status == "miss"
    for a, b in zip(plain.history, cached.history, strict=True):
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-4)
        assert b.score == pytest.approx(a.score, abs=1e-6)
    cls, _ = _fit(tiny_bert(), text, {**params, "pooling": "cls"}, cache, epochs=1)
    assert cls.cache_status == "miss" and cache.stats.computed == 4  # train+val, twice


def test_a_bad_cache_size_is_a_one_line_error(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text(SPACE)
    err = cli_error(capsys, "search", str(tmp_path), "--space", "space.yaml", "--trials", "1",
                    "--cache-memory", "lots")
    assert "--cache-memory must be a size such as 512M or 2G, got 'lots'" in err


def test_a_full_cache_disk_keeps_entries_in_memory_and_says_so_once(tmp_path, monkeypatch):
    """A disk filling up while torch saves an entry ("unexpected pos", a RuntimeError) and a
    disk with no room before it: one warning naming the folder and the way out, the partial file
    removed, the entries served from memory."""
    import collections
    import warnings

    import autotransfer.finetune.cache as cache_module

    def short_write(value, path):
        Path(path).write_bytes(b"PK\x03\x04 half")  # what a full disk leaves
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1024 vs 854")

    monkeypatch.setattr(cache_module.torch, "save", short_write)
    cache, cpu = ActivationCache(max_bytes=2**20, directory=tmp_path / "cache"), torch.device("cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cache.put("a", torch.ones(4, 8), cpu)
        usage = collections.namedtuple("usage", "total used free")
        monkeypatch.setattr(cache_module.shutil, "disk_usage", lambda p: usage(10, 10, 0))
        assert cache.put("b", torch.zeros(4, 8), cpu)
    lines = [str(w.message) for w in caught if issubclass(w.category, cache_module.CacheWarning)]
    assert len(lines) == 1, lines
    assert str(tmp_path / "cache") in lines[0] and "no space left" in lines[0]
    assert "--cache-dir" in lines[0] and "unexpected pos" not in lines[0]
    assert list((tmp_path / "cache").iterdir()) == []  # no partial entry to read later
    assert torch.equal(cache.get("a", cpu), torch.ones(4, 8))
