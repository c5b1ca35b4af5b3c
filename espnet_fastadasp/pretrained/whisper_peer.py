"""Whisper tiny.en's own decoding of a data dir: the peer row beside the Speech LM.

The assembled Speech LM's encoder *is* Whisper tiny.en's, so Whisper's own transcripts are both a
real peer and the ceiling of what that encoder's features carry. Greedy decoding without
timestamps (the start tokens ``<|startoftranscript|><|notimestamps|>``), one 30 s window at a time
(audio longer than a window is cut into consecutive windows, as the Speech LM is fed, and the
pieces' transcripts joined), float32 on the CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from espnet_fastadasp.decoding.data import AudioReader, split_windows
from espnet_fastadasp.pretrained.assemble import whisper_from_packages

logger = logging.getLogger(__name__)

START = (50257, 50362)  # <|startoftranscript|> <|notimestamps|> (English-only vocabulary)


@torch.no_grad()
def transcribe(model: object, tok: object, waves: list[np.ndarray], max_new_tokens: int = 220) -> list[str]:
    """Greedy transcripts of 30 s (or shorter) waveforms, one batch."""
    from transformers import WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)
    x = fe(waves, sampling_rate=16000, return_tensors="pt").input_features
    start = torch.tensor([list(START)] * len(waves))
    out = model.generate(x, decoder_input_ids=start, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
    return [t.strip() for t in tok.batch_decode(out, skip_special_tokens=True)]


def decode_dir(data_dir: str | Path, out_dir: str | Path, batch_size: int = 8) -> Path:
    """``out_dir/text`` with Whisper tiny.en's transcript of every utterance of ``data_dir``."""
    model, tok = whisper_from_packages()
    reader = AudioReader(Path(data_dir) / "wav.scp", sampling_rate=16000)
    keys = reader.keys()
    pieces = [(k, w) for k in keys for w in split_windows(reader(k), 30 * 16000)]
    texts: dict[str, list[str]] = {k: [] for k in keys}
    for i in tqdm(range(0, len(pieces), batch_size), desc="whisper tiny.en", unit="batch", disable=None):
        chunk = pieces[i : i + batch_size]
        for (k, _), t in zip(chunk, transcribe(model, tok, [w for _, w in chunk])):
            texts[k].append(t)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "text").write_text("".join(f"{k} {' '.join(texts[k])}\n" for k in keys))
    logger.info("%s: %d utterances (%d windows) -> %s", data_dir, len(keys), len(pieces), out / "text")
    return out / "text"
