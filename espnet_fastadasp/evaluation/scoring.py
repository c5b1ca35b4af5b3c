"""Scoring for the recipes: ASR (WER/CER), speech translation (BLEU/chrF) and classification.

One import for every scorer; the code lives in a module per job:

* :mod:`~espnet_fastadasp.evaluation.pairing`: reading Kaldi-style ``text`` files and pairing
  references with hypotheses by key (a partial decode is an error unless ``allow_missing``);
* :mod:`~espnet_fastadasp.evaluation.normalize`: ASR text normalisation (``whisper_en``, ``none``);
* :mod:`~espnet_fastadasp.evaluation.wer`: WER / CER / SER from an alignment with sclite's edit
  weights (:func:`score_asr`);
* :mod:`~espnet_fastadasp.evaluation.sclite_report`: an sclite-style ``result.txt`` of that
  alignment (:func:`write_sclite_result`);
* :mod:`~espnet_fastadasp.evaluation.bleu`: BLEU (cased and lower-cased) and chrF with sacrebleu
  (:func:`score_st`);
* :mod:`~espnet_fastadasp.evaluation.classification`: labels found in free-form answers,
  accuracy and UAR (:func:`score_classification`).

All inputs are Kaldi-style ``text`` files, one ``<key> <value>`` per line, read into
``dict[key, value]``; all rates are percentages (0-100). Each module's docstring defines its
metrics exactly.
"""

from __future__ import annotations

from espnet_fastadasp.evaluation.bleu import score_st
from espnet_fastadasp.evaluation.classification import (
    OTHER_LABEL,
    extract_label,
    normalize_label,
    score_classification,
)
from espnet_fastadasp.evaluation.normalize import NORMALIZERS, NormalizedPairs, normalize_asr, normalize_pairs
from espnet_fastadasp.evaluation.pairing import pair_refs_hyps, read_text
from espnet_fastadasp.evaluation.sclite_report import SPACE_TOKEN, format_sclite_result, write_sclite_result
from espnet_fastadasp.evaluation.wer import (
    SCLITE_WEIGHTS,
    AsrAlignment,
    UttAlignment,
    _error_counts,  # noqa: F401 (the corpus counts, used by the sclite comparison test)
    align,
    align_asr,
    align_pairs,
    align_tokens,
    asr_details,
    error_rates,
    score_asr,
    summarize_asr,
    tokens,
)

__all__ = [
    "NORMALIZERS",
    "OTHER_LABEL",
    "SCLITE_WEIGHTS",
    "SPACE_TOKEN",
    "AsrAlignment",
    "NormalizedPairs",
    "UttAlignment",
    "align",
    "align_asr",
    "align_pairs",
    "align_tokens",
    "asr_details",
    "error_rates",
    "extract_label",
    "format_sclite_result",
    "normalize_asr",
    "normalize_label",
    "normalize_pairs",
    "pair_refs_hyps",
    "read_text",
    "score_asr",
    "score_classification",
    "score_st",
    "summarize_asr",
    "tokens",
    "write_sclite_result",
]
