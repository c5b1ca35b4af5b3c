"""The model patch end to end, on a tiny Qwen2-Audio saved and loaded with from_pretrained."""

from __future__ import annotations

import pytest
import torch

import espnet_fastadasp as fa
from espnet_fastadasp.core.config import METHODS
from espnet_fastadasp.models.compat import cache_of_output
from espnet_fastadasp.reduction.attention import AttentionSwap

from .conftest import GEN, load, make_inputs, new_tokens

REDUCING = [m for m in METHODS if m != "none"]
BATCH_SECONDS = [1.8, 0.9, 1.3]


def generate(model, inputs, **kw):
    return model.generate(**inputs, **{**GEN, **kw})


@pytest.mark.parametrize("beams", [1, 3])
def test_none_is_identical_to_unpatched(model, processor, beams):
    inputs = make_inputs(processor, BATCH_SECONDS)
    base = generate(model, inputs, num_beams=beams)
    handle = fa.apply(model, fa.ReductionConfig(method="none"))
    assert torch.equal(generate(model, inputs, num_beams=beams), base)
    assert handle.stats.flops_reduction == 0.0
    handle.remove()


@pytest.mark.parametrize("method", REDUCING)
def test_remove_restores_the_original(model, processor, method):
    inputs = make_inputs(processor, BATCH_SECONDS)
    base = generate(model, inputs)
    handle = fa.apply(model, fa.ReductionConfig(method=method, flops_reduction=0.4))
    generate(model, inputs)
    handle.remove()
    assert torch.equal(generate(model, inputs), base)
    assert not any(AttentionSwap.has_state(module) for module in model.modules())
    assert all("forward" not in layer.__dict__ for layer in model.modules())


def test_zero_target_is_identical(model, processor):
    inputs = make_inputs(processor, BATCH_SECONDS)
    base = generate(model, inputs, num_beams=2)
    with fa.apply(model, fa.ReductionConfig(method="fastadasp", flops_reduction=0.0)):
        assert torch.equal(generate(model, inputs, num_beams=2), base)


@pytest.mark.parametrize("method", REDUCING)
@pytest.mark.parametrize("schedule", ["constant", "once"])
def test_batch_equals_single_runs(model, processor, method, schedule):
    cfg = fa.ReductionConfig(method=method, schedule=schedule, flops_reduction=0.3 if schedule == "constant" else 0.25)
    inputs = make_inputs(processor, BATCH_SECONDS)
    with fa.apply(model, cfg) as handle:
        batch = new_tokens(generate(model, inputs), inputs)
        batch_stats = handle.stats.rows
        for row, secs in enumerate(BATCH_SECONDS):
            single_inputs = make_inputs(processor, [secs], seed=10 * row)
            single = new_tokens(generate(model, single_inputs), single_inputs)
            assert torch.equal(single[0], batch[row]), f"{method}: row {row} differs from its single run"
            assert handle.stats.rows[0].audio_tokens == batch_stats[row].audio_tokens


@pytest.mark.parametrize("method", ["fastadasp", "fastv", "h2o"])
def test_window_scoring_batch_equals_single_runs(model, processor, method):
    """Scores from the last rows only: each row of a padded batch as in its own run, and another
    choice than the all-rows scores somewhere (the option is not a no-op)."""
    cfg = fa.ReductionConfig(method=method, flops_reduction=0.3, scores_from="window", score_window=3)
    inputs = make_inputs(processor, BATCH_SECONDS)
    with fa.apply(model, cfg):
        batch = new_tokens(generate(model, inputs), inputs)
        for row, secs in enumerate(BATCH_SECONDS):
            single_inputs = make_inputs(processor, [secs], seed=10 * row)
            single = new_tokens(generate(model, single_inputs), single_inputs)
            assert torch.equal(single[0], batch[row]), f"{method}: row {row} differs from its single run"
    kept = {}  # what the last layer's cache holds after the prefill
    for scores_from in ("window", "all"):
        with fa.apply(model, cfg.replace(scores_from=scores_from)), torch.no_grad():
            kept[scores_from] = cache_of_output(model(**inputs, use_cache=True)).layers[-1].keys
    assert kept["window"].shape == kept["all"].shape and not torch.equal(kept["window"], kept["all"])


