"""Fixed-shape KV caches for decoding after a (reduced) prefill: one per layer, each its own length.

Why: a reduction leaves every layer with its own prompt length ``P_l``; transformers' static
caches (and the serving engines) have one length for all layers, and the dynamic cache grows
every step, so no step has the same shapes twice and none can be replayed as a CUDA graph. Here
each layer keeps

* its prompt part exactly as the prefill left it (``prompt_keys`` / ``prompt_values``, one row
  per prompt, never copied; at beam > 1 the beams of a prompt share it, as in
  :mod:`.shared_prompt`), and
* a buffer for the tokens generated from now on, ``(rows, heads, steps, head_dim)``, allocated
  once and written in place at a write index that lives on the device.

Everything a step needs that depends on the prompt is built once, when the cache is made: each
layer's additive prompt mask (``None`` for a layer without padding), and one additive mask of
the generated slots shared by all layers (``-inf`` for slots not yet written). A step changes
only device tensors in place (the write index, that shared mask, the buffers), so its shapes
and addresses never change and it can run under ``torch.compile`` or be captured as a
``torch.cuda.CUDAGraph``.

Attention reads the prompt part once per prompt (the beams' queries stacked into one matmul)
and the generated part per beam, joined in one float32 softmax: :func:`static_step_attention`,
registered with transformers' ``AttentionInterface`` and pointed at by every decoder layer for
the duration of the decoding (:func:`attending_to_static_cache`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from espnet_fastadasp.generation.shared_prompt import joined_softmax_output
from espnet_fastadasp.models.compat import AttentionInterface, Cache, CacheLayerMixin, DynamicCache, DynamicLayer
from espnet_fastadasp.models.parts import UnsupportedModelError, speech_lm_parts
from espnet_fastadasp.reduction.attention import AttentionSwap
from espnet_fastadasp.reduction.cache_layers import ReducedLayer

logger = logging.getLogger(__name__)

STATIC_STEP_IMPLEMENTATION = "fastadasp_static_step"


def additive_mask(valid: torch.Tensor) -> torch.Tensor:
    """0 where ``valid``, ``-inf`` elsewhere, float32 (what is added to the attention scores)."""
    zero = torch.zeros((), dtype=torch.float32, device=valid.device)
    return torch.where(valid, zero, torch.tensor(float("-inf"), device=valid.device))


class StepState:
    """What every layer's cache shares during decoding: the write index of the next generated
    token and the additive mask of the generated slots (``-inf`` until a slot is written)."""

    def __init__(self, steps: int, device: torch.device) -> None:
        if steps < 1:
            raise ValueError(f"a static cache needs room for at least one generated token, got {steps}")
        self.steps = steps
        self.write_index = torch.zeros(1, dtype=torch.long, device=device)
        self.generated_mask = torch.full((steps,), float("-inf"), dtype=torch.float32, device=device)

    def begin_step(self) -> None:
        """Open the slot this step writes (before the layers run: the new token sees itself)."""
        self.generated_mask.index_fill_(0, self.write_index, 0.0)

    def end_step(self) -> None:
        self.write_index.add_(1)


class StaticStepLayer(CacheLayerMixin):
    """One layer's decoding cache: the shared prompt part and a fixed buffer for generated tokens.

    ``prompt_keys`` / ``prompt_values``: (B, Hkv, P_l, D), one row per prompt; ``keys`` /
    ``values``: (B * beams, Hkv, steps, D), written at ``state.write_index``; ``prompt_mask``:
    (B * beams, 1, 1, P_l) additive float32, or None when every prompt entry is real.
    """

    is_compileable = True

    def __init__(
        self,
        prompt_keys: torch.Tensor,
        prompt_values: torch.Tensor,
        prompt_valid: torch.Tensor | None,
        beams: int,
        state: StepState,
        generated: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        B, H, P, D = prompt_keys.shape
        if prompt_valid is not None and tuple(prompt_valid.shape) != (B, P):
            raise ValueError(
                f"prompt_valid {tuple(prompt_valid.shape)} does not fit prompt keys {tuple(prompt_keys.shape)}"
            )
        self.prompt_keys, self.prompt_values = prompt_keys, prompt_values
        self.beams, self.state = beams, state
        self.dtype, self.device = prompt_keys.dtype, prompt_keys.device
        rows = B * beams
        if generated is None:
            generated = (
                prompt_keys.new_zeros(rows, H, state.steps, D),
                prompt_values.new_zeros(rows, H, state.steps, prompt_values.shape[-1]),
            )
        self.keys, self.values = generated  # zeros: an empty slot is masked, and 0 * its value must be 0
        if self.keys.shape != (rows, H, state.steps, D):
            raise ValueError(f"generated buffer {tuple(self.keys.shape)} does not fit {(rows, H, state.steps, D)}")
        self.prompt_mask: torch.Tensor | None = None
        if prompt_valid is not None and not bool(prompt_valid.all()):  # one host sync per layer, once per prompt
            self.prompt_mask = additive_mask(prompt_valid.repeat_interleave(beams, dim=0))[:, None, None, :]
        self.is_initialized = True

    @property
    def prompt_length(self) -> int:
        return self.prompt_keys.shape[-2]

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        raise RuntimeError("a static step cache is built from a prefilled cache, not lazily")

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        """Write this step's entry in place; return the whole generated buffers (fixed shapes)."""
        if key_states.shape[-2] != 1:
            raise RuntimeError(f"a static step cache takes one token per step, got {key_states.shape[-2]}")
        self.keys.index_copy_(2, self.state.write_index, key_states)
        self.values.index_copy_(2, self.state.write_index, value_states)
        return self.keys, self.values

    def reorder_generated(self, beam_idx: torch.Tensor) -> None:
        """Beam reorder of the generated part, in place (the prompt part is shared, never moved)."""
        self.keys.copy_(self.keys.index_select(0, beam_idx))
        self.values.copy_(self.values.index_select(0, beam_idx))

    def get_seq_length(self) -> int:
        return self.prompt_length + self.state.steps

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.prompt_length + self.state.steps, 0

    def get_max_length(self) -> int:
        return self.prompt_length + self.state.steps

    def nbytes(self) -> int:
        """Bytes held: the prompt part (once per prompt) and the generated buffers."""
        tensors = (self.prompt_keys, self.prompt_values, self.keys, self.values)
        return sum(t.numel() * t.element_size() for t in tensors)

    def reset(self) -> None:
        raise NotImplementedError("a static step cache cannot be reset; prefill again")

    def crop(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("a static step cache cannot be cropped")

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("a static step cache cannot change its batch")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        raise NotImplementedError("a static step cache cannot change its batch")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self.reorder_generated(beam_idx)


class StaticStepCache(Cache):
    """The decoding cache of every layer plus their shared :class:`StepState`.

    ``generated``: when every layer's generated buffers are views of one tensor
    (layers, 2, rows, heads, steps, head_dim), the beam reorder moves it in one go (two kernels
    per step instead of four per layer)."""

    def __init__(self, layers: list[StaticStepLayer], state: StepState, generated: torch.Tensor | None = None) -> None:
        super().__init__(layers=layers)
        self.state = state
        self.generated = generated

    def begin_step(self) -> None:
        self.state.begin_step()

    def end_step(self) -> None:
        self.state.end_step()

    def reorder_generated(self, beam_idx: torch.Tensor) -> None:
        if self.generated is not None:
            self.generated.copy_(self.generated.index_select(2, beam_idx))
            return
        for layer in self.layers:
            layer.reorder_generated(beam_idx)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.layers[layer_idx].get_seq_length()

    def nbytes_per_layer(self) -> list[int]:
        return [layer.nbytes() for layer in self.layers]


def static_cache_from_prefill(
    cache: DynamicCache, prompt_mask: torch.Tensor | None, beams: int, steps: int
) -> StaticStepCache:
    """The decoding cache made from a prefill's ``DynamicCache`` (``B`` rows, one per prompt).

    prompt_mask: the prompt's (B, P) 2-D attention mask (left padding), the validity of every
    layer the reduction did not shorten; a :class:`ReducedLayer` brings its own. ``steps``: the
    generated tokens the buffers hold (the tokens fed back, i.e. ``max_new_tokens - 1``). The
    prompt tensors are taken over as they are (no copy); the prefill's cache is emptied.
    """
    layers = getattr(cache, "layers", None)
    if not isinstance(cache, DynamicCache) or layers is None:
        raise UnsupportedModelError(
            f"the static decoding path needs the prefill's transformers DynamicCache; got {type(cache).__name__}"
        )
    for i, layer in enumerate(layers):
        if not isinstance(layer, ReducedLayer) and type(layer) is not DynamicLayer:
            raise UnsupportedModelError(
                f"layer {i} caches with {type(layer).__name__}; the static decoding path needs plain full-attention "
                "DynamicLayer caches (no sliding window, offloading or quantisation)"
            )
    first = layers[0].keys
    state = StepState(steps, first.device)
    shapes = {(tuple(layer.keys.shape[1::2]), tuple(layer.values.shape[1::2]), layer.keys.dtype) for layer in layers}
    generated = None
    if len(shapes) == 1 and first.shape[-1] == layers[0].values.shape[-1]:  # one tensor for all layers' buffers
        B, H, _, D = first.shape
        generated = first.new_zeros(len(layers), 2, B * beams, H, steps, D)
    out = []
    for i, layer in enumerate(layers):
        if isinstance(layer, ReducedLayer):
            valid = layer.prompt_valid
        else:
            valid = None if prompt_mask is None else prompt_mask[:, -layer.keys.shape[-2] :].bool()
        buffers = None if generated is None else (generated[i, 0], generated[i, 1])
        out.append(StaticStepLayer(layer.keys, layer.values, valid, beams, state, buffers))
        layer.keys = layer.values = None
    return StaticStepCache(out, state, generated)


def static_step_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """One decoding step's attention over a :class:`StaticStepLayer` (the model's mask is not used).

    query: (R, Hq, 1, D) with R = B * beams; key/value: the layer's generated buffers
    (R, Hkv, steps, D), this step's entry written. The prompt part comes from the module's
    layer; the masks are the layer's prompt mask and the shared generated-slot mask. Returns
    (R, 1, Hq, D) and no weights.
    """
    layer: StaticStepLayer = AttentionSwap.state_of(STATIC_STEP_IMPLEMENTATION, module)
    pk, pv, beams = layer.prompt_keys, layer.prompt_values, layer.beams
    R, Hq, q, D = query.shape
    B, Hkv, P, _ = pk.shape
    groups = Hq // Hkv
    scale = scaling if scaling is not None else D**-0.5
    # prompt: the beams and query heads sharing a KV head are one batch of queries (the prompt read once)
    qp = query.reshape(B, beams, Hkv, groups * q, D).transpose(1, 2).reshape(B, Hkv, beams * groups * q, D)
    sp = torch.matmul(qp, pk.transpose(-1, -2)).float() * scale  # (B, Hkv, beams*g*q, P)
    sp = sp.reshape(B, Hkv, beams, groups * q, P).transpose(1, 2).reshape(R, Hkv, groups * q, P)
    if layer.prompt_mask is not None:
        sp = sp + layer.prompt_mask
    ss = torch.matmul(query.reshape(R, Hkv, groups * q, D), key.transpose(-1, -2)).float() * scale
    ss = ss + layer.state.generated_mask
    return joined_softmax_output(sp, ss, pv, value, beams, Hq), None


AttentionInterface.register(STATIC_STEP_IMPLEMENTATION, static_step_attention)


def attending_to_static_cache(model: nn.Module, cache: StaticStepCache) -> AttentionSwap:
    """Point every decoder layer's attention at :func:`static_step_attention`, each with its layer
    of ``cache``; use as ``with attending_to_static_cache(model, cache): ...``."""
    parts = speech_lm_parts(model)
    if len(cache.layers) != len(parts.layers):
        raise RuntimeError(f"cache has {len(cache.layers)} layers, the decoder {len(parts.layers)}")
    states = {layer.self_attn: layer_cache for layer, layer_cache in zip(parts.layers, cache.layers)}
    return AttentionSwap(STATIC_STEP_IMPLEMENTATION, states)
