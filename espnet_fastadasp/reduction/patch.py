"""Apply token reduction to a transformers Speech LM: ``handle = apply(model, config)``.

What is installed, and nothing else (``handle.remove()`` undoes all of it):

* a forward pre-hook on the top model: remembers ``input_ids`` and the 2-D ``attention_mask``
  (where the audio placeholders are, which rows are padded);
* hooks on the text decoder: a prefill (more than one new token, empty cache) starts a
  :class:`~espnet_fastadasp.reduction.prefill.PrefillLayout`; its end leaves the stats in
  ``handle.stats`` and :class:`~espnet_fastadasp.reduction.cache_layers.ReducedLayer` caches behind;
* a pre-hook on every decoder layer: hands it the layout's mask and positions during a
  prefill, and its cache layer's own mask while decoding;
* at reducing layers, the layer ``forward`` of :mod:`.layer_forward` and, through
  :class:`~espnet_fastadasp.reduction.attention.AttentionSwap`, our attention function, which also
  sums the attention each token received (:class:`~espnet_fastadasp.reduction.attention.ReducingAttention`).

A prefill never waits for the device between its layers: every length is planned before layer 0
(see :class:`~espnet_fastadasp.reduction.prefill.PrefillLayout`).

While a reducing decoder runs, cuDNN attention is off (see
:func:`~espnet_fastadasp.reduction.attention.cudnn_attention_disabled`).
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from typing import Any

import torch
from torch import nn

from espnet_fastadasp.core.config import ConfigError, ReductionConfig
from espnet_fastadasp.core.methods import get_method
from espnet_fastadasp.core.stats import PrefillStats
from espnet_fastadasp.models.compat import (
    CACHE_POSITION_KWARG,
    DynamicCache,
    cache_from_kwargs,
    cache_of_output,
    warn_if_untested,
)
from espnet_fastadasp.models.parts import SpeechLMParts, UnsupportedModelError, speech_lm_parts
from espnet_fastadasp.reduction.anatomy import check_reducible
from espnet_fastadasp.reduction.attention import (
    RECORDING_IMPLEMENTATION,
    SUPPORTED_IMPLEMENTATIONS,
    AttentionSwap,
    ReducingAttention,
    base_attention_function,
    cudnn_attention_disabled,
)
from espnet_fastadasp.reduction.cache_layers import OwnMaskLayer, install_reduced_layers
from espnet_fastadasp.reduction.kv_sharing import KVSharing, kv_sharing_of
from espnet_fastadasp.reduction.layer_costs import decoder_dims
from espnet_fastadasp.reduction.layer_forward import ReducingLayer, named_inputs, positional_names
from espnet_fastadasp.reduction.prefill import PrefillLayout, prefill_stats, reducing_layers, start_layout
from espnet_fastadasp.reduction.step_timer import StepTimer

logger = logging.getLogger(__name__)

#: models with a reduction applied (kept here, not as an attribute on the model)
_APPLIED: weakref.WeakKeyDictionary[nn.Module, ReductionHandle] = weakref.WeakKeyDictionary()


class ReductionHandle:
    """The live patch of one model. ``stats`` describes the last prefill; ``remove()`` undoes."""

    def __init__(self, model: nn.Module, config: ReductionConfig, parts: SpeechLMParts) -> None:
        self.model, self.config, self.parts = model, config, parts
        self.method = None if config.method == "none" else get_method(config.method)
        #: each layer's structure (the split forward's halves); checked before any prefill
        self.anatomies = () if self.method is None else check_reducible(parts.layers, self.method.acts_on == "hidden")
        self.windows = parts.windows
        #: which layer's cache each layer reads (KV sharing): no reduction from the first reused on
        self.sharing = kv_sharing_of(parts.layers) if self.method is not None else KVSharing.none(len(parts.layers))
        self.dims = decoder_dims(parts.text_config, parts.layers, self.windows, self.sharing.reduce_before)
        self._positional = [positional_names(layer) for layer in parts.layers]
        self.stats: PrefillStats | None = None
        #: names of the next prefills' batch rows for error messages (utterance keys), set by callers
        self.row_names: list[str] | None = None
        self.layout: PrefillLayout | None = None  # set while a prefill runs
        #: times the reduction steps when enabled (``handle.timer.enable(device)``; the benchmark does)
        self.timer = StepTimer()
        self._inputs: tuple[torch.Tensor | None, torch.Tensor | None] = (None, None)
        self._hooks: list[Any] = []
        self._undo: list[Any] = []
        self._cudnn = contextlib.ExitStack()
        self.reducing_layers = reducing_layers(config, self.method, self.dims, self.sharing)

    def _install(self) -> None:
        dec = self.parts.decoder
        self._hooks += [
            self.model.register_forward_pre_hook(self._on_model_call, with_kwargs=True),
            dec.register_forward_pre_hook(self._on_decoder_start, with_kwargs=True),
            dec.register_forward_hook(self._on_decoder_end, with_kwargs=True),
            dec.register_forward_hook(lambda *_: self._cudnn.close(), always_call=True),
        ]
        self._hooks += [
            layer.register_forward_pre_hook(self._layer_hook(idx), with_kwargs=True)
            for idx, layer in enumerate(self.parts.layers)
        ]
        states = {}
        for idx in self.reducing_layers:
            attn = self.parts.layers[idx].self_attn
            states[attn] = ReducingAttention(
                base=base_attention_function(attn, self.parts.attn_implementation),
                chunk_size=self.config.attention_chunk_size,
                window=self.config.score_window if self.config.scores_from == "window" else None,
                timer=self.timer,
            )
            anatomy = self.anatomies[idx] if self.anatomies else None
            self._undo.append(ReducingLayer(self, idx, states[attn], anatomy).install(self.parts.layers[idx]))
        self._undo.append(AttentionSwap(RECORDING_IMPLEMENTATION, states).restore)

    def remove(self) -> None:
        """Restore the model exactly as it was (hooks, forwards, attention configs)."""
        for hook in self._hooks:
            hook.remove()
        for undo in reversed(self._undo):
            undo()
        self._hooks.clear()
        self._undo.clear()
        self._cudnn.close()
        self.layout = None
        if _APPLIED.get(self.model) is self:
            del _APPLIED[self.model]

    def __enter__(self) -> ReductionHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    # ------------------------------------------------------------------ hooks

    def _on_model_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args and torch.is_tensor(args[0]) else None)
        self._inputs = (ids, kwargs.get("attention_mask"))

    def _on_decoder_start(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.layout = None
        # not while torch.compile traces a step (static decoding's compiled steps): dynamo before
        # torch 2.13 refuses a context manager object here, and the switch is only needed where
        # each utterance brings new shapes (cuDNN plans per shape); a compiled step has fixed ones
        if not self.config.is_noop and not torch.compiler.is_compiling():
            self._cudnn.enter_context(cudnn_attention_disabled())
        embeds = kwargs.get("inputs_embeds")
        if embeds is None:
            embeds = kwargs.get("input_ids", args[0] if args else None)
        if embeds is None:
            return
        cache = cache_from_kwargs(kwargs)
        use_cache = kwargs.get("use_cache")
        if use_cache is None:
            use_cache = getattr(self.parts.text_config, "use_cache", True)
        if embeds.shape[1] > 1 and use_cache and (cache is None or cache.get_seq_length() == 0):
            if cache is not None and not self.config.is_noop and not isinstance(cache, DynamicCache):
                raise UnsupportedModelError(
                    f"token reduction needs the default DynamicCache (later layers hold fewer entries); "
                    f"got {type(cache).__name__}: do not set cache_implementation"
                )
            ids, mask2d = self._inputs
            self.layout = start_layout(ids, mask2d, embeds.shape[:2], embeds.device, self, self.row_names)

    def _layer_hook(self, idx: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            hidden = args[0] if args else kwargs["hidden_states"]
            if self.layout is not None:
                inputs = named_inputs(self._positional[idx], args[1:], kwargs, module)
                inputs.pop("hidden_states", None)
                queries = hidden.shape[-2]  # (B, T, C), or Gemma 3n's (streams, B, T, C)
                if not self.layout.enter_layer(idx, inputs, self.parts.attn_implementation, hidden.dtype, queries):
                    # unchanged, but by name: a reducing layer's split forward takes keywords only
                    return ((hidden,), inputs) if idx in self.layout.active else None
                if torch.is_tensor(inputs.get(CACHE_POSITION_KWARG)):
                    width = self.layout.valid.shape[1]
                    inputs[CACHE_POSITION_KWARG] = torch.arange(width - queries, width, device=hidden.device)
                return (hidden,), inputs
            cache = cache_from_kwargs(kwargs)
            layers = getattr(cache, "layers", ())
            source = self.sharing.sources[idx]  # a KV-sharing layer attends over its source's cache
            if source >= len(layers) or not isinstance(layers[source], OwnMaskLayer):
                return None
            kwargs["attention_mask"] = layers[source].step_mask(
                hidden.shape[-2], self.parts.attn_implementation, hidden.dtype, cached=source != idx
            )
            return args, kwargs

        return hook

    def _on_decoder_end(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        layout, self.layout = self.layout, None
        if layout is None:
            return
        install_reduced_layers(
            cache_of_output(output) or cache_from_kwargs(kwargs),
            layout.kv_valid,
            layout.kv_origin,
            self.windows,
            layout.entered_width,
        )
        self.stats = prefill_stats(layout, self.dims, self.config)


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
    if model in _APPLIED:
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
    stop = handle.dims.stop_layer
    if not config.is_noop and config.start_layer >= stop:
        raise ConfigError(
            f"start_layer={config.start_layer}, but layers {stop}.. of this decoder may not reduce: from layer {stop} "
            "on, later layers reuse the keys and values earlier layers cached (KV sharing), which must belong to the "
            f"tokens those layers see; choose a start_layer below {stop}"
        )
    handle._install()
    _APPLIED[model] = handle
    logger.debug(
        "FastAdaSP: %s/%s from layer %d on %s (%d layers, reducing at %s)",
        config.method,
        config.schedule,
        config.start_layer,
        type(model).__name__,
        num_layers,
        handle.reducing_layers or "none",
    )
    return handle
