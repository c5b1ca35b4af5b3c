"""Apply token reduction to a transformers Speech LM: ``handle = apply(model, config)``.

What changes, and nothing else:

* a forward pre-hook on the top model remembers ``input_ids`` and the 2-D ``attention_mask``
  (where the audio placeholders are, which rows are padded);
* pre/post hooks on the text decoder start and finish a *prefill* (more than one new token,
  empty cache) and keep the per-layer key masks that the decoding steps need;
* a pre-hook on every decoder layer hands it the attention mask, rotary embeddings and
  position ids of the (possibly shortened) sequence it now sees;
* at reducing layers only, ``forward`` is replaced by the same pre-norm block split in two
  (attention + residual, *reduce*, MLP + residual), and the attention module calls the model's
  own kernel through a recorder that keeps the queries and keys (see :mod:`.attention`).

Decoding steps are not touched except for their masks: every layer after a reduction simply
holds a shorter KV cache. ``handle.remove()`` undoes all of it.

While a patched decoder runs, PyTorch's cuDNN attention backend is switched off (and restored
when the decoder returns, also on error): with the per-layer lengths and masks a reduction
creates, SDPA picks cuDNN on Hopper GPUs, which builds an execution plan for every new shape.
Measured on an H100 (torch 2.11, Qwen2-Audio-7B shape, 60 s of audio, constant schedule at
50 %): the first generation of a new length took 2.0 s per decoding step and 6.4 s of prefill,
against 39 ms and 0.7 s with cuDNN attention off, and 27 ms and 0.5 s with this patch. Real
data has a new length per utterance.
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .attention import (
    RECORDING_IMPLEMENTATION,
    SUPPORTED_IMPLEMENTATIONS,
    AttentionRecorder,
    attention_received,
    base_attention_function,
)
from .config import KV_ONLY_METHODS, ConfigError, ReductionConfig
from .flops import DecoderDims, RowPlan, decode_step_flops, full_prefill_flops, layer_ratios, plan_row, solve_ratio
from .hf_compat import (
    CACHE_POSITION_KWARG,
    DynamicCache,
    cache_from_kwargs,
    has_cache_position,
    warn_if_untested,
    with_attn_implementation,
)
from .masks import attention_mask_for
from .models import SpeechLMParts, UnsupportedModelError, audio_runs, speech_lm_parts
from .ops import assignment_from_groups, evict_mask, gather_slots, merge_rows, reduce_tokens, slot_sources
from .stats import PrefillStats, RowStats

logger = logging.getLogger(__name__)

#: Methods whose reduction needs the attention each token received.
NEEDS_SCORES = frozenset({"fastadasp", "random_merge", "fastv", "h2o"})


@dataclass
class _Prefill:
    """The layout of the sequence while one prefill runs through the layers."""

    length: int  # the full prompt length (what layer 0 caches)
    plans: list[RowPlan]
    removals: torch.Tensor  # (B, L) long, per-layer counts (cumulative for h2o)
    active: frozenset[int]  # layers where some row removes something
    counts: tuple[list[int], list[int]]  # audio and total tokens per row in the current layout
    audio: torch.Tensor  # (B, T) bool
    valid: torch.Tensor  # (B, T) bool
    row_seeds: list[int]
    position_embeddings: Any = None
    position_ids: torch.Tensor | None = None
    shortened: bool = False
    mask_cache: dict[int, Any] = field(default_factory=dict)
    kv_valid: dict[int, torch.Tensor] = field(default_factory=dict)
    audio_in: list[list[int]] = field(default_factory=list)  # per layer, per row
    total_in: list[list[int]] = field(default_factory=list)


@dataclass
class _Prompt:
    """What decoding steps need from the prefill: the prompt length and the per-layer key masks."""

    length: int
    kv_valid: dict[int, torch.Tensor]
    padded: dict[int, bool] = field(default_factory=dict)  # layer -> its shortened cache has padding


@dataclass
class _Decode:
    key_tail: torch.Tensor  # (B, t) validity of the tokens after the prompt, incl. the new ones
    q_len: int
    tail_full: bool  # every generated position is valid (always, under generate)
    masks: dict[int, Any] = field(default_factory=dict)


class ReductionHandle:
    """The live patch of one model. ``stats`` describes the last prefill; ``remove()`` undoes."""

    def __init__(self, model: nn.Module, config: ReductionConfig, parts: SpeechLMParts) -> None:
        self.model = model
        self.config = config
        self.parts = parts
        self.dims = DecoderDims.from_config(parts.text_config)
        self.stats: PrefillStats | None = None
        self._hooks: list[Any] = []
        self._undo: list[Callable[[], None]] = []
        self._inputs: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        self._prefill: _Prefill | None = None
        self._prompt: _Prompt | None = None
        self._decode: _Decode | None = None
        self._reducing_layers = self._layers_that_reduce()
        self._removed = False
        self._cudnn_sdp_before: bool | None = None

    # ------------------------------------------------------------------ set-up and removal

    def _layers_that_reduce(self) -> list[int]:
        if self.config.is_noop:
            return []
        ratios = layer_ratios(self.config.schedule, 0.5, self.config.start_layer, self.dims.num_layers)
        layers = [i for i, r in enumerate(ratios) if r > 0]
        if self.config.method in KV_ONLY_METHODS and layers:
            layers = list(range(layers[0] + 1, self.dims.num_layers))
        return layers

    def _install(self) -> None:
        impl = self.parts.attn_implementation
        self._hooks.append(self.model.register_forward_pre_hook(self._on_model_call, with_kwargs=True))
        dec = self.parts.decoder
        self._hooks.append(dec.register_forward_pre_hook(self._on_decoder_start, with_kwargs=True))
        self._hooks.append(dec.register_forward_hook(self._on_decoder_end, with_kwargs=True))
        if not self.config.is_noop and hasattr(torch.backends.cuda, "enable_cudnn_sdp"):  # torch >= 2.4
            self._hooks.append(dec.register_forward_pre_hook(self._cudnn_attention_off))
            self._hooks.append(dec.register_forward_hook(self._cudnn_attention_restore, always_call=True))
        for idx, layer in enumerate(self.parts.layers):
            self._hooks.append(layer.register_forward_pre_hook(self._layer_pre_hook(idx), with_kwargs=True))
        for idx in self._reducing_layers:
            layer = self.parts.layers[idx]
            attn = layer.self_attn
            attn._fastadasp_recorder = AttentionRecorder(base=base_attention_function(attn, impl))
            original_config = attn.config
            attn.config = with_attn_implementation(original_config, RECORDING_IMPLEMENTATION)
            original_forward = layer.forward
            if self.config.method in KV_ONLY_METHODS:
                layer.forward = types.MethodType(_kv_evicting_forward(self, idx, original_forward), layer)
            else:
                layer.forward = types.MethodType(_reducing_forward(self, idx, original_forward), layer)
            self._undo.append(_restorer(layer, attn, original_config))

    def remove(self) -> None:
        """Restore the model exactly as it was (hooks, forwards, attention configs)."""
        if self._removed:
            return
        for hook in self._hooks:
            hook.remove()
        for undo in reversed(self._undo):
            undo()
        self._hooks.clear()
        self._undo.clear()
        self._prefill = self._prompt = self._decode = None
        self._removed = True
        self.model.__dict__.pop("_fastadasp_handle", None)

    def prepare_shared_decoding(self, repeats: int, drop_last: int = 0) -> None:
        """Decoding continues from the last prefill with ``repeats`` rows per prompt (beams sharing
        one prompt) after the cache dropped its ``drop_last`` newest entries (to be fed again).

        Called by :func:`espnet_fastadasp.shared_prompt.generate_with_shared_prompt`; the
        shortened layers' key masks of the decoding steps then fit the cache they decode against.
        """
        p = self._prompt
        if p is None:
            return
        stop = -drop_last if drop_last else None
        kv_valid = {layer: valid[:, :stop].repeat_interleave(repeats, dim=0) for layer, valid in p.kv_valid.items()}
        padded = {layer: not bool(valid.all()) for layer, valid in kv_valid.items()}
        self._prompt = _Prompt(length=p.length - drop_last, kv_valid=kv_valid, padded=padded)

    def __enter__(self) -> ReductionHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    # ------------------------------------------------------------------ hooks

    def _on_model_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args and torch.is_tensor(args[0]) else None)
        self._inputs = (ids, kwargs.get("attention_mask"))

    def _on_decoder_start(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self._prefill = self._decode = None
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            embeds = kwargs.get("input_ids", args[0] if args else None)
        if embeds is None:
            return
        q_len = embeds.shape[1]
        cache = cache_from_kwargs(kwargs)
        past = cache.get_seq_length() if cache is not None else 0
        use_cache = kwargs.get("use_cache")
        if use_cache is None:
            use_cache = getattr(self.parts.text_config, "use_cache", True)
        if past == 0 and q_len > 1 and use_cache:
            if cache is not None and not self.config.is_noop and not isinstance(cache, DynamicCache):
                raise UnsupportedModelError(
                    f"token reduction needs the default DynamicCache (later layers hold fewer entries); "
                    f"got {type(cache).__name__}: do not set cache_implementation"
                )
            self._start_prefill(embeds.shape[0], q_len, embeds.device)
        elif past > 0 and self._prompt is not None and self._prompt.kv_valid:
            mask2d = self._inputs[1]
            total = past + q_len
            if mask2d is None or mask2d.dim() != 2:
                tail = torch.ones(embeds.shape[0], total - self._prompt.length, dtype=torch.bool, device=embeds.device)
            else:
                tail = mask2d[:, self._prompt.length : total].bool()
            self._decode = _Decode(key_tail=tail, q_len=q_len, tail_full=bool(tail.all()))
        elif past == 0:
            self._prompt = None

    def _cudnn_attention_off(self, module: nn.Module, args: tuple) -> None:
        """No cuDNN SDPA inside the patched decoder: it plans per shape (see the module docstring)."""
        if self._cudnn_sdp_before is None:
            self._cudnn_sdp_before = torch.backends.cuda.cudnn_sdp_enabled()
            torch.backends.cuda.enable_cudnn_sdp(False)

    def _cudnn_attention_restore(self, module: nn.Module, args: tuple, output: Any) -> None:
        if self._cudnn_sdp_before is not None:
            torch.backends.cuda.enable_cudnn_sdp(self._cudnn_sdp_before)
            self._cudnn_sdp_before = None

    def _start_prefill(self, batch: int, length: int, device: torch.device) -> None:
        self._prompt = None
        ids, mask2d = self._inputs
        if ids is None or ids.shape != (batch, length):
            if self.config.is_noop:
                self._prefill = None
                return
            raise UnsupportedModelError(
                "token reduction needs the prompt's input_ids with the audio placeholders already expanded "
                f"(one per audio token); got {None if ids is None else tuple(ids.shape)} for a prefill of "
                f"{(batch, length)}. Build inputs with the model's processor."
            )
        audio = (ids == self.parts.audio_token_id).to(device)
        valid = torch.ones_like(audio) if mask2d is None else mask2d[:, -length:].bool().to(device)
        audio &= valid
        counts = (audio.sum(-1).tolist(), valid.sum(-1).tolist())
        plans = self._plan(*counts, audio_runs(audio).tolist())
        removals = [list(p.removals) for p in plans]
        if self.config.method in KV_ONLY_METHODS:
            # h2o keeps the hidden states whole; layer l's cache holds as many entries as the
            # merge methods' layer l would (what entered it), so it evicts the removals before l
            removals = [[sum(r[:layer]) for layer in range(len(r))] for r in removals]
        active = frozenset(layer for layer in range(self.dims.num_layers) if any(r[layer] for r in removals))
        seeds = [hash((self.config.seed, a, n)) for a, n in zip(*counts)]
        self._prefill = _Prefill(
            length=length,
            plans=plans,
            removals=torch.tensor(removals, dtype=torch.long, device=device),
            active=active,
            counts=counts,
            audio=audio,
            valid=valid,
            row_seeds=seeds,
        )

    def _plan(self, audio_counts: list[int], totals: list[int], runs: list[int]) -> list[RowPlan]:
        """One plan per row, from its audio tokens, total tokens and audio clips."""
        cfg = self.config
        plans = []
        for row, (a, n, r) in enumerate(zip(audio_counts, totals, runs)):
            if cfg.is_noop or a == 0:
                plans.append(plan_row(a, n, r, cfg.schedule, 0.0, cfg.start_layer, self.dims.num_layers))
            elif cfg.ratio is not None:
                plans.append(plan_row(a, n, r, cfg.schedule, cfg.ratio, cfg.start_layer, self.dims.num_layers))
            else:
                try:
                    plans.append(solve_ratio(self.dims, cfg.flops_reduction, a, n, r, cfg.schedule, cfg.start_layer))
                except ConfigError as exc:
                    if cfg.unreachable == "error":
                        raise ConfigError(f"batch row {row}: {exc}") from None
                    logger.warning("batch row %d: %s; using the most aggressive plan", row, exc)
                    plans.append(plan_row(a, n, r, cfg.schedule, 0.999999, cfg.start_layer, self.dims.num_layers))
        return plans

    def _layer_pre_hook(self, idx: int) -> Callable:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if self._prefill is not None:
                return self._prefill_layer_inputs(idx, args, kwargs)
            if self._decode is not None and self._prompt is not None:
                return self._decode_layer_inputs(idx, args, kwargs)
            return None

        return hook

    def _prefill_layer_inputs(self, idx: int, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        st = self._prefill
        if st.position_embeddings is None:
            st.position_embeddings = kwargs.get("position_embeddings")
            st.position_ids = kwargs.get("position_ids")
        st.audio_in.append(st.counts[0])
        st.total_in.append(st.counts[1])
        if not st.shortened:
            return None
        version = id(st.valid)
        if version not in st.mask_cache:
            dtype = args[0].dtype if args else kwargs["hidden_states"].dtype
            st.mask_cache = {
                version: attention_mask_for(st.valid, st.valid.shape[1], self.parts.attn_implementation, dtype)
            }
        kwargs["attention_mask"] = st.mask_cache[version]
        kwargs["position_embeddings"] = st.position_embeddings
        if st.position_ids is not None:
            kwargs["position_ids"] = st.position_ids
        if has_cache_position(kwargs):
            kwargs[CACHE_POSITION_KWARG] = torch.arange(st.valid.shape[1], device=st.valid.device)
        st.kv_valid[idx] = st.valid
        return args, kwargs

    def _decode_layer_inputs(self, idx: int, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        prompt_valid = self._prompt.kv_valid.get(idx)
        if prompt_valid is None:
            return None
        dec = self._decode
        if dec.q_len == 1 and dec.tail_full and not self._prompt.padded[idx]:
            # nothing to mask: one query at the newest position sees every cached entry, and SDPA /
            # eager take None as "attend to all" (no mask kernels in the hot decoding loop)
            kwargs["attention_mask"] = None
            return args, kwargs
        key = id(prompt_valid)
        if key not in dec.masks:
            hidden = args[0] if args else kwargs["hidden_states"]
            key_valid = torch.cat([prompt_valid, dec.key_tail.to(prompt_valid.device)], dim=1)
            dec.masks[key] = attention_mask_for(key_valid, dec.q_len, self.parts.attn_implementation, hidden.dtype)
        kwargs["attention_mask"] = dec.masks[key]
        return args, kwargs

    def _on_decoder_end(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        st = self._prefill
        if st is None:
            return
        self._prefill = None
        padded = {layer: not bool(valid.all()) for layer, valid in st.kv_valid.items()}
        self._prompt = _Prompt(length=st.length, kv_valid=st.kv_valid, padded=padded)
        self.stats = self._collect_stats(st)

    # ------------------------------------------------------------------ reduction steps

    def reduce_hidden(self, idx: int, hidden: torch.Tensor) -> torch.Tensor:
        """Shorten ``hidden`` (B, T, C) at layer ``idx``, updating the prefill layout."""
        st = self._prefill
        k = st.removals[:, idx]
        query, key, scaling = self.parts.layers[idx].self_attn._fastadasp_recorder.take()
        T = hidden.shape[1]
        key = key[:, :, -T:]
        scores = self._scores(query, key, st, scaling)
        keys_flat = key.transpose(1, 2).reshape(key.shape[0], T, -1)
        seeds = [hash((s, idx)) for s in st.row_seeds]
        dest, weight, out_len = reduce_tokens(self.config.method, keys_flat, scores, st.audio, st.valid, k, seeds)
        merged = merge_rows(hidden, dest, weight, out_len)
        src = slot_sources(dest, out_len)
        st.audio = gather_slots(st.audio, src, fill=False)
        st.valid = src >= 0
        st.counts = (st.audio.sum(-1).tolist(), st.valid.sum(-1).tolist())
        st.position_embeddings = _gather_position_embeddings(st.position_embeddings, src)
        if st.position_ids is not None:
            st.position_ids = gather_slots(st.position_ids.expand(src.shape[0], -1), src, fill=0)
        st.shortened = True
        return merged

    def evict_kv(self, idx: int, cache: Any) -> None:
        """H2O: drop the lowest-attention audio entries of layer ``idx``'s KV cache (really removed)."""
        st = self._prefill
        query, key, scaling = self.parts.layers[idx].self_attn._fastadasp_recorder.take()
        T = st.valid.shape[1]
        scores = self._scores(query, key[:, :, -T:], st, scaling)
        seeds = [hash((s, idx)) for s in st.row_seeds]
        drop = evict_mask("h2o", scores, st.audio, st.removals[:, idx], seeds)
        group = torch.arange(T, device=drop.device).expand_as(drop)
        dest, out_len = assignment_from_groups(group, st.valid & ~drop)
        src = slot_sources(dest, out_len)
        keys, values = _cache_layer(cache, idx)
        _set_cache_layer(cache, idx, gather_slots(keys, src, dim=2), gather_slots(values, src, dim=2))
        st.kv_valid[idx] = src >= 0

    def _scores(self, query: torch.Tensor, key: torch.Tensor, st: _Prefill, scaling: float) -> torch.Tensor:
        if self.config.method not in NEEDS_SCORES:
            return torch.ones(st.valid.shape, dtype=torch.float32, device=st.valid.device)
        return attention_received(query, key, st.valid, st.valid, scaling, self.config.attention_chunk_size)

    def _collect_stats(self, st: _Prefill) -> PrefillStats:
        rows = []
        B = len(st.plans)
        L = self.dims.num_layers
        final_total = st.valid.sum(-1).tolist()
        final_audio = st.audio.sum(-1).tolist()
        kv_only = self.config.method in KV_ONLY_METHODS
        for b in range(B):
            audio_in = [st.audio_in[i][b] for i in range(L)]
            total_in = [st.total_in[i][b] for i in range(L)]
            total_out = total_in[1:] + [final_total[b]]
            if kv_only:
                kv = [int(st.kv_valid[i][b].sum()) if i in st.kv_valid else total_in[0] for i in range(L)]
            else:
                kv = list(total_in)
            full = full_prefill_flops(self.dims, total_in[0])
            reduced = sum(self.dims.prefill_layer(n, m) for n, m in zip(total_in, total_out))
            rows.append(
                RowStats(
                    audio_tokens=audio_in,
                    total_tokens=total_in,
                    kv_tokens=kv,
                    audio_tokens_out=final_audio[b],
                    ratio=st.plans[b].ratio,
                    flops_full=full,
                    flops_reduced=reduced,
                    decode_step_flops_full=decode_step_flops(self.dims, [total_in[0]] * L),
                    decode_step_flops_reduced=decode_step_flops(self.dims, kv),
                )
            )
        return PrefillStats(
            method=self.config.method,
            schedule=self.config.schedule,
            target=self.config.flops_reduction,
            rows=rows,
        )


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