@pytest.mark.parametrize("method", ["fastadasp", "fastv", "h2o"])
def test_beam_search_batch_equals_single_runs(model, processor, method):
    cfg = fa.ReductionConfig(method=method, flops_reduction=0.3)
    inputs = make_inputs(processor, BATCH_SECONDS[:2])
    with fa.apply(model, cfg):
        batch = new_tokens(generate(model, inputs, num_beams=3), inputs)
        for row, secs in enumerate(BATCH_SECONDS[:2]):
            single_inputs = make_inputs(processor, [secs], seed=10 * row)
            single = new_tokens(generate(model, single_inputs, num_beams=3), single_inputs)
            assert torch.equal(single[0], batch[row])


@pytest.mark.parametrize("method", REDUCING)
def test_eager_and_sdpa_agree_under_reduction(checkpoint, processor, method):
    cfg = fa.ReductionConfig(method=method, flops_reduction=0.35)
    inputs = make_inputs(processor, BATCH_SECONDS)
    outs, stats = [], []
    for attn in ("sdpa", "eager"):
        model = load(checkpoint, attn)
        with fa.apply(model, cfg) as handle:
            outs.append(generate(model, inputs, num_beams=2))
            stats.append([r.audio_tokens for r in handle.stats.rows])
    assert torch.equal(outs[0], outs[1])
    assert stats[0] == stats[1]


@pytest.mark.parametrize("method", REDUCING)
def test_kv_cache_lengths_follow_the_plan(model, processor, method):
    inputs = make_inputs(processor, BATCH_SECONDS)
    with fa.apply(model, fa.ReductionConfig(method=method, schedule="constant", ratio=0.2, start_layer=2)) as handle:
        out = generate(model, inputs, return_dict_in_generate=True, max_new_tokens=4)
        rows = handle.stats.rows
    cache = cache_of_output(out)
    steps = 4 - 1  # the last generated token is never fed back
    full = inputs["input_ids"].shape[1]
    for layer in range(len(rows[0].kv_tokens)):
        expected = max(r.kv_tokens[layer] for r in rows)
        if layer <= 2:
            expected = full  # layers up to and including the first reducing one cache the whole prompt
        assert cache.layers[layer].keys.shape[2] == expected + steps, f"layer {layer}"
    # the plan: every later layer holds fewer entries than the full prompt
    assert all(cache.layers[layer].keys.shape[2] < full + steps for layer in range(3, len(rows[0].kv_tokens)))
    for r in rows:
        text = [t - a for t, a in zip(r.total_tokens, r.audio_tokens)]
        assert len(set(text)) == 1, "text/special tokens must never be merged or dropped"
        assert r.kv_tokens[3] == r.kv_tokens[2] - int(r.audio_tokens[2] * 0.2)


def test_multiple_clips_each_keep_tokens(model, processor):
    inputs = make_inputs(processor, [[1.5, 1.0], [0.6, 1.9]])
    with fa.apply(model, fa.ReductionConfig(method="fastadasp", schedule="once", start_layer=1, ratio=0.99)) as handle:
        generate(model, inputs)
    for row in handle.stats.rows:
        # a clip keeps at least one token, and merges never cross the text between clips
        assert row.audio_tokens_out == 2


def test_positions_are_kept_and_decoding_continues_at_n(model, processor):
    inputs = make_inputs(processor, BATCH_SECONDS)
    seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    handle = fa.apply(model, fa.ReductionConfig(method="fastadasp", ratio=0.3, start_layer=1))
    layers = handle.parts.layers
    spies = [
        layer.register_forward_pre_hook(
            lambda m, a, kw, i=i: seen.append((i, kw["position_ids"], kw["position_embeddings"][0])), with_kwargs=True
        )
        for i, layer in enumerate(layers)
    ]
    generate(model, inputs, max_new_tokens=3)
    for s in spies:
        s.remove()
    handle.remove()
    rotary = handle.parts.decoder.rotary_emb
    mask = inputs["attention_mask"].bool()
    original = (mask.long().cumsum(-1) - 1).clamp(min=0)
    n_layers = len(layers)
    prefill = seen[:n_layers]
    for i, pos, cos in prefill:
        pos = pos.expand(mask.shape[0], -1)
        ref_cos, _ = rotary(cos, pos)
        filled = cos.abs().sum(-1) > 0  # slots of new left padding carry no embedding
        assert torch.allclose(cos[filled], ref_cos[filled]), f"layer {i}: rotary embeddings != kept positions"
        for b in range(mask.shape[0]):
            valid = pos[b][pos[b] > 0]
            assert torch.all(valid[1:] > valid[:-1]), "order of tokens must be preserved"
            assert set(valid.tolist()) <= set(original[b].tolist())
            assert pos[b, -1] == original[b, -1], "the last prompt token keeps its position"
    # first decoding step: position N for every row (N = that row's prompt length)
    _, pos, _ = seen[n_layers]
    assert torch.equal(pos[:, -1], mask.sum(-1))


