"""Tuning methods (``method``): the registry, the conditional space, LoRA's merge for export."""

import optuna
import pytest
import torch

from autotransfer.contract.collect import get_backbone
from autotransfer.data import load_data
from autotransfer.errors import SpaceError
from autotransfer.finetune.methods import (
    get_method,
    register_method,
    selective,
    unregister_method,
)
from autotransfer.finetune.trainer import Trainer
from autotransfer.space.hyperparameters import defaults
from autotransfer.space.schema import parse_space

CPU = torch.device("cpu")


def _space(params):
    return parse_space({"backbones": ["timm/test_vit"], "epochs": 1, "params": params})


def test_lora_hyperparameters_are_sampled_only_in_lora_trials():
    space = _space({"method": {"type": "categorical", "choices": ["finetune", "lora"]},
                    "lora_rank": {"type": "int", "low": 2, "high": 8}})
    study = optuna.create_study()
    seen = {}
    for method in ("finetune", "lora"):
        study.enqueue_trial({"method": method})
        trial = study.ask()
        _, params = space.suggest(trial)
        seen[method] = (set(trial.params), params)
        study.tell(trial, 0.5)
    assert seen["finetune"][0] == {"backbone", "method"}
    assert "lora_rank" not in seen["finetune"][1] and seen["finetune"][1]["method"] == "finetune"
    assert seen["lora"][0] == {"backbone", "method", "lora_rank"}
    assert 2 <= seen["lora"][1]["lora_rank"] <= 8 and "lora_alpha" in seen["lora"][1]
    assert _space({"method": "lora"}).resolve({})["lora_rank"] == 8  # a fixed scalar


@pytest.mark.parametrize("params, message", [
    ({"method": "lorra"}, r"params\.method: unknown tuning method 'lorra' \(did you mean 'lora'"),
    ({"lora_rank": 4}, r"params\.lora_rank: only the lora method reads it.*allows finetune"),
    ({"method": {"type": "categorical", "choices": ["bitfit", "layernorm"]}, "lora_dropout": 0.1},
     r"params\.lora_dropout: .*allows bitfit, layernorm"),
])
def test_bad_method_input_is_one_line_naming_the_key(params, message):
    with pytest.raises(SpaceError, match=message) as caught:
        _space(params)
    assert "\n" not in str(caught.value)
    with pytest.raises(SpaceError, match="did you mean 'bitfit'"):
        get_method("bitfitt")


@pytest.fixture(scope="module")
def data(fashion_mnist):
    return load_data(fashion_mnist, seed=0)


def _trainer(data, method, **extra):
    backbone = get_backbone("timm/test_vit").load(pretrained=False)
    params = {**defaults(), "method": method, "image_size": 32, "lr": 1e-3, **extra}
    return Trainer(backbone, data, params, device=CPU, seed=0, cache=False)


def _trainable(trainer):
    return {n for n, p in trainer.model.named_parameters() if p.requires_grad}


def test_each_method_trains_what_it_says_and_the_frozen_prefix_nothing(data):
    full = _trainable(_trainer(data, "finetune"))
    bitfit = _trainable(_trainer(data, "bitfit"))
    norms = _trainable(_trainer(data, "layernorm"))
    head = {"head.1.weight", "head.1.bias"}
    assert head <= bitfit and all(n.endswith("bias") for n in bitfit - head)
    assert head <= norms and all("norm" in n for n in norms - head) and norms - head
    half = _trainer(data, "lora", freeze_fraction=0.5, lora_rank=2)
    lora = _trainable(half)
    assert head <= lora and all("lora_" in n for n in lora - head)
    frozen_groups = [g for g in half.groups if g[0] in half.frozen]
    assert frozen_groups and not any("lora_" in n for g in frozen_groups for n in g)
    assert lora - head <= {n for g in half.groups for n in g}  # each adapter in a group
    assert lora - head and len(full) > len(lora)
    # adapters take the lr of their layer group (layer-wise decay applies)
    groups = {g["name"]: g for g in half.optimizer.param_groups}
    assert groups["head.decay"]["lr"] == pytest.approx(1e-2)
    assert {k.split(".")[0] for k in groups} - {"head"}, "the adapters sit in body groups"


