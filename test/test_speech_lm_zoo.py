"""Smoke tests of the Speech LM zoo (test/speech_lms.py): every audio-text model type of the
installed transformers has an entry, and every tiny model generates.

Why: the reduction tests run on these models; if a builder broke (a transformers upgrade renamed a
config field, a placeholder count changed) those tests would fail for the wrong reason, or a new
model type would go unnoticed. These checks run no reduction.
"""

from __future__ import annotations

import pytest
import torch

from .speech_lms import ENTRY_LIST, SpeechLMEntry, audio_text_model_types, build, buildable, entry_model_types

GEN = dict(max_new_tokens=5, do_sample=False, return_dict_in_generate=True)
BUILDABLE = [e.name for e in buildable()]


def test_every_audio_text_model_type_has_an_entry():
    """A model type added by a new transformers release fails here until someone decides about it."""
    missing = sorted(set(audio_text_model_types()) - entry_model_types())
    assert not missing, f"audio-text model types without an entry in test/speech_lms.py: {missing}"


@pytest.mark.parametrize("entry", [e for e in ENTRY_LIST if e.build is None], ids=lambda e: e.name)
def test_entry_without_builder_says_why(entry: SpeechLMEntry):
    assert entry.category != "speech_lm" and len(entry.notes) > 20, entry


@pytest.mark.parametrize("name", BUILDABLE)
def test_tiny_model_generates(name: str):
    """The default inputs (one clip) generate 5 tokens; where the entry says ``batchable``, a
    left-padded batch of two rows of different lengths (the second with two clips) gives each
    row's own greedy tokens (2 steps: the prefill and one cached step show padding mistakes)."""
    entry = next(e for e in ENTRY_LIST if e.name == name)
    model, make_inputs = build(name)
    assert not model.training and next(model.parameters()).dtype == torch.float32
    assert model.config.get_text_config(decoder=True).num_hidden_layers == 6
    inputs = make_inputs(0)
    assert entry.tokens_per_clip == make_inputs.tokens_per_clip
    assert int((inputs["input_ids"] == entry.placeholder_id).sum()) == entry.tokens_per_clip
    with torch.no_grad():
        out = model.generate(**inputs, **GEN)
    assert out.sequences.shape == (1, inputs["input_ids"].shape[1] + 5)
    if not entry.batchable:
        return
    batch = make_inputs(3, (1, 2))
    gen = dict(GEN, max_new_tokens=2)
    with torch.no_grad():
        together = model.generate(**batch, **gen).sequences[:, batch["input_ids"].shape[1] :]
        for row, clips in enumerate((1, 2)):
            alone = make_inputs(3, (clips,), first_row=row)
            own = model.generate(**alone, **gen).sequences[0, alone["input_ids"].shape[1] :]
            assert torch.equal(own, together[row]), (row, own, together[row])
