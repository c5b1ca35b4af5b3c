"""The reduction methods: one small class each, in one registry.

After NVIDIA kvpress's presses: a method says only what it needs and how it chooses; the
integration (hooks, masks, caches) is elsewhere and the same for all of them. A method is one of
two kinds:

* :class:`MergeMethod` shortens the hidden states inside a layer (between attention and MLP):
  it picks adjacent audio pairs to merge (``edges``) and weights the members of a merged
  cluster (``weights``). Every later layer computes and caches fewer tokens.
* :class:`EvictMethod` drops audio tokens (``drop``). With ``acts_on = "hidden"`` (FastV, random
  evict) they leave the hidden states like a merge does; with ``acts_on = "kv"`` (H2O) the hidden
  states stay whole and only that layer's KV cache entries are removed after its attention.

``needs_attention`` says whether ``edges``/``drop``/``weights`` read the attention each token
received in that layer (computed only for such methods). Adding a baseline is one class here
and its ``@register`` line; the tensor work stays in :mod:`.ops`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import torch


class _LazyOps:
    """:mod:`.ops`, imported on first use: the registry is read by torch-free tools (config
    validation in the recipes' data and spec steps), which must not pay for importing torch."""

    def __getattr__(self, name: str):
        from espnet_fastadasp.core import ops as module

        return getattr(module, name)


ops = _LazyOps()

#: name -> method class, in the order methods are listed to users.
REGISTRY: dict[str, type[ReductionMethod]] = {}


def register(name: str):
    """Class decorator: make a method available under ``name`` (config, CLIs, recipes)."""

    def add(cls: type[ReductionMethod]) -> type[ReductionMethod]:
        if name in REGISTRY:
            raise ValueError(f"reduction method {name!r} is registered twice")
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return add


class ReductionMethod(ABC):
    """What a method needs and how it turns one layer's tensors into a token assignment."""

    name: ClassVar[str] = ""
    #: whether the method reads the attention each token received at the reducing layer
    needs_attention: ClassVar[bool] = False
    #: "hidden": tokens leave the sequence inside the layer; "kv": only the layer's cache shrinks
    acts_on: ClassVar[str] = "hidden"
    #: whether the method removes exactly ``k`` tokens per row (then every length in a prefill is
    #: known from the plan before it starts, and the layer loop never waits for the device)
    exact_counts: ClassVar[bool] = True

    @abstractmethod
    def assign(
        self,
        keys: torch.Tensor,
        scores: torch.Tensor,
        audio: torch.Tensor,
        valid: torch.Tensor,
        k: torch.Tensor,
        seeds: torch.Tensor | None = None,
        out_len: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """``(dest, weight, out_len)`` for :func:`.ops.merge_rows` / :func:`.ops.slot_sources`.

        keys: (B, T, C) the layer's keys (post-RoPE, heads flattened); scores: (B, T) attention
        received (ones when not ``needs_attention``); audio / valid: (B, T) bool; k: (B,) tokens
        to remove per row; seeds: (B,) int64 (or ints), for the random methods (default 0 for every row);
        out_len: the output length when known (a method with ``exact_counts`` removes exactly
        ``k``, so the plan knows it), else read from the data.
        """


class MergeMethod(ReductionMethod):
    """Merge runs of adjacent audio tokens; each selected edge removes one token."""

    @abstractmethod
    def edges(self, keys: torch.Tensor, audio: torch.Tensor, k: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """(B, T-1) bool: the adjacent pairs to merge (edge i joins tokens i and i+1)."""

    def weights(self, scores: torch.Tensor) -> torch.Tensor:
        """Each token's weight in its cluster's mean (uniform unless overridden)."""
        return scores.new_ones(scores.shape)

    def assign(self, keys, scores, audio, valid, k, seeds=None, out_len=None):
        group = ops.groups_from_edges(self.edges(keys, audio, k, seeds))
        dest, out_len = ops.assignment_from_groups(group, valid, out_len)
        return dest, self.weights(scores), out_len


class EvictMethod(ReductionMethod):
    """Drop audio tokens; the survivors keep their values unchanged."""

    @abstractmethod
    def drop(self, scores: torch.Tensor, audio: torch.Tensor, k: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """(B, T) bool: the audio tokens to drop (``k[b]`` per row)."""

    def assign(self, keys, scores, audio, valid, k, seeds=None, out_len=None):
        group = ops.singleton_groups(audio)
        dest, out_len = ops.assignment_from_groups(group, valid & ~self.drop(scores, audio, k, seeds), out_len)
        return dest, scores.new_ones(scores.shape), out_len


class _AttentionWeighted:
    """Mixin: a cluster is the attention-weighted mean of its members (FastAdaSP's weighting)."""

    needs_attention: ClassVar[bool] = True

    def weights(self, scores: torch.Tensor) -> torch.Tensor:
        return scores


@register("fastadasp")
class FastAdaSPMerge(_AttentionWeighted, MergeMethod):
    """The paper's weighted merge: the ``k`` most similar adjacent audio pairs (cosine of keys),
    chained into clusters, each the attention-weighted mean of its members."""

    def edges(self, keys, audio, k, seeds):
        return ops.top_k_mask(ops.adjacent_cosine_similarity(keys, audio), k)


@register("merge_avg")
class AverageMerge(MergeMethod):
    """Ablation: FastAdaSP's clusters with uniform weights."""

    def edges(self, keys, audio, k, seeds):
        return ops.top_k_mask(ops.adjacent_cosine_similarity(keys, audio), k)


@register("random_merge")
class RandomMerge(_AttentionWeighted, MergeMethod):
    """``k`` random adjacent audio pairs, chained, attention-weighted."""

    def edges(self, keys, audio, k, seeds):
        return ops.top_k_mask(ops.random_scores(ops.audio_edges(audio), _row_seeds(seeds, audio)), k)


@register("atome")
class AToMe(MergeMethod):
    """A-ToMe: the ``k`` most similar non-overlapping adjacent pairs, plain average.

    The greedy matching may find fewer than ``k`` pairs (a run of n tokens holds at most n / 2),
    so how many tokens a layer removes depends on the data: ``exact_counts`` is False and each
    reducing layer reads its output length from the device (one synchronisation per layer)."""

    exact_counts = False

    def edges(self, keys, audio, k, seeds):
        return ops.non_overlapping_top_k_edges(ops.adjacent_cosine_similarity(keys, audio), k)


@register("fastv")
class FastV(EvictMethod):
    """FastV: drop the ``k`` audio tokens that received the least attention."""

    needs_attention = True

    def drop(self, scores, audio, k, seeds):
        return ops.bottom_k_mask(scores, audio, k)


@register("random_evict")
class RandomEvict(EvictMethod):
    """Drop ``k`` random audio tokens."""

    def drop(self, scores, audio, k, seeds):
        return ops.top_k_mask(ops.random_scores(audio, _row_seeds(seeds, audio)), k)


@register("h2o")
class H2O(FastV):
    """H2O: FastV's choice applied to the layer's KV cache only (entries really removed)."""

    acts_on = "kv"


def _row_seeds(seeds: torch.Tensor | list[int] | None, audio: torch.Tensor) -> torch.Tensor | list[int]:
    return seeds if seeds is not None else [0] * audio.shape[0]


def method_names() -> tuple[str, ...]:
    """Every method a config may name, ``none`` (no reduction) first."""
    return ("none", *REGISTRY)


def get_method(name: str) -> ReductionMethod:
    """A fresh instance of the method registered as ``name``."""
    try:
        return REGISTRY[name]()
    except KeyError:
        raise KeyError(f"unknown reduction method {name!r} (one of {', '.join(REGISTRY)})") from None