def test_achieved_reduction_lands_on_target(model, processor):
    inputs = make_inputs(processor, [1.9])
    for target in (0.1, 0.3, 0.5):
        with fa.apply(model, fa.ReductionConfig(method="fastadasp", flops_reduction=target, start_layer=1)) as handle:
            generate(model, inputs, max_new_tokens=1)
        # a 2 s clip is 50 audio tokens: short, so the integer steps allow a few points
        assert abs(handle.stats.flops_reduction - target) < 0.04


def test_h2o_really_frees_cache_memory(model, processor):
    inputs = make_inputs(processor, BATCH_SECONDS)
    out_full = generate(model, inputs, return_dict_in_generate=True, max_new_tokens=2)
    with fa.apply(model, fa.ReductionConfig(method="h2o", flops_reduction=0.4)) as handle:
        out = generate(model, inputs, return_dict_in_generate=True, max_new_tokens=2)
    full_bytes = sum(c.keys.numel() + c.values.numel() for c in cache_of_output(out_full).layers)
    bytes_ = sum(c.keys.numel() + c.values.numel() for c in cache_of_output(out).layers)
    assert bytes_ < 0.8 * full_bytes
    assert handle.stats.kv_reduction > 0.2
    assert handle.stats.flops_reduction == 0.0  # h2o leaves the hidden states (and prefill FLOPs) whole


def test_unreachable_target_is_a_clear_error(model, processor):
    inputs = make_inputs(processor, [1.0])
    with fa.apply(model, fa.ReductionConfig(method="fastadasp", schedule="once", start_layer=7, flops_reduction=0.5)):
        with pytest.raises(fa.ConfigError, match="unreachable"):
            generate(model, inputs)


def test_unreachable_target_can_fall_back_to_the_maximum(model, processor, caplog):
    inputs = make_inputs(processor, [1.0])
    cfg = fa.ReductionConfig(method="fastadasp", schedule="once", start_layer=7, flops_reduction=0.5, unreachable="max")
    with fa.apply(model, cfg) as handle:
        generate(model, inputs)
    assert "unreachable" in caplog.text
    assert 0 < handle.stats.flops_reduction < 0.5


def test_start_layer_beyond_the_model_is_rejected(model):
    with pytest.raises(fa.ConfigError, match="start_layer=8"):
        fa.apply(model, fa.ReductionConfig(method="fastadasp", ratio=0.2, start_layer=8))


def test_apply_twice_is_rejected(model):
    handle = fa.apply(model, fa.ReductionConfig(method="fastv", ratio=0.2))
    with pytest.raises(RuntimeError, match="already"):
        fa.apply(model, fa.ReductionConfig(method="fastv", ratio=0.2))
    handle.remove()
    fa.apply(model, fa.ReductionConfig(method="fastv", ratio=0.2)).remove()


def test_inputs_embeds_without_ids_is_a_clear_error(model, processor):
    inputs = make_inputs(processor, [1.0])
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    with fa.apply(model, fa.ReductionConfig(method="fastadasp", ratio=0.2)):
        with pytest.raises(fa.UnsupportedModelError, match="input_ids"):
            model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"], use_cache=True)


def test_text_only_model_is_rejected():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    lm = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=50,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    with pytest.raises(fa.UnsupportedModelError, match="audio placeholder"):
        fa.apply(lm, fa.ReductionConfig(method="fastadasp", ratio=0.2))


