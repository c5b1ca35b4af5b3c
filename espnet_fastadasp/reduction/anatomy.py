"""The two halves of a decoder layer, for each layer structure we can split exactly.

A hidden-state reduction sits inside a decoder layer: after attention and its residual, before
the feed-forward part, as in the authors' code. transformers has no hook there, so the
reducing layer runs the layer's parts itself, in the order the layer's own ``forward`` runs
them. Each structure below says which parts that is; a layer is matched by the parts it holds
(never by its class name), and a layer holding any part a structure does not run is refused,
because the split forward would silently skip it. Tests check every supported class by running
the split forward with the identity reduction against the layer's own forward (bit for bit).

* :class:`PreNorm`: ``h = x + m*attn(norm1(x))``, ``h + m*mlp(norm2(h))`` (Llama, Qwen2/3, Mistral,
  the MoE thinkers; ``m`` is Granite's ``residual_multiplier``, else 1; Apertus names its norms
  ``attention_layernorm`` / ``feedforward_layernorm``).
* :class:`SandwichNorm`: Gemma's norms around both branches, ``h = x + norm(attn(norm(x)))``,
  ``h + norm(mlp(norm(h)))``; Gemma 4's mixture-of-experts branch beside the MLP, its per-layer
  input gate (a per-token input the layout brings to the shortened sequence) and its
  ``layer_scalar``; Muse Spark's learned residual gates in place of the two sums.
* :class:`AltUpSandwich`: Gemma 3n, whose hidden states are a stack of AltUp predictions
  ``(streams, B, T, C)``: the layer predicts, runs the sandwich-normed attention on the active
  stream beside a LAuReL branch, then the MLP, then corrects every stream. The reduction merges
  the residual and every stream's prediction with the same weights (one packed ``(B, T, C')``
  tensor), so the correction and the per-layer input gate run on the shortened sequence.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from espnet_fastadasp.models.parts import UnsupportedModelError

#: child modules that never compute anything at inference (eval mode)
INERT_CHILDREN = (nn.Dropout, nn.Identity)


@dataclass(frozen=True)
class PreNorm:
    """``x + m * attn(norm1(x))`` then ``h + m * mlp(norm2(h))``."""

    attn_norm: str
    mlp_norm: str

    def parts(self, layer: nn.Module) -> set[str]:
        return {self.attn_norm, "self_attn", self.mlp_norm, "mlp"}

    def attention_half(self, layer: nn.Module, hidden: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        out = layer.self_attn(hidden_states=getattr(layer, self.attn_norm)(hidden), **inputs)[0]
        return hidden + _scaled(out, layer)

    def mlp_half(self, layer: nn.Module, h: torch.Tensor, per_token: Callable[[str], Any]) -> torch.Tensor:
        return h + _scaled(layer.mlp(getattr(layer, self.mlp_norm)(h)), layer)


def _scaled(branch: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """Granite scales each residual branch by ``residual_multiplier``; other layers do not."""
    m = getattr(layer, "residual_multiplier", None)
    return branch if m is None else branch * m


@dataclass(frozen=True)
class SandwichNorm:
    """Gemma 2/3/4: normed branches, and Gemma 4's experts, per-layer input and layer scalar."""

    MOE_PARTS = ("router", "experts", "post_feedforward_layernorm_1", "post_feedforward_layernorm_2",
                 "pre_feedforward_layernorm_2")  # fmt: skip
    PER_LAYER_PARTS = ("per_layer_input_gate", "per_layer_projection", "post_per_layer_input_norm", "act_fn")
    GATES = ("post_attention_residual_gate", "post_feedforward_residual_gate")

    def parts(self, layer: nn.Module) -> set[str]:
        names = {"input_layernorm", "self_attn", "post_attention_layernorm", "pre_feedforward_layernorm", "mlp",
                 "post_feedforward_layernorm"}  # fmt: skip
        if getattr(layer, "enable_moe_block", False):
            names.update(self.MOE_PARTS)
        if getattr(layer, "hidden_size_per_layer_input", None):
            names.update(self.PER_LAYER_PARTS)
        if all(hasattr(layer, gate) for gate in self.GATES):
            names.update(self.GATES)
        return names

    @staticmethod
    def _add(layer: nn.Module, gate: str, residual: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        """``residual + branch``, or the layer's learned residual gate where it has one."""
        combine = getattr(layer, gate, None)
        return residual + branch if combine is None else combine(residual, branch)

    def attention_half(self, layer: nn.Module, hidden: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        out = layer.self_attn(hidden_states=layer.input_layernorm(hidden), **inputs)[0]
        return self._add(layer, self.GATES[0], hidden, layer.post_attention_layernorm(out))

    def mlp_half(self, layer: nn.Module, h: torch.Tensor, per_token: Callable[[str], Any]) -> torch.Tensor:
        residual = h
        x = layer.mlp(layer.pre_feedforward_layernorm(h))
        if getattr(layer, "enable_moe_block", False):
            flat = residual.reshape(-1, residual.shape[-1])
            _, top_k_weights, top_k_index = layer.router(flat)
            routed = layer.experts(layer.pre_feedforward_layernorm_2(flat), top_k_index, top_k_weights)
            routed = layer.post_feedforward_layernorm_2(routed.reshape(residual.shape))
            x = layer.post_feedforward_layernorm_1(x) + routed
        h = self._add(layer, self.GATES[1], residual, layer.post_feedforward_layernorm(x))
        if getattr(layer, "hidden_size_per_layer_input", None):
            gate = layer.act_fn(layer.per_layer_input_gate(h)) * per_token("per_layer_input")
            h = h + layer.post_per_layer_input_norm(layer.per_layer_projection(gate))
        scalar = getattr(layer, "layer_scalar", None)
        return h if scalar is None else h * scalar


@dataclass(frozen=True)
class AltUpSandwich:
    """Gemma 3n: AltUp predict, sandwich-normed attention + LAuReL on the active stream, MLP,
    AltUp correct, the per-layer input on the streams after the first."""

    def parts(self, layer: nn.Module) -> set[str]:
        return SandwichNorm().parts(layer) | {"altup", "laurel"}

    def attention_half(self, layer: nn.Module, hidden: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """The residual after attention and LAuReL, packed with every stream's prediction as
        ``(B, T, C * (1 + streams))``, so a merge averages them all with the same weights."""
        predictions = layer.altup.predict(hidden)
        active = predictions[layer.config.altup_active_idx]
        normed = layer.input_layernorm(active)
        laurel = layer.laurel(normed)
        attn = layer.post_attention_layernorm(layer.self_attn(hidden_states=normed, **inputs)[0])
        h = (active + attn + laurel) / math.sqrt(2)
        streams = predictions.permute(1, 2, 0, 3).reshape(*h.shape[:-1], -1)
        return torch.cat([h, streams], dim=-1)

    def mlp_half(self, layer: nn.Module, packed: torch.Tensor, per_token: Callable[[str], Any]) -> torch.Tensor:
        cfg = layer.config
        width = packed.shape[-1] // (1 + cfg.altup_num_inputs)
        h = packed[..., :width].contiguous()  # as the layer's own tensors: the same kernels, the same bits
        predictions = packed[..., width:].reshape(*h.shape[:-1], cfg.altup_num_inputs, width).permute(2, 0, 1, 3)
        ffw = layer.post_feedforward_layernorm(layer.mlp(layer.pre_feedforward_layernorm(h)))
        corrected = layer.altup.correct(predictions.contiguous(), h + ffw)
        first = corrected[cfg.altup_active_idx].clone()
        if cfg.altup_correct_scale:
            first = layer.altup.scale_corrected_output(first)
        first = layer.act_fn(layer.per_layer_input_gate(first)) * per_token("per_layer_input")
        corrected[1:] += layer.post_per_layer_input_norm(layer.per_layer_projection(first))
        return corrected


ANATOMIES = (
    AltUpSandwich(),
    SandwichNorm(),
    PreNorm("input_layernorm", "post_attention_layernorm"),
    PreNorm("attention_layernorm", "feedforward_layernorm"),
)

Anatomy = PreNorm | SandwichNorm | AltUpSandwich


def _computing_children(layer: nn.Module) -> set[str]:
    return {name for name, child in layer.named_children() if not isinstance(child, INERT_CHILDREN)}


def anatomy_of(layer: nn.Module, idx: int) -> Anatomy:
    """The structure layer ``idx`` matches exactly (every part it holds is one the split forward
    runs), or an :class:`UnsupportedModelError` naming its class and the parts in question."""
    held = _computing_children(layer)
    for anatomy in ANATOMIES:
        needed = anatomy.parts(layer)
        if needed == held:
            return anatomy
    if "self_attn" not in held:
        raise UnsupportedModelError(
            f"decoder layer {idx} ({type(layer).__name__}) has no attention module self_attn (parts: "
            f"{', '.join(sorted(held))}): a hybrid state layer (Mamba, convolution) computes a state over the "
            "sequence that token reduction would shorten; not supported"
        )
    closest = min(ANATOMIES, key=lambda a: len(a.parts(layer) ^ held))
    extra, missing = sorted(held - closest.parts(layer)), sorted(closest.parts(layer) - held)
    detail = "; ".join(
        s
        for s in (
            f"parts the split forward would not run: {', '.join(extra)}" if extra else "",
            f"missing: {', '.join(missing)}" if missing else "",
        )
        if s  # fmt: skip
    )
    raise UnsupportedModelError(
        f"decoder layer {idx} ({type(layer).__name__}) does not match a layer structure token reduction can "
        f"split exactly ({detail}); supported: pre-norm (norm -> attention -> residual -> norm -> MLP -> residual), "
        "Gemma's sandwich norms and Gemma 3n's AltUp + LAuReL"
    )


def check_reducible(layers: nn.ModuleList, acts_on_hidden: bool) -> tuple[Anatomy | None, ...]:
    """Refuse, before any prefill, a decoder whose layers a reduction would compute wrongly;
    return each layer's anatomy (None where a KV method needs none).

    Every layer must be an attention layer (a shortened sequence reaches all later layers, and a
    KV method shrinks every layer's cache); a hidden-state method needs every layer to match an
    anatomy, since each one may run the split forward or receive the shortened sequence. Layers
    that reuse another layer's keys and values are checked by :mod:`.kv_sharing`."""
    out = []
    for idx, layer in enumerate(layers):
        attn = getattr(layer, "self_attn", None)
        if attn is None:
            anatomy_of(layer, idx)  # raises, naming the hybrid layer's parts
        if attn is not None and _branches_on_implementation(attn):
            raise UnsupportedModelError(
                f"decoder layer {idx}: {type(attn).__name__} computes differently depending on the attention "
                "implementation's name (e.g. a sparse-attention indexer applied only under eager/sdpa); a reducing "
                "layer runs it under its own recording implementation: not supported"
            )
        out.append(anatomy_of(layer, idx) if acts_on_hidden else None)
    return tuple(out)


@functools.cache
def _branches_on_implementation_class(cls: type) -> bool:
    try:
        source = inspect.getsource(cls.forward)
    except (OSError, TypeError):
        return False
    return re.search(r"_attn_implementation\s*(==|!=|\bin\b|\bnot in\b)", source) is not None


def _branches_on_implementation(attn: nn.Module) -> bool:
    """Whether the attention module's forward compares the implementation's name (reads like
    ``if self.config._attn_implementation in ("eager", "sdpa")``): such a module computes
    something else once its implementation is swapped to ours."""
    return _branches_on_implementation_class(type(attn))
