"""Beam search whose beams share one copy of the prompt's KV cache.

Why: transformers' ``generate`` with ``num_beams=k`` repeats every input ``k`` times *before* the
prefill, so a 240 s prompt is prefilled ``k`` times, cached ``k`` times, and at every decoding
step the beam reorder copies all ``k`` caches (``index_select`` over the whole prompt) and the
attention reads all ``k`` identical prompt copies. On long audio that work dwarfs the model's
own (figures in ``benchmarks/results/`` and the cost benchmark's RESULTS.md), and it hides what
token reduction saves. Here:

* the prompt is prefilled **once per prompt** (``B`` rows, not ``B * k``), without the logits of
  every prompt position (only the last hidden state reaches the LM head);
* each layer's cache holds the prompt once (``B`` rows) and the generated tokens per beam
  (``B * k`` rows): :class:`SharedPromptLayer`. The beam reorder touches only the generated part;
* every attention module is pointed, for the duration of the ``generate`` call, at
  :func:`shared_prompt_attention` (registered with transformers' public ``AttentionInterface``):
  the ``k`` beams' queries of one prompt are stacked and attend to the prompt's keys in one
  matmul (the prompt is read once per step, not ``k`` times), the generated part per beam, and
  the two are joined in one softmax, in float32, as eager attention does.

Token reduction composes with it: the reduced prefill runs once per prompt and each layer's
shortened cache is shared the same way (a reduced layer becomes a
:class:`ReducedSharedPromptLayer`, which keeps its prompt validity per beam row).

``generate`` always runs a forward before its first choice, so after the prefill of the whole
prompt the last prompt token's entry is dropped from every layer's cache and ``generate`` feeds
that token again as its first step (transformers' way to continue from a cache). The reduction
therefore sees exactly the prompt plain ``generate`` would (every token is a query, the last
one included; text tokens are never removed, so the last token is the last entry of every
layer), and the search equals plain beam search up to float rounding, with or without a
reduction. One exception: under ``h2o`` (which evicts cache entries after each layer's prefill
attention) the re-fed last token attends to the evicted cache, as every later step does, where
plain ``generate`` computed its first step before the eviction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from espnet_fastadasp.generation.logits import prefill_last_logits
from espnet_fastadasp.models.compat import (
    AttentionInterface,
    DynamicCache,
    DynamicLayer,
    cache_kwargs,
    cache_of_output,
    caller_passed_cache,
)
from espnet_fastadasp.models.parts import UnsupportedModelError, require_full_attention, speech_lm_parts
from espnet_fastadasp.reduction.attention import AttentionSwap
from espnet_fastadasp.reduction.cache_layers import OwnMaskLayer, ReducedLayer
from espnet_fastadasp.reduction.masks import causal_key_mask

SHARED_PROMPT_IMPLEMENTATION = "fastadasp_shared_prompt"


class SharedPromptLayer(DynamicLayer):
    """One layer's cache: the prompt once per prompt, the generated tokens once per beam.

    ``keys``/``values`` (what ``update`` grows and ``reorder_cache`` permutes, as in
    ``DynamicLayer``) hold only the generated part, ``(B * beams, H, S, D)``; ``prompt_keys`` /
    ``prompt_values`` hold the prompt, ``(B, H, P, D)``, and are never copied.
    """

    def __init__(self, prompt_keys: torch.Tensor, prompt_values: torch.Tensor, beams: int) -> None:
        super().__init__()
        if beams < 1:
            raise ValueError(f"beams must be >= 1, got {beams}")
        B, H, _, D = prompt_keys.shape
        self.prompt_keys = prompt_keys
        self.prompt_values = prompt_values
        self.beams = beams
        self.dtype, self.device = prompt_keys.dtype, prompt_keys.device
        self.keys = prompt_keys.new_empty(B * beams, H, 0, D)
        self.values = prompt_values.new_empty(B * beams, H, 0, prompt_values.shape[-1])
        self.is_initialized = True

    @property
    def prompt_length(self) -> int:
        return self.prompt_keys.shape[-2]

    def get_seq_length(self) -> int:
        return self.prompt_length + self.keys.shape[-2]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        # beams never change prompt (beam search permutes within each prompt's k rows), so only
        # the generated part moves
        self.keys = self.keys.index_select(0, beam_idx.to(self.keys.device))
        self.values = self.values.index_select(0, beam_idx.to(self.values.device))

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0 or -tokens_to_remove > self.keys.shape[-2]:
            raise NotImplementedError("a shared prompt cache can only drop generated tokens")
        super().crop(tokens_to_remove)

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("a shared prompt cache cannot change its batch")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("a shared prompt cache cannot change its batch")

    def reset(self) -> None:
        raise NotImplementedError("a shared prompt cache cannot be reset; prefill again")


class ReducedSharedPromptLayer(OwnMaskLayer, SharedPromptLayer):
    """A shared prompt whose entries were reduced: ``prompt_valid`` (B * beams, P) says which are
    real per beam row, and the layer builds its decoding steps' masks (see :mod:`.cache_layers`)."""

    def __init__(
        self, prompt_keys: torch.Tensor, prompt_values: torch.Tensor, beams: int, prompt_valid: torch.Tensor
    ) -> None:
        super().__init__(prompt_keys, prompt_values, beams)
        self.set_prompt_valid(prompt_valid)

    @property
    def generated(self) -> int:
        return self.keys.shape[-2]


