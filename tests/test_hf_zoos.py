"""Text and audio zoos: layer groups of every family (tiny configs), ids, packaged weights."""

import subprocess

import numpy as np
import pytest
import torch

from autotransfer.contract.collect import get_backbone, get_registry
from autotransfer.contract.groups import check_groups
from autotransfer.errors import BackboneError
from autotransfer.finetune.freezing import freeze
from autotransfer_hf_audio import backbone_from_hf_audio
from autotransfer_hf_text import backbone_from_hf_text

MINILM = "packaged/all-MiniLM-L6-v2"
SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)


def _tokenizer():
    from transformers import AutoTokenizer

    from autotransfer_packaged import PACKAGED_HF, packaged_files

    return AutoTokenizer.from_pretrained(packaged_files(PACKAGED_HF["all-MiniLM-L6-v2"])[0].parent)


def _text_config(model_type: str):
    import transformers as tf

    vocab = dict(vocab_size=30522)
    return {
        "bert": lambda: tf.BertConfig(**SMALL, **vocab),
        "roberta": lambda: tf.RobertaConfig(**SMALL, **vocab),
        "electra": lambda: tf.ElectraConfig(**SMALL, embedding_size=16, **vocab),
        "distilbert": lambda: tf.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=37,
                                                  **vocab),
        "deberta-v2": lambda: tf.DebertaV2Config(**SMALL, relative_attention=True,
                                                 position_buckets=8, **vocab),
        "llama": lambda: tf.LlamaConfig(**SMALL, num_key_value_heads=1, **vocab),
        "gpt2": lambda: tf.GPT2Config(n_embd=32, n_layer=2, n_head=2, **vocab),
    }[model_type]()


@pytest.mark.parametrize(
    "model_type", ["bert", "roberta", "electra", "distilbert", "deberta-v2", "llama", "gpt2"]
)
def test_text_families_groups_cover_every_parameter_once_and_pool(model_type):
    from transformers import AutoModel

    model = AutoModel.from_config(_text_config(model_type))
    backbone = backbone_from_hf_text(model, _tokenizer(), name=model_type, label=model_type)
    head = check_groups(backbone.model, backbone.groups)  # raises on a name in two groups
    assert head == []  # stem + one group per block (+ final norm): nothing left over
    assert len(backbone.groups) == 3  # embeddings, block 0, block 1
    ids = backbone.preprocess.tokenizer(["a short one", "a somewhat longer text here"],
                                        padding=True, return_tensors="pt")
    for pooling in ("mean", "cls"):
        backbone.configure({"pooling": pooling})
        features = backbone.model(dict(ids))
        assert features.shape == (2, backbone.dim)


def _audio(model_type: str):
    import transformers as tf

    small = dict(SMALL, conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4),
                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    if model_type == "whisper":
        config = tf.WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2,
                                  encoder_ffn_dim=37, num_mel_bins=80)
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(config), tf.WhisperFeatureExtractor(feature_size=80)
    if model_type == "ast":
        config = tf.ASTConfig(**SMALL, max_length=64, num_mel_bins=32)
        return tf.ASTModel(config), tf.ASTFeatureExtractor(num_mel_bins=32, max_length=64)
    config = {"wav2vec2": tf.Wav2Vec2Config, "hubert": tf.HubertConfig,
              "wavlm": tf.WavLMConfig}[model_type](**small)
    return tf.AutoModel.from_config(config), tf.Wav2Vec2FeatureExtractor()


@pytest.mark.parametrize("model_type", ["wav2vec2", "hubert", "wavlm", "ast", "whisper"])
def test_audio_families_groups_cover_every_parameter_once_and_pool(model_type, tmp_path):
    import soundfile

    model, extractor = _audio(model_type)
    backbone = backbone_from_hf_audio(model, extractor, name=model_type, label=model_type)
    assert check_groups(backbone.model, backbone.groups) == []
    assert len(backbone.groups) == 3
    if backbone.configure is not None:
        backbone.configure({"clip_seconds": 0.5})
    pre = backbone.preprocess.configure({"clip_seconds": 0.5})
    clip = tmp_path / "a.wav"
    soundfile.write(clip, np.random.default_rng(0).normal(0, 0.1, (8000, 2)), 16000)
    features = pre.features(pre.clips([clip, clip]))
    assert backbone.model({pre.input_name: features}).shape == (2, backbone.dim)


def test_whisper_positions_are_sliced_to_the_clip_not_padded_to_30_s():
    model, extractor = _audio("whisper")
    backbone = backbone_from_hf_audio(model, extractor, name="w", label="w")
    backbone.configure({"clip_seconds": 1.0})
    pre = backbone.preprocess.configure({"clip_seconds": 1.0})
    features = pre.features(np.zeros((1, pre.n_samples), np.float32))
    assert features.shape == (1, 80, 100)  # 1 s of 10 ms mel frames, not 3,000
    assert backbone.model.encoder.embed_positions.weight.shape[0] == 50


@pytest.mark.parametrize("stem_frozen", [True, False])
def test_wav2vec2_frozen_stem_gets_no_gradient_through_the_feature_encoder(stem_frozen):
    model, extractor = _audio("wav2vec2")
    backbone = backbone_from_hf_audio(model, extractor, name="w", label="w")
    fraction = 1 / 3 if stem_frozen else 0.0
    frozen = freeze(backbone.model, backbone.groups, fraction)
    backbone.on_freeze(frozen)
    outputs = []
    model.feature_extractor.register_forward_hook(lambda m, i, o: outputs.append(o))
    backbone.model.train()
    backbone.model({"input_values": torch.randn(2, 4000)}).sum().backward()
    # requires_grad_(False) alone still lets autograd run back through the conv stack
    assert outputs[0].requires_grad is (not stem_frozen)
    conv = model.feature_extractor.conv_layers[0].conv.weight
    assert (conv.grad is None) is stem_frozen


