"""Every audio-text model class of the installed transformers: reduced exactly, or refused clearly.

Like ``test_methods.py`` does for the methods, this runs every Speech LM class through the same
checks, on the tiny models of ``test/speech_lms.py`` (real classes, built from their configs):

supported (:data:`SUPPORTED`)
    1. ``generate`` runs; 2. ``apply(method="none")`` gives identical tokens; 3. FastAdaSP
    constant at 30 % runs, lands on its target, and ``remove()`` restores the output; 4. FastV
    ``once`` runs; 5. with every layer from 1 on running the reducing layer's split forward and the
    reduction replaced by the identity, the first-step logits are the model's own, bit for bit
    (each half runs exactly the layer's parts); and a padded batch equals its rows run alone.
refused (:data:`REFUSED`)
    ``apply`` raises :class:`~espnet_fastadasp.UnsupportedModelError` before any prefill, naming
    what is missing; ``method="none"`` still runs unchanged.
out of scope
    entries of ``test/speech_lms.py`` without a builder, each with its reason there.

A model type that a new transformers release adds fails ``test_every_class_is_decided`` until
someone decides which of the three it is (``docs/models.md`` lists them for users).
"""

from __future__ import annotations

import pytest
import torch

import espnet_fastadasp as fa

from .speech_lms import ENTRIES, audio_text_model_types, build, entry_model_types
from .split_checks import first_step_logits, identity_split_logits

#: the entries reduced exactly
SUPPORTED = (
    "qwen2_audio", "voxtral", "audioflamingo3", "musicflamingo", "glmasr", "granite_speech",
    "granite_speech:released", "granite_speech_plus", "granite_speech_plus:released", "qwen3_asr",
    "moss_transcribe_diarize", "fun_asr_nano", "omniasr", "vibevoice_asr", "qwen2_5_omni_thinker",
    "qwen3_omni_moe_thinker", "gemma3n", "gemma4", "gemma4:kv_shared", "gemma4_unified", "muse_spark",
    "phi4_multimodal", "apertus1p5",
)  # fmt: skip

#: the entries refused, and what the error must name
REFUSED = {
    "dots3_note": "implementation's name",  # the sparse-attention indexer runs only under eager/sdpa
    "higgs_audio_v2": "audio_input_layernorm, audio_mlp",  # the dual FFN of audio tokens
    "inkling_mm_model": "attn_sconv, mlp_sconv",  # convolution states beside attention
    "nemo_speechlm": "hybrid state layer",  # Mamba blocks
    "nemotron_h_omni": "hybrid state layer",
}

GEN = dict(max_new_tokens=5, do_sample=False, return_dict_in_generate=True)


def generate(model, inputs):
    with torch.no_grad():
        return model.generate(**inputs, **GEN).sequences


def test_every_class_is_decided():
    """Every discovered audio-text type has an entry, and every entry with a tiny model is
    either supported or refused (the others carry their out-of-scope reason in speech_lms.py)."""
    assert set(audio_text_model_types()) <= entry_model_types()
    with_builder = {name for name, e in ENTRIES.items() if e.build is not None}
    assert with_builder == set(SUPPORTED) | set(REFUSED)
    assert not set(SUPPORTED) & set(REFUSED)


@pytest.fixture(scope="module", params=SUPPORTED)
def supported(request):
    model, make_inputs = build(request.param)
    return request.param, model, make_inputs


def test_none_is_identical_and_remove_restores(supported):
    name, model, make_inputs = supported
    inputs = make_inputs(0)
    base = generate(model, inputs)
    with fa.apply(model, method="none"):
        assert torch.equal(generate(model, inputs), base)
    with fa.apply(model, fa.ReductionConfig(method="fastadasp", flops_reduction=0.3)) as handle:
        generate(model, inputs)
        assert abs(handle.stats.flops_reduction - 0.3) < 0.03, handle.stats.flops_reduction
        assert handle.stats.rows[0].kv_tokens[-1] < handle.stats.rows[0].kv_tokens[0]
    assert torch.equal(generate(model, inputs), base)
    with fa.apply(model, fa.ReductionConfig(method="fastv", schedule="once", ratio=0.5)) as handle:
        generate(model, inputs)
        assert handle.stats.rows[0].audio_tokens_out < handle.stats.rows[0].audio_tokens[0]
    assert torch.equal(generate(model, inputs), base)


def test_split_forward_computes_what_the_layer_computes(supported, monkeypatch):
    name, model, make_inputs = supported
    inputs = make_inputs(0)
    assert torch.equal(identity_split_logits(model, inputs, monkeypatch), first_step_logits(model, inputs))


def test_batch_equals_single_runs(supported):
    """A left-padded batch (1 and 2 clips) under FastAdaSP: each row as it decodes alone."""
    name, model, make_inputs = supported
    if not ENTRIES[name].batchable:
        pytest.fail(f"{name} is supported but its tiny model cannot batch: check the builder")
    batch = make_inputs(3, (1, 2))
    with fa.apply(model, fa.ReductionConfig(method="fastadasp", flops_reduction=0.3)):
        together = generate(model, batch)[:, batch["input_ids"].shape[1] :]
        for row, clips in enumerate((1, 2)):
            alone = make_inputs(3, (clips,), first_row=row)
            assert torch.equal(generate(model, alone)[0, alone["input_ids"].shape[1] :], together[row]), (name, row)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_before_any_prefill_with_the_reason(name):
    model, make_inputs = build(name)
    inputs = make_inputs(0)
    with pytest.raises(fa.UnsupportedModelError, match=REFUSED[name]):
        fa.apply(model, fa.ReductionConfig(method="fastadasp", flops_reduction=0.3))
    if ENTRIES[name].generates == "text":
        base = generate(model, inputs)
        with fa.apply(model, method="none"):
            assert torch.equal(generate(model, inputs), base)