@pytest.mark.parametrize("method, extra", [("lora", {"lora_rank": 4}), ("ia3", {})])
def test_an_adapter_trial_trains_adapters_only_and_exports_a_plain_timm_model(
        data, tmp_path, method, extra):
    import safetensors.torch

    from autotransfer.model.export import export_model, load_model

    trainer = _trainer(data, method, lr=3e-3, **extra)
    adapters = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
                if f".{method}_" in n}
    assert adapters and all(p.requires_grad for n, p in trainer.model.named_parameters()
                            if n in adapters)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
              if "base_layer" in n}
    result = trainer.fit(1)
    assert result.n_trainable == sum(p.numel() for p in trainer.model.parameters()
                                     if p.requires_grad)
    for name, tensor in before.items():
        assert torch.equal(dict(trainer.model.named_parameters())[name], tensor), name
    assert any(not torch.equal(p, adapters[n]) for n, p in trainer.model.named_parameters()
               if n in adapters), "the adapters trained"
    x = trainer.preprocess.to_input(trainer.preprocess.encode(data, "val")[0][:8], device=CPU)
    trainer.model.eval()
    with torch.inference_mode():
        expected = trainer.model(x)
    out = export_model(trainer.model, trainer.preprocess, tmp_path / "m", classes=data.classes,
                       modality="image", backbone="timm/test_vit", params=trainer.params,
                       metrics={})
    keys = safetensors.torch.load_file(out / "model.safetensors")
    assert not any(method in k or "base_layer" in k for k in keys)
    loaded = load_model(out)
    assert not any(method in n for n, _ in loaded.model.named_modules())
    with torch.inference_mode():
        got = loaded.model(x)
    assert (got - expected).abs().max().item() < 1e-5


@pytest.fixture
def biasnorm():
    # through the public API only (register_method / unregister_method), as a caller would
    try:
        yield register_method(selective("biasnorm", "biases and norms",
                                        lambda name, param, owner: name.endswith("bias")
                                        or "norm" in name))
    finally:
        unregister_method("biasnorm")


def test_a_method_registered_from_outside_the_core_runs_a_trial(data, biasnorm):
    space = _space({"method": "biasnorm"})
    trainer = _trainer(data, **{"method": space.resolve({})["method"]})
    trained = _trainable(trainer) - {"head.1.weight", "head.1.bias"}
    assert trained and all(n.endswith("bias") or "norm" in n for n in trained)
    assert trainer.fit(1).n_trainable < sum(p.numel() for p in trainer.model.parameters()) / 2


@pytest.mark.parametrize("method, extra", [("lora", {"lora_rank": 4}), ("ia3", {})])
def test_an_adapter_on_a_tiny_bert_exports_a_plain_transformers_model(
        rotten_tomatoes, tmp_path, method, extra):
    import transformers

    from autotransfer.model.export import export_model, load_model
    from autotransfer_packaged import PACKAGED_HF, packaged_files

    minilm = packaged_files(PACKAGED_HF["all-MiniLM-L6-v2"])[0].parent
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32,
                                     num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64)
    transformers.BertModel(config).save_pretrained(tmp_path / "bert")
    tokenizer.save_pretrained(tmp_path / "bert")
    data = load_data(rotten_tomatoes, seed=0)
    backbone = get_backbone(f"hf-text/{tmp_path / 'bert'}").load()
    params = {**defaults(), "method": method, "lr": 3e-3, "max_length": 32, **extra}
    trainer = Trainer(backbone, data, params, device=CPU, seed=0, cache=False)
    adapted = {n.split(f".{method}_")[0] for n, _ in trainer.model.named_parameters()
               if f".{method}_" in n}
    if method == "lora":  # every linear layer
        assert any("attention" in n for n in adapted) and any("intermediate" in n
                                                              for n in adapted)
    else:  # peft's BERT targets: keys, values and the output projections
        assert {n.rsplit(".", 2)[-2] + "." + n.rsplit(".", 1)[-1] for n in adapted} == {
            "self.key", "self.value", "output.dense"}
    trainer.fit(1)
    x = trainer.preprocess.to_input({k: v[:8] for k, v in trainer.preprocess.encode(
        data, "val")[0].items()}, device=CPU)
    trainer.model.eval()
    with torch.inference_mode():
        expected = trainer.model(x)
    out = export_model(trainer.model, trainer.preprocess, tmp_path / "m", classes=data.classes,
                       modality="text", backbone="hf-text/bert", params=trainer.params,
                       metrics={})
    assert not list(out.glob("adapter*"))
    loaded = load_model(out)
    assert not any(method in n for n, _ in loaded.model.named_parameters())
    with torch.inference_mode():
        got = loaded.model(x)
    assert (got - expected).abs().max().item() < 1e-5


