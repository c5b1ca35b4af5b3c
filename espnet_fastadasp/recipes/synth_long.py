"""Synthetic long speech (espeak-ng) for the long-speech testbed (egs2/mini_synth_long/speechlm1).

The mini benchmark (:mod:`espnet_fastadasp.recipes.synth`) uses 2-5 s clips of one sentence; a
model trained on them has never heard long audio, and its sparse tasks are saturated. This module
comes closer to the FastAdaSP paper's regime: clips of several sentences with natural pauses
and leading/trailing silence (5-30 s, one 30 s encoder window), long-form recordings of 60-120 s
(decoded as consecutive 30 s windows in one prompt), and sparse tasks built to be hard:

``asr``      sentences (5-12 words each) by one speaker until a duration drawn in 5-30 s;
             reference = all the words.
``lasr``     long-form ASR: sentences by one speaker until 60-120 s; reference = all the words.
``spkid``    which of ``NUM_SPKID`` named speakers (``spk01`` ...) speaks; a speaker is an accent
             and a voice variant with its own base pitch and rate, jittered per utterance. Some
             accents are close (``en``, ``en-gb-x-rp``), so this task is not meant to saturate.
``samespk``  ``same`` or ``different`` speaker across two sentences; a different speaker has the
             same gender (another variant or accent), so gender alone does not tell.
``prosody``  pitch and rate together: ``low slow``, ``low fast``, ``high slow``, ``high fast``;
             any voice variant, whose own pitch shifts the absolute pitch (espeak ``-p`` is
             relative to the variant), so the class must be read against the voice.
``keyword``  ``yes`` or ``no``: is the word ``KEYWORD`` spoken anywhere in two or more sentences
             (5-30 s); for ``yes`` it is put into one of them, drawn after the durations.

Utterance ids are Kaldi speaker-prefixed (``{speaker}-{task}_{split}_{index:06d}``) and data dirs are
written by :func:`espnet_fastadasp.recipes.kaldi_dir.write_data_dir`, which validates them, as in
:mod:`synth`. Held-out sentences follow :func:`synth.sentence_split` sentence by sentence, so no
sentence of a test utterance is in any training utterance. Determinism is that of :mod:`synth`:
one generator per utterance from ``(seed, split, task, index)``; the first ``n`` utterances of a
set do not depend on how many are generated, so a decoded subset is a prefix of the full set.
Labels are balanced: utterance ``i`` has label ``labels[i % len(labels)]``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import multiprocessing
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from espnet_fastadasp.recipes import synth
from espnet_fastadasp.recipes.kaldi_dir import speaker_prefixed
from espnet_fastadasp.recipes.synth import SynthError

logger = logging.getLogger(__name__)

SAMPLE_RATE = synth.SAMPLE_RATE
WINDOW_SECONDS = 30  # Qwen2-Audio's encoder window (1,500 positions, 750 audio tokens)
KEYWORD = "garden"
DEFAULT_WORDLIST = Path(__file__).resolve().parents[2] / "egs2/mini_synth/speechlm1/local/wordlist.txt"
NUM_SPKID = 32

ACCENTS = (
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
VARIANTS = synth.VARIANTS  # male m1-m7, female f1-f4
SPKID_VARIANTS = ("m1", "m3", "f2", "f4")  # 8 accents x 4 variants = NUM_SPKID named speakers

# per task: the prompt, the answers (None: the transcript), the duration range in seconds
TASKS: dict[str, dict[str, Any]] = {
    "asr": {"prompt": "transcribe", "labels": None, "seconds": (5.0, 30.0)},
    "lasr": {"prompt": "transcribe", "labels": None, "seconds": (60.0, 120.0)},
    "spkid": {
        "prompt": "which speaker",
        "labels": tuple(f"spk{i:02d}" for i in range(1, NUM_SPKID + 1)),
        "seconds": (5.0, 30.0),
    },
    "samespk": {"prompt": "same or different speaker", "labels": ("same", "different"), "seconds": (5.0, 30.0)},
    "prosody": {
        "prompt": "pitch and rate",
        "labels": ("low slow", "low fast", "high slow", "high fast"),
        "seconds": (5.0, 30.0),
    },
    "keyword": {"prompt": f"is {KEYWORD} spoken", "labels": ("yes", "no"), "seconds": (5.0, 30.0)},
}
MAX_SENTENCES = 100  # sentences are added until the drawn duration is reached (samespk: two)
DENSE_TASKS = ("asr", "lasr")

RATE = (135, 185)  # words per minute, the default speaker range
PITCH = (35, 65)
PROSODY_PITCH = {"low": (20, 42), "high": (58, 80)}
PROSODY_RATE = {"slow": (110, 140), "fast": (180, 220)}
PITCH_JITTER, RATE_JITTER = 4, 10  # per-utterance variation of a named speaker
PAUSE = (0.3, 1.2)  # seconds between sentences
EDGE_SILENCE = (0.2, 1.5)  # seconds of silence before the first and after the last sentence
NOISE_DB = (-60.0, -45.0)  # a noise floor relative to full scale, so silences are not digital zero
PEAK = (0.3, 0.95)
MAX_ATTEMPTS = 60


def prompt_template(task: str) -> str:
    return synth.PROMPT_FORMAT.format(prompt=TASKS[_check_task(task)]["prompt"])


def utterance_id(task: str, split: str, index: int) -> str:
    return f"{task}_{split}_{index:06d}"


def spkid_speakers() -> list[dict[str, Any]]:
    """The named speakers of ``spkid``: fixed voices with their own base pitch and rate."""
    out = []
    for i, (accent, variant) in enumerate((a, v) for a in ACCENTS for v in SPKID_VARIANTS):
        rng = np.random.default_rng(np.random.SeedSequence([7919, i]))
        out.append(
            {
                "name": f"spk{i + 1:02d}",
                "voice": f"{accent}+{variant}",
                "pitch": int(rng.integers(PITCH[0], PITCH[1] + 1)),
                "rate": int(rng.integers(RATE[0], RATE[1] + 1)),
            }
        )
    return out


def _random_speaker(rng: np.random.Generator, gender: str | None = None) -> dict[str, Any]:
    gender = gender or str(rng.choice(("male", "female")))
    return {
        "voice": f"{rng.choice(ACCENTS)}+{rng.choice(VARIANTS[gender])}",
        "pitch": int(rng.integers(PITCH[0], PITCH[1] + 1)),
        "rate": int(rng.integers(RATE[0], RATE[1] + 1)),
        "gender": gender,
    }


def _jitter(rng: np.random.Generator, spk: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **spk,
        "pitch": int(np.clip(spk["pitch"] + rng.integers(-PITCH_JITTER, PITCH_JITTER + 1), 0, 99)),
        "rate": int(spk["rate"] + rng.integers(-RATE_JITTER, RATE_JITTER + 1)),
    }


def _gender_of(voice: str) -> str:
    return "male" if voice.split("+")[1].startswith("m") else "female"


def _sentence(rng: np.random.Generator, wordlist: Sequence[str], split: str, exclude: str | None) -> list[str]:
    """A sentence of ``split`` (held out by :func:`synth.sentence_split`) without the word ``exclude``."""
    for _ in range(1000):
        words = synth.draw_sentence(rng, wordlist, int(rng.integers(synth.MIN_WORDS, synth.MAX_WORDS + 1)), split)
        if exclude is None or exclude not in words:
            return words
    raise SynthError(f"no sentence for split {split!r} without {exclude!r}")


def _with_keyword(rng: np.random.Generator, wordlist: Sequence[str], n_words: int, split: str) -> list[str]:
    """A sentence of ``n_words`` distinct words of ``split`` with ``KEYWORD`` at a random position."""
    others = [w for w in wordlist if w != KEYWORD]
    for _ in range(10000):
        words = [others[i] for i in rng.choice(len(others), size=n_words - 1, replace=False)]
        words.insert(int(rng.integers(n_words)), KEYWORD)
        if synth.sentence_split(words) == split:
            return words
    raise SynthError(f"no {n_words}-word sentence with {KEYWORD!r} for split {split!r} in 10000 draws")


def _clip(rng: np.random.Generator, words: Sequence[str], spk: Mapping[str, Any]) -> np.ndarray:
    """One sentence by ``spk``, peak-normalised with a random gain (loudness varies between sentences)."""
    clip = synth._synth(" ".join(words), spk)
    return (clip / max(float(np.abs(clip).max()), 1e-6) * float(rng.uniform(0.7, 1.0))).astype(np.float32)


def _silence(rng: np.random.Generator, seconds: tuple[float, float]) -> np.ndarray:
    return np.zeros(round(float(rng.uniform(*seconds)) * SAMPLE_RATE), np.float32)


def make_utterance(
    task: str, split: str, index: int, seed: int, wordlist: Sequence[str]
) -> tuple[np.ndarray, str, dict[str, Any]]:
    """One utterance: (16 kHz float32 audio, reference text or label, metadata); depends only on the arguments."""
    _check_task(task)
    synth._check_split(split)
    rng = synth.utterance_rng(seed, split, task, index)
    labels = TASKS[task]["labels"]
    label = labels[index % len(labels)] if labels else None
    lo, hi = TASKS[task]["seconds"]

    # the voices first (a redraw of the text keeps them)
    if task == "spkid":
        named = spkid_speakers()[index % NUM_SPKID]
        speakers = [named]
    elif task == "samespk":
        first = _random_speaker(rng)
        if label == "same":
            second = first
        else:
            while True:
                second = _random_speaker(rng, first["gender"])
                if second["voice"] != first["voice"]:
                    break
        speakers = [first, second]
    elif task == "prosody":
        p_cls, r_cls = label.split()
        spk = _random_speaker(rng)
        spk["pitch"] = int(rng.integers(PROSODY_PITCH[p_cls][0], PROSODY_PITCH[p_cls][1] + 1))
        spk["rate"] = int(rng.integers(PROSODY_RATE[r_cls][0], PROSODY_RATE[r_cls][1] + 1))
        speakers = [spk]
    else:
        speakers = [_random_speaker(rng)]
    peak = float(rng.uniform(*PEAK))
    noise_db = float(rng.uniform(*NOISE_DB))
    target = float(rng.uniform(lo, hi))
    max_sentences = 2 if task == "samespk" else MAX_SENTENCES

    for attempt in range(1, MAX_ATTEMPTS + 1):  # noqa: B007 (reported in the metadata)
        lead, tail = _silence(rng, EDGE_SILENCE), _silence(rng, EDGE_SILENCE)
        words_of: list[list[str]] = []
        used: list[dict[str, Any]] = []
        clips: list[np.ndarray] = []
        pauses: list[np.ndarray] = []
        total = len(lead) + len(tail)
        while len(words_of) < max_sentences:
            k = len(words_of)
            words = _sentence(rng, wordlist, split, KEYWORD if task == "keyword" else None)
            spk = speakers[0] if task == "prosody" else _jitter(rng, speakers[min(k, len(speakers) - 1)])
            clip = _clip(rng, words, spk)
            pause = _silence(rng, PAUSE) if k else np.zeros(0, np.float32)
            if (total + len(pause) + len(clip)) / SAMPLE_RATE > hi:
                break
            words_of.append(words)
            used.append(spk)
            clips.append(clip)
            pauses.append(pause)
            total += len(pause) + len(clip)
            if total / SAMPLE_RATE >= target and k + 1 >= _min_sentences(task):
                break
        if label == "yes" and words_of:  # the keyword goes into one sentence, drawn after the lengths
            j = int(rng.integers(len(words_of)))
            words_of[j] = _with_keyword(rng, wordlist, len(words_of[j]), split)
            new_clip = _clip(rng, words_of[j], used[j])
            total += len(new_clip) - len(clips[j])
            clips[j] = new_clip
        duration = total / SAMPLE_RATE
        if lo <= duration <= hi and len(words_of) >= _min_sentences(task):
            break
    else:
        raise SynthError(f"{utterance_id(task, split, index)}: no utterance of {lo}-{hi} s in {MAX_ATTEMPTS} attempts")
    sentences = [" ".join(w) for w in words_of]
    parts = [lead]
    for pause, clip in zip(pauses, clips):
        parts += [pause, clip]
    parts.append(tail)
    audio = np.concatenate(parts)
    audio = audio * (peak / max(float(np.abs(audio).max()), 1e-6))
    audio = audio + rng.standard_normal(len(audio)).astype(np.float32) * (10 ** (noise_db / 20))
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)

    text = " ".join(sentences)
    meta = {
        "task": task,
        "split": split,
        "index": index,
        "label": label,
        "sentences": sentences,
        "n_sentences": len(sentences),
        "voices": [s["voice"] for s in used],
        "pitches": [s["pitch"] for s in used],
        "rates": [s["rate"] for s in used],
        "speaker": speakers[0].get("name"),
        "peak": round(peak, 4),
        "noise_db": round(noise_db, 2),
        "duration": round(duration, 4),
        "attempts": attempt,
    }
    return audio, (text if label is None else label), meta


def _min_sentences(task: str) -> int:
    return {"samespk": 2, "keyword": 2}.get(task, 1)


def generate(
    out_dir: str | Path,
    tasks: Iterable[str] = tuple(TASKS),
    splits: Mapping[str, int] | Mapping[str, Mapping[str, int]] | None = None,
    seed: int = 1,
    nj: int = 1,
    wordlist: Sequence[str] | str | Path | None = None,
) -> dict[str, Path]:
    """Write ``out_dir/<task>_<split>/`` data dirs (wav.scp, text, utt2spk, spk2utt, prompt, utt2dur,
    meta.jsonl, task) and the WAV files under ``out_dir/wav/<task>_<split>/``.

    ``splits`` maps a split to a count per task, or to ``{task: count}`` for counts that differ by
    task (long-form clips are 5x longer than the others). The output does not depend on ``nj``.
    """
    synth.check_espeak()
    tasks = [_check_task(t) for t in tasks]
    splits = dict(splits) if splits is not None else {"train": 20, "test": 10}
    counts: dict[tuple[str, str], int] = {}
    for split, n in splits.items():
        synth._check_split(split)
        for task in tasks:
            c = int(n.get(task, 0)) if isinstance(n, Mapping) else int(n)
            if c < 0:
                raise SynthError(f"{task}_{split}: negative number of utterances ({c})")
            counts[(task, split)] = c
    if wordlist is None or isinstance(wordlist, (str, Path)):
        words = synth.load_wordlist(wordlist if wordlist is not None else DEFAULT_WORDLIST)
    else:
        words = synth._check_wordlist(wordlist, "wordlist")
    if KEYWORD not in words:
        raise SynthError(f"the keyword {KEYWORD!r} is not in the word list")
    out = Path(out_dir).resolve()
    if ":" in str(out) or " " in str(out):
        raise SynthError(f"out_dir {out} must not contain ':' or spaces (wav.scp paths)")
    nj = max(1, int(nj))
    written: dict[str, Path] = {}
    sentences: dict[tuple[str, str], set[str]] = {}
    t0, seconds = time.perf_counter(), 0.0
    pool = multiprocessing.get_context().Pool(nj) if nj > 1 else None
    try:
        for (task, split), n in counts.items():
            if n == 0:
                continue
            name = f"{task}_{split}"
            wav_dir = out / "wav" / name
            wav_dir.mkdir(parents=True, exist_ok=True)
            work = functools.partial(
                _write_one, task=task, split=split, seed=seed, wordlist=tuple(words), wav_dir=str(wav_dir)
            )
            t1 = time.perf_counter()
            it = (
                map(work, range(n))
                if pool is None
                else pool.imap(work, range(n), chunksize=max(1, min(8, n // (4 * nj))))
            )
            results = list(tqdm(it, total=n, desc=name, unit="utt", disable=None))
            written[name] = _write_data_dir(out / name, task, results)
            sentences[(task, split)] = {s for r in results for s in r["meta"]["sentences"]}
            audio_s = sum(r["dur"] for r in results)
            seconds += audio_s
            logger.info(
                "%s: %d utterances, %.0f s of audio in %.1f s -> %s",
                name,
                n,
                audio_s,
                time.perf_counter() - t1,
                out / name,
            )
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    synth._check_heldout(sentences)
    logger.info("generated %.0f s of audio in %.1f s with nj=%d", seconds, time.perf_counter() - t0, nj)
    return written


def _write_one(index: int, task: str, split: str, seed: int, wordlist: Sequence[str], wav_dir: str) -> dict[str, Any]:
    audio, text, meta = make_utterance(task, split, index, seed, wordlist)
    # the speaker of the data dir: the named speaker, or the voice(s) (synth.speaker_id)
    spk = meta["speaker"] or synth.speaker_id(meta["voices"])
    key = speaker_prefixed(utterance_id(task, split, index), spk)
    path = Path(wav_dir) / f"{key}.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return {
        "key": key,
        "path": str(path),
        "text": text,
        "spk": spk,
        "dur": len(audio) / SAMPLE_RATE,
        "meta": meta,
        "sha1": hashlib.sha1(path.read_bytes()).hexdigest(),
    }


def _write_data_dir(d: Path, task: str, results: list[dict[str, Any]]) -> Path:
    ordered = synth.write_synth_dir(d, prompt_template(task), results)
    (d / "wav.sha1").write_text("".join(f"{r['key']} {r['sha1']}\n" for r in ordered), encoding="utf-8")
    (d / "task").write_text(("asr" if task in DENSE_TASKS else "cls") + "\n", encoding="utf-8")
    return d


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise SynthError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    return task
