"""The decoder object (decoding/speech2text.py): what the entry points decode through."""

from __future__ import annotations

import torch

import espnet_fastadasp as fa
from espnet_fastadasp.decoding.speech2text import Speech2Text
from espnet_fastadasp.models.parts import audio_runs, audio_token_id_of
from espnet_fastadasp.models.tiny import synthetic_audio

PROMPT = "<|im_start|>{audio}ASR:<|im_end|>"


def test_decodes_like_plain_generate_and_reports_cost(checkpoint):
    s2t = Speech2Text(str(checkpoint), max_new_tokens=5)
    try:
        keys = ["a", "b"]
        waves = [synthetic_audio(1.4, 1), synthetic_audio(0.7, 2)]
        batch = s2t.encode(keys, waves, [PROMPT, PROMPT])
        assert batch.clips == [1, 1] and batch.seconds == [1.4, 0.7]
        hyps = s2t(batch, fa.ReductionConfig(method="none"))
        with torch.no_grad():
            plain = s2t.model.generate(**batch.enc, max_new_tokens=5, do_sample=False, num_beams=1)
        texts = s2t.processor.batch_decode(
            plain[:, batch.enc["input_ids"].shape[1] :], skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        assert [h.key for h in hyps] == keys
        assert [h.text for h in hyps] == [" ".join(t.split()) for t in texts]
        assert hyps[0].cost["flops_reduction"] == 0.0 and hyps[0].cost["prefill_s"] > 0
        reduced = s2t(batch, fa.ReductionConfig(method="fastadasp", flops_reduction=0.3))
        assert all(abs(h.cost["flops_reduction"] - 0.3) < 0.05 for h in reduced)
        assert all(h.cost["audio_tokens_out"] < h.cost["audio_tokens"] for h in reduced)
        # the reduction was for that call only
        assert [h.text for h in s2t(batch, fa.ReductionConfig(method="none"))] == [h.text for h in hyps]
    finally:
        s2t.close()


def test_long_audio_becomes_one_placeholder_per_window(checkpoint):
    s2t = Speech2Text(str(checkpoint), max_new_tokens=2)
    try:
        seconds = 2.5 * s2t.window / s2t.sampling_rate
        batch = s2t.encode(["long"], [synthetic_audio(seconds, 3)], [PROMPT])
        assert batch.clips == [3]
        audio = batch.enc["input_ids"] == audio_token_id_of(s2t.model)
        assert audio_runs(audio).tolist() == [3]
    finally:
        s2t.close()


def test_static_decoding_gives_the_same_hypotheses(checkpoint):
    """static_decoding=True (fixed-shape steps, generation/static_decoding.py): the hypotheses of plain
    generate, with and without a reduction, beam 3; the stats have one row per utterance."""
    plain = Speech2Text(str(checkpoint), max_new_tokens=5, beam_size=3)
    static = Speech2Text(
        model=plain.model, processor=plain.processor, max_new_tokens=5, beam_size=3, static_decoding=True
    )
    try:
        keys = ["a", "b"]
        batch = plain.encode(keys, [synthetic_audio(1.4, 1), synthetic_audio(0.7, 2)], [PROMPT, PROMPT])
        for cfg in (fa.ReductionConfig(method="none"), fa.ReductionConfig(method="fastadasp", flops_reduction=0.3)):
            want, got = plain(batch, cfg), static(batch, cfg)
            assert [h.text for h in got] == [h.text for h in want]
            assert [h.cost.get("flops_reduction") for h in got] == [h.cost.get("flops_reduction") for h in want]
            assert all(h.cost["prefill_s"] > 0 and h.cost["decode_s"] > 0 for h in got)
    finally:
        static.close()
        plain.close()
