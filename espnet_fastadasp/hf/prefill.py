"""One reduced prefill: the sequence layout the layers see, the reduction steps, the stats.

:class:`PrefillLayout` is the state of one prefill as it runs through the decoder: per row,
which positions hold audio / real tokens, their rotary embeddings and position ids (every
surviving token keeps its original position), the per-layer plan, and what each layer's cache
holds. It is made when a prefill starts, changed only by the two steps below, and turned into
:class:`~espnet_fastadasp.core.stats.PrefillStats` and the layers' cache validity when it ends.

* :func:`reduce_hidden`: a hidden-state method shortens the sequence inside a layer;
* :func:`evict_kv`: a KV method removes entries from a layer's cache after its attention.

Nothing here knows transformers beyond the tensors it is handed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from espnet_fastadasp.core.config import ReductionConfig
from espnet_fastadasp.core.flops import (
    DecoderDims,
    RowPlan,
    decode_step_flops,
    full_prefill_flops,
    layer_ratios,
    plan_batch,
    prefill_flops_of_counts,
)
from espnet_fastadasp.core.methods import ReductionMethod
from espnet_fastadasp.core.ops import gather_slots, merge_rows, slot_sources
from espnet_fastadasp.core.stats import PrefillStats, RowStats
from espnet_fastadasp.hf.attention import attention_received
from espnet_fastadasp.hf.masks import attention_mask_for
from espnet_fastadasp.hf.parts import SpeechLMParts, UnsupportedModelError, audio_runs


@dataclass
class PrefillLayout:
    """The layout of the sequence while one prefill runs through the layers."""

    plans: list[RowPlan]
    removals: torch.Tensor  # (B, L) long: tokens leaving the hidden states inside layer l
    evictions: torch.Tensor  # (B, L) long: entries removed from layer l's cache after its attention
    active: frozenset[int]  # layers where some row removes or evicts something
    audio: torch.Tensor  # (B, T) bool, the current layout
    valid: torch.Tensor  # (B, T) bool
    row_seeds: list[int]
    counts: tuple[list[int], list[int]]  # audio and total tokens per row in the current layout
    position_embeddings: Any = None
    position_ids: torch.Tensor | None = None
    shortened: bool = False
    kv_valid: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> its cache's valid entries
    evicted: set[int] = field(default_factory=set)  # layers whose cache a KV method shrank
    audio_in: list[list[int]] = field(default_factory=list)  # per layer, per row
    total_in: list[list[int]] = field(default_factory=list)
    _mask: tuple[int, Any] | None = None

    @classmethod
    def start(
        cls,
        audio: torch.Tensor,
        valid: torch.Tensor,
        plans: list[RowPlan],
        acts_on: str,
        seed: int,
    ) -> PrefillLayout:
        """The layout before layer 0, for a method that ``acts_on`` "hidden" or "kv" (see
        :mod:`.methods`). A KV method evicts, at layer l, what the hidden-state
        methods' layer l would no longer hold (the removals of the layers before it), so its
        caches match theirs in size."""
        per_layer = [list(p.removals) for p in plans]
        zeros = [[0] * len(r) for r in per_layer]
        if acts_on == "kv":
            removals, evictions = zeros, [[sum(r[:layer]) for layer in range(len(r))] for r in per_layer]
        else:
            removals, evictions = per_layer, zeros
        active = frozenset(
            layer
            for layer in range(len(per_layer[0]) if per_layer else 0)
            if any(r[layer] for r in removals) or any(e[layer] for e in evictions)
        )
        counts = ([p.audio_in[0] for p in plans], [p.total_in[0] for p in plans])
        device = valid.device
        return cls(
            plans=plans,
            removals=torch.tensor(removals, dtype=torch.long, device=device),
            evictions=torch.tensor(evictions, dtype=torch.long, device=device),
            active=active,
            audio=audio,
            valid=valid,
            row_seeds=[hash((seed, a, n)) for a, n in zip(*counts)],
            counts=counts,
        )

    def layer_seeds(self, idx: int) -> list[int]:
        return [hash((s, idx)) for s in self.row_seeds]

    def enter_layer(self, idx: int, kwargs: dict[str, Any], implementation: str, dtype: torch.dtype) -> bool:
        """Record what enters layer ``idx``; once shortened, give it the layout's mask, rotary
        embeddings and positions in ``kwargs``. Returns whether ``kwargs`` changed."""
        if self.position_embeddings is None:
            self.position_embeddings = kwargs.get("position_embeddings")
            self.position_ids = kwargs.get("position_ids")
        self.audio_in.append(self.counts[0])
        self.total_in.append(self.counts[1])
        if not self.shortened:
            return False
        version = id(self.valid)
        if self._mask is None or self._mask[0] != version:
            self._mask = (version, attention_mask_for(self.valid, self.valid.shape[1], implementation, dtype))
        kwargs["attention_mask"] = self._mask[1]
        kwargs["position_embeddings"] = self.position_embeddings
        if self.position_ids is not None:
            kwargs["position_ids"] = self.position_ids
        self.kv_valid[idx] = self.valid
        return True

    def shorten(self, src: torch.Tensor) -> None:
        """The sequence now holds, in each slot, the token that was at ``src`` (-1: padding)."""
        self.audio = gather_slots(self.audio, src, fill=False)
        self.valid = src >= 0
        self.counts = (self.audio.sum(-1).tolist(), self.valid.sum(-1).tolist())
        self.position_embeddings = _gather_position_embeddings(self.position_embeddings, src)
        if self.position_ids is not None:
            self.position_ids = gather_slots(self.position_ids.expand(src.shape[0], -1), src, fill=0)
        self.shortened = True


def reducing_layers(config: ReductionConfig, method: ReductionMethod | None, num_layers: int) -> list[int]:
    """The layers whose forward may reduce under ``config`` (none for a no-op config)."""
    if config.is_noop:
        return []
    ratios = layer_ratios(config.schedule, 0.5, config.start_layer, num_layers)
    layers = [i for i, r in enumerate(ratios) if r > 0]
    if method.acts_on == "kv" and layers:  # a cache holds what entered its layer: evict after
        layers = list(range(layers[0] + 1, num_layers))
    return layers


def start_layout(
    ids: torch.Tensor | None,
    mask2d: torch.Tensor | None,
    shape: tuple[int, int],
    device: torch.device,
    parts: SpeechLMParts,
    config: ReductionConfig,
    method: ReductionMethod | None,
    row_names: list[str] | None = None,
) -> PrefillLayout | None:
    """The layout of a prefill of ``shape`` (batch, length) from the prompt's ``input_ids`` and
    2-D attention mask: where the audio is, each row's plan. None for a no-op config whose
    prompt cannot be read (nothing to reduce, so nothing to refuse)."""
    if ids is None or tuple(ids.shape) != tuple(shape):
        if config.is_noop:
            return None
        raise UnsupportedModelError(
            "token reduction needs the prompt's input_ids with the audio placeholders already expanded "
            f"(one per audio token); got {None if ids is None else tuple(ids.shape)} for a prefill of "
            f"{tuple(shape)}. Build inputs with the model's processor."
        )
    length = shape[1]
    audio = (ids == parts.audio_token_id).to(device)
    valid = torch.ones_like(audio) if mask2d is None else mask2d[:, -length:].bool().to(device)
    audio &= valid
    dims = DecoderDims.from_config(parts.text_config)
    names = row_names if row_names is not None and len(row_names) == shape[0] else None
    plans = plan_batch(
        dims, config, audio.sum(-1).tolist(), valid.sum(-1).tolist(), audio_runs(audio).tolist(), row_names=names
    )
    acts_on = method.acts_on if method is not None else "hidden"
    return PrefillLayout.start(audio, valid, plans, acts_on, config.seed)


def _scores(
    method: ReductionMethod, layout: PrefillLayout, query: torch.Tensor, key: torch.Tensor, scaling: float, chunk: int
) -> torch.Tensor:
    if not method.needs_attention:
        return torch.ones(layout.valid.shape, dtype=torch.float32, device=layout.valid.device)
    return attention_received(query, key, layout.valid, layout.valid, scaling, chunk)


def reduce_hidden(
    layout: PrefillLayout,
    method: ReductionMethod,
    idx: int,
    hidden: torch.Tensor,
    query: torch.Tensor,
    key: torch.Tensor,
    scaling: float,
    chunk: int,
) -> torch.Tensor:
    """Shorten ``hidden`` (B, T, C) at layer ``idx`` (after attention + residual), updating ``layout``."""
    T = hidden.shape[1]
    key = key[:, :, -T:]
    scores = _scores(method, layout, query, key, scaling, chunk)
    keys_flat = key.transpose(1, 2).reshape(key.shape[0], T, -1)
    dest, weight, out_len = method.assign(
        keys_flat, scores, layout.audio, layout.valid, layout.removals[:, idx], layout.layer_seeds(idx)
    )
    merged = merge_rows(hidden, dest, weight, out_len)
    layout.shorten(slot_sources(dest, out_len))
    return merged


def evict_kv(
    layout: PrefillLayout,
    method: ReductionMethod,
    idx: int,
    layer_cache: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    scaling: float,
    chunk: int,
) -> None:
    """Remove the chosen audio entries from layer ``idx``'s cache (really removed, not masked)."""
    keys, values = getattr(layer_cache, "keys", None), getattr(layer_cache, "values", None)
    if keys is None or values is None:
        raise UnsupportedModelError(
            f"{type(layer_cache).__name__}: KV eviction needs a transformers DynamicCache layer (keys, values)"
        )
    T = layout.valid.shape[1]
    scores = _scores(method, layout, query, key[:, :, -T:], scaling, chunk)
    dest, _, out_len = method.assign(
        None, scores, layout.audio, layout.valid, layout.evictions[:, idx], layout.layer_seeds(idx)
    )
    src = slot_sources(dest, out_len)
    layer_cache.keys = gather_slots(keys, src, dim=2)
    layer_cache.values = gather_slots(values, src, dim=2)
    layout.kv_valid[idx] = src >= 0
    layout.evicted.add(idx)


