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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .hf_compat import AttentionInterface, eager_attention_function, registered_attention_function

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
    key_pos = torch.arange(K, device=query.device)
    offset = K - Q
    # cap each chunk's float32 score matrix at ~256 MiB (a few temporaries of that size live at once)
    rows = max(1, min(chunk_size, MAX_CHUNK_BYTES // max(1, B * Hq * K * 4)))
    for start in range(0, Q, rows):
        stop = min(Q, start + rows)
        logits = torch.matmul(q[:, :, :, start:stop], k.transpose(-1, -2)).float() * scaling
        q_pos = torch.arange(start, stop, device=query.device) + offset
        allowed = (key_pos[None, :] <= q_pos[:, None])[None] & key_valid[:, None, :]  # (B, q, K)
        allowed |= key_pos[None, None, :] == q_pos[None, :, None]  # a row always sees itself
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
    recorder: AttentionRecorder = module._fastadasp_recorder
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
