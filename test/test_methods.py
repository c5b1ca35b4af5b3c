"""Every registered reduction method through the same checks (after kvpress's default_presses).

A new method gets these for free by registering; method-specific numbers are in test_ops.py.
"""

from __future__ import annotations

import pytest
import torch

from espnet_fastadasp.core import ops
from espnet_fastadasp.core.config import METHODS, ReductionConfig
from espnet_fastadasp.core.methods import REGISTRY, EvictMethod, MergeMethod, get_method, register

ALL = list(REGISTRY)
#: methods whose number of removed tokens can fall short of k (non-overlapping pairs run out)
AT_MOST_K = {"atome"}


def batch(seed=0):
    """Three left-padded rows: text, an audio run, text; row 2 has two clips."""
    g = torch.Generator().manual_seed(seed)
    B, T, C = 3, 24, 8
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, :4] = False
    audio = torch.zeros(B, T, dtype=torch.bool)
    audio[0, 3:20] = True
    audio[1, 6:21] = True
    audio[2, 2:10] = True
    audio[2, 12:22] = True
    keys = torch.randn(B, T, C, generator=g)
    scores = torch.rand(B, T, generator=g) * valid
    return keys, scores, audio, valid


def test_registry_is_what_configs_accept():
    assert METHODS == ("none", *ALL)
    for name in ALL:
        ReductionConfig(method=name, ratio=0.3)
        assert isinstance(get_method(name), (MergeMethod, EvictMethod))
        assert get_method(name).acts_on in ("hidden", "kv")
    with pytest.raises(KeyError, match="unknown reduction method"):
        get_method("nope")
    with pytest.raises(ValueError, match="twice"):
        register("fastadasp")(type("Again", (MergeMethod,), {}))


@pytest.mark.parametrize("name", ALL)
def test_removes_k_audio_tokens_and_nothing_else(name):
    keys, scores, audio, valid = batch()
    k = torch.tensor([5, 3, 7])
    dest, weight, out_len = get_method(name).assign(keys, scores, audio, valid, k, [1, 2, 3])
    src = ops.slot_sources(dest, out_len)
    removed = valid.sum(-1) - (src >= 0).sum(-1)
    if name in AT_MOST_K:
        assert torch.all(removed <= k) and torch.all(removed > 0)
    else:
        assert torch.equal(removed, k)
    for b in range(3):
        kept = set(src[b][src[b] >= 0].tolist())
        text = (valid[b] & ~audio[b]).nonzero().flatten().tolist()
        assert set(text) <= kept, "text tokens are never removed"
        assert not kept & set((~valid[b]).nonzero().flatten().tolist()), "padding is never carried"
        order = src[b][src[b] >= 0]
        assert torch.all(order[1:] > order[:-1]), "token order is kept"
    assert torch.all(src[:, -1] >= 0), "left-aligned: every row ends with a real token"
    assert weight.shape == scores.shape and torch.all(weight >= 0)


@pytest.mark.parametrize("name", ALL)
def test_rows_are_independent_of_the_batch(name):
    keys, scores, audio, valid = batch()
    k = torch.tensor([4, 4, 4])
    seeds = [7, 8, 9]
    method = get_method(name)
    dest, _, out_len = method.assign(keys, scores, audio, valid, k, seeds)
    together = ops.slot_sources(dest, out_len)
    for b in range(3):
        sl = slice(b, b + 1)
        d1, _, n1 = method.assign(keys[sl], scores[sl], audio[sl], valid[sl], k[sl], seeds[b : b + 1])
        alone = ops.slot_sources(d1, n1)[0]
        row = together[b][together[b] >= 0]
        assert torch.equal(row, alone[alone >= 0])


@pytest.mark.parametrize("name", ALL)
def test_uses_attention_only_if_it_says_so(name):
    keys, scores, audio, valid = batch()
    k = torch.tensor([6, 6, 6])
    method = get_method(name)
    a = method.assign(keys, scores, audio, valid, k, [1, 2, 3])
    flipped = (1.0 - scores) * valid
    b = method.assign(keys, flipped, audio, valid, k, [1, 2, 3])
    same = torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert same is (not method.needs_attention)


@pytest.mark.parametrize("name", ALL)
def test_zero_k_keeps_every_token(name):
    keys, scores, audio, valid = batch()
    dest, _, out_len = get_method(name).assign(keys, scores, audio, valid, torch.zeros(3, dtype=torch.long), [0] * 3)
    assert torch.equal((ops.slot_sources(dest, out_len) >= 0).sum(-1), valid.sum(-1))
