"""Deterministic synthetic multitask speech data (espeak-ng) for the mini benchmark.

A tiny Speech LM (a small Qwen2-Audio) is trained and measured on five tasks: one dense task,
where the answer depends on every word, and four sparse ones, where a few frames decide:

``asr``     a sentence of 5-12 words from the word list, English voice; reference = the words.
``lang``    the same kind of sentence spoken by an espeak-ng voice of english/german/french/
            spanish/italian (``en de fr es it``). The text is English words; espeak reads them with
            that language's letter-to-sound rules, which is what makes the language audible.
``gender``  ``male`` (variants ``+m1..+m7``) or ``female`` (``+f1..+f4``), English.
``rate``    ``slow`` (110-135 words/min) or ``fast`` (210-250 words/min), English, any gender.
``nspk``    ``one`` or ``two`` speakers: the sentence is spoken in two halves joined by a short
            pause, both by one voice, or by two voices of different gender.

Every utterance is 16 kHz mono float32 (written as 16-bit PCM), between ``MIN_SECONDS`` and
``MAX_SECONDS`` long (the tiny encoder's window is 6 s): a sentence that comes out too long is
drawn again with fewer words. espeak-ng writes 22050 Hz WAV files (``-w``; ``--stdout`` has a
wrong length in its header) that are resampled with ``resample_poly(x, 320, 441)``; leading and
trailing silence is trimmed, pitch (``-p``) and the peak amplitude are randomised.

Labels are balanced: utterance ``i`` of a classification task has label ``labels[i % len(labels)]``.
Sentences are held out: whether a sentence may appear in ``train``, ``dev`` or ``test`` is a fixed
function of its words (a SHA-1 bucket, see :func:`sentence_split`), so test sentences never occur
in training, whatever the seed or the number of utterances; :func:`generate` also checks that no
sentence is shared between splits.

Determinism: each utterance draws from its own ``numpy`` generator seeded with
``(seed, crc32(split), crc32(task), index)``, and espeak-ng is deterministic, so one call gives
byte-identical files, and ``nj`` worker processes give the same result as one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tqdm import tqdm

from espnet_fastadasp.recipes.kaldi_dir import speaker_prefixed, write_data_dir

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
MAX_SECONDS = 6.0
MIN_SECONDS = 0.5
MIN_WORDS, MAX_WORDS = 5, 12  # ~2-5 s: enough audio tokens (25 per second) for reduction to matter
INSTALL_HINT = "run `bash tools/installers/install_debian.sh data` (as root, or with sudo)"
DEFAULT_WORDLIST = Path(__file__).resolve().parents[2] / "egs2/mini_synth/speechlm1/local/wordlist.txt"

# per task: the question put to the model and the answers (None: free text, the sentence itself)
TASKS: dict[str, dict[str, Any]] = {
    "asr": {"prompt": "transcribe", "labels": None},
    "lang": {"prompt": "which language", "labels": ("english", "german", "french", "spanish", "italian")},
    "gender": {"prompt": "male or female", "labels": ("male", "female")},
    "rate": {"prompt": "slow or fast", "labels": ("slow", "fast")},
    "nspk": {"prompt": "one or two speakers", "labels": ("one", "two")},
}
PROMPT_FORMAT = "<|im_start|>{{audio}}{prompt}<|im_end|>"

LANG_VOICES = {"english": "en", "german": "de", "french": "fr", "spanish": "es", "italian": "it"}
ENGLISH_VOICES = ("en", "en-us")
VARIANTS = {"male": tuple(f"m{i}" for i in range(1, 8)), "female": tuple(f"f{i}" for i in range(1, 5))}
RATES = {  # words per minute (espeak -s)
    "asr": (130, 200),
    "lang": (130, 180),
    "gender": (140, 190),
    "nspk": (140, 190),
    "slow": (110, 135),
    "fast": (210, 250),
}
PITCH = (40, 60)  # espeak -p (0-99, default 50)
PEAK = (0.3, 0.95)  # peak amplitude after normalisation
PAUSE = (0.15, 0.35)  # seconds between the halves of an nspk utterance
TRIM_MARGIN = 0.05  # seconds of silence kept at either end
# sentence buckets (of 10) reserved for held-out splits; train takes the rest
HELDOUT_BUCKETS = {"test": (0,), "dev": (1,)}
SPLITS = ("train", "dev", "test")


class SynthError(RuntimeError):
    """espeak-ng is missing or failed, or the generated data break a promise (bounds, hold-out)."""


def prompt_template(task: str) -> str:
    """The data dir's ``prompt`` line for ``task``: ``<|im_start|>{audio}<task prompt><|im_end|>``."""
    return PROMPT_FORMAT.format(prompt=TASKS[_check_task(task)]["prompt"])


