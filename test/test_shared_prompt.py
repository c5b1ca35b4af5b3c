"""Beam search with one prompt cache shared by the beams (espnet_fastadasp.generation.shared_prompt)."""

from __future__ import annotations

import types

import pytest
import torch

import espnet_fastadasp as fa
from espnet_fastadasp.core.config import METHODS
from espnet_fastadasp.generation.fixes import BeamClipOrderFix
from espnet_fastadasp.generation.shared_prompt import (
    SHARED_PROMPT_IMPLEMENTATION,
    SharedPromptLayer,
    generate_with_shared_prompt,
    shared_prompt_attention,
)
from espnet_fastadasp.models.compat import DynamicLayer, attn_implementation, cache_of_output
from espnet_fastadasp.reduction.attention import AttentionSwap

from .conftest import load, make_inputs, new_tokens

BATCH_SECONDS = [1.8, 0.9, 1.3]  # left padding: rows of different lengths
GEN = dict(max_new_tokens=8, do_sample=False, return_dict_in_generate=True, output_scores=True)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("beams", [1, 3])
def test_equals_plain_generate_without_reduction(checkpoint, processor, attn, beams):
    model = load(checkpoint, attn)
    inputs = make_inputs(processor, BATCH_SECONDS)
    plain = model.generate(**inputs, num_beams=beams, **GEN)
    shared = generate_with_shared_prompt(model, inputs, num_beams=beams, **GEN)
    assert torch.equal(shared.sequences, plain.sequences)
    if beams > 1:
        torch.testing.assert_close(shared.sequences_scores, plain.sequences_scores, atol=1e-5, rtol=1e-5)
    # the same model afterwards: every attention module back on its own implementation
    assert torch.equal(model.generate(**inputs, num_beams=beams, **GEN).sequences, plain.sequences)
    for module in model.modules():
        assert not AttentionSwap.has_state(module)
        config = getattr(module, "config", None)
        assert attn_implementation(config) != SHARED_PROMPT_IMPLEMENTATION


def test_beams_from_a_generation_config(model, processor):
    from transformers import GenerationConfig

    inputs = make_inputs(processor, BATCH_SECONDS[:2])
    config = GenerationConfig(num_beams=3, max_new_tokens=5, do_sample=False)
    plain = model.generate(**inputs, generation_config=config)
    shared = generate_with_shared_prompt(model, inputs, generation_config=config)
    assert torch.equal(shared, plain)


@pytest.mark.parametrize("method", METHODS)
def test_equals_plain_generate_under_every_method(model, processor, method):
    """The reduced prefill sees the whole prompt, as in plain generate: same search, same stats;
    the cache copied per beam (share_kv=False) gives the same search as well."""
    inputs = make_inputs(processor, BATCH_SECONDS)
    beams = 3
    cfg = fa.ReductionConfig(method=method, flops_reduction=0.3 if method != "none" else None)
    with fa.apply(model, cfg) as handle:
        plain = model.generate(**inputs, num_beams=beams, **GEN)
        plain_rows = handle.stats.rows[::beams]  # plain generate prefills every beam copy
        copied = generate_with_shared_prompt(model, inputs, share_kv=False, num_beams=beams, **GEN)
        shared = generate_with_shared_prompt(model, inputs, num_beams=beams, **GEN)
        assert len(handle.stats.rows) == len(BATCH_SECONDS)  # one row per prompt, not per beam
        assert [r.to_dict() for r in handle.stats.rows] == [r.to_dict() for r in plain_rows]
    torch.testing.assert_close(shared.sequences_scores, copied.sequences_scores, atol=1e-5, rtol=1e-5)
    for out in (copied, shared):
        assert torch.equal(out.sequences, plain.sequences)
        if method != "h2o":
            torch.testing.assert_close(out.sequences_scores, plain.sequences_scores, atol=1e-5, rtol=1e-5)
        # h2o: the re-fed last prompt token attends to the already evicted cache (plain generate
        # computes it before the eviction), so the first step's scores differ slightly


