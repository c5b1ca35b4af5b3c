"""Per-utterance scores of one decode dir, for bootstrap intervals and paired differences.

A bootstrap over utterances needs each utterance's share of the corpus metric, not the metric:
WER is the sum of word errors over the sum of reference words, accuracy the sum of correct
answers over the number of utterances. Both come back as ``(numerators, denominators)`` in the
references' sorted key order, so two settings decoded on the same set line up utterance by
utterance (:func:`espnet_fastadasp.evaluation.bootstrap.paired_bootstrap_delta`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from espnet_fastadasp.evaluation.classification import extract_label, normalize_label
from espnet_fastadasp.evaluation.pairing import read_text
from espnet_fastadasp.evaluation.wer import align_asr


def utterance_scores(
    ref_file: str | Path, hyp_file: str | Path, labels: Sequence[str] | None
) -> tuple[list[float], list[float]]:
    """(numerators, denominators) per reference utterance; a missing hypothesis counts as empty.

    ``labels`` None: ASR (word errors / reference words, whisper_en normalisation as stage 5
    scores); otherwise classification (1 if the label found in the answer is the reference, / 1).
    """
    refs, hyps = read_text(ref_file), read_text(hyp_file)
    keys = sorted(refs)
    if labels is None:
        alignment = align_asr(
            {k: refs[k] for k in keys}, {k: hyps.get(k, "") for k in keys}, allow_missing=True, units=("word",)
        )
        by_key = {u.key: u for u in alignment.word}
        return [by_key[k].num_errors for k in keys], [by_key[k].num_ref for k in keys]
    candidates = [normalize_label(label) for label in labels]
    correct = [float(extract_label(hyps.get(k, ""), candidates) == normalize_label(refs[k])) for k in keys]
    return correct, [1.0] * len(keys)
