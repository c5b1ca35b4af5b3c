"""How much attention each token received, without giving up the fast attention kernel.

FastAdaSP weights a merged cluster by the attention its members received in that layer, and
FastV / H2O evict the tokens that received the least. Fused kernels (SDPA, flash) never
materialise the attention matrix, so at a *reducing* layer we recompute the column sums of the
softmax from the layer's own queries and keys, chunked over query rows so memory stays bounded
(``B * heads * chunk * keys`` floats at a time). All other layers keep the kernel untouched.

The queries and keys are taken where the model hands them to its attention function (after
RoPE, exactly what the kernel sees): a reducing layer's attention module is pointed at a thin
recording function, registered with transformers' public ``AttentionInterface``, which calls the
model's own implementation and keeps references to ``query`` and ``key``.

:class:`AttentionSwap` is the one mechanism for pointing attention modules at one of our
registered functions and back; the per-module state such a function needs (a recorder, a
shared-prompt cache layer) is kept here, keyed by module, not as attributes on the modules.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from espnet_fastadasp.hf.compat import (
    AttentionInterface,
    eager_attention_function,
    registered_attention_function,
    with_attn_implementation,
)
from espnet_fastadasp.hf.masks import allowed_keys

RECORDING_IMPLEMENTATION = "fastadasp_record"
SUPPORTED_IMPLEMENTATIONS = ("sdpa", "eager")
MAX_CHUNK_BYTES = 256 * 2**20


def attention_received(
    query: torch.Tensor,
    key: torch.Tensor,
    key_valid: torch.Tensor,
    query_valid: torch.Tensor | None,
    scaling: float,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Attention probabilities each key received, summed over all heads and query rows.

    query: (B, Hq, Q, D); key: (B, Hkv, K, D) with Hq a multiple of Hkv (GQA); the queries are
    the last Q of the K positions and attention is causal in index order. key_valid: (B, K)
    bool (False = padding, never attended); query_valid: (B, Q) bool, padding query rows are
    left out of the sums. Returns (B, K) float32.

    The softmax is computed in float32 per chunk of at most ``chunk_size`` query rows (fewer
    when the chunk's scores would pass 256 MiB), as eager attention does, so the result equals
    eager attention's column sums within float tolerance. Memory is bounded whatever the length.
    """
    B, Hq, Q, D = query.shape
    Hkv, K = key.shape[1], key.shape[2]
    groups = Hq // Hkv
    q = query.reshape(B, Hkv, groups, Q, D)
    k = key.unsqueeze(2)  # (B, Hkv, 1, K, D)
    out = torch.zeros(B, K, dtype=torch.float32, device=query.device)
    offset = K - Q
    # cap each chunk's float32 score matrix at ~256 MiB (a few temporaries of that size live at once)
    rows = max(1, min(chunk_size, MAX_CHUNK_BYTES // max(1, B * Hq * K * 4)))
    for start in range(0, Q, rows):
        stop = min(Q, start + rows)
        logits = torch.matmul(q[:, :, :, start:stop], k.transpose(-1, -2)).float() * scaling
        allowed = allowed_keys(key_valid, torch.arange(start, stop, device=query.device) + offset)  # (B, q, K)
        logits = logits.masked_fill(~allowed[:, None, None], float("-inf"))
        probs = torch.softmax(logits, dim=-1)  # (B, Hkv, G, q, K)
        if query_valid is not None:  # where, not a product: a padding row may hold NaN
            probs = torch.where(
                query_valid[:, None, None, start:stop, None], probs, torch.zeros((), device=probs.device)
            )
        out += probs.sum(dim=(1, 2, 3))
    return out


@dataclass
class AttentionRecorder:
    """Attached to a reducing layer's attention module: remembers its last query and key."""

    base: Callable[..., Any]
    armed: bool = False
    query: torch.Tensor | None = None
    key: torch.Tensor | None = None
    scaling: float = 1.0
    _saved: dict[str, Any] = field(default_factory=dict)

    def take(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        if self.query is None or self.key is None:
            raise RuntimeError("the attention function of a reducing layer was not called; unsupported model")
        q, k = self.query, self.key
        self.query = self.key = None
        return q, k, self.scaling


def _recording_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    **kwargs: Any,
) -> Any:
    recorder: AttentionRecorder = AttentionSwap.state_of(RECORDING_IMPLEMENTATION, module)
    out = recorder.base(module, query, key, value, attention_mask, **kwargs)
    if recorder.armed:
        recorder.query, recorder.key = query, key
        recorder.scaling = kwargs.get("scaling") or getattr(module, "scaling", query.shape[-1] ** -0.5)
    return out


AttentionInterface.register(RECORDING_IMPLEMENTATION, _recording_attention)


def base_attention_function(attn_module: torch.nn.Module, implementation: str) -> Callable[..., Any]:
    """The function the module would call for ``implementation`` (sdpa or eager)."""
    if implementation == "eager":
        fn = eager_attention_function(attn_module)
        if fn is None:
            raise NotImplementedError(f"{type(attn_module).__name__}: no eager_attention_forward in its module")
        return fn
    if implementation not in SUPPORTED_IMPLEMENTATIONS:
        raise NotImplementedError(
            f"attention implementation {implementation!r} is not supported at reducing layers; "
            f"load the model with attn_implementation in {SUPPORTED_IMPLEMENTATIONS}"
        )
    return registered_attention_function(implementation)


class AttentionSwap:
    """Point attention modules at the registered attention function ``implementation``; undo.

    ``states`` maps each module to the state the function reads for it (through
    :meth:`state_of`). Each module's ``config`` is replaced by a shallow copy that names the
    function (attention modules look their function up from their config at every call), so
    the rest of the model is untouched. :meth:`restore` (or leaving the ``with`` block) puts
    the original configs back and forgets the states; swaps nest.
    """

    _states: dict[str, weakref.WeakKeyDictionary] = {}

    def __init__(self, implementation: str, states: Mapping[nn.Module, Any]) -> None:
        self.implementation = implementation
        self._saved: list[tuple[nn.Module, Any]] = []
        table = self._states.setdefault(implementation, weakref.WeakKeyDictionary())
        for module, state in states.items():
            self._saved.append((module, module.config))
            module.config = with_attn_implementation(module.config, implementation)
            table[module] = state

    @classmethod
    def state_of(cls, implementation: str, module: nn.Module) -> Any:
        try:
            return cls._states[implementation][module]
        except KeyError:
            raise RuntimeError(f"{type(module).__name__} runs {implementation!r} attention without its state") from None

    @classmethod
    def has_state(cls, module: nn.Module) -> bool:
        """Whether any swap currently holds state for ``module`` (for tests of ``remove``)."""
        return any(module in table for table in cls._states.values())

    def restore(self) -> None:
        table = self._states.get(self.implementation, {})
        for module, config in reversed(self._saved):
            module.config = config
            table.pop(module, None)
        self._saved.clear()

    def __enter__(self) -> AttentionSwap:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.restore()


@contextlib.contextmanager
def cudnn_attention_disabled() -> Iterator[None]:
    """PyTorch's cuDNN SDPA backend off inside the block, restored after (also on error).

    Why: with the per-layer lengths and masks a reduction creates, SDPA picks cuDNN on Hopper
    GPUs, and cuDNN builds an execution plan for every new shape; real data has a new length per
    utterance, so each one paid seconds of planning (measured in
    ``egs2/cost_benchmark/bench1/RESULTS.md``). The flash and memory-efficient kernels need no plan.
    A no-op where torch has no cuDNN switch.
    """
    switch = getattr(torch.backends.cuda, "enable_cudnn_sdp", None)
    if switch is None:
        yield
        return
    before = torch.backends.cuda.cudnn_sdp_enabled()
    switch(False)
    try:
        yield
    finally:
        switch(before)
