"""Training data of the mini model: utterances in RAM, length-bucketed batches, model inputs.

Everything between a Kaldi-style data dir and the tensors the model's forward takes, apart from
the model and the loop:

* the waveforms are read once into RAM as int16, by several threads (:func:`load_examples`);
* features are computed on the training device in batches (Whisper's torch STFT), because a
  CPU feature pipeline, not the GPU, bounded a prototype's throughput (:class:`Batcher`);
* only the answer (and the closing end-of-turn token) is supervised; the prompt is context;
* audio longer than the encoder window is split into consecutive windows, each one clip of the
  prompt (``<|audio_bos|><|AUDIO|>...<|audio_eos|>`` per window), exactly as the decoding tools
  split it (:func:`espnet_fastadasp.decoding.data.split_windows`), so long-form audio is in the
  training distribution in the form it is decoded in;
* with ``batch_tokens`` set, batches hold utterances of similar length up to that many padded
  positions (audio tokens + text, :func:`token_batches`): one batch size for clips from 5 s to
  120 s would either waste the GPU on short clips or run out of memory on long ones.
"""

from __future__ import annotations

import functools
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from espnet_fastadasp.decoding.data import AudioReader, read_key_value, split_windows
from espnet_fastadasp.models.parts import audio_tokens_for
from espnet_fastadasp.models.tiny import AUDIO_TOKEN

#: the name these messages had before train.py was split (log formats show it)
logger = logging.getLogger("espnet_fastadasp.recipes.train")


@dataclass
class Example:
    wave: np.ndarray  # int16 at 16 kHz
    prefix: str
    suffix: str
    answer: str
    is_asr: bool = False  # the answer is the spoken transcript (the CTC target)


def load_examples(dirs: list[str], max_per_dir: int | None, sampling_rate: int, threads: int = 1) -> list[Example]:
    """All utterances of the data dirs, waveforms in RAM as int16 (half the memory of float32).

    ``threads`` read files in parallel (libsndfile runs without the GIL): a GPU run's 60k+
    utterances otherwise take a minute of its budget on one core.
    """
    out = []
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for d in dirs:
            d = Path(d)
            reader = AudioReader(d / "wav.scp", sampling_rate=sampling_rate)
            text = read_key_value(d / "text")
            prompts = read_key_value(d / "prompt", allow_empty_value=False)
            keys = reader.keys()[: max_per_dir or None]
            task_file = d / "task"
            is_asr = (task_file.read_text().strip() if task_file.is_file() else d.name.split("_")[0]) == "asr"
            waves = pool.map(functools.partial(_read_int16, reader), keys)
            bar = tqdm(zip(keys, waves), total=len(keys), desc=f"load {d.name}", unit="utt", leave=False, disable=None)
            for key, wave in bar:
                prefix, _, suffix = prompts[key].replace("\\n", "\n").partition("{audio}")
                out.append(Example(wave, prefix, suffix, text[key], is_asr))
            logger.info("%s: %d utterances", d, len(keys))
    return out


SAMPLES_PER_AUDIO_TOKEN = 640  # 16 kHz / 25 audio tokens per second