def drop_last_entry(cache: DynamicCache) -> None:
    """Remove the newest entry of every layer (a view: nothing is copied)."""
    for layer in _layers_of(cache):
        if isinstance(layer, ReducedLayer):
            layer.drop_newest(1)
        else:
            layer.keys = layer.keys[..., :-1, :]
            layer.values = layer.values[..., :-1, :]


def _layers_of(cache: Any) -> list[Any]:
    layers = getattr(cache, "layers", None)
    if not isinstance(cache, DynamicCache) or layers is None:
        raise UnsupportedModelError(
            f"sharing the prompt across beams needs a transformers DynamicCache with per-layer storage "
            f"(transformers >= 4.56); got {type(cache).__name__}"
        )
    for i, layer in enumerate(layers):
        if type(layer) not in (DynamicLayer, ReducedLayer):
            raise UnsupportedModelError(
                f"layer {i} caches with {type(layer).__name__}; sharing the prompt needs plain full-attention "
                f"DynamicLayer caches (no sliding window, offloading or quantisation)"
            )
    return layers


def share_prompt_cache(cache: DynamicCache, beams: int) -> DynamicCache:
    """Turn a prefilled ``DynamicCache`` (one row per prompt) into one shared by ``beams`` rows each.

    The same object is returned, its layers replaced by :class:`SharedPromptLayer` (no copy of
    the prompt is made); a reduced layer keeps its prompt validity, one row per beam.
    """
    layers = _layers_of(cache)
    for i, layer in enumerate(layers):
        if isinstance(layer, ReducedLayer):
            valid = layer.prompt_valid.repeat_interleave(beams, dim=0)
            layers[i] = ReducedSharedPromptLayer(layer.keys, layer.values, beams, valid)
        else:
            layers[i] = SharedPromptLayer(layer.keys, layer.values, beams)
    return cache


def _expand_mask(mask: torch.Tensor, groups: int) -> torch.Tensor:
    """(R, 1, q, S) -> (R, 1, groups * q, S): the same mask for each query head of a KV head."""
    R, _, q, S = mask.shape
    return mask[:, :, None].expand(R, 1, groups, q, S).reshape(R, 1, groups * q, S)


