"""Local weights and tokenizers are checked when they load (#42 kinds 1 and 2): wrapper
prefixes adapted, a file of another network refused in one line with counts, a float16 save
loaded in float32, a Hugging Face folder without tokenizer files or matching weights refused."""

from pathlib import Path

import pytest
import torch

from autotransfer.errors import BackboneError
from autotransfer.plugin import get_backbone


def _reference():
    import timm

    return timm.create_model("test_efficientnet", num_classes=0)


def _assert_loaded(backbone, reference):
    loaded = backbone.model.state_dict()
    for name, tensor in reference.state_dict().items():
        if tensor.is_floating_point():
            assert loaded[name].dtype == torch.float32, name
        assert torch.equal(loaded[name], tensor.to(loaded[name].dtype)), name


@pytest.mark.parametrize("prefix", ["module.", "model."])
def test_a_wrapped_or_prefixed_timm_checkpoint_is_loaded(tmp_path: Path, prefix):
    import timm

    reference = _reference()
    full = timm.create_model("test_efficientnet", num_classes=4)  # with its classifier
    full.load_state_dict({**full.state_dict(), **reference.state_dict()})
    state = {prefix + k: v for k, v in full.state_dict().items()}
    torch.save({"epoch": 3, "global_step": 12, "state_dict": state}, tmp_path / "w.ckpt")
    backbone = get_backbone("timm/test_efficientnet").load(weights=str(tmp_path / "w.ckpt"))
    _assert_loaded(backbone, reference)


def test_a_float16_timm_save_loads_in_float32(tmp_path: Path):
    from safetensors.torch import save_file

    reference = _reference().half()
    save_file(reference.state_dict(), tmp_path / "w.safetensors")
    backbone = get_backbone("timm/test_efficientnet").load(weights=str(tmp_path / "w.safetensors"))
    _assert_loaded(backbone, reference)


def test_another_networks_file_is_refused_in_one_line_with_counts(tmp_path: Path):
    import timm
    from safetensors.torch import save_file

    other = timm.create_model("test_vit", num_classes=0)
    path = tmp_path / "vit.safetensors"
    save_file(other.state_dict(), path)
    with pytest.raises(BackboneError) as info:
        get_backbone("timm/test_efficientnet").load(weights=str(path))
    message = str(info.value)
    total = len([k for k in _reference().state_dict() if not k.endswith("num_batches_tracked")])
    assert message.startswith(f"timm/test_efficientnet: weights file {path} does not fit the "
                              f"model: 0 of {total} tensors fit, ")
    assert "missing (first: " in message and "unexpected (first: " in message
    assert "\n" not in message


def test_a_partly_fitting_timm_file_is_refused_not_half_random(tmp_path: Path):
    state = _reference().state_dict()
    dropped = next(iter(state))
    del state[dropped]
    torch.save(state, tmp_path / "part.pth")
    with pytest.raises(BackboneError, match=f"1 missing \\(first: {dropped}\\)"):
        get_backbone("timm/test_efficientnet").load(weights=str(tmp_path / "part.pth"))


def _tiny_bert(folder: Path, *, tokenizer: bool, dtype=torch.float32) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    config = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    BertModel(config).to(dtype).save_pretrained(folder)
    if tokenizer:
        words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film"]
        raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
        raw.pre_tokenizer = pre_tokenizers.Whitespace()
        PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]",
                                cls_token="[CLS]", sep_token="[SEP]",
                                mask_token="[MASK]").save_pretrained(folder)


def test_a_text_folder_without_tokenizer_files_is_refused(tmp_path: Path):
    _tiny_bert(tmp_path / "bert", tokenizer=False)
    with pytest.raises(BackboneError) as info:
        get_backbone(f"hf-text/{tmp_path / 'bert'}").load()
    message = str(info.value)
    assert f"{tmp_path / 'bert'} has no tokenizer files" in message
    assert "tokenizer.save_pretrained(DIR)" in message and "\n" not in message


def test_a_text_folder_whose_weights_match_nothing_is_refused(tmp_path: Path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "bert"
    _tiny_bert(folder, tokenizer=True)
    weights = load_file(folder / "model.safetensors")
    save_file({f"net.{k}": v for k, v in weights.items()}, folder / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(BackboneError, match=f"no weight in {folder} matches the model's names"):
        get_backbone(f"hf-text/{folder}").load()


def test_a_float16_text_folder_loads_in_float32(tmp_path: Path):
    _tiny_bert(tmp_path / "bert", tokenizer=True, dtype=torch.float16)
    backbone = get_backbone(f"hf-text/{tmp_path / 'bert'}").load()
    assert {p.dtype for p in backbone.model.parameters()} == {torch.float32}


def test_a_search_refuses_a_misfit_weights_file_before_trial_0(tmp_path: Path, capsys,
                                                               class_folders):
    import timm
    from safetensors.torch import save_file

    from conftest import cli_error

    weights = tmp_path / "vit.safetensors"
    save_file(timm.create_model("test_vit", num_classes=0).state_dict(), weights)
    space = tmp_path / "space.yaml"
    space.write_text(f"backbones: [{{id: timm/test_efficientnet, weights: {weights}}}]"
                     "\nepochs: 1\n", encoding="utf-8")
    err = cli_error(capsys, "search", str(class_folders), "--space", str(space), "--trials", "1",
                    "--storage", f"sqlite:///{tmp_path / 's.db'}", "--out", str(tmp_path / "o"))
    assert err.startswith(f"error: timm/test_efficientnet: weights file {weights} "
                          "does not fit the model: 0 of ")
    assert not (tmp_path / "s.db").exists()  # before the study, so before any trial
