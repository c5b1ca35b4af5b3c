"""A cache layer for a decoder layer whose prompt entries were reduced.

transformers keeps decoding state in cache layer objects (``cache_utils.CacheLayerMixin``,
``DynamicLayer``), so the state a reduction leaves behind lives there too. After a reduced
prefill, every layer whose cache holds fewer (or differently padded) prompt entries than
layer 0 gets a :class:`ReducedLayer`: the same keys and values, plus which prompt entries are
valid per row (a row of a left-padded batch that removed fewer tokens than the longest one has
new padding). Entries appended while decoding are always valid, as ``generate`` makes them.

The layer builds its own attention mask for a decoding step (:meth:`ReducedLayer.step_mask`):
the model's mask is sized for layer 0's cache and does not fit. Beam reordering and batch
expansion move the validity with the rows. A sliding-window layer also keeps each prompt
entry's original position, so a step sees the span of speech the unreduced layer would
(:class:`~espnet_fastadasp.reduction.masks.KeyWindow`); it keeps its entries instead of dropping those
older than the window (its mask hides them).
"""

from __future__ import annotations

import torch

from espnet_fastadasp.models.compat import DynamicCache, DynamicLayer
from espnet_fastadasp.models.parts import UnsupportedModelError
from espnet_fastadasp.reduction.masks import KeyWindow, attention_mask_for, step_key_valid


class OwnMaskLayer:
    """Mixin of cache layers whose prompt entries do not line up with layer 0's: they hold
    ``prompt_valid`` (rows, P) and ``padded``, and build their decoding steps' masks."""

    prompt_valid: torch.Tensor
    padded: bool
    #: a sliding-window layer's window, its prompt entries' original positions (rows, P) and the
    #: prompt's original width (the first generated token's position); None for full attention
    window: int | None = None
    prompt_origin: torch.Tensor | None = None
    prompt_width: int = 0

    def set_prompt_valid(self, prompt_valid: torch.Tensor) -> None:
        """Which prompt entries are real, per row; ``padded`` follows (one host sync, once per
        prompt: an unpadded layer needs no mask for one-token steps)."""
        self.prompt_valid = prompt_valid
        self.padded = not bool(prompt_valid.all())

    @property
    def generated(self) -> int:
        """Entries after the prompt, this step's excluded (always valid)."""
        raise NotImplementedError

    def step_mask(
        self, q_len: int, implementation: str, dtype: torch.dtype, cached: bool = False
    ) -> torch.Tensor | None:
        """The attention mask of a decoding step of ``q_len`` new tokens, before they are cached
        (``cached``: already cached, as when a KV-sharing layer reads this layer's cache after
        this layer ran the step).

        None when nothing is masked (one query, no padding): SDPA and eager read None as
        "attend to everything", and no mask kernels run in the decoding loop.
        """
        if q_len == 1 and not self.padded and self.window is None:
            return None
        tail = self.generated + (0 if cached else q_len)
        key_valid = step_key_valid(self.prompt_valid, tail)
        window = None
        if self.window is not None:
            new = torch.arange(self.prompt_width, self.prompt_width + tail, device=self.prompt_origin.device)
            origin = torch.cat([self.prompt_origin, new.expand(self.prompt_origin.shape[0], -1)], dim=1)
            window = KeyWindow(self.window, origin)
        return attention_mask_for(key_valid, q_len, implementation, dtype, window)

    def _rows(self, pick) -> None:
        """Apply a row operation to the per-row prompt state."""
        self.set_prompt_valid(pick(self.prompt_valid))
        if self.prompt_origin is not None:
            self.prompt_origin = pick(self.prompt_origin)


class ReducedLayer(OwnMaskLayer, DynamicLayer):
    """``DynamicLayer`` storage (``keys``/``values``) plus ``prompt_valid`` (B, P) bool."""

    def __init__(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        prompt_valid: torch.Tensor,
        window: int | None = None,
        prompt_origin: torch.Tensor | None = None,
        prompt_width: int = 0,
    ) -> None:
        super().__init__()
        if prompt_valid.shape != (keys.shape[0], keys.shape[-2]):
            raise ValueError(f"prompt_valid {tuple(prompt_valid.shape)} does not fit keys {tuple(keys.shape)}")
        if window is not None and (prompt_origin is None or prompt_origin.shape != prompt_valid.shape):
            raise ValueError("a sliding-window layer needs prompt_origin shaped like prompt_valid")
        self.keys, self.values = keys, values
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self.window, self.prompt_origin, self.prompt_width = window, prompt_origin, prompt_width
        self.set_prompt_valid(prompt_valid)

    @property
    def generated(self) -> int:
        return self.keys.shape[-2] - self.prompt_valid.shape[1]

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self._rows(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self._rows(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._rows(lambda t: t[indices, ...])

    def crop(self, *args, **kwargs) -> None:
        super().crop(*args, **kwargs)
        self._fit_prompt()

    def drop_newest(self, n: int = 1) -> None:
        """Remove the ``n`` newest entries (views, nothing copied); prompt entries included."""
        self.keys = self.keys[..., : self.keys.shape[-2] - n, :]
        self.values = self.values[..., : self.values.shape[-2] - n, :]
        self._fit_prompt()

    def _fit_prompt(self) -> None:
        kept = min(self.prompt_valid.shape[1], self.keys.shape[-2])
        self._rows(lambda t: t[:, :kept])


def install_reduced_layers(
    cache: object,
    kv_valid: dict[int, torch.Tensor],
    kv_origin: dict[int, torch.Tensor] | None = None,
    windows: tuple[int | None, ...] = (),
    prompt_width: int = 0,
) -> None:
    """Replace the layers of ``cache`` named in ``kv_valid`` by :class:`ReducedLayer` (no copy).

    A sliding-window layer (``windows[idx]``) holds only its newest entries after the prefill
    (transformers' ``DynamicSlidingWindowLayer``): its validity and origins are cut to those."""
    if not kv_valid:
        return
    layers = getattr(cache, "layers", None)
    if not isinstance(cache, DynamicCache) or layers is None:
        raise UnsupportedModelError(
            f"token reduction needs the prefill to return its transformers DynamicCache; got {type(cache).__name__} "
            "(call the model with use_cache=True and return_dict=True, or through generate)"
        )
    for idx, valid in kv_valid.items():
        layer = layers[idx]
        held = layer.keys.shape[-2]
        window = windows[idx] if idx < len(windows) else None
        if window is None:
            layers[idx] = ReducedLayer(layer.keys, layer.values, valid)
        else:
            origin = kv_origin[idx]
            layers[idx] = ReducedLayer(
                layer.keys, layer.values, valid[:, -held:], window, origin[:, -held:], prompt_width
            )
