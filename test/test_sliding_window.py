"""Sliding-window layers under token reduction: masked by original positions.

A shortened sliding-window layer must see the span of speech the unreduced layer would: key j is
in query i's window iff their *original* positions are within ``sliding_window``
(``hf/masks.KeyWindow``). Tested on Qwen2-Audio with Qwen2's sliding layers switched on
(``use_sliding_window``, layers from ``max_window_layers`` on), a real transformers layout.
"""

from __future__ import annotations

import pytest
import torch

import espnet_fastadasp as fa
from espnet_fastadasp.models.tiny import build_tiny_qwen2_audio
from espnet_fastadasp.reduction.masks import KeyWindow, allowed_keys
from espnet_fastadasp.reduction.prefill import PrefillLayout

from .conftest import make_inputs, new_tokens
from .split_checks import first_step_logits, identity_split_logits

WINDOW = 12
GEN = dict(max_new_tokens=6, do_sample=False)


@pytest.fixture(scope="module")
def sliding():
    model, processor = build_tiny_qwen2_audio(
        seed=1, use_sliding_window=True, sliding_window=WINDOW, max_window_layers=2
    )
    model.config._attn_implementation = "sdpa"
    model.config.get_text_config()._attn_implementation = "sdpa"
    return model.eval(), processor


def test_the_model_has_sliding_layers(sliding):
    from espnet_fastadasp.models.parts import speech_lm_parts

    model, _ = sliding
    windows = speech_lm_parts(model).windows
    assert windows[:2] == (None, None) and set(windows[2:]) == {WINDOW}


def test_window_rule_matches_transformers_for_an_unreduced_prompt():
    """Before any reduction (origin = index), the rule is transformers' sliding overlay."""
    from transformers.masking_utils import and_masks, causal_mask_function, sliding_window_overlay

    T = 20
    valid = torch.ones(1, T, dtype=torch.bool)
    ours = allowed_keys(valid, torch.arange(T), KeyWindow(5, torch.arange(T)[None]))[0]
    rule = and_masks(causal_mask_function, sliding_window_overlay(5))
    t = torch.tensor
    theirs = torch.tensor([[bool(rule(t(0), t(0), t(q), t(k))) for k in range(T)] for q in range(T)])
    assert torch.equal(ours, theirs)


def test_a_shortened_window_is_the_same_span_of_positions():
    """After a merge the window is counted in original positions, not in slots."""
    origin = torch.tensor([[0, 1, 4, 7, 8, 9]])  # slots holding the tokens at these positions
    allowed = allowed_keys(torch.ones(1, 6, dtype=torch.bool), torch.arange(6), KeyWindow(4, origin))[0]
    # query at position 8 (slot 4) sees positions 5..8: slots 3 (7) and 4 (8) only
    assert allowed[4].tolist() == [False, False, False, True, True, False]
    # query at position 4 (slot 2) sees positions 1..4: slots 1, 2
    assert allowed[2].tolist() == [False, True, True, False, False, False]


def test_none_is_identical(sliding):
    model, processor = sliding
    inputs = make_inputs(processor, [1.8, 1.1])
    base = model.generate(**inputs, **GEN)
    with fa.apply(model, fa.ReductionConfig(method="none")):
        assert torch.equal(model.generate(**inputs, **GEN), base)


def test_split_forward_is_exact(sliding, monkeypatch):
    model, processor = sliding
    inputs = make_inputs(processor, [1.8])
    assert torch.equal(identity_split_logits(model, inputs, monkeypatch), first_step_logits(model, inputs))


