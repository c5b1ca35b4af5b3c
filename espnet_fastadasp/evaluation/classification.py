"""Classification scoring: free-form answers mapped to labels, then accuracy and UAR.

A Speech LM answers in words ("The speaker sounds happy."), not with a class id, so the label has
to be found in the answer first; that mapping and the metrics are this module's job.

Labels are normalised by lower-casing, replacing every Unicode punctuation character with a
space and collapsing/stripping whitespace (``"Happy!"`` -> ``"happy"``, ``"non_speech"`` ->
``"non speech"``). A normalised hypothesis that is exactly a label is that label. Otherwise the
label occurring as a whole word (or whole word sequence) earliest in the normalised hypothesis
is taken (``"The speaker sounds happy."`` -> ``happy``; at the same position the longer label
wins). The candidate labels are ``labels`` (normalised) if given, else the set of normalised
reference labels. A hypothesis with no label in it is counted wrong, as ``<other>``.

Accuracy = 100 * correct / utterances. UAR (unweighted average recall) = mean over the classes
present in the references of 100 * (correct of that class) / (references of that class), so
every class weighs the same whatever its frequency. All rates are percentages (0-100).
"""

from __future__ import annotations

import logging
import re
import statistics
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from espnet_fastadasp.evaluation.pairing import pair_refs_hyps

#: the name these messages had before scoring.py was split (log formats show it)
logger = logging.getLogger("espnet_fastadasp.evaluation.scoring")

OTHER_LABEL = "<other>"


def normalize_label(text: str) -> str:
    """Lower-case, replace Unicode punctuation with spaces, collapse and strip whitespace."""
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text.lower())
    return " ".join(text.split())


def extract_label(hyp: str, labels: Sequence[str]) -> str:
    """Map a free-form hypothesis to one of ``labels`` (already normalised), or :data:`OTHER_LABEL`.

    An exact match (after :func:`normalize_label`) wins; otherwise the label found as a whole word
    earliest in the hypothesis, the longer one at equal position.
    """
    norm = normalize_label(hyp)
    if norm in labels:
        return norm
    best: tuple[int, int, str] | None = None
    for label in labels:
        if not label:
            continue
        m = re.search(r"(?<!\w)" + re.escape(label) + r"(?!\w)", norm)
        if m is not None:
            cand = (m.start(), -len(label), label)
            if best is None or cand < best:
                best = cand
    return best[2] if best is not None else OTHER_LABEL


def score_classification(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    labels: Sequence[str] | None = None,
    allow_missing: bool = False,
) -> dict[str, Any]:
    """Accuracy and UAR (percent) of free-form hypotheses against reference labels.

    Returns ``accuracy``, ``uar``, ``recall`` (``{class: percent}`` for every reference class),
    ``support`` (``{class: count}``), ``confusion`` (``{ref_class: {predicted: count}}``, columns
    being all candidate labels plus the predictions seen, e.g. ``<other>``), ``labels`` (the
    candidate labels), ``num_utts``, ``num_correct``, ``num_other`` and ``num_missing``.
    """
    keys, ref_texts, hyp_texts, num_missing = pair_refs_hyps(refs, hyps, allow_missing)
    ref_labels = [normalize_label(t) for t in ref_texts]
    if labels is not None:
        cand = list(dict.fromkeys(normalize_label(lab) for lab in labels if normalize_label(lab)))
        if not cand:
            raise ValueError("labels is empty")
        unknown = sorted(set(ref_labels) - set(cand))
        if unknown:
            logger.warning("reference labels not among the given labels (never predictable): %s", unknown)
    else:
        cand = sorted(set(ref_labels))
    preds = [extract_label(h, cand) for h in hyp_texts]

    classes = sorted(set(ref_labels))
    support = Counter(ref_labels)
    columns = list(dict.fromkeys([*sorted(cand), *sorted(set(preds) - set(cand))]))
    confusion = {c: dict.fromkeys(columns, 0) for c in classes}
    for r, p in zip(ref_labels, preds, strict=True):
        confusion[r][p] += 1
    recall = {c: 100.0 * confusion[c].get(c, 0) / support[c] for c in classes}
    num_correct = sum(r == p for r, p in zip(ref_labels, preds, strict=True))
    return {
        "accuracy": 100.0 * num_correct / len(keys),
        "uar": statistics.fmean(recall.values()),
        "recall": recall,
        "support": dict(support),
        "confusion": confusion,
        "labels": cand,
        "num_utts": len(keys),
        "num_correct": num_correct,
        "num_other": sum(p == OTHER_LABEL for p in preds),
        "num_missing": num_missing,
    }