def _declaring(targets):
    from autotransfer.contract.backbone import BackboneEntry
    from autotransfer.testing import tiny_cnn_backbone

    def loader(pretrained=True):
        backbone = tiny_cnn_backbone()
        backbone.lora_targets = targets
        return backbone

    return BackboneEntry("myzoo/net", "image", loader)


def test_the_conformance_kit_checks_a_zoos_declared_lora_targets(data):
    from autotransfer.testing import ConformanceError, check_backbone

    entry = _declaring((r"blocks\.\d+\.0",))
    check_backbone(entry)
    backbone = entry.load()
    params = {**defaults(), "method": "lora", "image_size": 32, "freeze_fraction": 0.5}
    trainer = Trainer(backbone, data, params, device=CPU, seed=0, cache=False)
    adapted = {n.split(".lora_")[0] for n in _trainable(trainer) if "lora_" in n}
    assert adapted == {"body.blocks.1.0", "body.blocks.2.0"}  # stem and block 0 are frozen
    with pytest.raises(ConformanceError, match=r"myzoo/net: lora_targets: .*match no module"):
        check_backbone(_declaring(("attn.qkv",)))
    with pytest.raises(ConformanceError, match=r"'blocks.0.1' is a BatchNorm2d"):
        check_backbone(_declaring((r"blocks\.0\.1",)))
    from autotransfer.errors import BackboneError
    with pytest.raises(BackboneError, match=r"^myzoo/net: lora_targets .* match no module"):
        Trainer(_declaring(("nope",)).load(), data, params, device=CPU, label="myzoo/net")


def test_a_lora_reference_joins_the_probe_and_the_default_when_lora_is_searched():
    from autotransfer.study.references.trials import reference_params

    space = _space({"method": {"type": "categorical", "choices": ["finetune", "lora"]},
                    "lora_rank": {"type": "int", "low": 2, "high": 16},
                    "freeze_fraction": {"type": "float", "low": 0.0, "high": 1.0}})
    planned = dict(reference_params(space))
    assert set(planned) == {"linear_probe", "default", "lora"}
    assert planned["lora"]["method"] == "lora" and planned["lora"]["lora_rank"] == 8
    assert planned["default"]["method"] == "finetune" and "lora_rank" not in planned["default"]
    assert "lora" not in dict(reference_params(_space({"method": "bitfit"})))


def test_a_search_records_the_method_and_trainable_params_and_best_yaml_names_it(
        fashion_mnist, tmp_path):
    import csv

    import yaml

    import autotransfer

    space = parse_space({"backbones": [{"id": "timm/test_vit", "pretrained": False}],
                         "epochs": 1, "params": {
                             "image_size": 32, "lora_rank": {"type": "int", "low": 2, "high": 4},
                             "method": {"type": "categorical", "choices": ["finetune", "lora"]}}})
    autotransfer.search(fashion_mnist, space, trials=3, out=tmp_path / "out", device="cpu",
                        storage=f"sqlite:///{tmp_path / 's.db'}")
    with (tmp_path / "out" / "leaderboard.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    lora = [r for r in rows if r["reference"] == "lora"]
    assert lora and lora[0]["method"] == "lora"
    probe = next(r for r in rows if r["reference"] == "linear_probe")
    # a probe trains the head only: 64 features x 10 classes plus the biases
    assert probe["method"] == "finetune" and int(probe["trainable_params"]) == 64 * 10 + 10
    assert int(lora[0]["trainable_params"]) > int(probe["trainable_params"])
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert best["params"]["method"] in ("finetune", "lora")
    assert ("lora_rank" in best["params"]) == (best["params"]["method"] == "lora")
    # report.md's tables show the method and the trainable count like the leaderboards
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| method | freeze | trainable |" in report and "| method | trainable |" in report
    assert f"| lora | {int(lora[0]['trainable_params']):,} |" in report
    assert f"| finetune | {int(probe['trainable_params']):,} |" in report


@pytest.mark.parametrize("family", ["mobilenetv3", "vit"])
def test_the_cache_serves_the_frozen_prefix_of_a_partly_frozen_lora_trial(data, family):
    import timm

    from autotransfer.data import ImagePreprocess
    from autotransfer.finetune.cache import ActivationCache
    from autotransfer_timm import backbone_from_timm

    def tiny():
        torch.manual_seed(0)
        if family == "vit":
            model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0,
                                      img_size=32, patch_size=8, depth=3)
            return backbone_from_timm(model, ImagePreprocess(32, (0.5,) * 3, (0.5,) * 3,
                                                             fixed_size=True))
        return backbone_from_timm(timm.create_model("mobilenetv3_small_050", pretrained=False,
                                                    num_classes=0))

    params = {**defaults(), "augment": "none", "image_size": 32, "lr": 3e-3,
              "freeze_fraction": 0.5}
    lora = {**params, "method": "lora", "lora_rank": 4}
    cache = ActivationCache()
    # a finetune trial with the same frozen prefix fills the cache ...
    first = Trainer(tiny(), data, params, device=CPU, seed=0, cache=cache)
    first.fit(1)
    assert first.cache_status == "miss" and cache.stats.computed == 3  # train, val, test
    # ... and the LoRA trial takes its prefix features from there: nothing is recomputed
    cached = Trainer(tiny(), data, lora, device=CPU, seed=0, cache=cache)
    adapted = {n.split(".lora_")[0] for n in _trainable(cached) if "lora_" in n}
    frozen_layers = {n.rsplit(".", 1)[0] for n in cached.frozen}
    assert adapted and not adapted & frozen_layers  # the frozen prefix carries no adapter
    assert cached.prefix is not None and not any(
        "lora_" in n for n, _ in cached.prefix.prefix.named_parameters())
    result = cached.fit(2)
    assert cached.cache_status == "hit" and cache.stats.computed == 3
    plain = Trainer(tiny(), data, lora, device=CPU, seed=0, cache=False)
    expected = plain.fit(2)
    assert plain.cache_status == "off"
    for a, b in zip(expected.history, result.history, strict=True):
        assert b.train_loss == pytest.approx(a.train_loss, rel=1e-4)
        assert b.score == pytest.approx(a.score, abs=1e-6)
    assert result.test == pytest.approx(expected.test, abs=1e-6)
    assert result.n_trainable == expected.n_trainable


