"""Fixed-shape decoding over per-layer static caches (generation/static_cache.py, static_search.py, static_decoding.py)."""

from __future__ import annotations

import types

import pytest
import torch

import espnet_fastadasp as fa
from espnet_fastadasp.core.config import METHODS
from espnet_fastadasp.generation import static_decoding
from espnet_fastadasp.generation.fixes import BeamClipOrderFix
from espnet_fastadasp.generation.static_cache import (
    STATIC_STEP_IMPLEMENTATION,
    StaticStepLayer,
    StepState,
    static_step_attention,
)
from espnet_fastadasp.generation.static_decoding import generate_static
from espnet_fastadasp.generation.static_search import search_settings
from espnet_fastadasp.models.compat import attn_implementation, cache_of_output
from espnet_fastadasp.reduction.attention import AttentionSwap

from .conftest import load, make_inputs

BATCH_SECONDS = [1.8, 0.9, 1.3]  # left padding: rows of different lengths
GEN = dict(max_new_tokens=8, do_sample=False, return_dict_in_generate=True, output_scores=True)


def _config(method: str) -> fa.ReductionConfig:
    return fa.ReductionConfig(method=method, flops_reduction=0.3 if method != "none" else None)


def _assert_same(static, plain, beams: int) -> None:
    assert torch.equal(static.sequences, plain.sequences)
    if beams > 1:
        torch.testing.assert_close(static.sequences_scores, plain.sequences_scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("beams", [1, 3])
def test_equals_plain_generate_under_every_method(model, processor, method, beams):
    """Same tokens (and beam scores) as plain generate with the same reduction, on a left-padded
    batch; the prefill runs once per prompt, so the stats have one row per prompt."""
    inputs = make_inputs(processor, BATCH_SECONDS)
    with fa.apply(model, _config(method)) as handle:
        plain = model.generate(**inputs, num_beams=beams, **GEN)
        plain_rows = handle.stats.rows[::beams]
        static = generate_static(model, inputs, num_beams=beams, **GEN)
        assert [r.to_dict() for r in handle.stats.rows] == [r.to_dict() for r in plain_rows]
    _assert_same(static, plain, beams)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_equals_plain_generate_without_reduction(checkpoint, processor, attn):
    model = load(checkpoint, attn)
    inputs = make_inputs(processor, BATCH_SECONDS)
    for beams in (1, 2):
        _assert_same(
            generate_static(model, inputs, num_beams=beams, **GEN),
            model.generate(**inputs, num_beams=beams, **GEN),
            beams,
        )
    # the model is untouched afterwards: every attention module back on its own implementation
    for module in model.modules():
        assert not AttentionSwap.has_state(module)
        assert attn_implementation(getattr(module, "config", None)) != STATIC_STEP_IMPLEMENTATION


def _frequent_token(model, inputs) -> int:
    """A token the model emits early, used as EOS so that hypotheses finish at different steps."""
    out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    new = out[:, inputs["input_ids"].shape[1] :]
    return int(new[:, 1:].flatten().mode().values)


@pytest.mark.parametrize(
    "search",
    [
        dict(num_beams=1),
        dict(num_beams=1, min_new_tokens=4),
        dict(num_beams=3),
        dict(num_beams=3, early_stopping=True),
        dict(num_beams=3, early_stopping="never", length_penalty=2.0),
        dict(num_beams=4, length_penalty=0.0, num_return_sequences=2),
        dict(num_beams=3, min_new_tokens=5, length_penalty=-0.5),
    ],
)
def test_finishing_hypotheses_as_generate(model, processor, search):
    """With an EOS the model really emits: finished rows padded, hypotheses ending at different
    lengths, length penalty, early stopping and min_new_tokens as generate handles them."""
    inputs = make_inputs(processor, BATCH_SECONDS)
    eos = _frequent_token(model, inputs)
    kwargs = dict(GEN, max_new_tokens=10, eos_token_id=[eos, 0], pad_token_id=1, **search)
    with fa.apply(model, _config("fastadasp")):
        plain = model.generate(**inputs, **kwargs)
        for check_every in (1, 3, 64):  # when the host looks does not change the result
            static = generate_static(model, inputs, check_every=check_every, **kwargs)
            _assert_same(static, plain, search["num_beams"])
    assert (plain.sequences[:, inputs["input_ids"].shape[1] :] == eos).any(), "the test should see EOS"


@pytest.mark.parametrize(
    "search",
    [
        dict(num_beams=1, repetition_penalty=1.5),
        dict(num_beams=1, repetition_penalty=0.7, min_new_tokens=4),  # < 1 favours repeats
        dict(num_beams=3, repetition_penalty=0.6),
        dict(num_beams=3, repetition_penalty=1.3, min_new_tokens=5, num_return_sequences=2),
    ],
)
@pytest.mark.parametrize("method", ["none", "fastadasp"])
def test_repetition_penalty_as_generate(model, processor, search, method):
    """The repetition penalty (instruction-tuned checkpoints set one in their generation config)
    chooses as generate's: the prompt's tokens count (its left padding as the installed release
    counts it), every beam keeps its own tokens, and the result really differs from unpenalised."""
    inputs = make_inputs(processor, BATCH_SECONDS)
    eos = _frequent_token(model, inputs)
    kwargs = dict(GEN, max_new_tokens=10, eos_token_id=[eos, 0], pad_token_id=1, **search)
    with fa.apply(model, _config(method)):
        plain = model.generate(**inputs, **kwargs)
        static = generate_static(model, inputs, **kwargs)
        unpenalised = generate_static(model, inputs, **dict(kwargs, repetition_penalty=1.0))
    _assert_same(static, plain, search["num_beams"])
    changed = not torch.equal(static.sequences, unpenalised.sequences)
    if search["num_beams"] > 1:
        changed |= not torch.allclose(static.sequences_scores, unpenalised.sequences_scores)
    assert changed, "the penalty should change the result"


def test_repetition_penalty_counts_left_padding_as_the_installed_release(model, processor, monkeypatch):
    """transformers 5.23 stopped counting a row's left padding as seen; with pad positions holding a
    token the model likes, the rule decides the tokens, and ours follows the installed release."""
    from espnet_fastadasp.generation import static_search

    inputs = dict(make_inputs(processor, BATCH_SECONDS))
    liked = _frequent_token(model, inputs)
    inputs["input_ids"] = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, liked)
    kwargs = dict(GEN, max_new_tokens=10, pad_token_id=1, eos_token_id=None, repetition_penalty=1.8)
    plain = model.generate(**inputs, **kwargs)
    _assert_same(generate_static(model, inputs, **kwargs), plain, 1)
    rule = static_search.REPETITION_PENALTY_SKIPS_LEFT_PADDING
    monkeypatch.setattr(static_search, "REPETITION_PENALTY_SKIPS_LEFT_PADDING", not rule)
    other = generate_static(model, inputs, **kwargs)
    assert not torch.equal(other.sequences, plain.sequences), "the padding rule should matter here"


