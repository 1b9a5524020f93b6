r"""Builtin zoo: Hugging Face text models as ``hf-text/<hub id or local directory>``.

Encoders (BERT, RoBERTa, DistilBERT, ELECTRA, DeBERTa, the MiniLM family, ...) load through
transformers' Auto classes; decoder-only models (Llama/SmolLM, GPT-2, Qwen2, ...) are used as
encoders by pooling their hidden states. Any hub id or local directory saved with
``save_pretrained`` resolves (``resolve_backbone``); a few well-known ids are listed.
``trust_remote_code`` stays off; transformers is imported only when a model loads.

Layer groups (the same contract as images): embeddings are the stem, one group per block, a
final norm joins the last block, everything else (a pooler) is the head.
"""

from __future__ import annotations

from typing import Any

from autotransfer.plugin import (
    MATCH_PREV_GROUP,
    Backbone,
    BackboneError,
    HubQuery,
    HubZoo,
    TextPreprocess,
    check_loaded,
    check_tokenizer,
    group_names,
    hookimpl,
    hub_source,
    import_transformers,
    load_error,
    transformers_format,
)

ZOO = "hf-text"

#: Listed by ``autotransfer backbones --modality text``; any other hub id resolves too.
WELL_KNOWN: dict[str, tuple[int, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": (22_713_216, "MiniLM, 6 layers, 384 wide"),
    "sentence-transformers/all-MiniLM-L12-v2": (33_360_000, "MiniLM, 12 layers, 384 wide"),
    "google-bert/bert-base-uncased": (109_482_240, "BERT base"),
    "distilbert/distilbert-base-uncased": (66_362_880, "DistilBERT base"),
    "FacebookAI/roberta-base": (124_645_632, "RoBERTa base"),
    "google/electra-small-discriminator": (13_548_800, "ELECTRA small"),
    "microsoft/deberta-v3-small": (141_304_320, "DeBERTa v3 small"),
    "HuggingFaceTB/SmolLM2-135M": (134_515_008, "decoder-only; hidden states pooled"),
}

_BERT_LIKE = {"stem": r"^embeddings", "blocks": [(r"^encoder\.layer\.(\d+)\.", None)]}
_DECODER = {
    "stem": r"^embed_tokens\.",
    "blocks": [(r"^layers\.(\d+)\.", None), (r"^norm\.", (MATCH_PREV_GROUP,))],
}
#: Layer-group matchers (timm's format) by ``config.model_type``, names of the Auto model.
MATCHERS: dict[str, dict[str, Any]] = {
    **dict.fromkeys(("bert", "roberta", "xlm-roberta", "camembert", "electra"), _BERT_LIKE),
    "distilbert": {"stem": r"^embeddings\.", "blocks": [(r"^transformer\.layer\.(\d+)\.", None)]},
    **dict.fromkeys(
        ("deberta", "deberta-v2"),
        {
            "stem": r"^embeddings\.|^encoder\.rel_embeddings\.|^encoder\.LayerNorm\.",
            "blocks": [(r"^encoder\.layer\.(\d+)\.", None)],
        },
    ),
    "mpnet": {
        "stem": r"^embeddings\.|^encoder\.relative_attention_bias\.",
        "blocks": [(r"^encoder\.layer\.(\d+)\.", None)],
    },
    **dict.fromkeys(("llama", "mistral", "qwen2", "qwen3", "gemma", "phi3"), _DECODER),
    "gpt2": {
        "stem": r"^wte\.|^wpe\.",
        "blocks": [(r"^h\.(\d+)\.", None), (r"^ln_f\.", (MATCH_PREV_GROUP,))],
    },
}
DECODER_ONLY = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "gpt2"})


