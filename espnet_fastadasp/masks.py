"""Attention masks for layers whose sequence or cache was shortened by a reduction.

After a reduction the model's own mask (built once per forward for the full sequence) no
longer fits the later layers, so they get one built here from a per-layer key-validity mask.
Token order is preserved by every reduction, so causality in index order stays exact: the
queries are the last ``Q`` of the ``K`` keys and query ``i`` sees key ``j`` iff ``j`` is valid
and not after it. A query always sees itself (padding rows would otherwise be all-masked and
give NaN under SDPA).
"""

from __future__ import annotations

import torch


def causal_key_mask(key_valid: torch.Tensor, q_len: int) -> torch.Tensor:
    """(B, 1, Q, K) bool, True where attention is allowed."""
    if q_len == 1:
        # a decoding step: the one query is the newest position and sees every valid key (itself
        # included); no causal part to build, one view instead of a handful of kernels per layer
        return key_valid[:, None, None, :]
    B, K = key_valid.shape
    key_pos = torch.arange(K, device=key_valid.device)
    q_pos = torch.arange(K - q_len, K, device=key_valid.device)
    causal = key_pos[None, :] <= q_pos[:, None]
    allowed = causal[None] & key_valid[:, None, :]
    allowed |= (key_pos[None, :] == q_pos[:, None])[None]
    return allowed[:, None]


def attention_mask_for(key_valid: torch.Tensor, q_len: int, implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """The mask in the form the attention implementation expects.

    sdpa takes a boolean mask (True = attend); eager adds the mask to the logits, so it gets
    0 where allowed and the dtype's most negative value elsewhere.
    """
    allowed = causal_key_mask(key_valid, q_len)
    if implementation == "sdpa":
        return allowed
    if implementation == "eager":
        zero = torch.zeros((), dtype=dtype, device=key_valid.device)
        return torch.where(allowed, zero, torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=key_valid.device))
    raise NotImplementedError(f"attention implementation {implementation!r} is not supported after a reduction")
