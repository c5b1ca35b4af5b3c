"""The FLOPs model of the LLM decoder, the reduction schedules, and the target solver.

FLOPs model (multiply-add = 2 FLOPs; norms, RoPE, softmax and the LM head are left out, they
are small and untouched by reduction). For a decoder layer with hidden size H, Hq query heads
and Hkv key/value heads of size D, FFN size F (gated MLP: gate, up, down):

* projections, per token: ``2 H (2 Hq D + 2 Hkv D)`` (q, k, v and o; GQA shrinks k and v);
* attention, prefill with n tokens, causal: ``4 Hq D * n (n + 1) / 2`` (QK^T and AV over the
  n(n+1)/2 query-key pairs that are computed);
* MLP, per token: ``6 H F``;
* one decoding step over a cache of K entries: projections and MLP for one token plus
  ``4 Hq D (K + 1)`` for attention.

That is the uniform shape of a config (:meth:`DecoderDims.from_config`). A model whose layers
differ (Gemma's per-layer head and FFN sizes, sliding windows, mixtures of experts, per-layer
input gates) gets one :class:`LayerCost` per layer, counted from the modules themselves by
:func:`espnet_fastadasp.reduction.layer_costs.decoder_dims`: 2 FLOPs per weight a token multiplies
(the attention's projection matrices; every other matrix of the layer, experts at the share a
token is routed to, ``top_k / num_experts``), ``4 Hq D`` per query-key pair, and a sliding
layer's pairs capped at its window (an upper bound once tokens are merged: a window then holds
fewer of them). For a uniform dense model the two counts are equal.

At a reducing layer the reduction sits between attention and MLP, so that layer's attention
runs on the tokens that entered it and its MLP on the tokens that left it. Prefill FLOPs of a
row are the sum over layers; the *FLOPs reduction* is ``1 - reduced / full``.

Schedules (per row, from that row's audio token count A): a reducing layer removes
``k = int(a * r_l)`` of the ``a`` audio tokens entering it, capped so that each audio clip
keeps at least one token. ``constant``: ``r_l = r`` for every layer from ``start_layer`` on;
``decay``: ``r`` at ``start_layer`` falling linearly to 0 at the last layer; ``once``: ``r`` at
``start_layer`` only. Given a ``flops_reduction`` target, :func:`solve_ratio` finds the ``r``
whose counted FLOPs reduction is closest to it; an unreachable target raises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from espnet_fastadasp.core.config import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerCost:
    """The FLOPs of one decoder layer, in the terms the counts need.

    proj_per_token: the attention's projections for one token; mlp_per_token: everything after
    attention for one token (the MLP; with experts, the ones a token is routed to; any per-layer
    gates); attn_per_pair: one query-key pair (``4 Hq D``); window: a sliding-window layer's
    window (each query sees at most that many keys), None for full attention.
    """

    proj_per_token: int
    mlp_per_token: int
    attn_per_pair: int
    window: int | None = None

    def pairs(self, n: int) -> int:
        """Query-key pairs of a causal prefill of ``n`` tokens (capped by the window, if any)."""
        w = self.window
        if w is None or w >= n:
            return n * (n + 1) // 2
        return w * (w + 1) // 2 + (n - w) * w

    def prefill(self, n_attn: int, n_mlp: int) -> int:
        return n_attn * self.proj_per_token + self.attn_per_pair * self.pairs(n_attn) + n_mlp * self.mlp_per_token

    def decode(self, kv_len: int) -> int:
        keys = kv_len + 1 if self.window is None else min(kv_len + 1, self.window)
        return self.proj_per_token + self.mlp_per_token + self.attn_per_pair * keys


@dataclass(frozen=True)
class DecoderDims:
    """The shape of a decoder-only LLM, read from its (text) config, and the cost of each layer.

    ``layers`` holds one :class:`LayerCost` per layer where they differ (read from the modules
    by :func:`decoder_dims_of_layers`); without it every layer costs what the uniform shape says.
    """

    num_layers: int
    hidden: int
    intermediate: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    layers: tuple[LayerCost, ...] | None = None
    #: the first layer that may not reduce (None: every layer may): with KV sharing, the first
    #: layer whose keys later layers reuse, since those must see the same tokens it cached
    reduce_before: int | None = None

    @property
    def stop_layer(self) -> int:
        """One past the last layer that may reduce."""
        return self.num_layers if self.reduce_before is None else self.reduce_before

    @classmethod
    def from_config(cls, cfg: Any) -> DecoderDims:
        heads = cfg.num_attention_heads
        return cls(
            num_layers=cfg.num_hidden_layers,
            hidden=cfg.hidden_size,
            intermediate=cfg.intermediate_size,
            num_heads=heads,
            num_kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
        )

    @property
    def proj_per_token(self) -> int:
        return 2 * self.hidden * (2 * self.num_heads * self.head_dim + 2 * self.num_kv_heads * self.head_dim)

    @property
    def mlp_per_token(self) -> int:
        return 6 * self.hidden * self.intermediate

    def layer(self, idx: int) -> LayerCost:
        """The cost of layer ``idx``."""
        if self.layers is not None:
            return self.layers[idx]
        return LayerCost(self.proj_per_token, self.mlp_per_token, 4 * self.num_heads * self.head_dim)

    def prefill_layer(self, n_attn: int, n_mlp: int, idx: int = 0) -> int:
        """FLOPs of layer ``idx`` when its attention sees ``n_attn`` tokens and its MLP ``n_mlp``."""
        return self.layer(idx).prefill(n_attn, n_mlp)

    def decode_layer(self, kv_len: int, idx: int = 0) -> int:
        """FLOPs of layer ``idx`` for one new token attending to ``kv_len`` cached entries."""
        return self.layer(idx).decode(kv_len)


def layer_ratios(
    schedule: str, ratio: float, start_layer: int, num_layers: int, stop_layer: int | None = None
) -> list[float]:
    """The fraction of the current audio tokens each layer removes; no layer from ``stop_layer``
    on removes anything (``decay`` reaches 0 at the last layer before it)."""
    out = [0.0] * num_layers
    stop = num_layers if stop_layer is None else min(stop_layer, num_layers)
    if start_layer >= stop:
        return out
    if schedule == "constant":
        for layer in range(start_layer, stop):
            out[layer] = ratio
    elif schedule == "decay":
        span = stop - 1 - start_layer
        for layer in range(start_layer, stop):
            out[layer] = ratio if span == 0 else ratio * (1 - (layer - start_layer) / span)
    elif schedule == "once":
        out[start_layer] = ratio
    else:
        raise ConfigError(f"unknown schedule {schedule!r}")
    return out


@dataclass(frozen=True)
class RowPlan:
    """What one row does: tokens removed at each layer and the counts that follow from it."""

    removals: tuple[int, ...]  # audio tokens removed inside layer l
    audio_in: tuple[int, ...]  # audio tokens entering layer l
    total_in: tuple[int, ...]  # all (non-padding) tokens entering layer l
    ratio: float

    @property
    def audio_out(self) -> int:
        return self.audio_in[-1] - self.removals[-1]


def plan_row(
    audio_tokens: int,
    total_tokens: int,
    audio_runs: int,
    schedule: str,
    ratio: float,
    start_layer: int,
    num_layers: int,
    stop_layer: int | None = None,
) -> RowPlan:
    """Removal counts per layer for one row (``audio_runs`` = number of separate audio clips)."""
    removals, audio_in, total_in = [], [], []
    audio, total = audio_tokens, total_tokens
    floor = min(audio_tokens, max(audio_runs, 1))
    for r in layer_ratios(schedule, ratio, start_layer, num_layers, stop_layer):
        k = min(int(audio * r), audio - floor) if r > 0 else 0
        audio_in.append(audio)
        total_in.append(total)
        removals.append(max(k, 0))
        audio -= removals[-1]
        total -= removals[-1]
    return RowPlan(tuple(removals), tuple(audio_in), tuple(total_in), ratio)


def prefill_flops_of_counts(dims: DecoderDims, tokens_in: list[int], tokens_out: list[int]) -> int:
    """Prefill FLOPs of a row whose layer ``l`` takes ``tokens_in[l]`` tokens into attention and
    ``tokens_out[l]`` into its MLP (fewer at a reducing layer)."""
    return sum(dims.prefill_layer(n, m, idx) for idx, (n, m) in enumerate(zip(tokens_in, tokens_out)))


def prefill_flops(dims: DecoderDims, plan: RowPlan) -> int:
    """Counted prefill FLOPs of a row whose hidden states shrink as ``plan`` says."""
    return prefill_flops_of_counts(dims, list(plan.total_in), [n - k for n, k in zip(plan.total_in, plan.removals)])


def full_prefill_flops(dims: DecoderDims, total_tokens: int) -> int:
    """Prefill FLOPs of a row of ``total_tokens`` tokens without reduction."""
    if dims.layers is None:
        return dims.prefill_layer(total_tokens, total_tokens) * dims.num_layers
    return sum(dims.prefill_layer(total_tokens, total_tokens, idx) for idx in range(dims.num_layers))


def decode_step_flops(dims: DecoderDims, kv_lens: list[int]) -> int:
    """FLOPs of one decoding step given the prompt KV length of every layer."""
    return sum(dims.decode_layer(k, idx) for idx, k in enumerate(kv_lens))


def flops_reduction_of(dims: DecoderDims, plan: RowPlan) -> float:
    return 1.0 - prefill_flops(dims, plan) / full_prefill_flops(dims, plan.total_in[0])


def solve_ratio(
    dims: DecoderDims,
    target: float,
    audio_tokens: int,
    total_tokens: int,
    audio_runs: int,
    schedule: str,
    start_layer: int,
    tolerance: float = 0.02,
    iterations: int = 40,
) -> RowPlan:
    """The plan whose counted prefill FLOPs reduction is closest to ``target``.

    The reduction grows with ``r`` (in steps, because counts are integers), so a bisection on
    ``r`` in [0, 1) brackets the target. If even the most aggressive plan falls short of the
    target by more than ``tolerance``, the target is unreachable for this row and we raise,
    rather than silently deliver less.
    """

    def plan(r: float) -> RowPlan:
        return plan_row(
            audio_tokens, total_tokens, audio_runs, schedule, r, start_layer, dims.num_layers, dims.reduce_before
        )

    if target <= 0 or audio_tokens == 0:
        return plan(0.0)
    best = plan(0.999999)
    reachable = flops_reduction_of(dims, best)
    if reachable + tolerance < target:
        raise ConfigError(
            f"flops_reduction={target:.3f} is unreachable with schedule={schedule!r}, start_layer={start_layer} "
            f"on {dims.num_layers} layers for a prompt of {total_tokens} tokens ({audio_tokens} audio): "
            f"at most {reachable:.3f}; lower the target or the start layer"
        )
    lo, hi = 0.0, 0.999999
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if flops_reduction_of(dims, plan(mid)) < target:
            lo = mid
        else:
            hi = mid
    candidates = [plan(lo), plan(hi)]
    return min(candidates, key=lambda p: abs(flops_reduction_of(dims, p) - target))


def plan_batch(
    dims: DecoderDims,
    config: Any,
    audio_tokens: list[int],
    total_tokens: list[int],
    audio_runs: list[int],
    row_names: list[str] | None = None,
) -> list[RowPlan]:
    """One plan per batch row from its audio tokens, total tokens and audio clips, as ``config``
    (a :class:`~espnet_fastadasp.core.config.ReductionConfig`) asks: a fixed ``ratio``, or the ratio
    solved for ``flops_reduction``. An unreachable target raises (``unreachable: error``) or takes
    the most aggressive plan with a warning (``unreachable: max``), naming the row."""
    plans = []
    stop = dims.reduce_before
    names = row_names or [f"batch row {i}" for i in range(len(audio_tokens))]
    for name, a, n, r in zip(names, audio_tokens, total_tokens, audio_runs):
        if config.is_noop or a == 0:
            plans.append(plan_row(a, n, r, config.schedule, 0.0, config.start_layer, dims.num_layers, stop))
        elif config.ratio is not None:
            plans.append(plan_row(a, n, r, config.schedule, config.ratio, config.start_layer, dims.num_layers, stop))
        else:
            try:
                plans.append(solve_ratio(dims, config.flops_reduction, a, n, r, config.schedule, config.start_layer))
            except ConfigError as exc:
                if config.unreachable == "error":
                    raise ConfigError(f"{name}: {exc}") from None
                logger.warning("%s: %s; using the most aggressive plan", name, exc)
                plans.append(plan_row(a, n, r, config.schedule, 0.999999, config.start_layer, dims.num_layers, stop))
    return plans
