"""The one place attention masks are built for layers whose sequence or cache was shortened.

After a reduction the model's own mask (built once per forward for layer 0's full sequence) no
longer fits the later layers, so they get one built here from a per-layer key-validity mask.
Token order is preserved by every reduction, so causality in index order stays exact: query
``i`` (at key position ``p_i``) sees key ``j`` iff ``j`` is valid and ``j <= p_i``. A query always
sees itself (padding rows would otherwise be all-masked and give NaN under SDPA).

A sliding-window layer (:class:`KeyWindow`) also needs each entry's *original* position: a
shortened layer must see the same span of speech it would have seen, so key ``j`` is in the
window of query ``i`` iff ``origin[j] > origin[i] - size``, as transformers' sliding overlay
says for the unreduced sequence (``kv_idx > q_idx - sliding_window``). A merged token carries
the position of its first member.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class KeyWindow:
    """A sliding window of ``size`` original positions over keys whose original positions are
    ``origin`` (B, K) long (the index each entry held in the unreduced prompt)."""

    size: int
    origin: torch.Tensor

    def restrict(self, allowed: torch.Tensor, query_positions: torch.Tensor) -> torch.Tensor:
        """``allowed`` (B, Q, K) less the keys outside the window of each query (key index
        ``query_positions[i]``); a query still sees itself."""
        q_origin = self.origin[:, query_positions]  # (B, Q)
        inside = self.origin[:, None, :] > q_origin[:, :, None] - self.size
        return allowed & (
            inside | (torch.arange(self.origin.shape[1], device=allowed.device) == query_positions[:, None])
        )


def allowed_keys(
    key_valid: torch.Tensor, query_positions: torch.Tensor, window: KeyWindow | None = None
) -> torch.Tensor:
    """(B, Q, K) bool, True where the query at key position ``query_positions[i]`` may attend."""
    key_pos = torch.arange(key_valid.shape[1], device=key_valid.device)
    allowed = (key_pos[None, :] <= query_positions[:, None])[None] & key_valid[:, None, :]
    allowed |= (key_pos[None, :] == query_positions[:, None])[None]
    return allowed if window is None else window.restrict(allowed, query_positions)


def causal_key_mask(key_valid: torch.Tensor, q_len: int, window: KeyWindow | None = None) -> torch.Tensor:
    """(B, 1, Q, K) bool for queries that are the last ``q_len`` of the ``K`` keys."""
    if q_len == 1 and window is None:
        # a decoding step: the one query is the newest position and sees every valid key (itself
        # included); no causal part to build, one view instead of a handful of kernels per layer
        return key_valid[:, None, None, :]
    K = key_valid.shape[1]
    return allowed_keys(key_valid, torch.arange(K - q_len, K, device=key_valid.device), window)[:, None]


def step_key_valid(prompt_valid: torch.Tensor, tail: int) -> torch.Tensor:
    """(B, P + tail) bool: a layer's prompt validity followed by ``tail`` always-valid entries
    (the tokens generated so far and those of the current step)."""
    ones = torch.ones(prompt_valid.shape[0], tail, dtype=torch.bool, device=prompt_valid.device)
    return torch.cat([prompt_valid, ones], dim=1)


def attention_mask_for(
    key_valid: torch.Tensor, q_len: int, implementation: str, dtype: torch.dtype, window: KeyWindow | None = None
) -> torch.Tensor:
    """The mask in the form the attention implementation expects.

    sdpa takes a boolean mask (True = attend); eager adds the mask to the logits, so it gets
    0 where allowed and the dtype's most negative value elsewhere.
    """
    return mask_in_form(causal_key_mask(key_valid, q_len, window), implementation, dtype)


def mask_in_form(allowed: torch.Tensor, implementation: str, dtype: torch.dtype) -> torch.Tensor:
    """A boolean mask (True = attend) as ``implementation`` takes it (bool for sdpa, additive for eager)."""
    if implementation == "sdpa":
        return allowed
    if implementation == "eager":
        zero = torch.zeros((), dtype=dtype, device=allowed.device)
        return torch.where(allowed, zero, torch.tensor(torch.finfo(dtype).min, dtype=dtype, device=allowed.device))
    raise NotImplementedError(f"attention implementation {implementation!r} is not supported after a reduction")
