"""ASR text normalisation: what both the built-in scorer and sclite score.

Kept apart from the alignment (:mod:`~espnet_fastadasp.evaluation.wer`) because sclite, when it
is installed, scores the same normalised texts (:mod:`~espnet_fastadasp.evaluation.sclite`), and
the per-utterance and report code normalise without aligning.

Normalisation (``normalizer``):

* ``"whisper_en"`` (default): the Whisper English normaliser (``EnglishTextNormalizer`` of the
  maintained ``whisper_normalizer`` package). It lower-cases, removes punctuation and bracketed
  text, removes fillers ("uh", "hmm"), expands titles and contractions ("Mr." -> "mister",
  "I'm" -> "i am", and also "smith's" -> "smith is"), standardises British to American spelling
  and spelled-out numbers to digits ("twenty five dollars" -> "$25"), and collapses whitespace.
* ``"none"``: the text is used as is, apart from collapsing runs of whitespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from espnet_fastadasp.evaluation.pairing import pair_refs_hyps

NORMALIZERS = ("whisper_en", "none")

_whisper_normalizer = None


def normalize_asr(text: str, normalizer: str = "whisper_en") -> str:
    """Normalise one transcript (see the module docstring)."""
    if normalizer == "whisper_en":
        global _whisper_normalizer
        if _whisper_normalizer is None:
            from whisper_normalizer.english import EnglishTextNormalizer

            _whisper_normalizer = EnglishTextNormalizer()
        text = _whisper_normalizer(text)
    elif normalizer != "none":
        raise ValueError(f"unknown normalizer {normalizer!r}; expected one of {NORMALIZERS}")
    return " ".join(text.split())


@dataclass
class NormalizedPairs:
    """References and hypotheses paired by key and normalised: what both scorers score."""

    keys: list[str]
    ref_norm: list[str]
    hyp_norm: list[str]
    normalizer: str
    num_missing: int = 0


def normalize_pairs(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    normalizer: str = "whisper_en",
    allow_missing: bool = False,
) -> NormalizedPairs:
    """Pair (:func:`pair_refs_hyps`) and normalise (:func:`normalize_asr`) references and hypotheses."""
    if normalizer not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {normalizer!r}; expected one of {NORMALIZERS}")
    keys, ref_texts, hyp_texts, num_missing = pair_refs_hyps(refs, hyps, allow_missing)
    return NormalizedPairs(
        list(keys),
        [normalize_asr(t, normalizer) for t in ref_texts],
        [normalize_asr(t, normalizer) for t in hyp_texts],
        normalizer,
        num_missing,
    )
