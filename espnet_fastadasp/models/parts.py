"""Finding the parts of a transformers Speech LM that token reduction needs.

Speech LMs in transformers (Qwen2-Audio, Qwen2.5-Omni thinker, Voxtral, Audio Flamingo 3,
...) share one layout: an audio encoder whose embeddings are scattered into the LLM's input
embeddings at placeholder tokens, then a decoder-only LLM with a plain loop over decoder
layers. Attribute paths moved between releases (``model.language_model.layers`` versus
``language_model.model.layers``), so everything here is found by what it is, not where it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from espnet_fastadasp.models.compat import attn_implementation

AUDIO_TOKEN_ATTRS = ("audio_token_id", "audio_token_index")


class UnsupportedModelError(TypeError):
    """The model lacks something token reduction needs; the message says what."""


@dataclass
class SpeechLMParts:
    decoder: nn.Module  # the text decoder (e.g. Qwen2Model): embeddings, layers, final norm
    layers: nn.ModuleList
    text_config: Any
    audio_token_id: int

    @property
    def attn_implementation(self) -> str:
        return attn_implementation(self.text_config)

    @property
    def windows(self) -> tuple[int | None, ...]:
        """Each layer's sliding window (None: full attention), as its attention module holds it."""
        return tuple(sliding_window_of(layer) for layer in self.layers)


def require_full_attention(parts: SpeechLMParts, path: str) -> None:
    """Refuse a decoding path that builds its own full-attention masks and per-layer caches on a
    model with sliding-window layers (their caches hold only the window, and their masks need
    positions) or KV-sharing layers (they hold no cache and read another layer's)."""
    sliding = [i for i, w in enumerate(parts.windows) if w is not None]
    if sliding:
        raise UnsupportedModelError(
            f"{path} builds full-attention masks; decoder layers {sliding} use sliding-window attention: "
            "decode this model with plain generate"
        )
    shared = [
        i for i, layer in enumerate(parts.layers) if getattr(getattr(layer, "self_attn", None), "is_kv_shared_layer", 0)
    ]
    if shared:
        raise UnsupportedModelError(
            f"{path} gives every layer a cache of its own; decoder layers {shared} reuse earlier layers' keys and "
            "values (KV sharing): decode this model with plain generate"
        )


def sliding_window_of(layer: nn.Module) -> int | None:
    """The sliding window of a decoder layer's attention (transformers sets ``sliding_window``
    on the attention modules of sliding layers only), None for full attention."""
    window = getattr(getattr(layer, "self_attn", None), "sliding_window", None)
    return window if isinstance(window, int) and window > 0 else None


def text_config_of(model: nn.Module) -> Any:
    cfg = model.config
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def audio_token_id_of(model: nn.Module) -> int:
    """The id of the audio placeholder token, from the model config (Phi-4-multimodal keeps it
    in its audio sub-config)."""
    cfg = model.config
    for holder in (cfg, getattr(cfg, "thinker_config", None), getattr(cfg, "audio_config", None)):
        for attr in AUDIO_TOKEN_ATTRS:
            value = getattr(holder, attr, None) if holder is not None else None
            if isinstance(value, int):
                return value
    raise UnsupportedModelError(
        f"{type(model).__name__}: no audio placeholder token id in its config "
        f"(looked for {', '.join(AUDIO_TOKEN_ATTRS)}); is this a Speech LM?"
    )


def find_decoder(model: nn.Module) -> tuple[nn.Module, nn.ModuleList]:
    """The text decoder: the module holding a ``layers`` ModuleList and configured by the text config."""
    text_cfg = text_config_of(model)
    candidates = []
    for name, module in model.named_modules():
        layers = getattr(module, "layers", None)
        if isinstance(layers, nn.ModuleList) and len(layers) and getattr(module, "config", None) is text_cfg:
            candidates.append((name, module, layers))
    if not candidates:
        # fall back to the layer count, for models whose decoder holds a copy of the config
        for name, module in model.named_modules():
            layers = getattr(module, "layers", None)
            if (
                isinstance(layers, nn.ModuleList)
                and len(layers) == getattr(text_cfg, "num_hidden_layers", -1)
                and hasattr(layers[0], "self_attn")
            ):
                candidates.append((name, module, layers))
    if len(candidates) != 1:
        found = ", ".join(n for n, _, _ in candidates) or "none"
        raise UnsupportedModelError(f"{type(model).__name__}: expected one text decoder, found {found}")
    _, decoder, layers = candidates[0]
    return decoder, layers


def speech_lm_parts(model: nn.Module) -> SpeechLMParts:
    decoder, layers = find_decoder(model)
    return SpeechLMParts(decoder, layers, text_config_of(model), audio_token_id_of(model))


def audio_runs(audio_mask: torch.Tensor) -> torch.Tensor:
    """(B,) number of separate runs of audio tokens per row (one per audio clip)."""
    starts = audio_mask.clone()
    starts[:, 1:] &= ~audio_mask[:, :-1]
    return starts.sum(-1)


def audio_tokens_for(mel_frames):
    """Qwen2-Audio's audio tokens for ``mel_frames`` valid mel frames (an int or a tensor): the
    encoder's stride-2 convolution, then pooling by 2 (3,000 frames, 30 s -> 750 tokens)."""
    return (((mel_frames - 1) // 2 + 1) - 2) // 2 + 1