def test_multi_clip_prompts_hear_their_own_clips(model, processor):
    """Features are never expanded per beam here, so no clip-order fix is needed (cf. hf_fixes)."""
    inputs = make_inputs(processor, [[1.2, 0.7], 1.0, [0.5, 1.5]])
    fix = BeamClipOrderFix(model)
    try:
        plain = model.generate(**inputs, num_beams=3, **GEN)
    finally:
        fix.remove()
    shared = generate_with_shared_prompt(model, inputs, num_beams=3, **GEN)
    assert torch.equal(shared.sequences, plain.sequences)


def test_once_schedule_and_batch_equals_single_runs(model, processor):
    cfg = fa.ReductionConfig(method="fastadasp", schedule="once", ratio=0.5, start_layer=3)
    inputs = make_inputs(processor, BATCH_SECONDS)
    with fa.apply(model, cfg):
        batch = new_tokens(generate_with_shared_prompt(model, inputs, num_beams=2, **GEN), inputs)
        for row, secs in enumerate(BATCH_SECONDS):
            single_inputs = make_inputs(processor, [secs], seed=10 * row)
            single = new_tokens(generate_with_shared_prompt(model, single_inputs, num_beams=2, **GEN), single_inputs)
            assert torch.equal(single[0], batch[row])


def test_the_prompt_is_cached_once(model, processor):
    beams = 3
    for seconds in (BATCH_SECONDS, BATCH_SECONDS[:1]):
        inputs = make_inputs(processor, seconds)
        with fa.apply(model, fa.ReductionConfig(method="fastadasp", flops_reduction=0.4)) as handle:
            out = generate_with_shared_prompt(model, inputs, num_beams=beams, **GEN)
            kv_tokens = handle.stats.rows[0].kv_tokens
        layers = cache_of_output(out).layers
        assert all(isinstance(layer, SharedPromptLayer) for layer in layers)
        for layer in layers:
            assert layer.prompt_keys.shape[0] == len(seconds) and layer.keys.shape[0] == len(seconds) * beams
            # per beam: the last prompt token, then every new token but the last (never fed back)
            assert layer.keys.shape[2] == GEN["max_new_tokens"]
        assert layers[-1].prompt_length < layers[0].prompt_length == inputs["input_ids"].shape[1] - 1
    # one prompt: each layer holds exactly the tokens the plan left it, but the last (fed again)
    assert [layer.prompt_length + 1 for layer in layers] == kv_tokens


def test_layer_reorder_moves_only_the_generated_part():
    prompt_k, prompt_v = torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    layer = SharedPromptLayer(prompt_k, prompt_v, beams=3)
    assert layer.get_seq_length() == 5 and layer.keys.shape == (6, 2, 0, 4)
    new_k, new_v = torch.randn(6, 2, 1, 4), torch.randn(6, 2, 1, 4)
    keys, values = layer.update(new_k, new_v)
    assert torch.equal(keys, new_k) and torch.equal(values, new_v)
    assert layer.get_seq_length() == 6
    order = torch.tensor([2, 2, 0, 3, 5, 4])
    layer.reorder_cache(order)
    assert torch.equal(layer.keys, new_k[order]) and torch.equal(layer.values, new_v[order])
    assert layer.prompt_keys is prompt_k and layer.prompt_values is prompt_v  # never copied
    with pytest.raises(NotImplementedError, match="generated"):
        layer.crop(-2)
    with pytest.raises(NotImplementedError):
        layer.batch_repeat_interleave(2)
    assert isinstance(layer, DynamicLayer)


