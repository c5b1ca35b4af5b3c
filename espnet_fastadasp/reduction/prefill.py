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
from espnet_fastadasp.models.parts import UnsupportedModelError, audio_runs
from espnet_fastadasp.reduction.kv_sharing import KVSharing
from espnet_fastadasp.reduction.masks import KeyWindow, attention_mask_for

#: per-token inputs a decoder hands its layers for the whole prompt, which a shortened layout
#: brings to its slots with the merges' composite (:meth:`PrefillLayout.follow`)
PER_TOKEN_INPUTS = ("per_layer_input",)
#: inputs the layout replaces itself once shortened (masks, rotary embeddings, positions)
LAYOUT_INPUTS = ("attention_mask", "position_embeddings", "position_ids", "cache_position")


@dataclass
class PrefillLayout:
    """The layout of the sequence while one prefill runs through the layers.

    Every length the layers will see is fixed by the plans before layer 0 runs (a method with
    ``exact_counts`` removes exactly what its plan says), and so are the random methods' seeds:
    nothing in the layer loop waits for the device. What each layer held is kept as the masks
    themselves and counted only when the prefill has ended (:func:`prefill_stats`).
    """

    plans: list[RowPlan]
    removals: torch.Tensor  # (B, L) long: tokens leaving the hidden states inside layer l
    evictions: torch.Tensor  # (B, L) long: entries removed from layer l's cache after its attention
    lengths: list[int]  # per layer: the longest row after that layer's step (hidden states or cache)
    padded_after: list[bool]  # per layer: whether some row is shorter than the longest after its step
    seeds: torch.Tensor  # (L, B) int64: the random methods' seed of each row at each layer
    active: frozenset[int]  # layers where some row removes or evicts something
    audio: torch.Tensor  # (B, T) bool, the current layout
    valid: torch.Tensor  # (B, T) bool
    origin: torch.Tensor  # (B, T) long: the index each slot's token held in the prompt (0 at padding)
    windows: tuple[int | None, ...] = ()  # per layer: its sliding window (None: full attention)
    shortened: bool = False
    padded: bool = True  # whether the current layout has padding (from the plans; True where unknown)
    kv_valid: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> its cache's valid entries
    kv_origin: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> its entries' prompt indices
    evicted: set[int] = field(default_factory=set)  # layers whose cache a KV method shrank
    entered: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)  # per layer: (audio, valid)
    #: the hidden-state merges so far as one: each prompt token's slot now (-1: gone) and its
    #: share of that slot's weighted mean, and the slots' count (what per-token inputs follow)
    merged: tuple[torch.Tensor, torch.Tensor, int] | None = None
    last_merge: tuple[torch.Tensor, torch.Tensor, int] | None = None  # (dest, weight, out_len) of the newest
    sharing: KVSharing | None = None  # which layer's cache each layer's attention reads (KV sharing)
    _tail_checked: set[int] = field(default_factory=set)  # query counts whose tail slots were checked
    _masks: dict[tuple[int | None, int], Any] = field(default_factory=dict)  # (window, queries) -> mask
    _gathered: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # id(given) -> (given, gathered)

    @classmethod
    def start(
        cls,
        audio: torch.Tensor,
        valid: torch.Tensor,
        plans: list[RowPlan],
        acts_on: str,
        seed: int,
        windows: tuple[int | None, ...] = (),
        sharing: KVSharing | None = None,
    ) -> PrefillLayout:
        """The layout before layer 0, for a method that ``acts_on`` "hidden" or "kv" (see
        :mod:`.methods`). A KV method evicts, at layer l, what the hidden-state
        methods' layer l would no longer hold (the removals of the layers before it), so its
        caches match theirs in size."""
        per_layer = [list(p.removals) for p in plans]
        num_layers = len(per_layer[0]) if per_layer else 0
        zeros = [[0] * len(r) for r in per_layer]
        if acts_on == "kv":
            removals, evictions = zeros, [[sum(r[:layer]) for layer in range(len(r))] for r in per_layer]
            kept = [list(p.total_in) for p in plans]  # a cache keeps what the hidden methods' layer holds
        else:
            removals, evictions = per_layer, zeros
            kept = [[n - k for n, k in zip(p.total_in, p.removals)] for p in plans]
        active = frozenset(
            layer for layer in range(num_layers) if any(r[layer] for r in removals) or any(e[layer] for e in evictions)
        )
        lengths = [max(row[layer] for row in kept) for layer in range(num_layers)] if kept else []
        row_seeds = [hash((seed, p.audio_in[0], p.total_in[0])) for p in plans]
        seeds = [[_int64(hash((s, layer))) for s in row_seeds] for layer in range(num_layers)]
        device = valid.device
        return cls(
            plans=plans,
            removals=torch.tensor(removals, dtype=torch.long, device=device),
            evictions=torch.tensor(evictions, dtype=torch.long, device=device),
            lengths=lengths,
            padded_after=[any(row[layer] != lengths[layer] for row in kept) for layer in range(num_layers)],
            seeds=torch.tensor(seeds, dtype=torch.long, device=device).reshape(num_layers, len(plans)),
            active=active,
            audio=audio,
            valid=valid,
            origin=torch.arange(valid.shape[1], device=device).expand(valid.shape).contiguous(),
            windows=tuple(windows) or (None,) * num_layers,
            sharing=sharing,
            padded=any(p.total_in[0] != valid.shape[1] for p in plans),
        )

    def key_window(self, idx: int) -> KeyWindow | None:
        """Layer ``idx``'s sliding window over the current layout, None for full attention (or a
        window wider than the prompt, which masks nothing)."""
        size = self.windows[idx]
        if size is None or size >= self.entered_width:
            return None
        return KeyWindow(size, self.origin)

    @property
    def entered_width(self) -> int:
        """The prompt's width before any reduction (the layout layer 0 saw)."""
        return self.entered[0][1].shape[1] if self.entered else self.valid.shape[1]

    def enter_layer(
        self, idx: int, inputs: dict[str, Any], implementation: str, dtype: torch.dtype, queries: int | None = None
    ) -> bool:
        """Record what enters layer ``idx``; once shortened, give it the layout's mask, rotary
        embeddings, positions and per-token inputs in ``inputs`` (the layer's arguments by name).
        ``queries``: the length of the hidden states it gets, when the model keeps only the last
        tokens' (Gemma 4 from its first KV-sharing layer on, see :meth:`_enter_tail`). Returns
        whether ``inputs`` changed."""
        self.entered.append((self.audio, self.valid))
        if not self.shortened:
            return False
        if self.sharing is None or not self.sharing.reuses(idx):  # a reusing layer holds no cache
            self.kv_valid[idx] = self.valid
            self.kv_origin[idx] = self.origin
        width = self.valid.shape[1]
        if queries is not None and queries != width:
            self._enter_tail(idx, inputs, implementation, dtype, queries)
            return True
        window = self.key_window(idx)
        if implementation == "sdpa" and not self.padded and window is None:
            # no padding: SDPA's causal kernel (is_causal, no mask) skips the masked half of the scores
            inputs["attention_mask"] = None
        else:
            inputs["attention_mask"] = self._mask(window, width, implementation, dtype)
        for name in ("position_embeddings", "position_ids"):
            if inputs.get(name) is not None:
                inputs[name] = self._at_slots(inputs[name], positions=name == "position_embeddings")
        width = self.entered_width
        for name, value in inputs.items():
            if name in PER_TOKEN_INPUTS and torch.is_tensor(value):
                inputs[name] = self.follow(value)
            elif name not in LAYOUT_INPUTS and torch.is_tensor(value) and value.dim() >= 2 and value.shape[1] == width:
                raise UnsupportedModelError(
                    f"decoder layer {idx} takes a per-token input {name!r} {tuple(value.shape)} that token reduction "
                    "does not shorten; not supported"
                )
        return True

    def _mask(self, window: KeyWindow | None, queries: int, implementation: str, dtype: torch.dtype) -> Any:
        """The mask of the last ``queries`` slots over the current layout (built once per layout)."""
        key = (None if window is None else window.size, queries)
        if key not in self._masks:
            self._masks[key] = attention_mask_for(self.valid, queries, implementation, dtype, window)
        return self._masks[key]

    def _enter_tail(self, idx: int, inputs: dict[str, Any], implementation: str, dtype: torch.dtype, q: int) -> None:
        """Layer ``idx`` gets only the last ``q`` slots' hidden states (the model dropped the
        others' queries: its later layers only read keys stored earlier). Those slots must hold
        the prompt's last ``q`` tokens unmerged, as they do (text after the audio); then the
        positions and per-token inputs the model sliced for them are already right, and only the
        mask (the last ``q`` queries over the shortened keys) is ours. Checked once per layout
        (one host sync), not at each of the layers that follow."""
        if q not in self._tail_checked:
            T0 = self.entered_width
            tail = torch.arange(T0 - q, T0, device=self.origin.device)
            if q > self.valid.shape[1] or not bool(((self.origin[:, -q:] == tail) & self.valid[:, -q:]).all()):
                raise UnsupportedModelError(
                    f"decoder layer {idx} gets the hidden states of the last {q} slots only, and they do not hold "
                    f"the prompt's last {q} tokens unreduced: not supported"
                )
            self._tail_checked.add(q)
        inputs["attention_mask"] = self._mask(self.key_window(idx), q, implementation, dtype)

    def _at_slots(self, given: Any, positions: bool) -> Any:
        """``given`` (the decoder's tensors for the whole prompt, one per layer type) taken at the
        current slots; the same object for every layer of a type, so gathered once per layout."""
        hit = self._gathered.get(id(given))
        if hit is not None and hit[0] is given:
            return hit[1]
        src = torch.where(self.valid, self.origin, torch.full_like(self.origin, -1))
        if positions:
            out = _gather_position_embeddings(given, src)
        else:
            out = gather_slots(given.expand(src.shape[0], -1), src, fill=0)
        self._gathered[id(given)] = (given, out)
        return out

    def record_merge(self, dest: torch.Tensor, weight: torch.Tensor, out_len: int) -> None:
        """Add a hidden-state merge to the composite: a prompt token's share of its slot is the
        product of its normalised weights along the merges (a weighted mean of weighted means),
        so a per-token input follows all merges so far in one merge, whatever their number."""
        sent = dest >= 0
        idx = dest.clamp(min=0)
        w = torch.where(sent, weight.float().clamp(min=1e-12), torch.zeros((), device=dest.device))
        den = torch.zeros(dest.shape[0], out_len, device=dest.device).scatter_add_(1, idx, w)
        norm = w / den.gather(1, idx).clamp(min=1e-30)  # as merge_rows normalises: a single member gets 1.0
        if self.merged is None:
            slot, share = dest, norm
        else:
            prev_slot, prev_share, _ = self.merged
            alive = prev_slot >= 0
            at = prev_slot.clamp(min=0)
            slot = torch.where(alive, dest.gather(1, at), torch.full_like(prev_slot, -1))
            share = torch.where(slot >= 0, prev_share * norm.gather(1, at), torch.zeros((), device=dest.device))
        self.merged, self.last_merge = (slot, share, out_len), (dest, weight, out_len)

    def follow(self, x: torch.Tensor) -> torch.Tensor:
        """A per-token input of the whole prompt (B, T0, ...) at the current layout: merged tokens
        get the same weighted mean as their hidden states (Gemma's per-layer inputs)."""
        return x if self.merged is None else _merge_any(x, *self.merged)

    def follow_last(self, x: torch.Tensor) -> torch.Tensor:
        """A per-token input at the layout before the newest merge, brought through that merge."""
        return x if self.last_merge is None else _merge_any(x, *self.last_merge)

    def out_length(self, method: ReductionMethod, idx: int) -> int | None:
        """The length after layer ``idx``'s step, if the plan fixes it (None: read it from the data)."""
        return self.lengths[idx] if method.exact_counts else None

    def shorten(self, src: torch.Tensor, padded: bool = True) -> None:
        """The sequence now holds, in each slot, the token that was at ``src`` (-1: padding);
        ``padded``: whether some slot is padding (known from the plan; True when unknown)."""
        self.padded = padded
        self.audio = gather_slots(self.audio, src, fill=False)
        self.valid = src >= 0
        self.origin = gather_slots(self.origin, src, fill=0)
        self._masks.clear()
        self._gathered.clear()
        self._tail_checked.clear()
        self.shortened = True


