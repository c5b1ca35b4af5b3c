"""The reduction operations against slow, obviously-correct references."""

from __future__ import annotations

import pytest
import torch

from espnet_fastadasp.core import ops
from espnet_fastadasp.core.methods import get_method


def slow_weighted_merge(x, keys, weights, audio, valid, k):
    """One row at a time, in Python: pick the k most similar adjacent audio pairs, chain, average."""
    outs = []
    for b in range(x.shape[0]):
        T = x.shape[1]
        sims = []
        for i in range(T - 1):
            if audio[b, i] and audio[b, i + 1]:
                s = torch.nn.functional.cosine_similarity(keys[b, i].double(), keys[b, i + 1].double(), dim=0)
                sims.append((-float(s), i))
        chosen = {i for _, i in sorted(sims)[: int(k[b])]}
        groups, current = [], [0]
        for i in range(1, T):
            if (i - 1) in chosen:
                current.append(i)
            else:
                groups.append(current)
                current = [i]
        groups.append(current)
        rows = []
        for g in groups:
            g = [i for i in g if valid[b, i]]
            if not g:
                continue
            w = torch.tensor([float(weights[b, i]) for i in g], dtype=torch.float64)
            rows.append((w[:, None] * x[b, g].double()).sum(0) / w.sum())
        outs.append(torch.stack(rows))
    width = max(len(o) for o in outs)
    padded = torch.zeros(len(outs), width, x.shape[2], dtype=torch.float64)
    for b, o in enumerate(outs):
        padded[b, width - len(o) :] = o
    return padded


def batch(seed=0, B=3, T=24, C=8):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, C, generator=g)
    keys = torch.randn(B, T, C, generator=g)
    keys[:, 1:] += 0.8 * keys[:, :-1]  # neighbours alike, as in speech
    weights = torch.rand(B, T, generator=g) + 0.1
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, :3] = False  # left padding
    valid[2, :5] = False
    audio = torch.zeros(B, T, dtype=torch.bool)
    audio[:, 6:20] = True
    audio[0, 12] = False  # a text token between two clips
    audio &= valid
    return x, keys, weights, audio, valid


@pytest.mark.parametrize("k", [[0, 0, 0], [1, 2, 3], [5, 7, 12], [20, 20, 20]])
def test_weighted_merge_matches_slow_reference(k):
    x, keys, weights, audio, valid = batch()
    k = torch.tensor(k)
    dest, w, out_len = get_method("fastadasp").assign(keys, weights, audio, valid, k)
    fast = ops.merge_rows(x, dest, w, out_len)
    k_capped = torch.minimum(k, ops.audio_edges(audio).sum(-1))
    ref = slow_weighted_merge(x, keys, weights, audio, valid, k_capped)
    assert fast.shape == ref.shape
    assert torch.allclose(fast.double(), ref, atol=1e-5)
    # each selected edge removes exactly one token
    assert torch.equal((dest >= 0).sum(-1) - ops.slot_sources(dest, out_len).ge(0).sum(-1), k_capped)


def test_merge_avg_is_uniform_and_singletons_are_bit_exact():
    x, keys, weights, audio, valid = batch()
    k = torch.tensor([3, 3, 3])
    dest, w, out_len = get_method("merge_avg").assign(keys, weights, audio, valid, k)
    assert torch.all(w == 1)
    out = ops.merge_rows(x, dest, w, out_len)
    src = ops.slot_sources(dest, out_len)
    counts = torch.zeros(3, out_len, dtype=torch.long).scatter_add_(1, dest.clamp(min=0), (dest >= 0).long())
    single = (counts == 1) & (src >= 0)
    gathered = ops.gather_slots(x, src)
    assert torch.equal(out[single], gathered[single])