def test_local_directory_is_a_first_class_text_id(tmp_path):
    from transformers import AutoModel

    model = AutoModel.from_config(_text_config("bert"))
    model.save_pretrained(tmp_path / "tiny")
    _tokenizer().save_pretrained(tmp_path / "tiny")
    backbone = get_backbone(f"hf-text/{tmp_path / 'tiny'}").load()
    assert torch.equal(
        backbone.model.encoder.embeddings.word_embeddings.weight,
        model.embeddings.word_embeddings.weight,
    )


def test_hub_ids_resolve_and_fail_offline_in_one_line_while_unknown_zoos_still_suggest():
    entry = get_backbone("hf-text/some-org/some-model")
    assert entry.modality == "text"
    with pytest.raises(BackboneError) as info:
        entry.load()
    assert info.value.args[0].startswith("hf-text/some-org/some-model: could not load")
    assert "\n" not in str(info.value)
    assert get_backbone("hf-audio/openai/whisper-tiny").modality == "audio"
    with pytest.raises(BackboneError, match="did you mean .*autotransfer backbones"):
        get_backbone("hf-txt/sentence-transformers/all-MiniLM-L6-v2")
    listed = {e.id for e in get_registry().entries("text")}
    assert {MINILM, "hf-text/sentence-transformers/all-MiniLM-L6-v2"} <= listed


def test_packaged_minilm_embeds_paraphrases_closer_than_unrelated_text():
    backbone = get_backbone(MINILM).load()
    assert check_groups(backbone.model, backbone.groups) == []
    texts = ["A man is playing a guitar.", "Someone plays the guitar.",
             "The stock market fell sharply today."]
    ids = backbone.preprocess.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        f = torch.nn.functional.normalize(backbone.model.eval()(dict(ids)), dim=-1)
    assert f[0] @ f[1] > 0.6 > f[0] @ f[2]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["whisper-tiny.en", "whisper-base"])
def test_converted_whisper_transcribes_an_espeak_sentence(name, tmp_path):
    """The CTranslate2 -> transformers conversion is right end to end: encoder and decoder."""
    import soundfile
    import soxr
    from tokenizers import Tokenizer
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    from autotransfer_packaged import PACKAGED_HF, packaged_files
    from autotransfer_packaged._whisper import convert_whisper

    files = packaged_files(PACKAGED_HF[name])
    directory = convert_whisper(b"".join(f.read_bytes() for f in files[:-1]), files[-1], name)
    backbone = get_backbone(f"packaged/{name}").load()  # the encoder, from the same cache
    assert check_groups(backbone.model, backbone.groups) == []
    model = WhisperForConditionalGeneration.from_pretrained(directory).eval()
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    wav = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "the quick brown fox jumps over the lazy dog"],
                   check=True)
    wave, rate = soundfile.read(wav, dtype="float32")
    features = WhisperFeatureExtractor()(soxr.resample(wave, rate, 16000), sampling_rate=16000,
                                         return_tensors="pt").input_features
    prompt = ["<|startoftranscript|>", "<|notimestamps|>"]
    if not name.endswith(".en"):
        prompt = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    tokens = torch.tensor([[tokenizer.token_to_id(t) for t in prompt]])
    end = tokenizer.token_to_id("<|endoftext|>")
    with torch.inference_mode():
        encoded = model.model.encoder(features).last_hidden_state
        assert torch.allclose(encoded, backbone.model.encoder(features).last_hidden_state,
                              atol=1e-4)
        for _ in range(25):
            logits = model(encoder_outputs=(encoded,), decoder_input_ids=tokens).logits
            tokens = torch.cat([tokens, logits[:, -1:].argmax(-1)], 1)
            if tokens[0, -1] == end:
                break
    text = tokenizer.decode(tokens[0].tolist()).lower()
    assert "lazy dog" in text and "quick" in text, text


def test_a_hub_zoo_is_one_helper_its_catalogue_and_both_hooks(tmp_path):
    from autotransfer.plugin import HubZoo
    from autotransfer.testing import registered_plugin
    from autotransfer.testing.fakes import tiny_cnn_backbone

    def load_tiny(name, *, pretrained=True, label=None, trust_remote_code=False):
        return tiny_cnn_backbone()

    hub = HubZoo("tinyhub", "image", load_tiny, {"org/listed": (10, "a listed one")})
    zoo = type("TinyHub", (), {"register_backbones": hub.register_backbones,
                               "resolve_backbone": hub.resolve_backbone})()
    with registered_plugin(zoo, "tinyhub"):
        listed = get_backbone("tinyhub/org/listed")
        assert (listed.params, listed.description) == (10, "a listed one; weights from the hub")
        (tmp_path / "mine").mkdir()
        for served in ("tinyhub/org/other", f"tinyhub/{tmp_path / 'mine'}"):
            entry = get_backbone(served)  # not listed: resolved, a hub id or a local directory
            assert entry.options == ("trust_remote_code",) and entry.load().dim > 0
    # the text and audio zoos are two of them
    import autotransfer_hf_audio
    import autotransfer_hf_text

    assert {autotransfer_hf_text.HUB.modality, autotransfer_hf_audio.HUB.modality} == {
        "text", "audio"}