@pytest.mark.parametrize("method", ["fastadasp", "fastv", "atome", "h2o"])
def test_batch_equals_single_runs(sliding, method):
    """Padded rows shorten differently: each row's windows must still be its own positions'."""
    model, processor = sliding
    seconds = [1.8, 0.9]
    inputs = make_inputs(processor, seconds)
    with fa.apply(model, fa.ReductionConfig(method=method, flops_reduction=0.3)) as handle:
        batch = new_tokens(model.generate(**inputs, **GEN), inputs)
        kv = handle.stats.rows[0].kv_tokens
        if method == "h2o":  # every reducing layer is a sliding one: its cache holds only the window already
            assert kv == [kv[0]] * len(kv)
        else:
            assert kv[-1] < kv[0]
        for row, secs in enumerate(seconds):
            one = make_inputs(processor, [secs], seed=10 * row)
            assert torch.equal(new_tokens(model.generate(**one, **GEN), one)[0], batch[row])


def test_window_wider_than_the_prompt_changes_nothing():
    """With a window longer than the prompt and the generation, a sliding model under reduction
    decodes exactly as the same weights with full attention do (the window code adds nothing)."""
    wide, processor = build_tiny_qwen2_audio(seed=1, use_sliding_window=True, sliding_window=4096, max_window_layers=2)
    full, _ = build_tiny_qwen2_audio(seed=1)
    inputs = make_inputs(processor, [1.8, 1.2])
    cfg = fa.ReductionConfig(method="fastadasp", flops_reduction=0.3)
    outs = []
    for model in (wide, full):
        with fa.apply(model, cfg):
            outs.append(model.generate(**inputs, **GEN))
    assert torch.equal(outs[0], outs[1])


def test_the_window_changes_what_a_reduced_layer_sees(sliding, monkeypatch):
    """The same reduction with the window honoured and with it ignored decodes differently
    somewhere in the step's logits: the window is really applied."""
    model, processor = sliding
    inputs = make_inputs(processor, [1.8])
    cfg = fa.ReductionConfig(method="fastadasp", flops_reduction=0.3)
    with fa.apply(model, cfg):
        windowed = first_step_logits(model, inputs)
    monkeypatch.setattr(PrefillLayout, "key_window", lambda self, idx: None)  # shortened layers' masks: full
    with fa.apply(model, cfg):
        ignored = first_step_logits(model, inputs)
    assert not torch.allclose(windowed, ignored)


def test_decoding_paths_with_their_own_masks_refuse_sliding_layers(sliding):
    from espnet_fastadasp.generation.shared_prompt import generate_with_shared_prompt
    from espnet_fastadasp.generation.static_decoding import generate_static

    model, processor = sliding
    inputs = make_inputs(processor, [1.0])
    with pytest.raises(fa.UnsupportedModelError, match="sliding-window"):
        generate_with_shared_prompt(model, inputs, **GEN, num_beams=2)
    with pytest.raises(fa.UnsupportedModelError, match="sliding"):
        generate_static(model, inputs, **GEN)


def test_per_token_inputs_follow_every_merge_at_once():
    """The layout's composite of merges (what Gemma 4's per-layer inputs follow) equals replaying
    the merges one by one; a token never merged keeps its value bit for bit."""
    from types import SimpleNamespace

    from espnet_fastadasp.core.ops import merge_rows

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 3, generator=g)
    steps = [
        (torch.tensor([[0, 0, 1, 2, 3, 4], [-1, 0, 1, 1, 2, 3]]), torch.rand(2, 6, generator=g), 5),
        (torch.tensor([[0, 1, 1, 2, 3], [0, 1, 2, 2, -1]]), torch.rand(2, 5, generator=g), 4),
    ]
    layout = SimpleNamespace(merged=None, last_merge=None)
    replayed = x
    for dest, weight, out_len in steps:
        PrefillLayout.record_merge(layout, dest, weight, out_len)
        replayed = merge_rows(replayed, dest, weight, out_len)
    composite = PrefillLayout.follow(layout, x)
    torch.testing.assert_close(composite, replayed)
    assert torch.equal(composite[0, 3], x[0, 5])  # token 5 of row 0 was never merged with another
    before_last = merge_rows(x, *steps[0])
    assert torch.equal(PrefillLayout.follow_last(layout, before_last), replayed)