def test_repetition_penalty_from_the_checkpoints_generation_config(checkpoint, processor, tmp_path):
    """A checkpoint whose generation_config.json sets a penalty (as instruction-tuned checkpoints'
    often do) decodes with it through from_pretrained, with nothing passed to generate_static."""
    from transformers import GenerationConfig

    model = load(checkpoint)
    config = GenerationConfig.from_model_config(model.config)
    config.repetition_penalty, config.pad_token_id = 1.4, model.generation_config.pad_token_id
    config.eos_token_id = model.generation_config.eos_token_id
    model.generation_config = config
    model.save_pretrained(tmp_path)
    reloaded = load(tmp_path)
    assert reloaded.generation_config.repetition_penalty == 1.4
    inputs = make_inputs(processor, BATCH_SECONDS)
    for beams in (1, 3):
        plain = reloaded.generate(**inputs, num_beams=beams, **GEN)
        _assert_same(generate_static(reloaded, inputs, num_beams=beams, **GEN), plain, beams)


def test_multi_clip_prompts_hear_their_own_clips(model, processor):
    inputs = make_inputs(processor, [[1.2, 0.7], 1.0, [0.5, 1.5]])
    fix = BeamClipOrderFix(model)
    try:
        plain = model.generate(**inputs, num_beams=3, **GEN)
    finally:
        fix.remove()
    _assert_same(generate_static(model, inputs, num_beams=3, **GEN), plain, 3)


@pytest.mark.parametrize("beams,penalty", [(1, 1.0), (3, 1.0), (3, 1.3)])
def test_compiled_steps_equal_plain_generate(model, processor, beams, penalty):
    """torch.compile of the step (aot_eager: what runs on CPU in test time; on CUDA the step is a
    graph), also with the repetition penalty's in-place mask."""
    inputs = make_inputs(processor, BATCH_SECONDS)
    gen = dict(GEN, num_beams=beams, repetition_penalty=penalty)
    with fa.apply(model, _config("fastadasp")):
        plain = model.generate(**inputs, **gen)
        static = generate_static(model, inputs, step_mode="compile", compile_backend="aot_eager", **gen)
    _assert_same(static, plain, beams)


