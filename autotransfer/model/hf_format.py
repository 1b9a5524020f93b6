"""The Hugging Face transformers model format, shared by the text and audio zoos.

``library: transformers``: the encoder saved with ``save_pretrained`` (the zoo's loader reads it
back), its tokenizer or feature extractor, ``id2label`` in its config, and the head as
``head.safetensors`` (``weight``, ``bias``) applied to the pooled hidden states. Zoos reach it
through :mod:`autotransfer.plugin` (``transformers_format``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from autotransfer.contract.formats import ModelFormat, save_linear_head
from autotransfer.model.saved_head import model_with_saved_head


def _can_export(body: Any, modality: str) -> bool:
    return hasattr(body, "encoder") and hasattr(body.encoder, "save_pretrained")


def transformers_format(
    modality: str,
    load_backbone: Callable[..., Any],
    processor: Callable[[Any], Any],
    describe: Callable[[Any, Any], dict[str, Any]],
) -> ModelFormat:
    """The ``transformers`` :class:`~autotransfer.contract.formats.ModelFormat` of one modality.

    Args:
        modality: the modality it serves (``text``, ``audio``).
        load_backbone: ``load_backbone(directory: str, pretrained=True, trust_remote_code=)``
            -> ``Backbone``, the zoo's loader of a ``save_pretrained`` folder.
        processor: ``processor(preprocess)`` -> what is saved beside the encoder with
            ``save_pretrained`` (the tokenizer, the feature extractor), or None.
        describe: ``describe(model, preprocess)`` -> the ``preprocess`` mapping stored in
            ``autotransfer.json`` (``{"kind": "text", "max_length": 128, ...}``).
    """

    def export(model, preprocess, out: Path, classes: list[str]) -> dict[str, Any]:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        encoder = model.body.encoder
        encoder.config.id2label = dict(enumerate(classes))
        encoder.config.label2id = {c: i for i, c in enumerate(classes)}
        encoder.save_pretrained(out, safe_serialization=True)
        saved = processor(preprocess)
        if saved is not None:
            saved.save_pretrained(out)
        save_linear_head(model.head[-1], out)
        return {"preprocess": describe(model, preprocess)}

    def load(directory: Path, meta: dict[str, Any], trust_remote_code: bool = False):
        import transformers

        # the unused pooler of BERT-like encoders is not saved; its "missing" report is noise
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()
        try:
            backbone = load_backbone(str(directory.resolve()), pretrained=True,
                                     trust_remote_code=trust_remote_code)
        finally:
            transformers.logging.set_verbosity(verbosity)
        return model_with_saved_head(backbone, meta, directory)

    return ModelFormat("transformers", can_export=_can_export, export=export, load=load,
                       modality=modality)
