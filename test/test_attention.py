"""Attention received (column sums of the softmax), blocked and fused with the attention itself,
against a float64 softmax, SDPA's output, and eager attention's own weights in the model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from espnet_fastadasp.reduction.attention import (
    RECORDING_IMPLEMENTATION,
    AttentionSwap,
    ReducingAttention,
    attention_received,
    attention_with_received,
    attention_with_received_lse,
    base_attention_function,
    lse_path_usable,
)
from espnet_fastadasp.reduction.masks import allowed_keys

from .conftest import load, make_inputs


def reference(query, key, value, key_valid, scaling):
    """float64 probabilities (B, Hq, Q, K) and output (B, Q, Hq, D) under the one mask rule."""
    B, Hq, Q, D = query.shape
    K = key.shape[2]
    groups = Hq // key.shape[1]
    k = key.repeat_interleave(groups, dim=1).double()
    v = value.repeat_interleave(groups, dim=1).double()
    allowed = allowed_keys(key_valid, torch.arange(K - Q, K))  # (B, Q, K)
    logits = (query.double() @ k.transpose(-1, -2)) * scaling
    probs = logits.masked_fill(~allowed[:, None], float("-inf")).softmax(-1)
    return probs, (probs @ v).transpose(1, 2)


def random_case(seed, B=2, Hq=4, Hkv=2, Q=11, K=11, D=8, pad=(0, 3)):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Hq, Q, D, generator=g)
    k, v = torch.randn(B, Hkv, K, D, generator=g), torch.randn(B, Hkv, K, D, generator=g)
    valid = torch.ones(B, K, dtype=torch.bool)
    for b, n in enumerate(pad):
        valid[b, :n] = False
    return q, k, v, valid


def column_sums(probs, query_valid):
    return (probs * query_valid[:, None, :, None]).sum(dim=(1, 2))


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
@pytest.mark.parametrize("heads", [(4, 2), (4, 4), (4, 1)], ids=["gqa", "mha", "mqa"])
def test_received_matches_a_float64_softmax_for_any_block(chunk, heads):
    q, k, v, valid = random_case(0, Hq=heads[0], Hkv=heads[1])
    probs, _ = reference(q, k, v, valid, 8**-0.5)
    got = attention_received(q, k, valid, valid, 8**-0.5, chunk)
    assert torch.allclose(got.double(), column_sums(probs, valid), atol=1e-5)
    assert torch.all(got[1, :3] == 0), "padding receives nothing"
    # every valid query row distributes exactly one unit per head
    assert torch.allclose(got.sum(-1), valid.sum(-1).float() * heads[0], atol=1e-4)


@pytest.mark.parametrize("chunk", [1, 4, 64])
@pytest.mark.parametrize("heads", [(4, 2), (4, 4)], ids=["gqa", "mha"])
@pytest.mark.parametrize("offset", [0, 5], ids=["prefill", "after_cached"])
def test_fused_pass_gives_sdpa_output_and_the_same_sums(chunk, heads, offset):
    """The output equals SDPA under the same mask; the sums equal the float64 ones; queries may be
    the last Q of K keys (a causal offset)."""
    Q = 9
    q, k, v, valid = random_case(1, Hq=heads[0], Hkv=heads[1], Q=Q, K=Q + offset, pad=(0, 2))
    query_valid = valid[:, offset:]
    out, got = attention_with_received(q, k, v, valid, query_valid, 8**-0.5, chunk)
    probs, ref_out = reference(q, k, v, valid, 8**-0.5)
    assert out.shape == (2, Q, heads[0], 8)
    assert torch.allclose(got.double(), column_sums(probs, query_valid), atol=1e-5)
    rows = query_valid  # a padding row's output is zero (its masked value), never read
    assert torch.allclose(out.double()[rows], ref_out[rows], atol=1e-5)
    mask = allowed_keys(valid, torch.arange(offset, offset + Q))[:, None]
    groups = heads[0] // heads[1]
    sdpa = F.scaled_dot_product_attention(
        q, k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1), attn_mask=mask, scale=8**-0.5
    )
    assert torch.allclose(out[rows], sdpa.transpose(1, 2)[rows], atol=1e-5)
    assert torch.allclose(got, attention_received(q, k, valid, query_valid, 8**-0.5, chunk), atol=1e-5)


@pytest.mark.parametrize("heads", [(4, 2), (4, 4), (4, 1)], ids=["gqa", "mha", "mqa"])
@pytest.mark.parametrize("spread", [1.0, 12.0], ids=["plain_logits", "large_logits"])
def test_two_pass_lse_path_equals_the_float64_softmax(heads, spread):
    """The unpadded CPU path (CPU flash attention, then the transposed problem) gives the same
    output and sums; large logits (an attention-sink-like key) stay exact too."""
    q, k, v, valid = random_case(5, B=2, Hq=heads[0], Hkv=heads[1], Q=41, K=41, D=16, pad=(0, 0))
    q, k = q * spread**0.5, k * spread**0.5
    k[:, :, 0] *= 3  # one key most rows attend to
    assert lse_path_usable(q, k)
    out, got = attention_with_received_lse(q, k, v, 0.25)
    probs, ref_out = reference(q, k, v, valid, 0.25)
    sums = column_sums(probs, valid)
    assert torch.allclose(got.double(), sums, rtol=1e-4, atol=1e-4 * sums.max().item())
    assert torch.allclose(out.double(), ref_out, atol=1e-5)


@pytest.mark.parametrize("heads", [(4, 2), (4, 4)], ids=["gqa", "mha"])
def test_two_pass_lse_path_with_padding_equals_the_float64_softmax(heads):
    """A left-padded batch: both passes take the mask rule as an additive mask; padding keys
    receive nothing, padding rows give nothing, a padding row holding NaN poisons nothing."""
    q, k, v, valid = random_case(6, B=3, Hq=heads[0], Hkv=heads[1], Q=23, K=23, D=16, pad=(0, 5, 22))
    q[1, :, :5] = float("nan")
    k[1, :, :5] = float("nan")
    v[1, :, :5] = float("nan")
    assert lse_path_usable(q, k, padded=True)
    out, got = attention_with_received_lse(q, k, v, 0.25, valid)
    probs, ref_out = reference(q.nan_to_num(), k.nan_to_num(), v.nan_to_num(), valid, 0.25)
    assert torch.allclose(got.double(), column_sums(probs, valid), atol=1e-5)
    assert torch.all(got[~valid] == 0) and torch.isfinite(got).all()
    assert torch.allclose(out.double()[valid], ref_out[valid], atol=1e-5)


def eager_column_sums(query, key, key_valid, scaling):
    """The sums eager attention's weights give in the inputs' dtype: logits in that dtype,
    softmax in float32, weights rounded to that dtype (transformers' ``eager_attention_forward``)."""
    groups = query.shape[1] // key.shape[1]
    k = key.repeat_interleave(groups, dim=1)
    K, Q = key.shape[2], query.shape[2]
    logits = torch.matmul(query, k.transpose(-1, -2)) * scaling
    allowed = allowed_keys(key_valid, torch.arange(K - Q, K))[:, None]
    logits = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
    weights = torch.softmax(logits, dim=-1, dtype=torch.float32).to(query.dtype)
    return (weights.float() * key_valid[:, None, :, None]).sum(dim=(1, 2))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("spread", [1.0, 9.0], ids=["plain_logits", "large_logits"])
@pytest.mark.parametrize("padded", [False, True])
def test_two_pass_lse_path_in_half_precision_is_closer_than_eager(dtype, spread, padded):
    """In bfloat16 / float16 the sums are as close to the float64 softmax of the same (rounded)
    inputs as eager attention's own weights get, and within 1e-3 relative of it: the kernel
    scores in float32 and the log-sum-exp goes in as a high and a low column. (One rounded
    column would cost up to a few percent; eager rounds the logits to the dtype.)"""
    q, k, v, valid = random_case(7, B=2, Hq=4, Hkv=2, Q=300, K=300, D=32, pad=(0, 40 if padded else 0))
    q, k, v = (q * spread**0.5).to(dtype), (k * spread**0.5).to(dtype), v.to(dtype)
    probs, _ = reference(q, k, v, valid, 32**-0.5)
    want = column_sums(probs, valid)
    out, got = attention_with_received_lse(q, k, v, 32**-0.5, valid if padded else None)
    assert out.dtype == dtype and got.dtype == torch.float32
    ours = ((got.double() - want).abs() / want.clamp_min(1e-3))[valid].max().item()
    eager = ((eager_column_sums(q, k, valid, 32**-0.5).double() - want).abs() / want.clamp_min(1e-3))[valid]
    assert ours <= 1e-3
    assert ours <= eager.max().item()


@pytest.mark.parametrize("fused", [False, True])
def test_padding_holding_nan_does_not_poison_valid_rows(fused):
    q, k, v, valid = random_case(2, Q=9, K=9, pad=(3, 0))
    q[0, :, :3] = float("nan")
    k[0, :, :3] = float("nan")
    v[0, :, :3] = float("nan")
    if fused:
        out, got = attention_with_received(q, k, v, valid, valid, 8**-0.5, 4)
        assert torch.isfinite(out[0, 3:]).all() and torch.isfinite(out[1]).all()
    else:
        got = attention_received(q, k, valid, valid, 8**-0.5, 4)
    assert torch.isfinite(got).all() and torch.all(got[0, :3] == 0)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("rows", [[1.5, 0.7], [1.5]], ids=["padded_blocked", "unpadded_two_pass"])
def test_reducing_attention_equals_the_models_own_attention(checkpoint, processor, implementation, rows):
    """In the model (GQA; left padding: the blocked pass; one row: the two-pass CPU path): our
    function's output equals the model's own attention and its sums equal eager attention's
    probabilities, summed."""
    model = load(checkpoint, implementation)
    eager = load(checkpoint, "eager")
    inputs = make_inputs(processor, rows)
    valid = inputs["attention_mask"].bool()
    padded = len(rows) > 1
    layer = 3
    captured = {}

    def spy(name):
        def hook(module, args, kwargs, output):
            captured[name] = output

        return hook

    ref_attn = eager.model.language_model.layers[layer].self_attn
    h = ref_attn.register_forward_hook(spy("eager"), with_kwargs=True)
    with torch.no_grad():
        eager(**inputs, output_attentions=True)
    h.remove()
    attn = model.model.language_model.layers[layer].self_attn
    state = ReducingAttention(base=base_attention_function(attn, implementation), chunk_size=5)
    h = attn.register_forward_hook(spy("ours"), with_kwargs=True)
    with AttentionSwap(RECORDING_IMPLEMENTATION, {attn: state}), state.armed_for(valid, padded), torch.no_grad():
        model(**inputs)
    h.remove()
    key, received = state.take()
    weights = captured["eager"][1].float()
    expected = (weights * valid[:, None, :, None]).sum(dim=(1, 2))
    assert torch.allclose(received[valid], expected[valid], rtol=1e-4, atol=1e-4)
    rows = valid[:, :, None].expand_as(captured["ours"][0])
    assert torch.allclose(captured["ours"][0][rows], captured["eager"][0][rows], atol=1e-5)
    assert key.shape[2] == valid.shape[1]


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_window_scores_are_the_last_rows_attention(checkpoint, processor, implementation):
    """scores_from="window": the model's own attention output, and the sums of eager attention's
    probabilities over the last W valid query rows only (left padding)."""
    model = load(checkpoint, implementation)
    eager = load(checkpoint, "eager")
    inputs = make_inputs(processor, [1.5, 0.7])
    valid = inputs["attention_mask"].bool()
    captured = {}
    layer, window = 3, 5
    with torch.no_grad():
        captured["eager"] = eager(**inputs, output_attentions=True).attentions[layer].float()
        reference_logits = eager(**inputs).logits
    attn = model.model.language_model.layers[layer].self_attn
    state = ReducingAttention(base=base_attention_function(attn, implementation), window=window)
    with AttentionSwap(RECORDING_IMPLEMENTATION, {attn: state}), state.armed_for(valid, True), torch.no_grad():
        logits = model(**inputs).logits
    _, received = state.take()
    weights = captured["eager"][:, :, -window:]  # (B, H, W, K): the last W query rows
    expected = weights.sum(dim=(1, 2))
    assert torch.allclose(received[valid], expected[valid], rtol=1e-4, atol=1e-5)
    assert torch.allclose(received.sum(-1), torch.full((2,), window * weights.shape[1], dtype=torch.float32))
    assert torch.allclose(logits[valid], reference_logits[valid], atol=1e-4)


def test_unarmed_state_runs_the_base_function_untouched(checkpoint, processor):
    model = load(checkpoint, "sdpa")
    inputs = make_inputs(processor, [1.0])
    with torch.no_grad():
        before = model(**inputs).logits
    attn = model.model.language_model.layers[2].self_attn
    state = ReducingAttention(base=base_attention_function(attn, "sdpa"))
    with AttentionSwap(RECORDING_IMPLEMENTATION, {attn: state}), torch.no_grad():
        after = model(**inputs).logits
    assert torch.equal(before, after)
    with pytest.raises(RuntimeError, match="not called"):
        state.take()
