"""The FLOPs model, the schedules and the target solver."""

from __future__ import annotations

import dataclasses

import pytest

from espnet_fastadasp.core.config import ConfigError
from espnet_fastadasp.core.flops import (
    DecoderDims,
    flops_reduction_of,
    full_prefill_flops,
    layer_ratios,
    plan_row,
    prefill_flops,
    solve_ratio,
)

QWEN2_AUDIO_7B = DecoderDims(
    num_layers=32, hidden=4096, intermediate=11008, num_heads=32, num_kv_heads=32, head_dim=128
)


def test_layer_flops_by_hand():
    d = DecoderDims(num_layers=2, hidden=8, intermediate=16, num_heads=4, num_kv_heads=2, head_dim=2)
    # q,k,v,o per token: 2*8*(4*2) + 2*8*(2*2)*2 ... = 2*H*(2*Hq*D + 2*Hkv*D) = 2*8*(16+8) = 384
    assert d.proj_per_token == 384
    assert d.mlp_per_token == 6 * 8 * 16
    n = 5
    assert d.prefill_layer(n, n) == n * 384 + 4 * 4 * 2 * n * (n + 1) // 2 + n * 768
    assert d.decode_layer(10) == 384 + 768 + 4 * 4 * 2 * 11


def test_gqa_shrinks_projection_flops():
    mha = DecoderDims(1, 64, 128, 8, 8, 8)
    gqa = DecoderDims(1, 64, 128, 8, 2, 8)
    assert gqa.proj_per_token < mha.proj_per_token


def test_schedules():
    assert layer_ratios("constant", 0.2, 2, 5) == [0, 0, 0.2, 0.2, 0.2]
    assert layer_ratios("decay", 0.3, 1, 5) == pytest.approx([0, 0.3, 0.2, 0.1, 0.0])
    assert layer_ratios("once", 0.5, 3, 5) == [0, 0, 0, 0.5, 0]
    plan = plan_row(100, 120, 1, "constant", 0.1, 1, 4)
    assert plan.audio_in == (100, 100, 90, 81)  # compounding: A * (1 - r)^(l - p)
    assert plan.removals == (0, 10, 9, 8)
    assert plan.total_in == (120, 120, 110, 101)


def test_no_layer_reduces_from_the_stop_layer_on():
    """KV sharing: layers from the first one whose keys are reused keep their tokens."""
    assert layer_ratios("constant", 0.2, 1, 5, stop_layer=3) == [0, 0.2, 0.2, 0, 0]
    assert layer_ratios("decay", 0.3, 0, 6, stop_layer=4) == pytest.approx([0.3, 0.2, 0.1, 0.0, 0, 0])
    assert layer_ratios("once", 0.5, 3, 5, stop_layer=3) == [0] * 5
    dims = dataclasses.replace(QWEN2_AUDIO_7B, reduce_before=16)  # as if layers 16.. reused keys
    plan = solve_ratio(dims, 0.3, 6000, 6030, 8, "constant", 2)
    assert not any(plan.removals[16:]) and any(plan.removals[2:16])
    assert abs(flops_reduction_of(dims, plan) - 0.3) < 0.02


def test_each_clip_keeps_a_token():
    plan = plan_row(10, 14, 2, "once", 0.99, 0, 2)
    assert plan.audio_out == 2


@pytest.mark.parametrize("schedule,start", [("constant", 2), ("decay", 2), ("once", 3)])
@pytest.mark.parametrize("target", [0.1, 0.2, 0.3, 0.4, 0.5])
def test_solver_lands_within_two_points_on_long_audio(schedule, start, target):
    # 240 s of audio at 25 tokens/s and a short text prompt, at the Qwen2-Audio-7B shape
    plan = solve_ratio(QWEN2_AUDIO_7B, target, 6000, 6030, 8, schedule, start)
    assert abs(flops_reduction_of(QWEN2_AUDIO_7B, plan) - target) < 0.02


def test_unreachable_target_raises():
    with pytest.raises(ConfigError, match="unreachable.*at most"):
        solve_ratio(QWEN2_AUDIO_7B, 0.5, 6000, 6030, 8, "once", 30)


def test_reduction_counts_real_tokens():
    plan = plan_row(600, 630, 1, "once", 0.5, 0, 32)
    full = full_prefill_flops(QWEN2_AUDIO_7B, 630)
    assert prefill_flops(QWEN2_AUDIO_7B, plan) < full
    assert 0 < flops_reduction_of(QWEN2_AUDIO_7B, plan) < 0.5