def _int64(value: int) -> int:
    """A Python hash as a non-negative int64 (what a seed tensor holds)."""
    return value & 0x7FFF_FFFF_FFFF_FFFF


def reducing_layers(
    config: ReductionConfig, method: ReductionMethod | None, dims: DecoderDims, sharing: KVSharing | None = None
) -> list[int]:
    """The layers whose forward may reduce under ``config`` (none for a no-op config): a KV
    method evicts after the first planned layer, from every layer that holds a cache."""
    if config.is_noop:
        return []
    num_layers = dims.num_layers
    ratios = layer_ratios(config.schedule, 0.5, config.start_layer, num_layers, dims.reduce_before)
    layers = [i for i, r in enumerate(ratios) if r > 0]
    if method.acts_on == "kv" and layers:  # a cache holds what entered its layer: evict after
        layers = [i for i in range(layers[0] + 1, num_layers) if sharing is None or not sharing.reuses(i)]
    return layers


def start_layout(
    ids: torch.Tensor | None,
    mask2d: torch.Tensor | None,
    shape: tuple[int, int],
    device: torch.device,
    handle: Any,
    row_names: list[str] | None = None,
) -> PrefillLayout | None:
    """The layout of a prefill of ``shape`` (batch, length) from the prompt's ``input_ids`` and
    2-D attention mask: where the audio is, each row's plan. ``handle``: the
    :class:`~espnet_fastadasp.reduction.patch.ReductionHandle` (its parts, config, method, per-layer
    costs, windows and KV sharing). None for a no-op config whose prompt cannot be read (nothing to reduce,
    so nothing to refuse)."""
    parts, config, method, dims = handle.parts, handle.config, handle.method, handle.dims
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
    names = row_names if row_names is not None and len(row_names) == shape[0] else None
    plans = plan_batch(
        dims, config, audio.sum(-1).tolist(), valid.sum(-1).tolist(), audio_runs(audio).tolist(), row_names=names
    )
    acts_on = method.acts_on if method is not None else "hidden"
    return PrefillLayout.start(audio, valid, plans, acts_on, config.seed, handle.windows, handle.sharing)