def test_steps_build_no_masks_and_keep_their_buffers(model, processor, monkeypatch):
    """Masks are built once per prompt: inside a step the model's mask builder builds nothing (it
    returns the prepared mask it is given) and no cache layer's step mask runs (plain generate
    does both every step); a step writes in place: same buffers, same shapes."""
    from transformers.models.qwen2 import modeling_qwen2

    from espnet_fastadasp.reduction.cache_layers import OwnMaskLayer

    inputs = make_inputs(processor, BATCH_SECONDS)
    calls = {"masks": 0, "in_steps": 0}
    seen = []

    def counting(fn):
        def wrapper(*args, **kwargs):
            out = fn(*args, **kwargs)
            given = kwargs.get("attention_mask")
            calls["masks"] += out is not given or given is None  # a mask built (or looked at) here
            return out

        return wrapper

    monkeypatch.setattr(modeling_qwen2, "create_causal_mask", counting(modeling_qwen2.create_causal_mask))
    monkeypatch.setattr(OwnMaskLayer, "step_mask", counting(OwnMaskLayer.step_mask))
    original_step = static_decoding.DecodeStep.__call__

    def step(self):
        seen.append([(layer.keys.data_ptr(), tuple(layer.keys.shape)) for layer in self.cache.layers])
        before = calls["masks"]
        original_step(self)
        calls["in_steps"] += calls["masks"] - before

    monkeypatch.setattr(static_decoding.DecodeStep, "__call__", step)
    with fa.apply(model, _config("fastv")) as handle:
        calls["masks"] = 0
        model.generate(**inputs, num_beams=3, **GEN)
        assert calls["masks"] > GEN["max_new_tokens"], "plain generate builds masks every step"
        out = generate_static(model, inputs, num_beams=3, **GEN)
        rows = handle.stats.rows
    assert calls["in_steps"] == 0
    assert len(seen) == GEN["max_new_tokens"] - 1 and all(s == seen[0] for s in seen)
    cache = cache_of_output(out)
    for i, layer in enumerate(cache.layers):
        assert isinstance(layer, StaticStepLayer)
        assert layer.prompt_keys.shape[0] == len(BATCH_SECONDS)  # the prompt once per prompt
        assert layer.keys.shape[0] == 3 * len(BATCH_SECONDS) and layer.keys.shape[2] == GEN["max_new_tokens"] - 1
        assert layer.prompt_length == max(r.kv_tokens[i] for r in rows)
    assert int(cache.state.write_index) == GEN["max_new_tokens"] - 1
    # every layer's generated buffers are views of one tensor: the beam reorder moves it in one go
    assert cache.generated is not None and cache.generated.shape[:3] == (len(cache.layers), 2, 3 * len(BATCH_SECONDS))
    assert all(layer.keys.data_ptr() == cache.generated[i, 0].data_ptr() for i, layer in enumerate(cache.layers))


def _reference(query, prompt_k, prompt_v, key, value, beams, key_valid, scale):
    """Plain attention over [prompt copied per beam, generated buffer] for one new token."""
    groups = query.shape[1] // key.shape[1]
    full_k = torch.cat([prompt_k.repeat_interleave(beams, 0), key], dim=2).repeat_interleave(groups, 1)
    full_v = torch.cat([prompt_v.repeat_interleave(beams, 0), value], dim=2).repeat_interleave(groups, 1)
    scores = (query @ full_k.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~key_valid[:, None, None, :], float("-inf"))
    return (torch.softmax(scores, -1) @ full_v).transpose(1, 2)


@pytest.mark.parametrize("padded", [False, True])
def test_attention_equals_attention_over_copies(padded):
    torch.manual_seed(0)
    B, beams, Hkv, groups, P, steps, D = 2, 3, 2, 2, 7, 5, 8
    R = B * beams
    prompt_k, prompt_v = torch.randn(B, Hkv, P, D), torch.randn(B, Hkv, P, D)
    valid = torch.ones(B, P, dtype=torch.bool)
    if padded:
        valid[1, :3] = False
    state = StepState(steps, torch.device("cpu"))
    layer = StaticStepLayer(prompt_k, prompt_v, valid, beams, state)
    assert (layer.prompt_mask is None) == (not padded)
    module = torch.nn.Module()
    module.config = types.SimpleNamespace()
    for written in range(1, 3):  # two steps: slot 0, then slot 1
        state.begin_step()
        new_k, new_v = torch.randn(R, Hkv, 1, D), torch.randn(R, Hkv, 1, D)
        key, value = layer.update(new_k, new_v)
        assert key is layer.keys and key.shape == (R, Hkv, steps, D)
        query = torch.randn(R, Hkv * groups, 1, D)
        with AttentionSwap(STATIC_STEP_IMPLEMENTATION, {module: layer}):
            out, weights = static_step_attention(module, query, key, value, None, scaling=D**-0.5)
        key_valid = torch.cat([valid.repeat_interleave(beams, 0), torch.zeros(R, steps, dtype=torch.bool)], 1)
        key_valid[:, P : P + written] = True
        ref = _reference(query, prompt_k, prompt_v, key, value, beams, key_valid, D**-0.5)
        assert weights is None and out.shape == (R, 1, Hkv * groups, D)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        state.end_step()
    order = torch.tensor([2, 2, 0, 3, 5, 4])
    before = layer.keys.clone()
    pointer = layer.keys.data_ptr()
    layer.reorder_generated(order)
    assert torch.equal(layer.keys, before[order]) and layer.keys.data_ptr() == pointer


