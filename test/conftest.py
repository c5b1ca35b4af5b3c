"""Shared fixtures: a tiny Qwen2-Audio checkpoint saved and loaded the way a real one is."""

from __future__ import annotations

import os

# Triton's interpreter, so its kernels run on CPU tensors (test_triton_received); it must be set
# before Triton is first imported. Nothing else runs Triton in the tests.
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# pytest-xdist (README: -n 2): the workers share the cores, so each gets its part of them
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))

from espnet_fastadasp.models.tiny import save_tiny_qwen2_audio, synthetic_audio  # noqa: E402

# short text around the audio, as in real prompts (Qwen2-Audio: ~20 text tokens, 750 audio per 30 s)
PROMPT = "<|im_start|><|audio_bos|><|AUDIO|><|audio_eos|>ASR:<|im_end|>"
TWO_CLIPS = "<|im_start|><|audio_bos|><|AUDIO|><|audio_eos|>&<|audio_bos|><|AUDIO|><|audio_eos|>Q:<|im_end|>"
GEN = dict(max_new_tokens=6, do_sample=False)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    return save_tiny_qwen2_audio(tmp_path_factory.mktemp("tiny_qwen2_audio"), seed=0)


def load(checkpoint, attn="sdpa"):
    from transformers import Qwen2AudioForConditionalGeneration

    return Qwen2AudioForConditionalGeneration.from_pretrained(checkpoint, attn_implementation=attn).eval()


@pytest.fixture(scope="session")
def processor(checkpoint):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(checkpoint)


@pytest.fixture()
def model(checkpoint):
    return load(checkpoint, "sdpa")


def make_inputs(processor, seconds, prompt=PROMPT, seed=0):
    """A left-padded batch, one row per entry of ``seconds`` (a list per row = several clips)."""
    texts, audios = [], []
    for i, secs in enumerate(seconds):
        clips = secs if isinstance(secs, (list, tuple)) else [secs]
        texts.append(prompt if len(clips) == 1 else TWO_CLIPS)
        audios += [synthetic_audio(s, seed + 10 * i + j) for j, s in enumerate(clips)]
    return processor(text=texts, audio=audios, return_tensors="pt", padding=True, sampling_rate=16000)


def new_tokens(out, inputs):
    seq = out.sequences if hasattr(out, "sequences") else out
    return seq[:, inputs["input_ids"].shape[1] :]