def test_a_cnns_lora_rank_respects_each_convolutions_width(data):
    import timm

    from autotransfer.finetune.methods.lora import CONV_RANK_DIVISOR
    from autotransfer_timm import backbone_from_timm

    torch.manual_seed(0)
    backbone = backbone_from_timm(timm.create_model("mobilenetv3_large_100", pretrained=False,
                                                    num_classes=0))
    params = {**defaults(), "method": "lora", "image_size": 32, "lora_rank": 8,
              "lora_alpha": 16.0}
    trainer = Trainer(backbone, data, params, device=CPU, seed=0, cache=False)
    layers = [m for m in trainer.model.modules() if hasattr(m, "lora_A")]
    assert layers
    ranks = set()
    for layer in layers:
        conv = layer.get_base_layer()
        narrow = min(conv.in_channels, conv.out_channels)
        assert layer.r["default"] == max(1, min(8, narrow // CONV_RANK_DIVISOR)), narrow
        assert layer.scaling["default"] == pytest.approx(16.0 / 8)  # alpha / r as requested
        ranks.add(layer.r["default"])
    assert 1 in ranks and max(ranks) > 2  # narrow layers capped at 1, wider ones less
    full = sum(p.numel() for n, p in trainer.model.named_parameters() if "lora_" not in n)
    assert trainer.fit(1).n_trainable < 0.05 * full


@pytest.mark.parametrize("method", ["lora", "ia3"])
def test_an_adapter_with_every_group_frozen_says_it_trains_the_head_alone(data, method):
    """freeze_fraction 1 leaves LoRA / IA3 no layer to adapt: the trial is a linear probe,
    and one warning says so instead of training as one silently."""
    from autotransfer.finetune.methods._peft import MethodWarning

    with pytest.warns(MethodWarning, match=f"{method} has nothing to adapt .freeze_fraction 1 "
                      "leaves.* trains the head alone, as a linear probe"):
        trainer = _trainer(data, method, freeze_fraction=1.0)
    assert _trainable(trainer) == {"head.1.weight", "head.1.bias"}


def test_an_unregistered_method_is_unknown_again_and_a_builtin_cannot_be_unregistered():
    register_method(selective("onlybias", "biases", lambda name, param, owner:
                              name.endswith("bias")))
    assert get_method("onlybias").name == "onlybias"
    unregister_method("onlybias")
    with pytest.raises(SpaceError, match="unknown tuning method 'onlybias'"):
        get_method("onlybias")
    with pytest.raises(SpaceError, match="method"):
        _space({"method": "onlybias"})
    with pytest.raises(ValueError, match="cannot remove a builtin method, got name='lora'"):
        unregister_method("lora")
    assert get_method("lora").name == "lora"
