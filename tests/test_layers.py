import pytest
import timm
import torch

from autotransfer.contract.groups import check_groups, group_names
from autotransfer.finetune.freezing import freeze, frozen_modules, n_frozen_groups, train_mode
from autotransfer.finetune.optim import param_groups
from autotransfer_timm import backbone_from_timm

MATCHER = {"stem": r"^stem", "blocks": [(r"^blocks\.(\d+)", None), (r"^norm", (99999,))]}


def test_groups_are_ordered_numerically_and_final_norm_joins_last_block():
    names = ["blocks.10.w", "stem.w", "blocks.2.w", "norm.w", "blocks.2.b", "fc.w"]
    assert group_names(names, MATCHER) == [
        ["stem.w"], ["blocks.2.w", "blocks.2.b"], ["blocks.10.w", "norm.w"]
    ]


def test_unmatched_names_are_left_to_the_head():
    assert group_names(["fc.w", "head.b"], MATCHER) == []


def test_callable_matcher_returns_ordinals_or_none_for_head():
    groups = group_names(["a.1", "a.0", "z"], lambda n: None if n == "z" else int(n[-1]))
    assert groups == [["a.0"], ["a.1"]]


def test_check_groups_rejects_overlap_and_unknown_names():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    assert check_groups(model, [["0.weight", "0.bias"]]) == ["1.weight", "1.bias"]
    with pytest.raises(ValueError, match="more than one"):
        check_groups(model, [["0.weight"], ["0.weight"]])
    with pytest.raises(ValueError, match="unknown"):
        check_groups(model, [["nope"]])


@pytest.mark.parametrize(
    ("fraction", "expected"), [(0.0, 0), (0.49, 2), (0.5, 3), (0.99, 5), (1.0, 6)]
)
def test_freeze_fraction_freezes_floor_of_fraction_times_groups(fraction, expected):
    assert n_frozen_groups(6, fraction) == expected


def test_freeze_fraction_out_of_range_is_an_error_that_shows_the_value():
    with pytest.raises(ValueError, match=r"freeze_fraction=1\.5"):
        n_frozen_groups(6, 1.5)


@pytest.mark.parametrize("name", ["test_efficientnet", "test_resnet", "test_vit", "test_convnext"])
def test_timm_groups_cover_every_parameter_once_input_first(name):
    backbone = backbone_from_timm(timm.create_model(name, num_classes=0))
    head = check_groups(backbone.model, backbone.groups)
    first = backbone.groups[0][0]
    assert first.startswith(("conv_stem", "conv1", "stem", "cls_token", "pos_embed", "patch"))
    grouped = {n for g in backbone.groups for n in g}
    assert grouped | set(head) == {n for n, _ in backbone.model.named_parameters()}
    out = backbone.model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, backbone.dim)


def _tiny_cnn():
    return backbone_from_timm(timm.create_model("test_efficientnet", num_classes=0))


def test_frozen_groups_leave_the_optimizer_and_keep_batchnorm_statistics():
    torch.manual_seed(0)
    backbone = _tiny_cnn()
    model = backbone.model
    frozen = freeze(model, backbone.groups, 0.5)
    assert len(frozen) == sum(len(g) for g in backbone.groups[:3])
    groups = param_groups(model, backbone.groups, lr=0.1)
    in_optimizer = {id(p) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert not any(id(named[n]) in in_optimizer for n in frozen)
    stem_bn = model.bn1
    before = stem_bn.running_mean.clone()
    last_bn = model.bn2
    last_before = last_bn.running_mean.clone()
    train_mode(model, frozen)
    assert not stem_bn.training and last_bn.training
    model(torch.randn(4, 3, 32, 32))
    assert torch.equal(stem_bn.running_mean, before)  # frozen: statistics fixed
    assert not torch.equal(last_bn.running_mean, last_before)  # trained part still adapts


def test_linear_probe_puts_the_whole_body_in_eval_mode():
    backbone = _tiny_cnn()
    frozen = freeze(backbone.model, backbone.groups, 1.0)
    assert frozen_modules(backbone.model, frozen) == [backbone.model]
    train_mode(backbone.model, frozen)
    assert not any(m.training for m in backbone.model.modules())


def test_layer_decay_head_multiplier_and_no_weight_decay_on_1d_params():
    backbone = _tiny_cnn()
    head = torch.nn.Linear(backbone.dim, 3)
    model = torch.nn.ModuleDict({"body": backbone.model, "head": head})
    groups = [[f"body.{n}" for n in g] for g in backbone.groups]
    n = len(groups)
    result = param_groups(
        model, groups, lr=1e-2, head_lr_multiplier=10, layer_decay=0.5, weight_decay=0.05
    )
    by_name = {g["name"]: g for g in result}
    assert by_name["head.decay"]["lr"] == pytest.approx(0.1)
    assert by_name["head.no_decay"]["weight_decay"] == 0.0
    assert by_name[f"group{n - 1}.decay"]["lr"] == pytest.approx(1e-2)
    assert by_name["group0.decay"]["lr"] == pytest.approx(1e-2 * 0.5 ** (n - 1))
    assert by_name["group0.decay"]["weight_decay"] == 0.05
    for group in result:
        assert all((p.ndim <= 1) == group["name"].endswith("no_decay") for p in group["params"])
    total = sum(p.numel() for g in result for p in g["params"])
    assert total == sum(p.numel() for p in model.parameters())
