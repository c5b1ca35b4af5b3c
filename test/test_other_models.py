"""The same mechanism on another Speech LM class: Voxtral (Whisper-style encoder + Llama decoder)."""

from __future__ import annotations

import pytest
import torch

import espnet_fastadasp as fa
from espnet_fastadasp.models.compat import cache_of_output

AUDIO_ID, TOKENS_PER_CLIP = 99, 50


@pytest.fixture(scope="module")
def voxtral(tmp_path_factory):
    from transformers import VoxtralConfig, VoxtralForConditionalGeneration

    cfg = VoxtralConfig(
        audio_config=dict(
            d_model=32,
            encoder_layers=2,
            encoder_attention_heads=2,
            encoder_ffn_dim=64,
            num_mel_bins=16,
            max_source_positions=100,
            intermediate_size=128,
        ),
        text_config=dict(
            vocab_size=100,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=8,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=512,
        ),
        audio_token_id=AUDIO_ID,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("voxtral")
    VoxtralForConditionalGeneration(cfg).save_pretrained(path)
    return VoxtralForConditionalGeneration.from_pretrained(path).eval()


def inputs(clips_per_row, seed=0):
    """Left-padded prompts: 3 text tokens, the audio placeholders of each clip, 3 text tokens."""
    g = torch.Generator().manual_seed(seed)
    rows, feats = [], []
    for n in clips_per_row:
        rows.append([1, 5, 6] + [AUDIO_ID] * TOKENS_PER_CLIP * n + [7, 8, 9])
        feats += [torch.randn(16, 200, generator=g) for _ in range(n)]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = (ids != 0).long()
    return dict(input_ids=ids, attention_mask=mask, input_features=torch.stack(feats))


GEN = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)


def test_none_is_identical_and_remove_restores(voxtral):
    x = inputs([2, 1])
    base = voxtral.generate(**x, **GEN)
    with fa.apply(voxtral, fa.ReductionConfig(method="none")):
        assert torch.equal(voxtral.generate(**x, **GEN), base)
    with fa.apply(voxtral, fa.ReductionConfig(method="fastadasp", flops_reduction=0.3)):
        voxtral.generate(**x, **GEN)
    assert torch.equal(voxtral.generate(**x, **GEN), base)


@pytest.mark.parametrize("method", ["fastadasp", "fastv", "h2o", "atome"])
def test_reduces_and_batch_equals_single_runs(voxtral, method):
    x = inputs([2, 1], seed=3)
    with fa.apply(voxtral, fa.ReductionConfig(method=method, flops_reduction=0.3)) as handle:
        out = voxtral.generate(**x, **GEN, return_dict_in_generate=True)
        rows = handle.stats.rows
        assert rows[0].kv_tokens[-1] < rows[0].kv_tokens[0]
        cache_len = cache_of_output(out).layers[-1].keys.shape[2]
        assert cache_len == max(r.kv_tokens[-1] for r in rows) + GEN["max_new_tokens"] - 1
        g = torch.Generator().manual_seed(3)
        feats = [torch.randn(16, 200, generator=g) for _ in range(3)]
        for row, (n, f) in enumerate([(2, feats[:2]), (1, feats[2:])]):
            one = inputs([n])
            one["input_features"] = torch.stack(f)
            single = voxtral.generate(**one, **GEN)
            width = x["input_ids"].shape[1]
            assert torch.equal(single[0, one["input_ids"].shape[1] :], out.sequences[row, width:])


@pytest.mark.parametrize("method", ["none", "fastadasp", "fastv"])
def test_shared_prompt_beam_search(voxtral, method):
    """The shared-prompt beam search on a Llama decoder: same hypotheses as plain beam search.

    Voxtral's clips are contiguous runs of placeholders, so plain beam search's clip scrambling
    (see hf_fixes) cannot be undone there: multi-clip rows are compared with the cache copied per
    beam after the same single prefill instead, which never expands the features."""
    from espnet_fastadasp.generation.shared_prompt import generate_with_shared_prompt

    gen = dict(GEN, num_beams=3, return_dict_in_generate=True, output_scores=True)
    cfg = fa.ReductionConfig(method=method, flops_reduction=0.3 if method != "none" else None)
    one_clip, two_clips = inputs([1, 1], seed=5), inputs([2, 1], seed=5)
    with fa.apply(voxtral, cfg):
        plain = voxtral.generate(**one_clip, **gen)
        shared = generate_with_shared_prompt(voxtral, one_clip, **gen)
        copied2 = generate_with_shared_prompt(voxtral, two_clips, share_kv=False, **gen)
        shared2 = generate_with_shared_prompt(voxtral, two_clips, **gen)
    for a, b in ((shared, plain), (shared2, copied2)):
        assert torch.equal(a.sequences, b.sequences)
        torch.testing.assert_close(a.sequences_scores, b.sequences_scores, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("method", ["none", "fastadasp"])
def test_static_decoding(voxtral, method):
    """The fixed-shape static decoding path (generation/static_decoding.py) on a Llama decoder: plain
    generate's hypotheses, greedy and beam 3 (one clip per row: plain beam search is right there)."""
    from espnet_fastadasp.generation.static_decoding import generate_static

    cfg = fa.ReductionConfig(method=method, flops_reduction=0.3 if method != "none" else None)
    batch = inputs([1, 1], seed=5)
    with fa.apply(voxtral, cfg):
        for beams in (1, 3):
            gen = dict(GEN, num_beams=beams, return_dict_in_generate=True, output_scores=True)
            plain, static = voxtral.generate(**batch, **gen), generate_static(voxtral, batch, **gen)
            assert torch.equal(static.sequences, plain.sequences)
            if beams > 1:
                torch.testing.assert_close(static.sequences_scores, plain.sequences_scores, atol=1e-5, rtol=1e-5)
