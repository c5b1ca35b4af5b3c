"""WER / CER with sclite's edit weights: token alignment, corpus counts and rates.

The alignment is the core of ASR scoring and the fallback when sclite is not installed, so it
has a module of its own; normalisation is :mod:`~espnet_fastadasp.evaluation.normalize`, the
``result.txt`` report :mod:`~espnet_fastadasp.evaluation.sclite_report`.

WER = 100 * (S + D + I) / N over the whole corpus, with S, D, I the substitutions, deletions
and insertions of a minimum-cost alignment with sclite's weights (substitution 4, insertion and
deletion 3: :func:`align_tokens`) and N the number of reference words. CER is the same on
characters of the *same normalised text*; the space between words counts as a character (shown
as ``<space>`` in ``score_cer``), as in ESPnet's character scoring. The sentence error rate
(SER) is the percentage of utterances with at least one error. Where sclite is installed, the
recipes' numbers are sclite's own (:mod:`espnet_fastadasp.evaluation.sclite`); these are the
fallback, with the same Sum/Avg line. When the references hold no token at all, N is taken as 1 so the
rates stay finite. All rates are percentages (0-100).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from espnet_fastadasp.evaluation.normalize import NormalizedPairs, normalize_pairs


@dataclass
class UttAlignment:
    """Alignment of one utterance: ``ops`` is a list of ``(op, ref_token, hyp_token)`` with op in
    ``C`` (correct), ``S``, ``D`` (ref token, no hyp token) and ``I`` (hyp token, no ref token)."""

    key: str
    ops: list[tuple[str, str | None, str | None]] = field(default_factory=list)

    def count(self, op: str) -> int:
        return sum(1 for o in self.ops if o[0] == op)

    @property
    def num_ref(self) -> int:
        return sum(1 for o in self.ops if o[0] != "I")

    @property
    def num_errors(self) -> int:
        return sum(1 for o in self.ops if o[0] != "C")


#: sclite's edit weights (SCTK's defaults: a substitution costs 4, an insertion or deletion 3), so
#: that the Sub/Del/Ins split of an alignment here is the one sclite reports
SCLITE_WEIGHTS = {"S": 4, "D": 3, "I": 3}


def align_tokens(ref: Sequence[str], hyp: Sequence[str]) -> list[tuple[str, str | None, str | None]]:
    """A minimum-cost alignment under :data:`SCLITE_WEIGHTS` as ``(op, ref_token, hyp_token)``.

    Why not unit costs (jiwer, Levenshtein): with every edit costing 1, a substitution and an
    insertion + deletion pair tie, and the split of the same total differs from sclite's, so tables
    would not match published sclite/ESPnet ones. Among equal-cost paths each cell keeps the
    predecessor sclite keeps, so the alignments are sclite's own.
    """
    n, m = len(ref), len(hyp)
    w_s, w_d, w_i = SCLITE_WEIGHTS["S"], SCLITE_WEIGHTS["D"], SCLITE_WEIGHTS["I"]
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    back = [[0] * (m + 1) for _ in range(n + 1)]  # 0: diagonal, 1: deletion, 2: insertion
    for j in range(1, m + 1):
        cost[0][j], back[0][j] = j * w_i, 2
    for i in range(1, n + 1):
        row, up, brow = cost[i], cost[i - 1], back[i]
        row[0], brow[0] = i * w_d, 1
        r = ref[i - 1]
        for j in range(1, m + 1):
            diag = up[j - 1] + (0 if r == hyp[j - 1] else w_s)
            dele = up[j] + w_d
            ins = row[j - 1] + w_i
            # sclite's choice (net_dp.c, calculate_internal_cells): the diagonal if no worse than
            # both, else a deletion if strictly cheaper than an insertion, else an insertion
            if diag <= dele and diag <= ins:
                row[j], brow[j] = diag, 0
            elif dele < ins:
                row[j], brow[j] = dele, 1
            else:
                row[j], brow[j] = ins, 2
    ops: list[tuple[str, str | None, str | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        step = back[i][j]
        if step == 0:
            ops.append(("C" if ref[i - 1] == hyp[j - 1] else "S", ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif step == 1:
            ops.append(("D", ref[i - 1], None))
            i -= 1
        else:
            ops.append(("I", None, hyp[j - 1]))
            j -= 1
    ops.reverse()
    return ops


def tokens(text: str, unit: Literal["word", "char"]) -> list[str]:
    """Words (split on whitespace) or characters, the space between words included."""
    if unit == "word":
        return text.split()
    if unit == "char":
        return list(text)
    raise ValueError(f"unit must be 'word' or 'char', got {unit!r}")


def align(
    keys: Sequence[str], ref_texts: Sequence[str], hyp_texts: Sequence[str], unit: Literal["word", "char"] = "word"
) -> list[UttAlignment]:
    """:func:`align_tokens` of each pair, on words or characters (texts should be
    whitespace-collapsed, as :func:`normalize_asr` makes them)."""
    return [
        UttAlignment(key, align_tokens(tokens(ref, unit), tokens(hyp, unit)))
        for key, ref, hyp in zip(keys, ref_texts, hyp_texts, strict=True)
    ]


@dataclass
class AsrAlignment:
    """Word and character alignments of a corpus, as used by :func:`score_asr` and the writers
    (a unit not asked of :func:`align_asr` has no alignments)."""

    pairs: NormalizedPairs
    word: list[UttAlignment]
    char: list[UttAlignment]


def align_pairs(pairs: NormalizedPairs, units: Sequence[str] = ("word", "char")) -> AsrAlignment:
    """Align normalised pairs on ``units`` (``word``, ``char``)."""
    aligned = {u: align(pairs.keys, pairs.ref_norm, pairs.hyp_norm, u) for u in units}
    return AsrAlignment(pairs, aligned.get("word", []), aligned.get("char", []))


def align_asr(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    normalizer: str = "whisper_en",
    allow_missing: bool = False,
    units: Sequence[str] = ("word", "char"),
) -> AsrAlignment:
    """Pair, normalise and align references and hypotheses on ``units``."""
    return align_pairs(normalize_pairs(refs, hyps, normalizer, allow_missing), units)


def _error_counts(utts: Sequence[UttAlignment]) -> dict[str, Any]:
    n = sum(u.num_ref for u in utts)
    c, s, d, i = (sum(u.count(op) for u in utts) for op in "CSDI")
    return error_rates(len(utts), n, c, s, d, i, sum(1 for u in utts if u.num_errors))


def error_rates(num_utts: int, n: int, c: int, s: int, d: int, i: int, snt_err: int) -> dict[str, Any]:
    """The counts and rates of score.json's ``word`` / ``char`` entries, from corpus counts."""
    denom = max(n, 1)
    return {
        "num_utts": num_utts,
        "num_ref": n,
        "hits": c,
        "sub": s,
        "del": d,
        "ins": i,
        "err_rate": 100.0 * (s + d + i) / denom,
        "sub_rate": 100.0 * s / denom,
        "del_rate": 100.0 * d / denom,
        "ins_rate": 100.0 * i / denom,
        "corr_rate": 100.0 * c / denom,
        "sent_err_rate": 100.0 * snt_err / max(num_utts, 1),
        "num_sent_err": snt_err,
    }


