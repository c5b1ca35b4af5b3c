"""Data dirs for the real-weights testbed (egs2/mini_synth_long/slam1).

* :func:`set_chat_prompts`: the long testbed's data dirs carry the tiny character model's prompt;
  the assembled model is an instruction-tuned chat LLM, so each task's prompt is SmolLM2's chat
  format around the audio (the prompts it was trained with, :func:`~.train_projector.task_prompt`).
* :func:`write_librivox_dir`: Debian's pocketsphinx-testdata ships five real LibriVox utterances
  (16 kHz WAV + transcription); a Kaldi-style dir of them, decoded and scored as a real-speech
  check (reported, not a bar).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import soundfile as sf

from espnet_fastadasp.decoding.data import read_key_value
from espnet_fastadasp.pretrained.sources import LIBRIVOX_DIR, SETUP_HINT, PretrainedSourceError
from espnet_fastadasp.pretrained.train_projector import read_meta, task_prompt

logger = logging.getLogger(__name__)

_TRANSCRIPT = re.compile(r"^<s>\s*(?P<text>.*?)\s*</s>\s*\((?P<key>[^)]+)\)\s*$")


def set_chat_prompts(data_dir: str | Path, prompt: str | None = None) -> Path:
    """Rewrite ``data_dir/prompt`` with the chat prompt the model was trained with (the old one is kept
    as prompt.orig): ``prompt`` for every utterance where given, else each utterance's task's
    (:func:`~.train_projector.task_prompt`, the task from the synthetic set's ``meta.jsonl``; ASR
    for a dir without one)."""
    d = Path(data_dir)
    keys = list(read_key_value(d / "text"))
    meta = read_meta(d)
    orig = d / "prompt.orig"
    if (d / "prompt").is_file() and not orig.is_file():
        (d / "prompt").rename(orig)
    rows = [f"{k} {prompt or task_prompt(meta[k][0] if k in meta else 'asr')}\n" for k in keys]
    (d / "prompt").write_text("".join(rows))
    return d / "prompt"


def write_librivox_dir(out_dir: str | Path, source: Path = LIBRIVOX_DIR) -> Path:
    """``out_dir/{wav.scp,text,utt2spk,spk2utt,utt2dur,prompt,task}`` of the five LibriVox utterances."""
    transcription = source / "transcription"
    if not transcription.is_file():
        raise PretrainedSourceError(
            f"{transcription} is missing: install the Debian package pocketsphinx-testdata ({SETUP_HINT})"
        )
    rows = []
    for line in transcription.read_text().splitlines():
        m = _TRANSCRIPT.match(line)
        if not m:
            continue
        wav = source / f"{m['key']}.wav"
        if not wav.is_file():
            raise PretrainedSourceError(f"{wav} is missing ({SETUP_HINT})")
        rows.append((f"austen-{m['key']}", str(wav), m["text"]))
    rows.sort()
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    (d / "wav.scp").write_text("".join(f"{k} {w}\n" for k, w, _ in rows))
    (d / "text").write_text("".join(f"{k} {t}\n" for k, _, t in rows))
    (d / "utt2spk").write_text("".join(f"{k} austen\n" for k, _, _ in rows))
    (d / "spk2utt").write_text("austen " + " ".join(k for k, _, _ in rows) + "\n")
    (d / "utt2dur").write_text("".join(f"{k} {sf.info(w).duration:.4f}\n" for k, w, _ in rows))
    (d / "task").write_text("asr\n")
    set_chat_prompts(d)
    logger.info("%s: %d LibriVox utterances", d, len(rows))
    return d
