"""The same mechanism on another Speech LM class: Voxtral (Whisper-style encoder + Llama decoder)."""

from __future__ import annotations

import pytest
import torch

import espnet_fastadasp as fa

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
        cache_len = out.past_key_values.layers[-1].keys.shape[2]
        assert cache_len == max(r.kv_tokens[-1] for r in rows) + GEN["max_new_tokens"] - 1
        g = torch.Generator().manual_seed(3)
        feats = [torch.randn(16, 200, generator=g) for _ in range(3)]
        for row, (n, f) in enumerate([(2, feats[:2]), (1, feats[2:])]):
            one = inputs([n])
            one["input_features"] = torch.stack(f)
            single = voxtral.generate(**one, **GEN)
            width = x["input_ids"].shape[1]
            assert torch.equal(single[0, one["input_ids"].shape[1] :], out.sequences[row, width:])
