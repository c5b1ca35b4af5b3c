"""The beam-search / multi-clip workaround: beam copies hear the same clips as the single run."""

from __future__ import annotations

import torch

import espnet_fastadasp as fa
from espnet_fastadasp.generation.fixes import BeamClipOrderFix

from .conftest import make_inputs


def embeds_of(model, inputs, beams):
    seen = []
    h = model.model.language_model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["inputs_embeds"].detach().clone()), with_kwargs=True
    )
    model.generate(**inputs, max_new_tokens=1, num_beams=beams, do_sample=False)
    h.remove()
    return seen[0]


def test_unfixed_transformers_scrambles_clips_across_beams(model, processor):
    inputs = make_inputs(processor, [[1.0, 1.5]])
    beam = embeds_of(model, inputs, 3)
    # if this starts failing, transformers fixed its expansion and the workaround can go
    assert not torch.equal(beam[0], beam[1])


def test_fix_gives_every_beam_the_single_run_inputs(model, processor):
    inputs = make_inputs(processor, [[1.0, 1.5], [0.8, 1.9], [1.2]])
    single = embeds_of(model, inputs, 1)
    fix = BeamClipOrderFix(model)
    beam = embeds_of(model, inputs, 3)
    fix.remove()
    for row in range(3):
        for b in range(3):
            assert torch.equal(beam[3 * row + b], single[row])


def test_fix_leaves_other_batches_alone(model, processor):
    # identical prompts with different audio, no beams: nothing may be reordered
    inputs = make_inputs(processor, [[1.0, 1.0], [1.0, 1.0]])
    plain = embeds_of(model, inputs, 1)
    fix = BeamClipOrderFix(model)
    assert torch.equal(embeds_of(model, inputs, 1), plain)
    fix.remove()


def test_fix_and_reduction_together_match_single_runs(model, processor):
    fix = BeamClipOrderFix(model)
    inputs = make_inputs(processor, [[1.0, 1.5], [1.9, 0.7]])
    with fa.apply(model, fa.ReductionConfig(method="fastadasp", flops_reduction=0.3)):
        batch = model.generate(**inputs, max_new_tokens=4, num_beams=2, do_sample=False)
        for row, clips in enumerate([[1.0, 1.5], [1.9, 0.7]]):
            one = make_inputs(processor, [clips], seed=10 * row)
            single = model.generate(**one, max_new_tokens=4, num_beams=2, do_sample=False)
            assert torch.equal(single[0, one["input_ids"].shape[1] :], batch[row, inputs["input_ids"].shape[1] :])
    fix.remove()
