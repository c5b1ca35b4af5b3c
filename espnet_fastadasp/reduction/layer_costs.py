"""The FLOPs of each decoder layer, counted from the layer's own modules.

Why from the modules: a config's global fields do not say what each layer computes. Gemma 4
gives full-attention layers a wider head than sliding ones (its config refuses to answer a
global ``head_dim``), Gemma 3n sizes each layer's FFN, mixtures of experts route each token to
``top_k`` of ``num_experts`` experts, and KV-shared layers have no key or value projections.
The weights are what each token multiplies, so they are counted (see :mod:`espnet_fastadasp.core.flops`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from espnet_fastadasp.core.flops import DecoderDims, LayerCost

#: config fields naming how many experts each token is routed to
TOP_K_FIELDS = ("num_experts_per_tok", "top_k_experts", "moe_top_k", "num_selected_experts")


def experts_per_token(text_config: Any) -> int | None:
    for name in TOP_K_FIELDS:
        value = getattr(text_config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _weights_per_token(module: nn.Module, top_k: int | None, owner: str) -> int:
    """Weights one token multiplies in ``module``: every matrix, and of stacked experts (3-D
    parameters, or a ModuleList called ``experts``) the ``top_k / num_experts`` share."""
    total = 0
    for name, child in module.named_children():
        if isinstance(child, nn.ModuleList) and name.endswith("experts") and len(child):
            if top_k is None:
                raise ValueError(f"{owner}: {len(child)} experts but no top-k field in the config ({TOP_K_FIELDS})")
            per_expert = sum(p.numel() for p in child[0].parameters() if p.dim() >= 2)
            total += per_expert * min(top_k, len(child))
        else:
            total += _weights_per_token(child, top_k, f"{owner}.{name}")
    for name, param in module.named_parameters(recurse=False):
        if param.dim() == 2:
            total += param.numel()
        elif param.dim() == 3:  # (num_experts, out, in): experts stored as one tensor
            if top_k is None:
                raise ValueError(f"{owner}.{name}: stacked experts but no top-k field in the config ({TOP_K_FIELDS})")
            total += param[0].numel() * min(top_k, param.shape[0])
    return total


def attention_heads(attn: nn.Module, text_config: Any) -> int:
    """The query heads of an attention module: its own count where it keeps one (a heterogeneous
    config, as Dots 3's, refuses to answer a global one), else the config's."""
    for name in ("num_heads", "num_attention_heads"):
        value = getattr(attn, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return text_config.num_attention_heads


def layer_cost(layer: nn.Module, text_config: Any, window: int | None, owner: str) -> LayerCost:
    """The :class:`LayerCost` of one decoder layer.

    A query-key pair costs ``2 Hq (Dqk + Dv)`` (scores and the weighted sum of values: ``4 Hq D``
    when both head sizes are D; latent attention such as Dots 3 has its own ``qk_head_dim`` and
    ``v_head_dim``). A layer without an attention module ``self_attn`` (a Mamba block) counts
    all its weights per token and no pairs: good enough for the statistics of an unreduced run,
    the only run such a layer is allowed."""
    top_k = experts_per_token(text_config)
    attn = getattr(layer, "self_attn", None)
    rest = sum(
        _weights_per_token(child, top_k, f"{owner}.{name}")
        for name, child in layer.named_children()
        if child is not attn
    )
    if attn is None:
        return LayerCost(proj_per_token=0, mlp_per_token=2 * rest, attn_per_pair=0, window=window)
    proj = _weights_per_token(attn, top_k, f"{owner}.self_attn")
    heads = attention_heads(attn, text_config)
    qk_dim = getattr(attn, "qk_head_dim", None) or getattr(attn, "head_dim", None) or text_config.hidden_size // heads
    v_dim = getattr(attn, "v_head_dim", None) or qk_dim
    return LayerCost(
        proj_per_token=2 * proj, mlp_per_token=2 * rest, attn_per_pair=2 * heads * (qk_dim + v_dim), window=window
    )


def decoder_dims(
    text_config: Any, layers: nn.ModuleList, windows: tuple[int | None, ...], reduce_before: int | None = None
) -> DecoderDims:
    """The decoder's shape with each layer's cost read from its modules; ``reduce_before``: the
    first layer that may not reduce (KV sharing, see :mod:`.kv_sharing`).

    The uniform fields describe layer 0 (what a KV-cache size per token needs); where every
    layer costs what the uniform formula says, ``layers`` is left out, so a plain model's
    counts are the formula's, bit for bit."""
    costs = tuple(layer_cost(layer, text_config, windows[i], f"layers.{i}") for i, layer in enumerate(layers))
    attn = getattr(layers[0], "self_attn", None)
    heads = attention_heads(attn, text_config) if attn is not None else text_config.num_attention_heads
    head_dim = getattr(attn, "head_dim", None) or text_config.hidden_size // heads
    kv_groups = getattr(attn, "num_key_value_groups", None)
    uniform = DecoderDims(
        num_layers=len(layers),
        hidden=text_config.hidden_size,
        intermediate=costs[0].mlp_per_token // (6 * text_config.hidden_size),
        num_heads=heads,
        num_kv_heads=heads // kv_groups if kv_groups else heads,
        head_dim=head_dim,
        reduce_before=reduce_before,
    )
    if all(c == uniform.layer(0) for c in costs):
        return uniform
    return DecoderDims(**{**uniform.__dict__, "layers": costs})