def _cache_layer(cache: Any, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
    layers = getattr(cache, "layers", None)
    if layers is None or not hasattr(layers[idx], "keys"):
        raise UnsupportedModelError(f"{type(cache).__name__}: KV eviction (h2o) needs a transformers DynamicCache")
    return layers[idx].keys, layers[idx].values


def _set_cache_layer(cache: Any, idx: int, keys: torch.Tensor, values: torch.Tensor) -> None:
    cache.layers[idx].keys = keys
    cache.layers[idx].values = values


def _restorer(layer: nn.Module, attn: nn.Module, original_config: Any) -> Callable[[], None]:
    def undo() -> None:
        layer.__dict__.pop("forward", None)
        attn.config = original_config
        attn.__dict__.pop("_fastadasp_recorder", None)

    return undo


def _split_call(layer: nn.Module, hidden_states: torch.Tensor, kwargs: dict, between: Callable) -> torch.Tensor:
    """The pre-norm block with ``between`` applied after attention + residual, before the MLP."""
    residual = hidden_states
    h = layer.input_layernorm(hidden_states)
    h = layer.self_attn(hidden_states=h, **kwargs)[0]
    h = between(residual + h)
    residual = h
    h = layer.mlp(layer.post_attention_layernorm(h))
    return residual + h


def _reducing_forward(handle: ReductionHandle, idx: int, original: Callable) -> Callable:
    def forward(layer: nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        st = handle._prefill
        if st is None or idx not in st.active:
            return original(hidden_states, *args, **kwargs)
        if args:
            raise UnsupportedModelError(
                f"{type(layer).__name__} was called with positional arguments; reducing layers need keywords"
            )
        recorder = layer.self_attn._fastadasp_recorder
        recorder.armed = True
        try:
            out = _split_call(layer, hidden_states, kwargs, lambda h: handle.reduce_hidden(idx, h))
        finally:
            recorder.armed = False
        return out

    return forward


def _kv_evicting_forward(handle: ReductionHandle, idx: int, original: Callable) -> Callable:
    def forward(layer: nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        st = handle._prefill
        cache = cache_from_kwargs(kwargs)
        if st is None or cache is None or idx not in st.active:
            return original(hidden_states, *args, **kwargs)
        recorder = layer.self_attn._fastadasp_recorder
        recorder.armed = True
        try:
            out = original(hidden_states, *args, **kwargs)
        finally:
            recorder.armed = False
        handle.evict_kv(idx, cache)
        return out

    return forward


def apply(model: nn.Module, config: ReductionConfig | None = None, **overrides: Any) -> ReductionHandle:
    """Patch ``model`` in place so that each prefill reduces its audio tokens as ``config`` says.

    Returns the handle: ``handle.stats`` after each prefill, ``handle.remove()`` to undo.
    Keyword overrides build or change the config: ``apply(model, method="fastv", ratio=0.5)``.
    """
    warn_if_untested()
    if config is None:
        config = ReductionConfig(**overrides)
    elif overrides:
        config = config.replace(**overrides)
    if getattr(model, "_fastadasp_handle", None) is not None:
        raise RuntimeError("this model already has a reduction applied; call handle.remove() first")
    parts = speech_lm_parts(model)
    num_layers = len(parts.layers)
    if not config.is_noop and config.start_layer >= num_layers:
        raise ConfigError(
            f"start_layer={config.start_layer} but the decoder has only {num_layers} layers (0..{num_layers - 1})"
        )
    if not config.is_noop and parts.attn_implementation not in SUPPORTED_IMPLEMENTATIONS:
        raise UnsupportedModelError(
            f"attention implementation {parts.attn_implementation!r} is not supported with token reduction; "
            f"load the model with attn_implementation in {SUPPORTED_IMPLEMENTATIONS}"
        )
    handle = ReductionHandle(model, config, parts)
    handle._install()
    model._fastadasp_handle = handle
    logger.debug(
        "FastAdaSP: %s/%s from layer %d on %s (%d layers, reducing at %s)",
        config.method,
        config.schedule,
        config.start_layer,
        type(model).__name__,
        num_layers,
        handle._reducing_layers or "none",
    )
    return handle