def test_plain_forward_without_cache_is_not_reduced(model, processor):
    inputs = make_inputs(processor, [1.2])
    base = model(**inputs, use_cache=False).logits
    with fa.apply(model, fa.ReductionConfig(method="fastadasp", ratio=0.5)):
        assert torch.equal(model(**inputs, use_cache=False).logits, base)


def test_static_cache_is_a_clear_error(model, processor):
    inputs = make_inputs(processor, [1.0])
    with fa.apply(model, fa.ReductionConfig(method="fastadasp", ratio=0.2)):
        with pytest.raises(fa.UnsupportedModelError, match="DynamicCache"):
            generate(model, inputs, cache_implementation="static")


def test_unsupported_attention_implementation_is_rejected(checkpoint):
    model = load(checkpoint, "sdpa")
    model.config.get_text_config()._attn_implementation = "flex_attention"
    with pytest.raises(fa.UnsupportedModelError, match="flex_attention"):
        fa.apply(model, fa.ReductionConfig(method="fastadasp", ratio=0.2))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_bfloat16_runs_every_method(checkpoint, processor, attn):
    from transformers import Qwen2AudioForConditionalGeneration

    model = Qwen2AudioForConditionalGeneration.from_pretrained(
        checkpoint, dtype=torch.bfloat16, attn_implementation=attn
    ).eval()
    inputs = make_inputs(processor, BATCH_SECONDS)
    inputs["input_features"] = inputs["input_features"].to(torch.bfloat16)
    base = generate(model, inputs, num_beams=2)
    with fa.apply(model, fa.ReductionConfig(method="none")):
        assert torch.equal(generate(model, inputs, num_beams=2), base)
    for method in REDUCING:
        with fa.apply(model, fa.ReductionConfig(method=method, flops_reduction=0.3)) as handle:
            out = generate(model, inputs, num_beams=2)
        assert out.shape[0] == len(BATCH_SECONDS) and handle.stats.rows


def test_a_text_only_row_in_the_batch_is_left_alone(model, processor):
    from espnet_fastadasp.models.tiny import synthetic_audio

    texts = ["<|im_start|><|audio_bos|><|AUDIO|><|audio_eos|>ASR:<|im_end|>", "<|im_start|>hello there<|im_end|>"]
    inputs = processor(
        text=texts, audio=[synthetic_audio(1.5, 0)], return_tensors="pt", padding=True, sampling_rate=16000
    )
    with fa.apply(model, fa.ReductionConfig(method="fastadasp", ratio=0.3)) as handle:
        batch = new_tokens(generate(model, inputs), inputs)
        rows = handle.stats.rows
        text_only = processor(text=[texts[1]], return_tensors="pt")
        single = new_tokens(generate(model, text_only), text_only)
    assert rows[1].audio_tokens == [0] * 8 and rows[0].audio_tokens_out < rows[0].audio_tokens[0]
    assert torch.equal(batch[1], single[0])


def test_cudnn_attention_is_off_inside_a_reduced_decoder_only(model, processor):
    """cuDNN SDPA plans per shape (2 s per decoding step for each new length on an H100): the
    patch switches it off while the reduced decoder runs and restores the flag, also on error."""
    seen = []
    probe = (
        model.get_decoder()
        .layers[0]
        .register_forward_pre_hook(lambda *_: seen.append(torch.backends.cuda.cudnn_sdp_enabled()))
    )
    inputs = make_inputs(processor, [1.0])
    try:
        with fa.apply(model, fa.ReductionConfig(method="none")):
            generate(model, inputs)
        assert seen and all(seen)  # no reduction: nothing changes
        seen.clear()
        with fa.apply(model, fa.ReductionConfig(method="fastadasp", ratio=0.3)):
            generate(model, inputs)
            assert seen and not any(seen)
            assert torch.backends.cuda.cudnn_sdp_enabled()

            def fail(*_):
                raise RuntimeError("a layer failed")

            failing = model.get_decoder().layers[1].register_forward_pre_hook(fail)
            try:
                with pytest.raises(RuntimeError, match="a layer failed"):
                    generate(model, inputs)
            finally:
                failing.remove()
            assert seen[-1] is False  # the decoder had started, with cuDNN off
            assert torch.backends.cuda.cudnn_sdp_enabled()
    finally:
        probe.remove()