def test_text_and_padding_are_never_candidates():
    x, keys, weights, audio, valid = batch()
    for method in ("fastadasp", "merge_avg", "random_merge", "atome", "fastv", "random_evict"):
        dest, w, out_len = get_method(method).assign(keys, weights, audio, valid, torch.tensor([30, 30, 30]), [1, 2, 3])
        src = ops.slot_sources(dest, out_len)
        for b in range(3):
            text = (valid[b] & ~audio[b]).nonzero().flatten().tolist()
            assert set(text) <= set(src[b].tolist()), f"{method}: a text token was merged or dropped"
            # a text token is alone in its slot
            for t in text:
                assert int((dest[b] == dest[b, t]).sum()) == 1
            assert not (dest[b][~valid[b]] >= 0).any(), "padding is not carried over"


def test_output_is_left_aligned_and_order_preserving():
    x, keys, weights, audio, valid = batch()
    dest, w, out_len = get_method("fastv").assign(keys, weights, audio, valid, torch.tensor([1, 4, 9]))
    src = ops.slot_sources(dest, out_len)
    for b in range(3):
        filled = src[b] >= 0
        n = int(filled.sum())
        assert filled[out_len - n :].all() and not filled[: out_len - n].any()
        kept = src[b][filled]
        assert torch.all(kept[1:] > kept[:-1])


def test_fastv_drops_the_least_attended_audio_tokens():
    x, keys, weights, audio, valid = batch()
    drop = get_method("fastv").drop(weights, audio, torch.tensor([2, 2, 2]), None)
    for b in range(3):
        dropped = drop[b].nonzero().flatten()
        cand = audio[b].nonzero().flatten()
        lowest = cand[weights[b, cand].argsort()[:2]]
        assert set(dropped.tolist()) == set(lowest.tolist())


def test_atome_pairs_do_not_overlap_and_are_the_greedy_best():
    x, keys, weights, audio, valid = batch()
    sims = ops.adjacent_cosine_similarity(keys, audio)
    edges = ops.non_overlapping_top_k_edges(sims, torch.tensor([4, 4, 4]))
    assert not (edges[:, 1:] & edges[:, :-1]).any()
    assert torch.equal(edges.sum(-1), torch.tensor([4, 4, 4]))
    # the single best edge of each row is always taken
    assert edges.gather(1, sims.argmax(-1, keepdim=True)).all()
    group = ops.groups_from_edges(edges)
    sizes = torch.stack([torch.bincount(g, minlength=x.shape[1]) for g in group])
    assert sizes.max() <= 2


def test_random_choice_depends_only_on_the_row():
    audio = torch.zeros(2, 30, dtype=torch.bool)
    audio[0, 5:25] = True
    audio[1, 10:30] = True  # same number of audio tokens, shifted by padding
    noise = ops.random_scores(audio, [7, 7])
    assert torch.equal(noise[0][audio[0]], noise[1][audio[1]])
    assert torch.isinf(noise[~audio]).all()


def test_top_k_never_picks_invalid_scores():
    scores = torch.tensor([[0.5, float("-inf"), 0.2, float("-inf")]])
    assert ops.top_k_mask(scores, torch.tensor([4])).tolist() == [[True, False, True, False]]


def test_masks_match_a_dense_reference_for_prefill_and_decoding():
    from espnet_fastadasp.reduction.masks import attention_mask_for, causal_key_mask

    valid = torch.tensor([[False, True, True, True, True], [True, True, False, True, True]])
    for q_len in (1, 2, 5):
        got = causal_key_mask(valid, q_len)
        K = valid.shape[1]
        for b in range(2):
            for i in range(q_len):
                for j in range(K):
                    q_pos = K - q_len + i
                    want = (j <= q_pos and bool(valid[b, j])) or j == q_pos
                    assert bool(got[b, 0, i, j]) == want
    eager = attention_mask_for(valid, 1, "eager", torch.float32)
    assert eager[0, 0, 0, 0] == torch.finfo(torch.float32).min and eager[0, 0, 0, 1] == 0


def test_dropped_and_padding_tokens_never_leak_into_slots():
    x, keys, weights, audio, valid = batch()
    x[1, :3] = float("nan")  # garbage in the padding of row 1
    dest, w, out_len = get_method("fastv").assign(keys, weights, audio, valid, torch.tensor([2, 2, 2]))
    out = ops.merge_rows(x, dest, w, out_len)
    assert torch.isfinite(out).all()
