"""The forward of a decoder layer that reduces: the same pre-norm block, split around the step.

A pre-norm decoder layer is ``h + attn(norm(h))`` then ``h + mlp(norm(h))``. At a reducing
layer of a hidden-state method the reduction sits between the two (after attention +
residual, before the MLP), as in the authors' code; a KV method runs the layer unchanged and
then shrinks the cache entries the layer's attention just wrote. Outside a prefill, or at a
layer where no row removes anything, the original forward runs.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from espnet_fastadasp.hf.attention import ReducingAttention
from espnet_fastadasp.hf.compat import cache_from_kwargs
from espnet_fastadasp.hf.parts import UnsupportedModelError
from espnet_fastadasp.hf.prefill import evict_kv, reduce_hidden

if TYPE_CHECKING:
    from espnet_fastadasp.hf.patch import ReductionHandle


class ReducingLayer:
    """Installs the reducing ``forward`` on one decoder layer (``install`` returns the undo)."""

    def __init__(self, handle: ReductionHandle, idx: int, attention: ReducingAttention) -> None:
        self.handle, self.idx, self.attention = handle, idx, attention

    def install(self, layer: nn.Module) -> Callable[[], None]:
        original = layer.forward
        step = self._evicting if self.handle.method.acts_on == "kv" else self._reducing

        def forward(module: nn.Module, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            layout = self.handle.layout
            if layout is None or self.idx not in layout.active:
                return original(hidden_states, *args, **kwargs)
            return step(module, original, hidden_states, args, kwargs)

        layer.forward = types.MethodType(forward, layer)
        return lambda: layer.__dict__.pop("forward", None)

    def _recorded(self, call: Callable[[], Any]) -> tuple[Any, torch.Tensor, torch.Tensor | None]:
        """``call()``'s result, with the keys and attention received its attention recorded."""
        layout = self.handle.layout
        valid = layout.valid if self.handle.method.needs_attention else None
        with self.attention.armed_for(valid, layout.padded):
            out = call()
        return (out, *self.attention.take())

    def _reducing(self, layer: nn.Module, original: Callable, hidden: torch.Tensor, args: tuple, kwargs: dict) -> Any:
        if args:
            raise UnsupportedModelError(
                f"{type(layer).__name__} was called with positional arguments; reducing layers need keywords"
            )
        h, key, received = self._recorded(
            lambda: hidden + layer.self_attn(hidden_states=layer.input_layernorm(hidden), **kwargs)[0]
        )
        handle = self.handle
        with handle.timer.step("reduce"):
            h = reduce_hidden(handle.layout, handle.method, self.idx, h, key, received)
        return h + layer.mlp(layer.post_attention_layernorm(h))

    def _evicting(self, layer: nn.Module, original: Callable, hidden: torch.Tensor, args: tuple, kwargs: dict) -> Any:
        cache = cache_from_kwargs(kwargs)
        if cache is None:
            return original(hidden, *args, **kwargs)
        out, _, received = self._recorded(lambda: original(hidden, *args, **kwargs))
        handle = self.handle
        with handle.timer.step("reduce"):
            evict_kv(handle.layout, handle.method, self.idx, cache.layers[self.idx], received)
        return out
