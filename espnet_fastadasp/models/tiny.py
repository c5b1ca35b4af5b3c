"""Tiny Speech LMs of the real classes, built from configs (no hub, no download).

Used by the demo, the tests and the CPU runs of the benchmark: a
``Qwen2AudioForConditionalGeneration`` with a real ``Qwen2AudioProcessor`` (a Whisper feature
extractor and a character-level fast tokenizer carrying Qwen2-Audio's special tokens), saved
with ``save_pretrained`` and loadable with ``from_pretrained`` / ``AutoProcessor`` exactly like
a downloaded checkpoint.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch

AUDIO_TOKEN = "<|AUDIO|>"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", AUDIO_TOKEN, "<|audio_eos|>"]
CHARACTERS = list(string.ascii_lowercase + string.ascii_uppercase + string.digits + " .,:;!?'-_\n<>|/()&")


def char_tokenizer(extra_chars: str = "") -> Any:
    """A character-level fast tokenizer with Qwen2-Audio's special tokens (pad = <|endoftext|>)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list(dict.fromkeys(CHARACTERS + list(extra_chars)))
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + ["<unk>"] + chars)}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        eos_token="<|im_end|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        padding_side="left",
    )
    return tok


def qwen2_audio_config(
    vocab_size: int, audio_token_id: int, audio: dict | None = None, text: dict | None = None
) -> Any:
    """A ``Qwen2AudioConfig`` with the given encoder (``audio``) and LLM (``text``) fields."""
    from transformers import Qwen2AudioConfig

    return Qwen2AudioConfig(
        audio_config=dict(audio or {}),
        text_config=dict(model_type="qwen2", vocab_size=vocab_size, **(text or {})),
        audio_token_id=audio_token_id,
    )


def tiny_qwen2_audio_config(vocab_size: int, audio_token_id: int, **text_overrides: Any) -> Any:
    """Qwen2-Audio's layout at toy size: 8 decoder layers with GQA (4 query, 2 KV heads).

    The audio encoder takes 2 s windows (max_source_positions=100 -> 200 mel frames ->
    50 audio tokens, 25 per second as in the real model).
    """
    text = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=8,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
    )
    text.update(text_overrides)
    audio = dict(
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        num_mel_bins=16,
        max_source_positions=100,
    )
    return qwen2_audio_config(vocab_size, audio_token_id, audio, text)


def tiny_processor(n_mels: int = 16, window_seconds: int = 2) -> Any:
    """A Qwen2-Audio processor: Whisper features (``n_mels``, ``window_seconds`` windows) + char tokenizer."""
    from transformers import Qwen2AudioProcessor, WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(
        feature_size=n_mels, sampling_rate=16000, hop_length=160, chunk_length=window_seconds, n_fft=400
    )
    return Qwen2AudioProcessor(feature_extractor=fe, tokenizer=char_tokenizer())


def build_tiny_qwen2_audio(seed: int = 0, **text_overrides: Any) -> tuple[Any, Any]:
    """A randomly initialised tiny Qwen2-Audio model and its processor."""
    from transformers import Qwen2AudioForConditionalGeneration

    processor = tiny_processor()
    tok = processor.tokenizer
    cfg = tiny_qwen2_audio_config(len(tok), tok.convert_tokens_to_ids(AUDIO_TOKEN), **text_overrides)
    cfg.text_config.pad_token_id = tok.pad_token_id
    cfg.text_config.eos_token_id = tok.eos_token_id
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(cfg).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model, processor


def save_tiny_qwen2_audio(path: str | Path, seed: int = 0, **text_overrides: Any) -> Path:
    """Build, then ``save_pretrained`` model and processor into ``path`` (a checkpoint dir)."""
    path = Path(path)
    model, processor = build_tiny_qwen2_audio(seed, **text_overrides)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def synthetic_audio(seconds: float, seed: int = 0, sampling_rate: int = 16000) -> Any:
    """A deterministic chirp-plus-noise waveform (float32 numpy), for demos and tests."""
    import numpy as np

    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    f0 = 150 + 50 * seed % 200
    wave = 0.5 * np.sin(2 * np.pi * (f0 + 80 * t) * t) + 0.05 * rng.standard_normal(t.shape)
    return wave.astype("float32")
