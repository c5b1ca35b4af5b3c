"""Read a CTranslate2 ``model.bin`` (no ctranslate2 needed) and map Whisper's weights onto transformers.

Why our own reader: the ``ctranslate2`` wheel is a 40 MB native library we would only use to read
a flat file. The format (``ctranslate2/specs/model_spec.py``, binary version 6) is: a header (version,
spec name, revision), then each variable as name, rank, dims, dtype id, byte count and raw bytes,
then aliases (e.g. Whisper's output projection = its token embedding).

The mapping is the inverse of CTranslate2's Whisper converter: its fused ``linear_0`` of a self
attention is [q; k; v] stacked on the output axis (Whisper's k projection has no bias, so the fused
bias holds zeros there), a cross attention keeps q alone and fuses [k; v]; layer norms are
``gamma``/``beta``; the encoder's sinusoidal positions are stored as ``position_encodings``.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

# CTranslate2's DataType enum (include/ctranslate2/types.h)
CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
SUPPORTED_BINARY_VERSIONS = (5, 6)


class CT2FormatError(ValueError):
    """The file is not a CTranslate2 model of a version and layout this reader knows."""


def _unpack(f: BinaryIO, fmt: str) -> int:
    size = struct.calcsize(fmt)
    raw = f.read(size)
    if len(raw) != size:
        raise CT2FormatError("truncated CTranslate2 model file")
    return struct.unpack("<" + fmt, raw)[0]


def _string(f: BinaryIO) -> str:
    n = _unpack(f, "H")
    return f.read(n)[:-1].decode("utf-8")  # NUL-terminated


def read_ct2_model(path: str | Path) -> tuple[str, dict[str, torch.Tensor]]:
    """(spec name, {variable name: tensor}) of a CTranslate2 ``model.bin``; aliases resolved."""
    out: dict[str, torch.Tensor] = {}
    with Path(path).open("rb") as f:
        version = _unpack(f, "I")
        if version not in SUPPORTED_BINARY_VERSIONS:
            raise CT2FormatError(f"{path}: CTranslate2 binary version {version}, this reader knows {SUPPORTED_BINARY_VERSIONS}")
        spec = _string(f)
        _unpack(f, "I")  # the spec's revision
        for _ in range(_unpack(f, "I")):
            name = _string(f)
            shape = [_unpack(f, "I") for _ in range(_unpack(f, "B"))]
            dtype_id = _unpack(f, "B")
            nbytes = _unpack(f, "I")
            raw = f.read(nbytes)
            if len(raw) != nbytes or dtype_id not in CT2_DTYPES:
                raise CT2FormatError(f"{path}: variable {name}: truncated or unknown dtype id {dtype_id}")
            dtype = CT2_DTYPES[dtype_id]
            if dtype == "bfloat16":
                arr = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).reshape(shape)
            else:
                arr = torch.from_numpy(np.frombuffer(raw, dtype=dtype).copy().reshape(shape))
            out[name] = arr
        for _ in range(_unpack(f, "I")):
            alias, target = _string(f), _string(f)
            out[alias] = out[target]
    return spec, out


def _linear(sd: dict[str, torch.Tensor], dst: str, w: torch.Tensor, b: torch.Tensor | None) -> None:
    sd[f"{dst}.weight"] = w
    if b is not None:
        sd[f"{dst}.bias"] = b


def _norm(sd: dict[str, torch.Tensor], dst: str, ct2: dict[str, torch.Tensor], src: str) -> None:
    sd[f"{dst}.weight"] = ct2[f"{src}/gamma"]
    sd[f"{dst}.bias"] = ct2[f"{src}/beta"]


def _self_attention(sd: dict[str, torch.Tensor], dst: str, ct2: dict[str, torch.Tensor], src: str) -> None:
    w = ct2[f"{src}/linear_0/weight"]
    b = ct2[f"{src}/linear_0/bias"]
    q, k, v = w.chunk(3, dim=0)
    qb, kb, vb = b.chunk(3, dim=0)
    if kb.abs().max() > 0:
        raise CT2FormatError(f"{src}: the key bias is not zero (Whisper's k projection has none)")
    _linear(sd, f"{dst}.q_proj", q, qb)
    _linear(sd, f"{dst}.k_proj", k, None)
    _linear(sd, f"{dst}.v_proj", v, vb)
    _linear(sd, f"{dst}.out_proj", ct2[f"{src}/linear_1/weight"], ct2[f"{src}/linear_1/bias"])


def _cross_attention(sd: dict[str, torch.Tensor], dst: str, ct2: dict[str, torch.Tensor], src: str) -> None:
    _linear(sd, f"{dst}.q_proj", ct2[f"{src}/linear_0/weight"], ct2[f"{src}/linear_0/bias"])
    k, v = ct2[f"{src}/linear_1/weight"].chunk(2, dim=0)
    kb, vb = ct2[f"{src}/linear_1/bias"].chunk(2, dim=0)
    if kb.abs().max() > 0:
        raise CT2FormatError(f"{src}: the key bias is not zero (Whisper's k projection has none)")
    _linear(sd, f"{dst}.k_proj", k, None)
    _linear(sd, f"{dst}.v_proj", v, vb)
    _linear(sd, f"{dst}.out_proj", ct2[f"{src}/linear_2/weight"], ct2[f"{src}/linear_2/bias"])


def _ffn(sd: dict[str, torch.Tensor], dst: str, ct2: dict[str, torch.Tensor], src: str) -> None:
    _linear(sd, f"{dst}.fc1", ct2[f"{src}/linear_0/weight"], ct2[f"{src}/linear_0/bias"])
    _linear(sd, f"{dst}.fc2", ct2[f"{src}/linear_1/weight"], ct2[f"{src}/linear_1/bias"])
    _norm(sd, f"{dst}.final_layer_norm", ct2, f"{src}/layer_norm")


def num_layers(ct2: dict[str, torch.Tensor], part: str) -> int:
    """How many ``<part>/layer_N`` blocks the model has."""
    return len({k.split("/")[1] for k in ct2 if k.startswith(f"{part}/layer_") and k.split("/")[1][6:].isdigit()})


def whisper_encoder_state_dict(ct2: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers ``WhisperEncoder`` keys (also ``Qwen2AudioEncoder``'s, which copies its layout)."""
    sd: dict[str, torch.Tensor] = {}
    for conv in ("conv1", "conv2"):
        _linear(sd, conv, ct2[f"encoder/{conv}/weight"], ct2[f"encoder/{conv}/bias"])
    sd["embed_positions.weight"] = ct2["encoder/position_encodings/encodings"]
    for i in range(num_layers(ct2, "encoder")):
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        _self_attention(sd, f"{dst}.self_attn", ct2, f"{src}/self_attention")
        sd[f"{dst}.self_attn_layer_norm.weight"] = ct2[f"{src}/self_attention/layer_norm/gamma"]
        sd[f"{dst}.self_attn_layer_norm.bias"] = ct2[f"{src}/self_attention/layer_norm/beta"]
        _ffn(sd, dst, ct2, f"{src}/ffn")
    _norm(sd, "layer_norm", ct2, "encoder/layer_norm")
    return {k: v.float() for k, v in sd.items()}