def test_return_types_and_the_model_afterwards(model, processor):
    inputs = make_inputs(processor, BATCH_SECONDS[:2])
    plain = model.generate(**inputs, max_new_tokens=5, do_sample=False, num_beams=2)
    static = generate_static(model, inputs, max_new_tokens=5, do_sample=False, num_beams=2)
    assert torch.is_tensor(static) and torch.equal(static, plain)
    for beams in (1, 2):  # one new token: the prefill's choice, no step
        one = generate_static(model, inputs, max_new_tokens=1, do_sample=False, num_beams=beams)
        assert torch.equal(one, model.generate(**inputs, max_new_tokens=1, do_sample=False, num_beams=beams))
    timings = {}
    generate_static(model, inputs, max_new_tokens=4, do_sample=False, timings=timings)
    assert timings["steps"] == 3 and len(timings["step_s"]) == 3 and timings["prefill_s"] > 0


def test_bfloat16_runs(checkpoint, processor):
    model = load(checkpoint, "sdpa").to(torch.bfloat16)
    inputs = make_inputs(processor, BATCH_SECONDS)
    inputs["input_features"] = inputs["input_features"].to(torch.bfloat16)
    with fa.apply(model, _config("fastadasp")):
        out = generate_static(model, inputs, num_beams=3, **GEN)
    assert out.sequences.shape[0] == len(BATCH_SECONDS) and torch.isfinite(out.sequences_scores).all()


def test_unsupported_settings_are_refused(model, processor):
    inputs = make_inputs(processor, BATCH_SECONDS)
    for bad, pattern in [
        (dict(do_sample=True), "do_sample"),
        (dict(repetition_penalty=-1.0), "repetition_penalty"),
        (dict(encoder_repetition_penalty=1.2), "encoder_repetition_penalty"),
        (dict(no_repeat_ngram_size=2), "no_repeat_ngram_size"),
        (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
        (dict(bogus_option=1), "bogus_option"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            generate_static(model, inputs, max_new_tokens=3, **bad)
    with pytest.raises(ValueError, match="past_key_values"):
        generate_static(model, inputs, max_new_tokens=3, past_key_values=object())
    for mode in ("cuda_graph", "compile_cuda_graph"):
        with pytest.raises(ValueError, match="CUDA device"):
            generate_static(model, inputs, max_new_tokens=3, step_mode=mode)
    with pytest.raises(ValueError, match="step_mode"):
        generate_static(model, inputs, max_new_tokens=3, step_mode="bogus")
    right_padded = dict(inputs)
    mask = inputs["attention_mask"].clone()
    mask[1, -1] = 0
    right_padded["attention_mask"] = mask
    with pytest.raises(ValueError, match="left padding"):
        generate_static(model, right_padded, max_new_tokens=3)
    # a penalty or scale of 1 changes nothing and is accepted
    assert search_settings(model.generation_config, 10, repetition_penalty=1.0, max_new_tokens=3).max_new_tokens == 3
    assert search_settings(model.generation_config, 10, encoder_repetition_penalty=1.0).repetition_penalty == 1.0


def test_cache_from_a_prefill_refuses_other_caches():
    from espnet_fastadasp.generation.static_cache import static_cache_from_prefill
    from espnet_fastadasp.models.compat import DynamicCache
    from espnet_fastadasp.models.parts import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="DynamicCache"):
        static_cache_from_prefill(object(), None, beams=1, steps=2)

    class OtherLayer:
        keys = values = torch.zeros(1, 1, 2, 4)

    cache = DynamicCache()
    cache.layers = [OtherLayer()]
    with pytest.raises(UnsupportedModelError, match="OtherLayer"):
        static_cache_from_prefill(cache, None, beams=1, steps=2)
    with pytest.raises(ValueError, match="at least one"):
        StepState(0, torch.device("cpu"))
