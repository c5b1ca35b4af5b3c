"""Which layer's cache each decoder layer's attention reads (Gemma 3n / 4's KV sharing).

In a KV-sharing decoder the last layers (``num_kv_shared_layers``) compute no keys or values:
each reuses those of the last earlier layer of its attention type that stores them
(``store_full_length_kv``), handed over in ``shared_kv_states``, and holds no cache of its own.
A reduction stays exact there when the tokens those keys belong to are the tokens the reusing
layers' queries see, so:

* no layer from the first storing layer on reduces the hidden states (their layout is then the
  one the stored keys were computed on); the plans stop there (``DecoderDims.reduce_before``);
* a reusing layer gets its storing layer's masks: in the prefill the layout's (the same tokens),
  while decoding the storing layer's cache layer's own mask;
* a KV method evicts from the storing layer's cache (the reusing layers then attend to what it
  keeps, as it does) and never from a reusing layer (it holds nothing).

The sharing is read from the attention modules (``is_kv_shared_layer``, ``store_full_length_kv``,
``layer_type``), the attributes transformers' KV-sharing models set, never from a class name.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from espnet_fastadasp.models.parts import UnsupportedModelError, speech_lm_parts


@dataclass(frozen=True)
class KVSharing:
    """``sources[i]``: the layer whose cache layer ``i``'s attention reads (``i`` itself unless
    it reuses another's keys and values)."""

    sources: tuple[int, ...]

    @classmethod
    def none(cls, num_layers: int) -> KVSharing:
        """Every layer reads its own cache (what a run without reduction may assume)."""
        return cls(tuple(range(num_layers)))

    def reuses(self, idx: int) -> bool:
        """Whether layer ``idx`` reads another layer's keys and values (and holds no cache)."""
        return self.sources[idx] != idx

    @property
    def reduce_before(self) -> int | None:
        """The first layer whose keys a later layer reuses (no reduction from it on); None
        without sharing."""
        stored = {src for i, src in enumerate(self.sources) if src != i}
        return min(stored) if stored else None


def kv_sharing_of(layers: nn.ModuleList) -> KVSharing:
    """Each layer's cache source, or an :class:`UnsupportedModelError` for a reusing layer with
    no earlier storing layer of its type (then nothing tells which keys it reads)."""
    sources: list[int] = []
    stores: dict[object, int] = {}  # attention type -> the newest layer storing its keys
    for idx, layer in enumerate(layers):
        attn = getattr(layer, "self_attn", None)
        kind = getattr(attn, "layer_type", None)
        if attn is not None and getattr(attn, "is_kv_shared_layer", False):
            if kind not in stores:
                raise UnsupportedModelError(
                    f"decoder layer {idx} ({type(layer).__name__}) reuses the keys and values of an earlier "
                    f"{kind or 'attention'} layer, but no earlier layer stores them (store_full_length_kv): "
                    "not supported"
                )
            sources.append(stores[kind])
            continue
        if attn is not None and getattr(attn, "store_full_length_kv", False):
            stores[kind] = idx
        sources.append(idx)
    return KVSharing(tuple(sources))


def reducible_layers(model: nn.Module) -> range:
    """The decoder layers of a Speech LM where a reduction may happen: all of them, or those
    before the first layer whose keys later layers reuse (KV sharing). A ``start_layer`` outside
    is refused by ``apply``; the Transfer Entropy layer search looks only here."""
    layers = speech_lm_parts(model).layers
    stop = kv_sharing_of(layers).reduce_before
    return range(len(layers) if stop is None else stop)
