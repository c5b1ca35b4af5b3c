"""The forward of a decoder layer that reduces: the layer's own parts, split around the step.

At a reducing layer of a hidden-state method the reduction sits between the layer's two halves
(after attention + residual, before the MLP), as in the authors' code; which parts each half
runs is the layer's :mod:`~espnet_fastadasp.reduction.anatomy`. A KV method runs the layer unchanged and
then shrinks the cache entries the layer's attention just wrote. Outside a prefill, or at a
layer where no row removes anything, the original forward runs.

Layers get every input by name here (:func:`positional_names` maps a decoder's positional
arguments, e.g. Gemma 4's ``per_layer_input``), so a shortened layout can replace them.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from espnet_fastadasp.core.methods import ReductionMethod
from espnet_fastadasp.models.compat import cache_from_kwargs
from espnet_fastadasp.models.parts import UnsupportedModelError
from espnet_fastadasp.reduction.anatomy import Anatomy
from espnet_fastadasp.reduction.attention import ReducingAttention
from espnet_fastadasp.reduction.prefill import PER_TOKEN_INPUTS, PrefillLayout, evict_kv, reduce_hidden
from espnet_fastadasp.reduction.step_timer import StepTimer


class ReductionState(Protocol):
    """What a reducing layer reads from the live patch (``patch.ReductionHandle`` provides it;
    named here so that this module does not import the patch that installs it)."""

    layout: PrefillLayout | None
    method: ReductionMethod
    timer: StepTimer
    windows: tuple[int | None, ...]


def positional_names(layer: nn.Module) -> tuple[str, ...]:
    """The names of the layer ``forward``'s parameters after ``hidden_states``, in order (what
    positional arguments after the hidden states stand for)."""
    params = list(inspect.signature(type(layer).forward).parameters.values())[2:]  # self, hidden_states
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def named_inputs(names: tuple[str, ...], args: tuple, kwargs: dict[str, Any], layer: nn.Module) -> dict[str, Any]:
    """A layer call's inputs after the hidden states, all by name."""
    if len(args) > len(names):
        raise UnsupportedModelError(
            f"{type(layer).__name__} was called with {len(args)} positional arguments after the hidden states; "
            f"its forward names only {len(names)}"
        )
    return {**dict(zip(names, args)), **kwargs}


class ReducingLayer:
    """Installs the reducing ``forward`` on one decoder layer (``install`` returns the undo)."""

    def __init__(self, handle: ReductionState, idx: int, attention: ReducingAttention, anatomy: Anatomy) -> None:
        self.handle, self.idx, self.attention, self.anatomy = handle, idx, attention, anatomy

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
        with self.attention.armed_for(valid, layout.padded, layout.key_window(self.idx)):
            out = call()
        return (out, *self.attention.take())

    def _reducing(self, layer: nn.Module, original: Callable, hidden: torch.Tensor, args: tuple, kwargs: dict) -> Any:
        if args:  # the layer hook passes everything by name; a caller that bypassed it cannot be split
            raise UnsupportedModelError(
                f"{type(layer).__name__} was called with positional arguments; reducing layers need keywords"
            )
        inputs = dict(kwargs)
        per_token = {name: inputs.pop(name) for name in PER_TOKEN_INPUTS if name in inputs}
        h, key, received = self._recorded(lambda: self.anatomy.attention_half(layer, hidden, inputs))
        handle = self.handle
        layout = handle.layout
        with handle.timer.step("reduce"):
            h = reduce_hidden(layout, handle.method, self.idx, h, key, received)
        # the per-token inputs came at the layout before this layer's merge: they follow it too
        return self.anatomy.mlp_half(layer, h, lambda name: layout.follow_last(per_token[name]))

    def _evicting(self, layer: nn.Module, original: Callable, hidden: torch.Tensor, args: tuple, kwargs: dict) -> Any:
        cache = cache_from_kwargs(kwargs)
        if cache is None or self.handle.windows[self.idx] is not None:
            # a sliding-window layer's cache already holds only its window: nothing to evict
            return original(hidden, *args, **kwargs)
        out, _, received = self._recorded(lambda: original(hidden, *args, **kwargs))
        handle = self.handle
        with handle.timer.step("reduce"):
            evict_kv(handle.layout, handle.method, self.idx, cache.layers[self.idx], received)
        return out