def summarize_asr(alignment: AsrAlignment) -> dict[str, Any]:
    """Corpus metrics of an :class:`AsrAlignment` (see :func:`score_asr` for the keys)."""
    return asr_details(alignment.pairs, _error_counts(alignment.word), _error_counts(alignment.char))


def asr_details(pairs: NormalizedPairs, word: dict[str, Any], char: dict[str, Any]) -> dict[str, Any]:
    """score.json's ASR details from word and character counts (:func:`error_rates`), whoever counted."""
    return {
        "wer": word["err_rate"],
        "cer": char["err_rate"],
        "ser": word["sent_err_rate"],
        "num_utts": word["num_utts"],
        "num_words": word["num_ref"],
        "num_chars": char["num_ref"],
        "num_missing": pairs.num_missing,
        "normalizer": pairs.normalizer,
        "word": word,
        "char": char,
    }


def score_asr(
    refs: Mapping[str, str],
    hyps: Mapping[str, str],
    normalizer: str = "whisper_en",
    allow_missing: bool = False,
) -> dict[str, Any]:
    """WER / CER (percent) of ``hyps`` against ``refs`` (``{key: text}``).

    Returns a JSON-serialisable dict: ``wer``, ``cer``, ``ser`` (sentence error rate on words),
    ``num_utts``, ``num_words``, ``num_chars``, ``num_missing``, ``normalizer`` and, under
    ``word`` and ``char``, the counts ``num_ref``, ``hits``, ``sub``, ``del``, ``ins``,
    ``num_sent_err`` and the rates ``err_rate``, ``corr_rate``, ``sub_rate``, ``del_rate``,
    ``ins_rate``, ``sent_err_rate``.
    """
    return summarize_asr(align_asr(refs, hyps, normalizer, allow_missing))
