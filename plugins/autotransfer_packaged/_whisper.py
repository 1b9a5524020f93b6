"""Whisper weights in CTranslate2 format (``model.bin``) -> a transformers Whisper checkpoint.

CTranslate2 fuses self-attention Q/K/V into one matrix (split in three; the key projection has
no bias) and cross-attention K/V (split in two); ``proj_out`` is tied to the token embeddings.
The conversion runs once; the result is cached as safetensors under
``$XDG_CACHE_HOME/autotransfer`` (or ``~/.cache/autotransfer``), keyed by the source's hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path

import numpy as np

from autotransfer.plugin import BackboneError

_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "autotransfer"


def read_ctranslate2(data: bytes, label: str) -> dict[str, np.ndarray]:
    """Every variable of a CTranslate2 ``model.bin`` (binary version 6) by name."""
    offset = 0

    def unpack(fmt: str):
        nonlocal offset
        values = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return values

    def string() -> str:
        nonlocal offset
        (length,) = unpack("<H")
        text = data[offset : offset + length - 1].decode()
        offset += length
        return text

    (version,) = unpack("<I")
    if version != 6:
        raise BackboneError(f"{label}: CTranslate2 binary version {version}, expected 6")
    spec = string()
    if spec != "WhisperSpec":
        raise BackboneError(f"{label}: a {spec} model, expected WhisperSpec")
    unpack("<I")  # revision
    (count,) = unpack("<I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(count):
        name = string()
        (rank,) = unpack("<B")
        shape = unpack(f"<{rank}I") if rank else ()
        (dtype_id,) = unpack("<B")
        (nbytes,) = unpack("<I")
        dtype = _DTYPES.get(dtype_id)
        if dtype is None:
            raise BackboneError(f"{label}: variable {name} has unknown dtype id {dtype_id}")
        array = np.frombuffer(data, dtype=dtype, count=nbytes // np.dtype(dtype).itemsize,
                              offset=offset)
        offset += nbytes
        variables[name] = array.reshape(shape)
    (aliases,) = unpack("<I")
    for _ in range(aliases):
        alias, target = string(), string()
        variables[alias] = variables[target]
    return variables


def whisper_config(variables: dict[str, np.ndarray], tokens: dict[str, int]):
    """A ``WhisperConfig`` read off the tensors' shapes and the tokenizer's special tokens."""
    from transformers import WhisperConfig

    def layers(prefix: str) -> int:
        found = (re.match(rf"{prefix}/layer_(\d+)/", k) for k in variables)
        return len({m.group(1) for m in found if m})

    d_model, n_mels, _ = variables["encoder/conv1/weight"].shape
    vocab = variables["decoder/embeddings/weight"].shape[0]
    sot = tokens["<|startoftranscript|>"]
    eot = tokens["<|endoftext|>"]
    return WhisperConfig(
        vocab_size=int(vocab),
        num_mel_bins=int(n_mels),
        d_model=int(d_model),
        encoder_layers=layers("encoder"),
        decoder_layers=layers("decoder"),
        encoder_attention_heads=int(variables["encoder/num_heads"]),
        decoder_attention_heads=int(variables["decoder/num_heads"]),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        tie_word_embeddings=True,
    )


def to_transformers(variables: dict[str, np.ndarray], n_enc: int, n_dec: int) -> dict:
    """The state dict of ``WhisperForConditionalGeneration`` (float32 tensors)."""
    import torch

    out: dict[str, torch.Tensor] = {}

    def put(name: str, array: np.ndarray) -> None:
        out[name] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def linear(dst: str, src: str) -> None:
        put(f"{dst}.weight", variables[f"{src}/weight"])
        put(f"{dst}.bias", variables[f"{src}/bias"])

    def norm(dst: str, src: str) -> None:
        put(f"{dst}.weight", variables[f"{src}/gamma"])
        put(f"{dst}.bias", variables[f"{src}/beta"])

    def split(dst: str, src: str, names: tuple[str, ...]) -> None:
        weights = np.split(variables[f"{src}/weight"], len(names))
        biases = np.split(variables[f"{src}/bias"], len(names))
        for name, w, b in zip(names, weights, biases, strict=True):
            put(f"{dst}.{name}.weight", w)
            if name != "k_proj":  # Whisper's key projections have no bias
                put(f"{dst}.{name}.bias", b)

    def block(dst: str, src: str, cross: bool) -> None:
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        split(f"{dst}.self_attn", f"{src}/self_attention/linear_0", ("q_proj", "k_proj", "v_proj"))
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        if cross:
            norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
            linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
            split(f"{dst}.encoder_attn", f"{src}/attention/linear_1", ("k_proj", "v_proj"))
            linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")

    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    put("model.encoder.embed_positions.weight", variables["encoder/position_encodings/encodings"])
    for i in range(n_enc):
        block(f"model.encoder.layers.{i}", f"encoder/layer_{i}", cross=False)
    norm("model.encoder.layer_norm", "encoder/layer_norm")
    put("model.decoder.embed_tokens.weight", variables["decoder/embeddings/weight"])
    put("model.decoder.embed_positions.weight", variables["decoder/position_encodings/encodings"])
    for i in range(n_dec):
        block(f"model.decoder.layers.{i}", f"decoder/layer_{i}", cross=True)
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    return out


def convert_whisper(model_bin: bytes, tokenizer_json: Path, label: str) -> Path:
    """Convert once and cache; returns a directory loadable with ``from_pretrained``."""
    from safetensors.torch import save_file

    digest = hashlib.sha256(model_bin).hexdigest()[:16]
    target = cache_dir() / f"whisper-{digest}"
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    tokens = {t["content"]: t["id"] for t in vocab.get("added_tokens", [])}
    variables = read_ctranslate2(model_bin, label)
    config = whisper_config(variables, tokens)
    state = to_transformers(variables, config.encoder_layers, config.decoder_layers)
    check_shapes(state, config, label)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
    config.save_pretrained(tmp)
    (tmp / "tokenizer.json").write_bytes(tokenizer_json.read_bytes())
    from transformers import WhisperFeatureExtractor

    WhisperFeatureExtractor(feature_size=config.num_mel_bins).save_pretrained(tmp)
    try:
        tmp.replace(target)
    except OSError:  # another process converted the same file meanwhile
        if not (target / "model.safetensors").is_file():
            raise
    return target


def check_shapes(state: dict, config, label: str) -> None:
    """Every converted tensor has the shape ``WhisperForConditionalGeneration`` expects."""
    import torch
    from transformers import WhisperForConditionalGeneration

    with torch.device("meta"):
        reference = WhisperForConditionalGeneration(config).state_dict()
    expected = {k: tuple(v.shape) for k, v in reference.items() if k != "proj_out.weight"}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise BackboneError(f"{label}: conversion missing {missing[:3]}, extra {extra[:3]}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise BackboneError(
                f"{label}: tensor {key} has shape {tuple(state[key].shape)}, expected {shape}"
            )
