"""The CUDA kernels for the attention received, run on CPU by Triton's interpreter, against the
blocked torch path and a float64 softmax (padding, GQA, causal offsets, tiles not dividing the length)."""

from __future__ import annotations

import pytest
import torch

from espnet_fastadasp.reduction import triton_received
from espnet_fastadasp.reduction.attention import attention_received

from .test_attention import column_sums, random_case, reference


@pytest.fixture()
def interpreted(monkeypatch):
    import triton  # noqa: F401  (Triton is a test dependency: an ImportError is a broken install, not a skip)

    assert triton_received.interpreting(), "conftest sets TRITON_INTERPRET=1 before Triton is imported"
    monkeypatch.setattr(triton_received, "INTERPRET_ON_CPU", True)


@pytest.mark.parametrize(
    "shape",
    [
        dict(B=2, Hq=4, Hkv=2, Q=37, K=37, D=16),  # GQA, length not a multiple of the tiles
        dict(B=2, Hq=4, Hkv=4, Q=20, K=29, D=32),  # queries after 9 cached keys
        dict(B=1, Hq=2, Hkv=1, Q=70, K=70, D=24),  # head_dim not a power of two
    ],
    ids=["gqa", "offset", "odd_head_dim"],
)
def test_kernels_equal_the_float64_softmax(interpreted, shape):
    pad = (0, 5) if shape["B"] == 2 else (5,)
    q, k, v, valid = random_case(3, shape["B"], shape["Hq"], shape["Hkv"], shape["Q"], shape["K"], shape["D"], pad)
    query_valid = valid[:, shape["K"] - shape["Q"] :]
    scaling = shape["D"] ** -0.5
    assert triton_received.usable(q)
    got = triton_received.attention_received(q, k, valid, query_valid, scaling, block_m=16, block_n=16)
    probs, _ = reference(q, k, v, valid, scaling)
    assert torch.allclose(got.double(), column_sums(probs, query_valid), atol=1e-5)
    assert torch.allclose(got, attention_received(q, k, valid, query_valid, scaling), atol=1e-5)


def test_nan_padding_and_strided_inputs(interpreted):
    q, k, v, valid = random_case(4, B=2, Hq=4, Hkv=2, Q=33, K=33, D=16, pad=(6, 0))
    q[0, :, :6] = float("nan")
    k[0, :, :6] = float("nan")
    q = q.transpose(1, 2).contiguous().transpose(1, 2)  # (B, H, Q, D) as a view, as the models hand it over
    got = triton_received.attention_received(q, k, valid, valid, 0.25, block_m=16, block_n=16)
    assert torch.isfinite(got).all() and torch.all(got[0, :6] == 0)
    probs, _ = reference(q.nan_to_num(), k.nan_to_num(), v, valid, 0.25)
    assert torch.allclose(got.double()[1], column_sums(probs, valid)[1], atol=1e-5)


def test_not_used_on_cpu_tensors_unless_asked():
    assert not triton_received.usable(torch.zeros(1, 1, 4, 16))


def test_too_small_a_head_uses_the_torch_path(interpreted):
    assert triton_received.usable(torch.zeros(1, 1, 4, 16))
    assert not triton_received.usable(torch.zeros(1, 1, 4, 8))  # tl.dot needs tiles of 16


@pytest.mark.parametrize("method", ["fastadasp", "fastv", "h2o"])
def test_reduction_through_the_kernels_gives_the_torch_paths_tokens(interpreted, checkpoint, processor, method):
    """In the model: the model's own SDPA + the kernels' sums decode like the blocked torch path."""
    import espnet_fastadasp as fa

    from .conftest import GEN, load, make_inputs, new_tokens

    model = load(checkpoint)
    inputs = make_inputs(processor, [1.4, 0.9])
    outs = {}
    for on in (True, False):
        triton_received.INTERPRET_ON_CPU = on
        with torch.no_grad(), fa.apply(model, method=method, ratio=0.3) as handle:
            outs[on] = (new_tokens(model.generate(**inputs, **GEN), inputs), handle.stats.rows)
    assert torch.equal(outs[True][0], outs[False][0])
    assert outs[True][1] == outs[False][1]


def test_a_given_log_sum_exp_leaves_only_the_column_pass(interpreted):
    """The rows' log-sum-exp from a fused kernel (PyTorch's CPU flash here, natural log of the
    scaled scores like the CUDA one) gives the same sums as the kernels' own row pass."""
    q, k, v, valid = random_case(8, B=1, Hq=4, Hkv=4, Q=40, K=40, D=16, pad=(0,))
    _, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, True, scale=0.25)
    got = triton_received.attention_received(q, k, valid, valid, 0.25, block_m=16, block_n=16, lse=lse)
    probs, _ = reference(q, k, v, valid, 0.25)
    assert torch.allclose(got.double(), column_sums(probs, valid), atol=1e-5)
    assert torch.allclose(got, triton_received.attention_received(q, k, valid, valid, 0.25, 16, 16), atol=1e-5)


def test_the_flash_route_of_a_reducing_layer(interpreted, monkeypatch, checkpoint, processor):
    """The CUDA route (flash attention's output and log-sum-exp, then the column pass), with the CPU
    flash kernel standing in for the CUDA one: in the model, the output and the sums equal the
    model's own attention and eager attention's weights, summed."""
    from espnet_fastadasp.reduction.attention import (
        RECORDING_IMPLEMENTATION,
        AttentionSwap,
        ReducingAttention,
        base_attention_function,
    )

    from .conftest import load, make_inputs

    def cpu_flash(query, key, value, scaling):
        groups = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, 0.0, True, scale=scaling)

    used = []
    monkeypatch.setattr(triton_received, "flash_lse_usable", lambda q, k: used.append(1) or q.shape[2] == k.shape[2])
    monkeypatch.setattr(triton_received, "flash_attention_with_lse", cpu_flash)
    model, eager = load(checkpoint, "sdpa"), load(checkpoint, "eager")
    inputs = make_inputs(processor, [1.5])
    valid = inputs["attention_mask"].bool()
    layer = 3
    with torch.no_grad():
        out = eager(**inputs, output_attentions=True)
    expected = out.attentions[layer].float().sum(dim=(1, 2))
    attn = model.model.language_model.layers[layer].self_attn
    state = ReducingAttention(base=base_attention_function(attn, "sdpa"))
    with AttentionSwap(RECORDING_IMPLEMENTATION, {attn: state}), state.armed_for(valid, False), torch.no_grad():
        logits = model(**inputs).logits
    _, received = state.take()
    assert used, "the flash route was taken"
    assert torch.allclose(received, expected, rtol=1e-4, atol=1e-4)
    assert torch.allclose(logits, out.logits, atol=1e-4)
