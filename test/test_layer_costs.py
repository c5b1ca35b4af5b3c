"""Per-layer FLOPs counted from the modules (reduction/layer_costs.py): what each layer really computes."""

from __future__ import annotations

import pytest
import torch

from espnet_fastadasp.core.flops import DecoderDims, LayerCost, full_prefill_flops
from espnet_fastadasp.models.parts import sliding_window_of
from espnet_fastadasp.models.tiny import build_tiny_qwen2_audio
from espnet_fastadasp.reduction.layer_costs import decoder_dims


def windows(layers):
    return tuple(sliding_window_of(layer) for layer in layers)


def test_a_uniform_dense_model_counts_what_the_config_formula_says():
    model, _ = build_tiny_qwen2_audio()
    layers = model.model.language_model.layers
    text = model.config.get_text_config()
    dims = decoder_dims(text, layers, windows(layers))
    assert dims.layers is None  # bit for bit the formula: plans and the mini benchmark's numbers unchanged
    assert dims == DecoderDims.from_config(text)


def test_mixture_of_experts_counts_the_routed_experts_only():
    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeModel

    cfg = Qwen3MoeConfig(vocab_size=64, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                         num_experts=8, num_experts_per_tok=2, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=8, mlp_only_layers=[])  # fmt: skip
    layers = Qwen3MoeModel(cfg).layers
    cost = decoder_dims(cfg, layers, windows(layers)).layer(0)
    H, E, ffn, k = 32, 8, 16, 2
    router = E * H
    expert = 3 * H * ffn  # gate, up, down
    assert cost.mlp_per_token == 2 * (router + k * expert)  # not all 8 experts: 2 per token
    assert cost.proj_per_token == 2 * (32 * 32 + 2 * 16 * 32 + 32 * 32)
    assert cost.attn_per_pair == 4 * 4 * 8


def test_gemma4_layers_differ_and_sliding_ones_are_capped():
    from transformers import Gemma4TextConfig
    from transformers.models.gemma4.modeling_gemma4 import Gemma4TextModel

    cfg = Gemma4TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=6,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=8, global_head_dim=16,
                           sliding_window=8, hidden_size_per_layer_input=8, vocab_size_per_layer_input=64)  # fmt: skip
    torch.manual_seed(0)
    layers = Gemma4TextModel(cfg).layers
    dims = decoder_dims(cfg, layers, windows(layers))
    sliding, full = dims.layer(0), dims.layer(5)
    assert sliding.window == 8 and full.window is None
    assert full.attn_per_pair == 4 * 4 * 16 and sliding.attn_per_pair == 4 * 4 * 8  # global head dim 16
    # MLP (gate, up, down) and the per-layer input gate and projection, per token
    assert sliding.mlp_per_token == 2 * (3 * 32 * 64 + 2 * 32 * 8)
    n = 100
    assert sliding.pairs(n) == 8 * 9 // 2 + (n - 8) * 8  # each query sees at most 8 keys
    assert full.pairs(n) == n * (n + 1) // 2
    assert full_prefill_flops(dims, n) == sum(dims.layer(i).prefill(n, n) for i in range(6))


def test_decode_step_of_a_sliding_layer_reads_at_most_its_window():
    cost = LayerCost(proj_per_token=10, mlp_per_token=20, attn_per_pair=4, window=16)
    assert cost.decode(1000) == 10 + 20 + 4 * 16
    assert cost.decode(3) == 10 + 20 + 4 * 4


@pytest.mark.parametrize("heads_field", ["num_heads"])
def test_heads_come_from_the_attention_module_when_it_keeps_them(heads_field):
    """A heterogeneous config (Dots 3) refuses a global head count; the module's own is used."""
    from espnet_fastadasp.reduction.layer_costs import attention_heads

    class Attn(torch.nn.Module):
        pass

    attn = Attn()
    setattr(attn, heads_field, 6)
    assert attention_heads(attn, object()) == 6