def example_length(e: Example) -> int:
    """The positions an example takes in a batch, near enough to bucket by: audio tokens (and two
    markers per 30 s clip), prompt and answer characters (one token each with the character tokenizer)."""
    n_clips = max(1, -(-len(e.wave) // (30 * SAMPLES_PER_AUDIO_TOKEN * 25)))
    return len(e.wave) // SAMPLES_PER_AUDIO_TOKEN + 2 * n_clips + len(e.prefix) + len(e.suffix) + len(e.answer) + 1


def token_batches(lengths: list[int], batch_tokens: int, max_size: int, rng: random.Random) -> list[list[int]]:
    """One epoch of batches of similar-length examples, each at most ``batch_tokens`` padded
    positions (``size * longest``; an example longer than that is a batch of its own) and at most
    ``max_size`` examples; the batches in random order.

    Lengths are sorted within pools of ``50 * max_size`` shuffled examples, so a batch mixes tasks
    and speakers of similar length rather than always the same neighbours.
    """
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    pool = 50 * max_size
    out: list[list[int]] = []
    for p in range(0, len(idx), pool):
        chunk = sorted(idx[p : p + pool], key=lambda i: lengths[i])
        batch: list[int] = []
        longest = 0
        for i in chunk:
            longest_new = max(longest, lengths[i])
            if batch and (len(batch) + 1 > max_size or (len(batch) + 1) * longest_new > batch_tokens):
                out.append(batch)
                batch, longest_new = [], lengths[i]
            batch.append(i)
            longest = longest_new
        if batch:
            out.append(batch)
    rng.shuffle(out)
    return out


def _read_int16(reader: AudioReader, key: str) -> np.ndarray:
    return np.clip(reader(key) * 32767, -32768, 32767).astype(np.int16)


def pad_rows(
    rows: list[list[int]], labels: list[list[int]], pad: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token rows and their labels, right-padded into (input_ids, labels, attention_mask) tensors
    (padding: ``pad`` ids, label -100, mask 0)."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    label_t = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, lab) in enumerate(zip(rows, labels)):
        input_ids[i, : len(r)] = torch.tensor(r)
        label_t[i, : len(r)] = torch.tensor(lab)
        mask[i, : len(r)] = 1
    return input_ids, label_t, mask


class Batcher:
    """Examples -> model inputs on the device: features, token ids, answer-only labels."""

    def __init__(self, processor: Any, device: str) -> None:
        self.fe = processor.feature_extractor
        self.tok = processor.tokenizer
        self.device = device
        self.window = int(getattr(self.fe, "n_samples", 0) or self.fe.chunk_length * self.fe.sampling_rate)
        t = self.tok
        self.ids = {name: t.convert_tokens_to_ids(name) for name in ("<|audio_bos|>", AUDIO_TOKEN, "<|audio_eos|>")}
        self.eos = t.eos_token_id
        self.pad = t.pad_token_id

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        clips_of = [split_windows(e.wave, self.window) for e in examples]
        waves = [c.astype(np.float32) / 32768.0 for clips in clips_of for c in clips]
        feats = self.fe(
            waves,
            sampling_rate=self.fe.sampling_rate,
            return_attention_mask=True,
            padding="max_length",
            return_tensors="pt",
            device=self.device if self.device != "cpu" else "cpu",
        )
        n_audio = audio_tokens_for(feats["attention_mask"].sum(-1)).tolist()  # per clip
        clip_counts = [len(clips) for clips in clips_of]
        rows, labels = [], []
        first = 0
        for e, n_clips in zip(examples, clip_counts):
            audio = []
            for n in n_audio[first : first + n_clips]:
                audio += [self.ids["<|audio_bos|>"]] + [self.ids[AUDIO_TOKEN]] * n + [self.ids["<|audio_eos|>"]]
            first += n_clips
            prompt = self.encode(e.prefix) + audio + self.encode(e.suffix)
            answer = self.encode(e.answer) + [self.eos]
            rows.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
        input_ids, label_t, mask = pad_rows(rows, labels, self.pad)
        ctc = [self.encode(e.answer) if e.is_asr else [] for e in examples]
        return {
            "ctc_targets": [torch.tensor(t, dtype=torch.long) for t in ctc],
            "audio_lengths": torch.tensor(n_audio, dtype=torch.long),
            "clip_counts": torch.tensor(clip_counts, dtype=torch.long),
            "input_ids": input_ids.to(self.device),
            "attention_mask": mask.to(self.device),
            "labels": label_t.to(self.device),
            "input_features": feats["input_features"].to(self.device),
            "feature_attention_mask": feats["attention_mask"].to(self.device),
        }