@functools.lru_cache(maxsize=1)
def check_espeak() -> str:
    """Path of espeak-ng; raises :class:`SynthError` with the install hint if it is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SynthError(f"espeak-ng not found on PATH; {INSTALL_HINT}")
    try:
        subprocess.run([exe, "--version"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SynthError(f"espeak-ng at {exe} does not run ({exc}); {INSTALL_HINT}") from exc
    return exe


def load_wordlist(path: str | Path = DEFAULT_WORDLIST) -> list[str]:
    """One lowercase word (letters a-z only) per line; blank lines ignored, duplicates an error."""
    path = Path(path)
    if not path.is_file():
        raise SynthError(f"word list not found: {path}")
    words = [w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()]
    return _check_wordlist(words, str(path))


def sentence_split(words: Sequence[str]) -> str:
    """The only split a sentence may appear in (``train``, ``dev`` or ``test``), from its words."""
    digest = hashlib.sha1(" ".join(words).encode("utf-8")).digest()
    bucket = int.from_bytes(digest[:4], "big") % 10
    for split, buckets in HELDOUT_BUCKETS.items():
        if bucket in buckets:
            return split
    return "train"


def utterance_rng(seed: int, split: str, task: str, index: int) -> np.random.Generator:
    """The generator of one utterance; independent of the process and of other utterances."""
    entropy = [int(seed), zlib.crc32(split.encode()), zlib.crc32(task.encode()), int(index)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def utterance_id(task: str, split: str, index: int) -> str:
    return f"{task}_{split}_{index:06d}"


def make_utterance(
    task: str, split: str, index: int, seed: int, wordlist: Sequence[str]
) -> tuple[np.ndarray, str, dict[str, Any]]:
    """One utterance: (16 kHz float32 audio, reference text or label, metadata).

    The result depends only on the arguments. The metadata hold the sentence, the voices
    (``lang+variant``), rates, pitches, the duration and how many sentences were drawn.
    """
    _check_task(task)
    _check_split(split)
    wordlist = _check_wordlist(wordlist, "wordlist")
    rng = utterance_rng(seed, split, task, index)
    labels = TASKS[task]["labels"]
    label = labels[index % len(labels)] if labels else None

    # voice settings first, so that redrawing a too long sentence keeps the speaker
    lang = label if task == "lang" else "english"
    base = LANG_VOICES[lang] if task == "lang" else str(rng.choice(ENGLISH_VOICES))
    gender = label if task == "gender" else str(rng.choice(("male", "female")))
    rate_range = RATES[label] if task == "rate" else RATES[task]
    speakers = [_speaker(rng, base, gender, rate_range)]
    if task == "nspk":
        other = "female" if gender == "male" else "male"
        speakers.append(_speaker(rng, base, other, rate_range) if label == "two" else speakers[0])
    peak = float(rng.uniform(*PEAK))
    pause = float(rng.uniform(*PAUSE)) if task == "nspk" else 0.0
    rel_gain = [float(rng.uniform(0.7, 1.0)) for _ in speakers]

    min_words = 4 if task == "nspk" else MIN_WORDS  # two halves of at least two words
    n_words = int(rng.integers(min_words, MAX_WORDS + 1))
    for attempts in range(1, 21):  # noqa: B007 (reported in the metadata)
        words = draw_sentence(rng, wordlist, n_words, split)
        if task == "nspk":
            half = len(words) // 2
            parts = [_synth(" ".join(words[:half]), speakers[0]), _synth(" ".join(words[half:]), speakers[1])]
            peaks = [max(float(np.abs(p).max()), 1e-6) for p in parts]
            parts = [p / pk * g for p, pk, g in zip(parts, peaks, rel_gain)]
            audio = np.concatenate([parts[0], np.zeros(round(pause * SAMPLE_RATE), np.float32), parts[1]])
        else:
            audio = _synth(" ".join(words), speakers[0])
        duration = len(audio) / SAMPLE_RATE
        if duration > MAX_SECONDS and n_words > min_words:
            n_words -= 1
        elif duration < MIN_SECONDS and n_words < MAX_WORDS:
            n_words += 1
        elif MIN_SECONDS <= duration <= MAX_SECONDS:
            break
    else:
        raise SynthError(f"{utterance_id(task, split, index)}: no sentence of {MIN_SECONDS}-{MAX_SECONDS} s")
    audio = (audio * (peak / max(float(np.abs(audio).max()), 1e-6))).astype(np.float32)

    sentence = " ".join(words)
    meta = {
        "task": task,
        "split": split,
        "index": index,
        "label": label,
        "sentence": sentence,
        "n_words": len(words),
        "language": lang,
        "gender": gender if task != "nspk" or label == "one" else "mixed",
        "voices": [s["voice"] for s in speakers],
        "rates": [s["rate"] for s in speakers],
        "pitches": [s["pitch"] for s in speakers],
        "peak": round(peak, 4),
        "pause": round(pause, 4),
        "duration": round(duration, 4),
        "attempts": attempts,
    }
    return audio, (sentence if label is None else label), meta


def draw_sentence(rng: np.random.Generator, wordlist: Sequence[str], n_words: int, split: str) -> list[str]:
    """``n_words`` distinct words whose sentence belongs to ``split`` (rejection sampling)."""
    n_words = min(n_words, len(wordlist))
    for _ in range(10000):
        words = [wordlist[i] for i in rng.choice(len(wordlist), size=n_words, replace=False)]
        if sentence_split(words) == split:
            return words
    raise SynthError(f"no {n_words}-word sentence for split {split!r} in 10000 draws")


def generate(
    out_dir: str | Path,
    tasks: Iterable[str] = tuple(TASKS),
    splits: Mapping[str, int] | None = None,
    seed: int = 1,
    nj: int = 1,
    wordlist: Sequence[str] | str | Path | None = None,
) -> dict[str, Path]:
    """Write ``out_dir/<task>_<split>/`` data dirs and ``out_dir/wav/<task>_<split>/<utt>.wav``.

    ``splits`` maps split name (train/dev/test) to the number of utterances per task (default
    ``{"train": 100, "test": 20}``). Each data dir has ``wav.scp`` (absolute paths), ``text``,
    ``utt2spk``, ``spk2utt``, ``prompt``, ``utt2dur`` and ``meta.jsonl``. Returns the data dirs by
    name. The output depends only on (tasks, splits, seed, wordlist), not on ``nj``.
    """
    check_espeak()
    tasks = [_check_task(t) for t in tasks]
    splits = dict(splits) if splits is not None else {"train": 100, "test": 20}
    for split, n in splits.items():
        _check_split(split)
        if n < 0:
            raise SynthError(f"split {split}: negative number of utterances ({n})")
    if wordlist is None or isinstance(wordlist, (str, Path)):
        words = load_wordlist(wordlist if wordlist is not None else DEFAULT_WORDLIST)
    else:
        words = _check_wordlist(wordlist, "wordlist")
    out = Path(out_dir).resolve()
    if ":" in str(out) or " " in str(out):
        raise SynthError(f"out_dir {out} must not contain ':' or spaces (wav.scp paths)")
    nj = max(1, int(nj))

    written: dict[str, Path] = {}
    sentences: dict[tuple[str, str], set[str]] = {}
    t0, total = time.perf_counter(), 0
    pool = multiprocessing.get_context().Pool(nj) if nj > 1 else None
    try:
        for task in tasks:
            for split, n in splits.items():
                if n == 0:
                    continue
                name = f"{task}_{split}"
                wav_dir = out / "wav" / name
                wav_dir.mkdir(parents=True, exist_ok=True)
                work = functools.partial(
                    _write_one, task=task, split=split, seed=seed, wordlist=tuple(words), wav_dir=str(wav_dir)
                )
                t1 = time.perf_counter()
                if pool is None:
                    results_iter = map(work, range(n))
                else:
                    chunk = max(1, min(32, n // (4 * nj)))
                    results_iter = pool.imap(work, range(n), chunksize=chunk)
                results = list(tqdm(results_iter, total=n, desc=name, unit="utt", disable=None))
                dt = time.perf_counter() - t1
                written[name] = _write_data_dir(out / name, task, results)
                sentences[(task, split)] = {r["meta"]["sentence"] for r in results}
                total += n
                logger.info(
                    "%s: %d utterances in %.1f s (%.1f utt/s) -> %s", name, n, dt, n / max(dt, 1e-9), out / name
                )
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    _check_heldout(sentences)
    dt = time.perf_counter() - t0
    logger.info("generated %d utterances in %.1f s: %.1f utt/s with nj=%d", total, dt, total / max(dt, 1e-9), nj)
    return written


# ---------------------------------------------------------------------------------------------
def _speaker(rng: np.random.Generator, base: str, gender: str, rate_range: tuple[int, int]) -> dict[str, Any]:
    variant = str(rng.choice(VARIANTS[gender]))
    return {
        "voice": f"{base}+{variant}",
        "rate": int(rng.integers(rate_range[0], rate_range[1] + 1)),
        "pitch": int(rng.integers(PITCH[0], PITCH[1] + 1)),
    }


#: environment variable: seconds one espeak-ng call may take before it counts as hung (0: no limit)
ESPEAK_TIMEOUT_ENV = "FASTADASP_ESPEAK_TIMEOUT"


def espeak_timeout() -> float | None:
    """The limit on one espeak-ng call: 60 s, or ``$FASTADASP_ESPEAK_TIMEOUT`` (0 = none).

    Why settable: a hung synthesiser must fail, but a long data generation that is paused
    (SIGSTOP, while someone times a benchmark on the same cores) would otherwise die of the
    wall-clock limit on resume. An environment variable reaches the worker processes too."""
    raw = os.environ.get(ESPEAK_TIMEOUT_ENV, "").strip()
    if not raw:
        return 60.0
    try:
        seconds = float(raw)
    except ValueError:
        raise SynthError(f"${ESPEAK_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if seconds < 0:
        raise SynthError(f"${ESPEAK_TIMEOUT_ENV}={raw!r} must be >= 0 (0: no limit)")
    return seconds or None


def _synth(text: str, speaker: Mapping[str, Any]) -> np.ndarray:
    """espeak-ng -> 16 kHz float32 with leading/trailing silence trimmed (``TRIM_MARGIN`` kept)."""
    exe = check_espeak()
    fd, tmp = tempfile.mkstemp(suffix=".wav", prefix="synth_")
    os.close(fd)
    cmd = [exe, "-v", speaker["voice"], "-s", str(speaker["rate"]), "-p", str(speaker["pitch"]), "-w", tmp, text]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=espeak_timeout())
        if proc.returncode != 0:
            raise SynthError(
                f"{' '.join(cmd[:-1])} {text!r} failed ({proc.returncode}): "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        x, sr = sf.read(tmp, dtype="float64", always_2d=True)
    finally:
        os.unlink(tmp)
    x = x.mean(axis=1)
    if sr == 22050:
        x = resample_poly(x, 320, 441)
    elif sr != SAMPLE_RATE:
        g = np.gcd(SAMPLE_RATE, sr)
        x = resample_poly(x, SAMPLE_RATE // g, sr // g)
    if x.size == 0 or not np.any(x):
        raise SynthError(f"espeak-ng wrote no audio for {text!r} ({speaker['voice']})")
    loud = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
    margin = round(TRIM_MARGIN * SAMPLE_RATE)
    x = x[max(0, loud[0] - margin) : loud[-1] + 1 + margin]
    return x.astype(np.float32)


def speaker_id(voices: Sequence[str]) -> str:
    """The speaker id of an utterance: its voice, or both voices joined by ``_``, with the ``-`` of a
    voice name (``en-us``) written ``_`` (sclite reads an utterance's speaker up to the first ``-``)."""
    return "_".join(dict.fromkeys(v.replace("-", "_") for v in voices))


def _write_one(index: int, task: str, split: str, seed: int, wordlist: Sequence[str], wav_dir: str) -> dict[str, Any]:
    audio, text, meta = make_utterance(task, split, index, seed, wordlist)
    spk = speaker_id(meta["voices"])
    key = speaker_prefixed(utterance_id(task, split, index), spk)
    path = Path(wav_dir) / f"{key}.wav"
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return {"key": key, "path": str(path), "text": text, "spk": spk, "dur": len(audio) / SAMPLE_RATE, "meta": meta}


def _write_data_dir(d: Path, task: str, results: list[dict[str, Any]]) -> Path:
    write_synth_dir(d, prompt_template(task), results)
    return d


def write_synth_dir(d: Path, prompt: str, results: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A synthetic set's data dir (wav.scp, text, prompt, utt2dur, utt2spk, spk2utt, meta.jsonl) from
    per-utterance results (``key path text spk dur meta``); returns the results in key order."""
    tables = {
        "wav.scp": {r["key"]: r["path"] for r in results},
        "text": {r["key"]: r["text"] for r in results},
        "prompt": {r["key"]: prompt for r in results},
        "utt2dur": {r["key"]: f"{r['dur']:.4f}" for r in results},
    }
    write_data_dir(d, {r["key"]: r["spk"] for r in results}, tables)
    ordered = sorted(results, key=lambda r: r["key"].encode("utf-8"))
    meta = [json.dumps({"utt": r["key"], "text": r["text"], **r["meta"]}, sort_keys=True) for r in ordered]
    (d / "meta.jsonl").write_text("".join(line + "\n" for line in meta), encoding="utf-8")
    return ordered


def _check_heldout(sentences: Mapping[tuple[str, str], set[str]]) -> None:
    """No sentence may be in two splits (over all tasks); raises :class:`SynthError` otherwise."""
    by_split: dict[str, set[str]] = {}
    for (_, split), s in sentences.items():
        by_split.setdefault(split, set()).update(s)
    names = sorted(by_split)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            shared = by_split[a] & by_split[b]
            if shared:
                raise SynthError(f"{len(shared)} sentence(s) in both {a} and {b}, e.g. {sorted(shared)[0]!r}")


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise SynthError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    return task


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise SynthError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    return split


def _check_wordlist(words: Sequence[str], where: str) -> list[str]:
    words = list(words)
    bad = [w for w in words if not (w.isascii() and w.isalpha() and w.islower())]
    if bad:
        raise SynthError(f"{where}: words must be lowercase letters a-z only, e.g. {bad[0]!r}")
    if len(set(words)) != len(words):
        raise SynthError(f"{where}: duplicate words")
    if len(words) < 2 * MAX_WORDS:
        raise SynthError(f"{where}: {len(words)} words, want at least {2 * MAX_WORDS}")
    return words