def _text_encoder_class():
    """The wrapper module's class, defined on first use so that importing the zoo stays light."""
    import torch
    from torch import nn

    class _TextEncoder(nn.Module):
        """A transformers model + pooling: ``{input_ids, attention_mask}`` -> ``(B, D)``."""

        def __init__(self, encoder: nn.Module, *, decoder_only: bool) -> None:
            super().__init__()
            self.encoder = encoder
            self.decoder_only = decoder_only
            self.pooling = "mean"

        def forward(self, inputs: dict) -> Any:
            mask = inputs["attention_mask"]
            states = self.encoder(**inputs).last_hidden_state
            if self.pooling == "mean":
                weights = mask.unsqueeze(-1).to(states.dtype)
                return (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            if self.decoder_only:  # the last real token has seen the whole text
                last = mask.sum(1).clamp(min=1) - 1
                return states[torch.arange(states.shape[0], device=states.device), last]
            return states[:, 0]

    return _TextEncoder


def backbone_from_hf_text(model, tokenizer, *, name: str, label: str) -> Backbone:
    """Wrap a transformers base model and its tokenizer as a Backbone (groups, pooling)."""
    model_type = model.config.model_type
    matcher = MATCHERS.get(model_type)
    if matcher is None:
        raise BackboneError(
            f"{label}: no layer groups for model type {model_type!r}; supported: "
            + ", ".join(sorted(MATCHERS))
        )
    if getattr(model, "pooler", None) is not None:  # unused: features are pooled token states
        model.pooler = None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    decoder_only = model_type in DECODER_ONLY
    wrapper = _text_encoder_class()(model, decoder_only=decoder_only)
    names = [n for n, _ in model.named_parameters()]
    groups = [[f"encoder.{n}" for n in g] for g in group_names(names, matcher)]

    def configure(params: dict[str, Any]) -> None:
        pooling = params.get("pooling") or "mean"
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be mean or cls, got {pooling=}")
        wrapper.pooling = pooling

    return Backbone(
        model=wrapper,
        dim=int(model.config.hidden_size),
        groups=groups,
        preprocess=TextPreprocess(tokenizer, name=name),
        configure=configure,
    )


def load_hf_text(
    name: str, *, pretrained: bool = True, label: str | None = None,
    trust_remote_code: bool = False,
) -> Backbone:
    """Load ``name`` (hub id or local directory) with AutoModel and AutoTokenizer."""
    label = label or f"{ZOO}/{name}"
    import_transformers(label)  # its progress bars off; a one-line error without it
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    source = hub_source(name)
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        if pretrained:  # in float32 (the search's precision), whatever dtype it was saved in
            model, info = AutoModel.from_pretrained(
                source, trust_remote_code=trust_remote_code, dtype=torch.float32,
                output_loading_info=True,
            )
        else:
            model = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    except Exception as exc:  # hub unreachable, unknown id, files missing or malformed
        raise load_error(label, ZOO, exc) from None
    check_tokenizer(label, source, tokenizer)
    if pretrained:
        check_loaded(label, source, info, len(model.state_dict()))
    return backbone_from_hf_text(model, tokenizer, name=source, label=label)


# The native model format of this zoo: the shared ``transformers`` format (the encoder, its
# tokenizer, ``id2label``, the head), with the text preprocessing's settings.


def _describe(model, preprocess) -> dict[str, Any]:
    return {"kind": "text", "max_length": preprocess.max_length,
            "pooling": getattr(model.body, "pooling", "mean")}


@hookimpl
def register_model_formats(register) -> None:
    register(transformers_format("text", load_hf_text, lambda p: p.tokenizer, _describe))


#: the listed ids as a catalogue, any other hub id or local directory resolved: both hooks
#: Online ranking (``backbones --modality text --rank N --online``): the Hub's most downloaded
#: encoders (sentence embedders, feature extractors, masked language models) of a model type
#: with layer groups here; fine-tuned classifiers (text-classification) are left out.
RANKING = HubQuery(("sentence-similarity", "feature-extraction", "fill-mask"),
                   frozenset(MATCHERS))
HUB = HubZoo(ZOO, "text", load_hf_text, WELL_KNOWN, RANKING)
register_backbones = HUB.register_backbones
resolve_backbone = HUB.resolve_backbone
register_ranking = HUB.register_ranking
