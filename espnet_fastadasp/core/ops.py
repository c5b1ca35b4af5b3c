"""Token reduction as pure, batched tensor functions (tensor in, tensor out), free of method names.

The methods of :mod:`.methods` are built from these in two steps:

1. *selection*: decide, per row, which tokens leave the sequence. Merge methods return
   ``group`` ids (contiguous runs of tokens that become one token); eviction methods return a
   ``drop`` mask.
2. *assignment*: :func:`assignment_from_groups` turns that into ``dest`` (the output slot of
   every input token, ``-1`` if it is dropped) and an output length; :func:`merge_rows` then
   computes each output slot as the weighted mean of the tokens sent to it.

Rows are independent: each row removes its own number of tokens (``k``, one value per row),
and the output is left-aligned again (new padding on the left, like the tokenizer's left
padding), so the last position of every row stays the last real token. Only audio tokens are
candidates; text, special and padding tokens are never merged or dropped (padding tokens are
simply not carried into the output: the output gets fresh left padding).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")


# --------------------------------------------------------------------------- edge scores


def adjacent_cosine_similarity(keys: torch.Tensor, audio_mask: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each token's key with its right neighbour's key.

    keys: (B, T, C) keys of one layer (post-RoPE, all heads flattened into C).
    audio_mask: (B, T) bool, True at audio tokens.
    Returns (B, T-1) float32: edge ``i`` joins tokens ``i`` and ``i+1``; edges that do not join
    two audio tokens are ``-inf`` so that no selection ever picks them.
    """
    unit = F.normalize(keys.float(), dim=-1)
    sim = (unit[:, :-1] * unit[:, 1:]).sum(-1)
    return sim.masked_fill(~audio_edges(audio_mask), NEG_INF)


def audio_edges(audio_mask: torch.Tensor) -> torch.Tensor:
    """(B, T-1) bool: True where tokens i and i+1 are both audio (a mergeable edge)."""
    return audio_mask[:, :-1] & audio_mask[:, 1:]