def whisper_decoder_state_dict(ct2: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers ``WhisperDecoder`` keys (the Whisper peer's decoding; the Speech LM does not use it)."""
    sd: dict[str, torch.Tensor] = {"embed_tokens.weight": ct2["decoder/embeddings/weight"]}
    sd["embed_positions.weight"] = ct2["decoder/position_encodings/encodings"]
    for i in range(num_layers(ct2, "decoder")):
        src, dst = f"decoder/layer_{i}", f"layers.{i}"
        _self_attention(sd, f"{dst}.self_attn", ct2, f"{src}/self_attention")
        _norm(sd, f"{dst}.self_attn_layer_norm", ct2, f"{src}/self_attention/layer_norm")
        _cross_attention(sd, f"{dst}.encoder_attn", ct2, f"{src}/attention")
        _norm(sd, f"{dst}.encoder_attn_layer_norm", ct2, f"{src}/attention/layer_norm")
        _ffn(sd, dst, ct2, f"{src}/ffn")
    _norm(sd, "layer_norm", ct2, "decoder/layer_norm")
    return {k: v.float() for k, v in sd.items()}


def whisper_dims(ct2: dict[str, torch.Tensor]) -> dict[str, int]:
    """The shape fields of a ``WhisperConfig`` / ``Qwen2AudioEncoderConfig``, read off the weights."""
    d_model = ct2["encoder/conv1/weight"].shape[0]
    return {
        "d_model": d_model,
        "num_mel_bins": ct2["encoder/conv1/weight"].shape[1],
        "encoder_layers": num_layers(ct2, "encoder"),
        "decoder_layers": num_layers(ct2, "decoder"),
        "encoder_attention_heads": int(ct2["encoder/num_heads"].item()),
        "decoder_attention_heads": int(ct2["decoder/num_heads"].item()),
        "encoder_ffn_dim": ct2["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        "decoder_ffn_dim": ct2["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        "max_source_positions": ct2["encoder/position_encodings/encodings"].shape[0],
        "max_target_positions": ct2["decoder/position_encodings/encodings"].shape[0],
        "vocab_size": ct2["decoder/embeddings/weight"].shape[0],
    }