def prefill_stats(layout: PrefillLayout, dims: DecoderDims, config: ReductionConfig) -> PrefillStats:
    """What the prefill did, per row, counted from the layout's real per-layer token counts."""
    rows = []
    L = dims.num_layers
    final_total = layout.valid.sum(-1).tolist()
    final_audio = layout.audio.sum(-1).tolist()
    kv_counts = {i: layout.kv_valid[i].sum(-1).tolist() for i in sorted(layout.evicted)}
    for b, plan in enumerate(layout.plans):
        audio_in = [layout.audio_in[i][b] for i in range(L)]
        total_in = [layout.total_in[i][b] for i in range(L)]
        total_out = total_in[1:] + [final_total[b]]
        # a layer's cache holds what entered it, less what a KV method evicted from it
        kv = [kv_counts[i][b] if i in kv_counts else total_in[i] for i in range(L)]
        rows.append(
            RowStats(
                audio_tokens=audio_in,
                total_tokens=total_in,
                kv_tokens=kv,
                audio_tokens_out=final_audio[b],
                ratio=plan.ratio,
                flops_full=full_prefill_flops(dims, total_in[0]),
                flops_reduced=prefill_flops_of_counts(dims, total_in, total_out),
                decode_step_flops_full=decode_step_flops(dims, [total_in[0]] * L),
                decode_step_flops_reduced=decode_step_flops(dims, kv),
            )
        )
    return PrefillStats(method=config.method, schedule=config.schedule, target=config.flops_reduction, rows=rows)


def _gather_position_embeddings(pe: Any, src: torch.Tensor) -> Any:
    """Gather (cos, sin) of shape (B|1, T, D) at the surviving tokens' original positions."""
    if pe is None:
        return None
    out = []
    for t in pe:
        if t.dim() != 3:
            raise UnsupportedModelError(
                f"rotary embeddings of shape {tuple(t.shape)} are not supported (expected (B, T, D))"
            )
        out.append(gather_slots(t.expand(src.shape[0], -1, -1), src, dim=1, fill=0))
    return tuple(out)