def _assign(
    layout: PrefillLayout,
    method: ReductionMethod,
    idx: int,
    keys_flat: torch.Tensor | None,
    received: torch.Tensor | None,
    k: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The method's assignment at layer ``idx`` for the current layout, removing ``k`` per row.

    received: the attention each token received, or None (then ones) for a method that does not
    read it; the seeds and the output length come from the plan."""
    if received is None:
        received = torch.ones(layout.valid.shape, dtype=torch.float32, device=layout.valid.device)
    return method.assign(
        keys_flat, received, layout.audio, layout.valid, k, layout.seeds[idx], layout.out_length(method, idx)
    )


def reduce_hidden(
    layout: PrefillLayout,
    method: ReductionMethod,
    idx: int,
    hidden: torch.Tensor,
    key: torch.Tensor,
    received: torch.Tensor | None,
) -> torch.Tensor:
    """Shorten ``hidden`` (B, T, C) at layer ``idx`` (after attention + residual), updating ``layout``.

    key: the layer's keys (B, Hkv, K, D); received: the attention each token received (B, T),
    or None where the method does not read it."""
    T = hidden.shape[1]
    key = key[:, :, -T:]
    keys_flat = key.transpose(1, 2).reshape(key.shape[0], T, -1)
    dest, weight, out_len = _assign(layout, method, idx, keys_flat, received, layout.removals[:, idx])
    merged = merge_rows(hidden, dest, weight, out_len)
    layout.record_merge(dest, weight, out_len)
    layout.shorten(slot_sources(dest, out_len), padded=not method.exact_counts or layout.padded_after[idx])
    return merged


def evict_kv(
    layout: PrefillLayout, method: ReductionMethod, idx: int, layer_cache: Any, received: torch.Tensor | None
) -> None:
    """Remove the chosen audio entries from layer ``idx``'s cache (really removed, not masked)."""
    keys, values = getattr(layer_cache, "keys", None), getattr(layer_cache, "values", None)
    if keys is None or values is None:
        raise UnsupportedModelError(
            f"{type(layer_cache).__name__}: KV eviction needs a transformers DynamicCache layer (keys, values)"
        )
    T = layout.valid.shape[1]
    if keys.shape[2] != T:
        raise UnsupportedModelError(f"layer {idx}'s cache holds {keys.shape[2]} entries after a prefill of {T}")
    dest, _, out_len = _assign(layout, method, idx, None, received, layout.evictions[:, idx])
    src = slot_sources(dest, out_len)
    layer_cache.keys = gather_slots(keys, src, dim=2)
    layer_cache.values = gather_slots(values, src, dim=2)
    layout.kv_valid[idx] = src >= 0
    layout.kv_origin[idx] = gather_slots(layout.origin, src, fill=0)
    layout.evicted.add(idx)


def prefill_stats(layout: PrefillLayout, dims: DecoderDims, config: ReductionConfig) -> PrefillStats:
    """What the prefill did, per row, counted from the layout's real per-layer token counts."""
    rows = []
    L = dims.num_layers
    final_total = layout.valid.sum(-1).tolist()
    final_audio = layout.audio.sum(-1).tolist()
    # counted now, after the last layer: one transfer instead of a synchronisation per layer
    counted = torch.stack([torch.stack([a.sum(-1), v.sum(-1)]) for a, v in layout.entered]).tolist()  # (L, 2, B)
    kv_counts = {i: layout.kv_valid[i].sum(-1).tolist() for i in sorted(layout.evicted)}
    for b, plan in enumerate(layout.plans):
        audio_in = [counted[i][0][b] for i in range(L)]
        total_in = [counted[i][1][b] for i in range(L)]
        total_out = total_in[1:] + [final_total[b]]
        # a layer's cache holds what entered it, less what a KV method evicted from it
        kv = [kv_counts[i][b] if i in kv_counts else total_in[i] for i in range(L)]
        if layout.sharing is not None:  # a reusing layer reads its source's cache
            kv = [kv[src] for src in layout.sharing.sources]
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


def _merge_any(x: torch.Tensor, dest: torch.Tensor, weight: torch.Tensor, out_len: int) -> torch.Tensor:
    """:func:`merge_rows` over a (B, T, ...) tensor of any trailing shape."""
    shape = x.shape
    return merge_rows(x.reshape(shape[0], shape[1], -1), dest, weight, out_len).reshape(shape[0], out_len, *shape[2:])


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