def _reference_attention(query, prompt_k, prompt_v, key, value, beams, key_valid, scale):
    """Plain attention over [prompt copied per beam, generated], causal for the last q queries."""
    full_k = torch.cat([prompt_k.repeat_interleave(beams, 0), key], dim=2)
    full_v = torch.cat([prompt_v.repeat_interleave(beams, 0), value], dim=2)
    groups = query.shape[1] // key.shape[1]
    full_k = full_k.repeat_interleave(groups, 1)
    full_v = full_v.repeat_interleave(groups, 1)
    q, K = query.shape[2], full_k.shape[2]
    allowed = torch.arange(K)[None, :] <= torch.arange(K - q, K)[:, None]
    allowed = allowed[None, None] & key_valid[:, None, None, :]
    scores = (query @ full_k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~allowed, float("-inf"))
    return (torch.softmax(scores, -1) @ full_v).transpose(1, 2)


@pytest.mark.parametrize("q", [1, 3])
@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
def test_attention_equals_attention_over_copies(q, mask_kind):
    torch.manual_seed(0)
    B, beams, Hkv, groups, P, S, D = 2, 3, 2, 2, 7, 4, 8
    R = B * beams
    prompt_k, prompt_v = torch.randn(B, Hkv, P, D), torch.randn(B, Hkv, P, D)
    key, value = torch.randn(R, Hkv, S, D), torch.randn(R, Hkv, S, D)
    query = torch.randn(R, Hkv * groups, q, D)
    prompt_valid = torch.ones(B, P, dtype=torch.bool)
    if mask_kind != "none":
        prompt_valid[1, :3] = False  # row 1 is left-padded
    key_valid = torch.cat([prompt_valid.repeat_interleave(beams, 0), torch.ones(R, S, dtype=torch.bool)], 1)
    K = P + S
    allowed = torch.arange(K)[None, :] <= torch.arange(K - q, K)[:, None]
    allowed = allowed[None, None] & key_valid[:, None, None, :]  # (R, 1, q, K)
    mask = {
        "bool": allowed,
        "additive": torch.where(allowed, 0.0, torch.finfo(torch.float32).min),
        "none": None,
    }[mask_kind]
    module = torch.nn.Module()
    module.config = types.SimpleNamespace()  # what AttentionSwap points at the shared-prompt function
    with AttentionSwap(SHARED_PROMPT_IMPLEMENTATION, {module: SharedPromptLayer(prompt_k, prompt_v, beams)}):
        out, weights = shared_prompt_attention(module, query, key, value, mask, scaling=D**-0.5)
    ref = _reference_attention(query, prompt_k, prompt_v, key, value, beams, key_valid, D**-0.5)
    assert weights is None and out.shape == (R, q, Hkv * groups, D)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_bfloat16_runs(checkpoint, processor):
    model = load(checkpoint, "sdpa").to(torch.bfloat16)
    inputs = make_inputs(processor, BATCH_SECONDS)
    inputs["input_features"] = inputs["input_features"].to(torch.bfloat16)
    with fa.apply(model, fa.ReductionConfig(method="fastadasp", flops_reduction=0.3)):
        out = generate_with_shared_prompt(model, inputs, num_beams=3, **GEN)
    assert out.sequences.shape[0] == len(BATCH_SECONDS)
    assert torch.isfinite(out.sequences_scores).all()


def test_bad_input_is_refused(model, processor):
    inputs = make_inputs(processor, BATCH_SECONDS)
    with pytest.raises(ValueError, match="past_key_values"):
        generate_with_shared_prompt(model, inputs, num_beams=2, past_key_values=object(), **GEN)
    with pytest.raises(ValueError, match="num_return_sequences"):
        generate_with_shared_prompt(model, inputs, num_return_sequences=2, max_new_tokens=2)
    ends_with_audio = dict(inputs)
    ids = inputs["input_ids"].clone()
    ids[:, -1] = model.config.audio_token_id
    ends_with_audio["input_ids"] = ids
    with pytest.raises(ValueError, match="ends with an audio placeholder"):
        generate_with_shared_prompt(model, ends_with_audio, num_beams=2, **GEN)
    right_padded = dict(inputs)
    mask = inputs["attention_mask"].clone()
    mask[1, -1] = 0
    right_padded["attention_mask"] = mask
    with pytest.raises(ValueError, match="left padding"):
        generate_with_shared_prompt(model, right_padded, num_beams=2, **GEN)