def _apply_mask(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return scores
    if mask.dtype == torch.bool:
        return scores.masked_fill(~mask, float("-inf"))
    return scores + mask.float()


def shared_prompt_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of ``B * beams`` query rows over a shared prompt and their own generated tokens.

    query: (R, Hq, q, D) with R = B * beams; key/value: (R, Hkv, S, D), the generated part
    (this step's tokens included, last); the prompt comes from the module's
    :class:`SharedPromptLayer`. attention_mask: None, or (R, 1, q, P + S) boolean (True = attend)
    or additive, as the model built it for the whole cache. Returns (R, q, Hq, D) and no weights.
    """
    layer: SharedPromptLayer = AttentionSwap.state_of(SHARED_PROMPT_IMPLEMENTATION, module)
    pk, pv, beams = layer.prompt_keys, layer.prompt_values, layer.beams
    R, Hq, q, D = query.shape
    B, Hkv, P, _ = pk.shape
    S = key.shape[-2]
    if R != B * beams or key.shape[1] != Hkv:
        raise RuntimeError(f"shared prompt: {R} query rows / {key.shape[1]} KV heads for {B} prompts x {beams} beams")
    groups = Hq // Hkv
    scale = scaling if scaling is not None else D**-0.5

    # prompt: the beams and query heads that share a KV head are one batch of queries (read P once)
    qp = query.reshape(B, beams, Hkv, groups * q, D).transpose(1, 2).reshape(B, Hkv, beams * groups * q, D)
    sp = torch.matmul(qp, pk.transpose(-1, -2)).float() * scale  # (B, Hkv, beams*g*q, P)
    sp = sp.reshape(B, Hkv, beams, groups * q, P).transpose(1, 2).reshape(R, Hkv, groups * q, P)
    ss = torch.matmul(query.reshape(R, Hkv, groups * q, D), key.transpose(-1, -2)).float() * scale  # (R, Hkv, g*q, S)
    if attention_mask is not None:
        if attention_mask.shape[-1] != P + S:
            raise RuntimeError(f"shared prompt: mask over {attention_mask.shape[-1]} keys, cache holds {P} + {S}")
        mask = attention_mask[:, :, -q:]
        sp = _apply_mask(sp, _expand_mask(mask[..., :P], groups))
        ss = _apply_mask(ss, _expand_mask(mask[..., P:], groups))
    elif q > 1:  # no mask given: causal among the new tokens, the prompt fully visible
        allowed = causal_key_mask(torch.ones(R, S, dtype=torch.bool, device=query.device), q)  # (R, 1, q, S)
        ss = ss.masked_fill(~_expand_mask(allowed, groups), float("-inf"))
    return joined_softmax_output(sp, ss, pv, value, beams, Hq), None


def joined_softmax_output(
    sp: torch.Tensor, ss: torch.Tensor, pv: torch.Tensor, value: torch.Tensor, beams: int, num_q_heads: int
) -> torch.Tensor:
    """One float32 softmax over a shared prompt's scores and the beams' own, and the output.

    sp: (R, Hkv, g*q, P) and ss: (R, Hkv, g*q, S) masked scores of R = B * beams rows; pv: the
    prompt values (B, Hkv, P, D), read once per prompt; value: the rows' own values
    (R, Hkv, S, D). Returns (R, q, Hq, D), as transformers' attention functions do.
    """
    R, Hkv, gq, P = sp.shape
    B, D = pv.shape[0], pv.shape[-1]
    q = gq * Hkv // num_q_heads
    probs = torch.softmax(torch.cat([sp, ss], dim=-1), dim=-1).to(value.dtype)
    pp, ps = probs[..., :P], probs[..., P:]
    pp = pp.reshape(B, beams, Hkv, gq, P).transpose(1, 2).reshape(B, Hkv, beams * gq, P)
    out_p = torch.matmul(pp, pv).reshape(B, Hkv, beams, gq, D).transpose(1, 2).reshape(R, Hkv, gq, D)
    out = out_p + torch.matmul(ps, value)
    return out.reshape(R, num_q_heads, q, D).transpose(1, 2).contiguous()


AttentionInterface.register(SHARED_PROMPT_IMPLEMENTATION, shared_prompt_attention)


def attending_to_shared_prompt(model: nn.Module, cache: DynamicCache) -> AttentionSwap:
    """Point every decoder layer's attention at :func:`shared_prompt_attention`, each with its
    layer of ``cache``; use as ``with attending_to_shared_prompt(model, cache): ...``."""
    parts = speech_lm_parts(model)
    if len(cache.layers) != len(parts.layers):
        raise RuntimeError(f"cache has {len(cache.layers)} layers, the decoder {len(parts.layers)}")
    states = {layer.self_attn: layer_cache for layer, layer_cache in zip(parts.layers, cache.layers)}
    return AttentionSwap(SHARED_PROMPT_IMPLEMENTATION, states)


def prefill_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded prompt, as ``generate`` makes them (padding at 0)."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 0)


def generate_with_shared_prompt(
    model: nn.Module, inputs: Mapping[str, torch.Tensor], share_kv: bool = True, **generate_kwargs: Any
) -> Any:
    """``model.generate(**inputs, **generate_kwargs)`` with the prompt prefilled once and shared by the beams.

    ``inputs`` are the processor's outputs (``input_ids``, ``attention_mask``, audio features ...).
    Works with or without a reduction applied (``espnet_fastadasp.apply``); with one,
    ``handle.stats`` has one row per prompt (not per beam). Beam search and greedy search are
    supported; sampling with several return sequences is not.

    ``share_kv=False`` keeps only the single prefill: the prompt's cache is then copied per beam
    and the model's own attention runs (the intermediate lever, measured separately).

    Inputs must be left-padded (the last column real tokens) and end with text, as chat prompts
    do; the audio features are encoded once per prompt, so multi-clip prompts need no
    :class:`~espnet_fastadasp.generation.fixes.BeamClipOrderFix`.
    """
    config = generate_kwargs.get("generation_config") or model.generation_config
    beams = int(generate_kwargs.get("num_beams") or config.num_beams or 1)
    returns = int(generate_kwargs.get("num_return_sequences") or config.num_return_sequences or 1)
    if beams == 1 and returns > 1:
        raise ValueError("generate_with_shared_prompt: num_return_sequences > 1 needs beam search")
    if caller_passed_cache(generate_kwargs):
        raise ValueError("generate_with_shared_prompt makes its own cache; do not pass past_key_values (or cache)")
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(ids)
    if ids.shape[1] < 2:
        raise ValueError("generate_with_shared_prompt needs a prompt of at least 2 tokens")
    parts = speech_lm_parts(model)
    require_full_attention(parts, "the shared-prompt beam search")
    if bool((ids[:, -1] == parts.audio_token_id).any()):
        raise ValueError("the prompt ends with an audio placeholder; end it with text (e.g. the assistant header)")
    if bool((mask[:, -1] == 0).any()):
        raise ValueError("generate_with_shared_prompt needs left padding (the last column must be real tokens)")

    prefill = dict(inputs)
    prefill.update(attention_mask=mask, position_ids=prefill_positions(mask))
    with torch.no_grad(), prefill_last_logits(model):
        out = model(**prefill, use_cache=True, return_dict=True)
    cache = cache_of_output(out)
    del out
    drop_last_entry(cache)  # generate feeds the last prompt token again (see the module docstring)
    if not share_kv:
        cache.batch_repeat_interleave(beams)
        return model.generate(input_ids=ids, attention_mask=mask, **cache_kwargs(cache), **generate_kwargs)
    cache = share_prompt_cache(cache, beams)
    with attending_to_shared_prompt(model, cache):
        return model.generate(input_ids=ids, attention_mask=mask, **cache_kwargs(cache), **generate_kwargs)
