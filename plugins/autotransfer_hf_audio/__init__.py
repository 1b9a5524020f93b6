r"""Builtin zoo: Hugging Face audio encoders as ``hf-audio/<hub id or local directory>``.

wav2vec2, HuBERT, WavLM (raw waveforms), AST (filter banks) and the Whisper encoder alone
(log-mel; its positional embeddings are sliced to the clip, not padded to 30 s). Each uses its
checkpoint's feature extractor; clips are mono, resampled to its rate and cut or padded to
``clip_seconds``. Features are the mean of the last hidden states.

Layer groups (the same contract as images): the feature encoder / embeddings are the stem, one
group per block, a final norm joins the last block. wav2vec2-style models freeze their
convolutional feature encoder with ``freeze_feature_encoder()`` when the stem is frozen:
``requires_grad_(False)`` alone still sends gradients through it.
"""

from __future__ import annotations

from typing import Any

from autotransfer.plugin import (
    MATCH_PREV_GROUP,
    AudioPreprocess,
    Backbone,
    BackboneError,
    HubQuery,
    HubZoo,
    check_loaded,
    group_names,
    hookimpl,
    hub_source,
    import_transformers,
    load_error,
    transformers_format,
)

ZOO = "hf-audio"

WELL_KNOWN: dict[str, tuple[int, str]] = {
    "facebook/wav2vec2-base": (94_371_712, "wav2vec2 base"),
    "facebook/hubert-base-ls960": (94_371_712, "HuBERT base"),
    "microsoft/wavlm-base-plus": (94_381_936, "WavLM base+"),
    "MIT/ast-finetuned-audioset-10-10-0.4593": (86_186_496, "AST (AudioSet)"),
    "openai/whisper-tiny": (8_208_384, "Whisper tiny, encoder only"),
    "openai/whisper-base": (20_590_592, "Whisper base, encoder only"),
}

_WAV2VEC2_STEM = (
    r"^feature_extractor\.|^feature_projection\.|^masked_spec_embed|^encoder\.pos_conv_embed\."
)
WAV2VEC2_TYPES = frozenset({"wav2vec2", "hubert", "wavlm", "data2vec-audio"})


def matcher_for(config) -> dict[str, Any]:
    """Layer-group matcher (timm's format) for an audio model's parameter names."""
    model_type = config.model_type
    if model_type in WAV2VEC2_TYPES:
        # encoder.layer_norm runs before the blocks in the post-LN (base) variant, after them
        # in the "stable layer norm" (large) variant
        if getattr(config, "do_stable_layer_norm", False):
            return {
                "stem": _WAV2VEC2_STEM,
                "blocks": [(r"^encoder\.layers\.(\d+)\.", None),
                           (r"^encoder\.layer_norm\.", (MATCH_PREV_GROUP,))],
            }
        return {
            "stem": _WAV2VEC2_STEM + r"|^encoder\.layer_norm\.",
            "blocks": [(r"^encoder\.layers\.(\d+)\.", None)],
        }
    if model_type == "audio-spectrogram-transformer":
        return {
            "stem": r"^embeddings\.",
            "blocks": [(r"^(?:encoder\.)?layers?\.(\d+)\.", None),
                       (r"^layernorm\.", (MATCH_PREV_GROUP,))],
        }
    if model_type == "whisper":
        return {
            "stem": r"^conv1\.|^conv2\.|^embed_positions\.",
            "blocks": [(r"^layers\.(\d+)\.", None), (r"^layer_norm\.", (MATCH_PREV_GROUP,))],
        }
    raise BackboneError(
        f"no layer groups for audio model type {model_type!r}; supported: "
        "wav2vec2, hubert, wavlm, data2vec-audio, audio-spectrogram-transformer, whisper"
    )


def _audio_encoder_class():
    from torch import nn

    class _AudioEncoder(nn.Module):
        """An audio encoder + mean pooling over time: ``{input_values|input_features}`` ->
        ``(B, D)``."""

        def __init__(self, encoder: nn.Module) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, inputs: dict) -> Any:
            return self.encoder(**inputs).last_hidden_state.mean(1)

    return _AudioEncoder