def random_scores(candidates: torch.Tensor, seeds: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Uniform noise in [0, 1) at the ``candidates`` of each row, ``-inf`` elsewhere.

    candidates: (B, N) bool; seeds: (B,) int64 (or ints), one per row. The ``j``-th candidate of a row
    (in order) gets a hash of (the row's seed, ``j``), so a row's noise depends only on its seed
    and the order of its candidates, never on the batch's padding or other rows: a batch of N
    gives the same random choices as N single runs. A counter-based hash instead of a generator
    keeps it on the device with no host synchronisation, and equal on every device.
    """
    rank = candidates.long().cumsum(-1) - 1
    seed = torch.as_tensor(seeds, dtype=torch.long, device=candidates.device)
    row = _mix32((seed ^ (seed >> 32)) & _MASK32)[:, None]
    noise = (_mix32((row + rank * 0x9E3779B1) & _MASK32) >> 8).float() / float(1 << 24)
    return noise.masked_fill(~candidates, NEG_INF)


_MASK32 = 0xFFFF_FFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer finaliser (xor-shift-multiply) on int64 values below 2**32: no overflow."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    return (x >> 16) ^ x


# --------------------------------------------------------------------------- selection


def top_k_mask(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, E) bool: the ``k[b]`` highest finite scores of each row (ties: lower index first).

    ``k`` is clamped to the number of finite scores, so ``-inf`` entries are never chosen.
    """
    order = scores.argsort(dim=-1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    return (ranks < k.to(scores.device)[:, None]) & torch.isfinite(scores)


def bottom_k_mask(scores: torch.Tensor, candidates: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, T) bool: the ``k[b]`` lowest scores among ``candidates`` of each row."""
    flipped = (-scores.float()).masked_fill(~candidates, NEG_INF)
    return top_k_mask(flipped, k)


def non_overlapping_top_k_edges(scores: torch.Tensor, k: torch.Tensor, max_rounds: int = 64) -> torch.Tensor:
    """(B, E) bool: up to ``k[b]`` edges per row, no two sharing a token, best scores first.

    A-ToMe's pairing: adjacent pairs are merged two by two, never chained. Each round takes
    the edges that beat both neighbouring edges (local maxima, so they cannot overlap), keeps
    the best of them up to the row's remaining budget, and removes the chosen edges and their
    neighbours from play. This is the greedy matching, done in vectorised rounds.
    """
    scores = scores.float().clone()
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    remaining = k.to(scores.device).clone()
    for _ in range(max_rounds):
        live = torch.isfinite(scores)
        if not bool((live.any(-1) & (remaining > 0)).any()):
            break
        left = F.pad(scores[:, :-1], (1, 0), value=NEG_INF)
        right = F.pad(scores[:, 1:], (0, 1), value=NEG_INF)
        # strict on the left, non-strict on the right: ties resolve to the lower index
        local_max = live & (scores > left) & (scores >= right)
        pick = top_k_mask(scores.masked_fill(~local_max, NEG_INF), remaining)
        chosen |= pick
        remaining = remaining - pick.sum(-1)
        blocked = pick | F.pad(pick[:, :-1], (1, 0)) | F.pad(pick[:, 1:], (0, 1))
        scores = scores.masked_fill(blocked, NEG_INF)
    return chosen


def groups_from_edges(edges: torch.Tensor) -> torch.Tensor:
    """(B, T) long group ids from (B, T-1) selected edges: selected edges chain tokens together.

    Token ``i`` starts a new group unless edge ``i-1`` (joining ``i-1`` and ``i``) is selected,
    so runs of consecutive selected edges form one cluster and each edge removes one token.
    """
    starts = torch.ones(edges.shape[0], edges.shape[1] + 1, dtype=torch.long, device=edges.device)
    starts[:, 1:] = (~edges).long()
    return starts.cumsum(-1) - 1


def singleton_groups(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) long: every token its own group (what eviction assigns: nothing is merged)."""
    B, T = mask.shape
    return torch.arange(T, device=mask.device).expand(B, T)


# --------------------------------------------------------------------------- assignment


def assignment_from_groups(
    group: torch.Tensor, keep: torch.Tensor, out_len: int | None = None
) -> tuple[torch.Tensor, int]:
    """Output slot of every token, left-aligned per row.

    group: (B, T) long, non-decreasing group ids (contiguous groups).
    keep: (B, T) bool, False for tokens that leave without a trace (dropped or padding).
    out_len: the output length (the longest row) when the caller knows it, as a reduction plan
    does; None reads it from the data, which synchronises with the device.
    Returns ``dest`` (B, T) long (``-1`` where not kept) and the output length.
    """
    # a group survives if any member is kept; its first kept member represents it
    rep = keep & ~_earlier_kept_in_group(group, keep)
    count = rep.sum(-1)
    if out_len is None:
        out_len = int(count.max()) if count.numel() else 0
    slot = rep.long().cumsum(-1) - 1 + (out_len - count)[:, None]
    return torch.where(keep, slot, torch.full_like(slot, -1)), out_len


def _earlier_kept_in_group(group: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """True where an earlier token of the same (contiguous) group is kept."""
    kept_group = torch.where(keep, group, torch.full_like(group, -1))
    prev = torch.cummax(F.pad(kept_group[:, :-1], (1, 0), value=-1), dim=-1).values
    return prev == group


def merge_rows(x: torch.Tensor, dest: torch.Tensor, weight: torch.Tensor, out_len: int) -> torch.Tensor:
    """Weighted mean of the tokens sent to each output slot.

    x: (B, T, C); dest: (B, T) long slot or -1; weight: (B, T) non-negative.
    Returns (B, out_len, C) in x's dtype; slot ``s`` is ``sum(w_j x_j) / sum(w_j)`` over the
    tokens with ``dest == s``, accumulated in float32. A slot with one token gets that token
    unchanged (bit for bit); an unfilled slot (new padding) is zero.
    """
    B, T, C = x.shape
    sent = dest >= 0
    idx = dest.clamp(min=0)
    w = torch.where(sent, weight.float().clamp(min=1e-12), torch.zeros((), device=x.device))
    den = torch.zeros(B, out_len, device=x.device).scatter_add_(1, idx, w)
    w_norm = w / den.gather(1, idx).clamp(min=1e-30)
    out = torch.zeros(B, out_len, C, dtype=torch.float32, device=x.device)
    # tokens sent nowhere contribute exact zeros (a padding row's NaN must not leak into slot 0)
    contrib = torch.where(sent[..., None], x.float() * w_norm[..., None], torch.zeros((), device=x.device))
    out.scatter_add_(1, idx[..., None].expand(B, T, C), contrib)
    return out.to(x.dtype)


def slot_sources(dest: torch.Tensor, out_len: int) -> torch.Tensor:
    """(B, out_len) long: the first input index sent to each slot, -1 for empty slots.

    The merged token keeps the original position (RoPE) of its first member: documented choice,
    it keeps the order of tokens, so causal masking in index order stays exact.
    """
    B, T = dest.shape
    src = torch.full((B, out_len + 1), T, dtype=torch.long, device=dest.device)
    idx = torch.where(dest >= 0, dest, torch.full_like(dest, out_len))
    ar = torch.arange(T, device=dest.device).expand(B, T)
    src.scatter_reduce_(1, idx, ar, reduce="amin", include_self=True)
    src = src[:, :out_len]
    return torch.where(src == T, torch.full_like(src, -1), src)


def gather_slots(x: torch.Tensor, src: torch.Tensor, dim: int = 1, fill: float | bool = 0) -> torch.Tensor:
    """Take ``x`` at ``src`` along ``dim`` (per row); empty slots (``src == -1``) get ``fill``."""
    idx = src.clamp(min=0)
    shape = list(x.shape)
    shape[dim] = src.shape[1]
    view = [src.shape[0]] + [1] * (x.dim() - 1)
    view[dim] = src.shape[1]
    idx_full = idx.view(view).expand(shape)
    out = x.gather(dim, idx_full)
    empty = (src < 0).view(view).expand(shape)
    return out.masked_fill(empty, fill)
