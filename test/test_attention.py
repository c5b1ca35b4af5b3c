"""Attention received, chunked, against naive softmax and against eager attention's weights."""

from __future__ import annotations

import pytest
import torch

from espnet_fastadasp.hf.attention import attention_received

from .conftest import load, make_inputs


def naive(query, key, key_valid, scaling):
    B, Hq, Q, D = query.shape
    k = key.repeat_interleave(Hq // key.shape[1], dim=1)
    logits = (query @ k.transpose(-1, -2)).double() * scaling
    K = key.shape[2]
    causal = torch.ones(Q, K, dtype=torch.bool).tril(K - Q)
    allowed = causal[None] & key_valid[:, None, :]
    for i in range(Q):
        allowed[:, i, K - Q + i] = True
    probs = logits.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)
    return probs


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_matches_naive_softmax_for_any_chunk(chunk):
    g = torch.Generator().manual_seed(0)
    B, Hq, Hkv, T, D = 2, 4, 2, 11, 8
    q, k = torch.randn(B, Hq, T, D, generator=g), torch.randn(B, Hkv, T, D, generator=g)
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, :3] = False
    got = attention_received(q, k, valid, valid, D**-0.5, chunk)
    probs = naive(q, k, valid, D**-0.5) * valid[:, None, :, None]
    assert torch.allclose(got.double(), probs.sum(dim=(1, 2)), atol=1e-5)
    assert torch.all(got[1, :3] == 0), "padding receives nothing"
    # every valid query row distributes exactly one unit per head
    assert torch.allclose(got.sum(-1), valid.sum(-1).float() * Hq, atol=1e-4)


def test_equals_eager_attention_weights_of_the_model(checkpoint, processor):
    """Column sums from our chunked function == eager attention's own probabilities, summed."""
    model = load(checkpoint, "eager")
    inputs = make_inputs(processor, [1.5, 0.7])
    captured = {}
    layer = 3
    attn = model.model.language_model.layers[layer].self_attn

    def spy(module, args, kwargs, output):
        captured["weights"] = output[1]

    from espnet_fastadasp.hf.attention import (
        RECORDING_IMPLEMENTATION,
        AttentionRecorder,
        AttentionSwap,
        base_attention_function,
    )

    recorder = AttentionRecorder(base=base_attention_function(attn, "eager"), armed=True)
    h = attn.register_forward_hook(spy, with_kwargs=True)
    with AttentionSwap(RECORDING_IMPLEMENTATION, {attn: recorder}), torch.no_grad():
        model(**inputs, output_attentions=True)
    h.remove()
    q, k, scaling = recorder.take()
    valid = inputs["attention_mask"].bool()
    ours = attention_received(q, k, valid, valid, scaling, chunk_size=5)
    eager = (captured["weights"].float() * valid[:, None, :, None]).sum(dim=(1, 2))
    assert torch.allclose(ours[valid], eager[valid], rtol=1e-4, atol=1e-4)


def test_padding_rows_holding_nan_do_not_poison_the_sums():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 4, 9, 8, generator=g), torch.randn(2, 2, 9, 8, generator=g)
    valid = torch.ones(2, 9, dtype=torch.bool)
    valid[0, :3] = False
    q[0, :, :3] = float("nan")
    k[0, :, :3] = float("nan")
    got = attention_received(q, k, valid, valid, 8**-0.5, 4)
    assert torch.isfinite(got).all() and torch.all(got[0, :3] == 0)