def backbone_from_hf_audio(model, extractor, *, name: str, label: str) -> Backbone:
    """Wrap a transformers audio encoder and its feature extractor as a Backbone."""
    import torch
    from torch import nn

    config = model.config
    try:
        matcher = matcher_for(config)
    except BackboneError as exc:
        raise BackboneError(f"{label}: {exc}") from None
    wrapper = _audio_encoder_class()(model)
    names = [n for n, _ in model.named_parameters()]
    groups = [[f"encoder.{n}" for n in g] for g in group_names(names, matcher)]
    rate = int(extractor.sampling_rate)
    configure = on_freeze = None

    if config.model_type == "whisper":
        hop = int(extractor.hop_length)
        full = model.embed_positions.weight.detach().clone()
        preprocess = AudioPreprocess(
            extractor, "input_features", rate, frame_multiple=2 * hop,
            length_kwarg="max_length", name=name,
        )

        def configure(params: dict[str, Any]) -> None:
            # positions = mel frames / 2 (conv2 has stride 2); HF checks the input against
            # max_source_positions, so the table is sliced rather than padded to 30 s
            positions = preprocess.configure(params).n_samples // hop // 2
            if positions > full.shape[0]:
                raise ValueError(
                    f"clip_seconds gives {positions} positions; Whisper has {full.shape[0]} (30 s)"
                )
            table = nn.Embedding(positions, full.shape[1])
            with torch.no_grad():
                table.weight.copy_(full[:positions])
            table.weight.requires_grad_(model.embed_positions.weight.requires_grad)
            model.embed_positions = table
            model.config.max_source_positions = positions

    elif config.model_type == "audio-spectrogram-transformer":
        preprocess = AudioPreprocess(extractor, "input_values", rate, name=name)
    else:
        preprocess = AudioPreprocess(extractor, "input_values", rate, name=name)
        feature_encoder = {
            f"encoder.feature_extractor.{n}" for n, _ in model.feature_extractor.named_parameters()
        }

        def on_freeze(frozen: set[str]) -> None:
            if feature_encoder <= frozen:
                model.freeze_feature_encoder()

    return Backbone(
        model=wrapper,
        dim=int(config.d_model if config.model_type == "whisper" else config.hidden_size),
        groups=groups,
        preprocess=preprocess,
        configure=configure,
        on_freeze=on_freeze,
    )


def load_hf_audio(
    name: str, *, pretrained: bool = True, label: str | None = None,
    trust_remote_code: bool = False,
) -> Backbone:
    """Load ``name`` (hub id or local directory): its encoder and its feature extractor."""
    label = label or f"{ZOO}/{name}"
    import_transformers(label)  # its progress bars off; a one-line error without it
    import torch
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

    source = hub_source(name)
    info: dict = {}
    # pretrained weights in float32 (the search's precision), whatever dtype they were saved in
    weights = {"dtype": torch.float32, "output_loading_info": True}
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        extractor = AutoFeatureExtractor.from_pretrained(
            source, trust_remote_code=trust_remote_code
        )
        if config.model_type == "whisper":
            from transformers import WhisperModel
            from transformers.models.whisper.modeling_whisper import WhisperEncoder

            if pretrained and "WhisperEncoder" in (config.architectures or ()):
                model, info = WhisperEncoder.from_pretrained(source, **weights)  # autotransfer's
            elif pretrained:
                whole, info = WhisperModel.from_pretrained(source, **weights)
                model = whole.get_encoder()
                info = {k: [n for n in v if not str(n).startswith("decoder.")]
                        for k, v in info.items() if isinstance(v, (list, set))}
                info["missing_keys"] = [n.removeprefix("encoder.")
                                        for n in info.get("missing_keys", ())]
            else:
                model = WhisperEncoder(config)
        elif pretrained:
            model, info = AutoModel.from_pretrained(
                source, trust_remote_code=trust_remote_code, **weights
            )
        else:
            model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as exc:  # hub unreachable, unknown id, files missing or malformed
        raise load_error(label, ZOO, exc) from None
    if pretrained:
        check_loaded(label, source, info, len(model.state_dict()))
    return backbone_from_hf_audio(model, extractor, name=source, label=label)


# The native model format of this zoo: the shared ``transformers`` format (the encoder,
# Whisper's as ``WhisperEncoder``, its feature extractor, ``id2label``, the head), with the
# audio preprocessing's settings.


def _describe(model, preprocess) -> dict[str, Any]:
    return {"kind": "audio", "clip_seconds": preprocess.clip_seconds,
            "sampling_rate": preprocess.sampling_rate, "input_name": preprocess.input_name}


@hookimpl
def register_model_formats(register) -> None:
    register(transformers_format("audio", load_hf_audio, lambda p: p.extractor, _describe))


#: the listed ids as a catalogue, any other hub id or local directory resolved: both hooks
#: Online ranking (``backbones --modality audio --rank N --online``): the Hub's most
#: downloaded audio classifiers and speech recognisers of a model type with layer groups here
#: (their encoder is the backbone; Whisper's decoder is dropped).
RANKING = HubQuery(("audio-classification", "automatic-speech-recognition"),
                   WAV2VEC2_TYPES | {"audio-spectrogram-transformer", "whisper"})
HUB = HubZoo(ZOO, "audio", load_hf_audio, WELL_KNOWN, RANKING)
register_backbones = HUB.register_backbones
resolve_backbone = HUB.resolve_backbone
register_ranking = HUB.register_ranking
