"""Scoring for the recipes: ASR (WER/CER), speech translation (BLEU/chrF) and classification.

All inputs are Kaldi-style ``text`` files, one ``<key> <value>`` per line (see :func:`read_text`),
read into ``dict[key, value]``. References and hypotheses are paired by key in reference order.

Key matching (all tasks)
    Every hypothesis key must be a reference key, otherwise :class:`ValueError` naming the extra
    keys. Every reference key must have a hypothesis, otherwise :class:`ValueError` naming how many
    are missing and the first few keys, because a partial decode must never be scored silently. With
    ``allow_missing=True`` missing hypotheses are scored as empty strings (they then count as
    deletions / a wrong label) and ``num_missing`` records how many there were.

ASR (:func:`score_asr`)
    Normalisation (``normalizer``):

    * ``"whisper_en"`` (default): the Whisper English normaliser (``EnglishTextNormalizer`` of the
      maintained ``whisper_normalizer`` package). It lower-cases, removes punctuation and bracketed
      text, removes fillers ("uh", "hmm"), expands titles and contractions ("Mr." -> "mister",
      "I'm" -> "i am", and also "smith's" -> "smith is"), standardises British to American spelling
      and spelled-out numbers to digits ("twenty five dollars" -> "$25"), and collapses whitespace.
    * ``"none"``: the text is used as is, apart from collapsing runs of whitespace.

    WER = 100 * (S + D + I) / N over the whole corpus, with S, D, I the substitutions, deletions
    and insertions of a minimum-cost alignment with sclite's weights (substitution 4, insertion and
    deletion 3: :func:`align_tokens`) and N the number of reference words. CER is the same on
    characters of the *same normalised text*; the space between words counts as a character (shown
    as ``<space>`` in ``score_cer``), as in ESPnet's character scoring. The sentence error rate
    (SER) is the percentage of utterances with at least one error. Where sclite is installed, the
    recipes' numbers are sclite's own (:mod:`espnet_fastadasp.evaluation.sclite`); these are the
    fallback, with the same Sum/Avg line. When the references hold no token at all, N is taken as 1 so the
    rates stay finite.

    :func:`write_sclite_result` writes an sclite-style ``result.txt``: the summary table by speaker
    (``Corr Sub Del Ins Err S.Err`` in percent of reference tokens / sentences, 1 decimal), then
    for each utterance ``id:``, ``Scores: (#C #S #D #I)`` and ``REF:``/``HYP:``/``Eval:`` lines
    in which errors are upper-cased and a missing token is shown as asterisks, as sclite's
    ``pralign`` report does.

Speech translation (:func:`score_st`)
    Corpus BLEU from ``sacrebleu`` with its default 13a tokenisation, once cased (``bleu``) and
    once with ``lowercase=True`` (``bleu_lc``), and chrF (``chrf``, sacrebleu defaults: chrF2,
    character 6-grams, no word n-grams). No other normalisation. sacrebleu's signature strings are
    returned so that the numbers can be reproduced.

Classification (:func:`score_classification`)
    Labels are normalised by lower-casing, replacing every Unicode punctuation character with a
    space and collapsing/stripping whitespace (``"Happy!"`` -> ``"happy"``, ``"non_speech"`` ->
    ``"non speech"``). A normalised hypothesis that is exactly a label is that label. Otherwise the
    label occurring as a whole word (or whole word sequence) earliest in the normalised hypothesis
    is taken (``"The speaker sounds happy."`` -> ``happy``; at the same position the longer label
    wins). The candidate labels are ``labels`` (normalised) if given, else the set of normalised
    reference labels. A hypothesis with no label in it is counted wrong, as ``<other>``.

    Accuracy = 100 * correct / utterances. UAR (unweighted average recall) = mean over the classes
    present in the references of 100 * (correct of that class) / (references of that class), so
    every class weighs the same whatever its frequency.

All rates are percentages (0-100).
"""

from __future__ import annotations

import logging
import math
import re
import statistics
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from espnet_fastadasp.evaluation.sclite import sclite_speaker, trn_id

logger = logging.getLogger(__name__)

NORMALIZERS = ("whisper_en", "none")
OTHER_LABEL = "<other>"
SPACE_TOKEN = "<space>"
_MAX_KEYS_SHOWN = 5


# --------------------------------------------------------------------------------------------
# Reading and pairing
# --------------------------------------------------------------------------------------------
def read_text(path: str | Path) -> dict[str, str]:
    """Read a Kaldi-style ``<key> <value>`` file into an ordered dict.

    The key is the first whitespace-separated field, the value the rest of the line with outer
    whitespace stripped (it may be empty or contain spaces). Blank lines are ignored.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read as UTF-8 text, or a key occurs twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"text file not found (or not a regular file): {path}")
    try:
        content = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read text file {path}: {e}") from e
    out: dict[str, str] = {}
    for lineno, line in enumerate(content.splitlines(), start=1):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            continue
        key = parts[0]
        value = parts[1] if len(parts) > 1 else ""
        if key in out:
            raise ValueError(f"duplicate key {key!r} in {path} (line {lineno})")
        out[key] = value
    logger.debug("read %d entries from %s", len(out), path)
    return out


def _show(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_MAX_KEYS_SHOWN])
    return shown + (", ..." if len(keys) > _MAX_KEYS_SHOWN else "")


def pair_refs_hyps(
    refs: Mapping[str, str], hyps: Mapping[str, str], allow_missing: bool = False
) -> tuple[list[str], list[str], list[str], int]:
    """Pair references and hypotheses by key, in reference order.

    Returns:
        ``(keys, ref_values, hyp_values, num_missing)``.

    Raises:
        ValueError: no references; hypothesis keys absent from the references; reference keys
            without a hypothesis (unless ``allow_missing``, which scores them as empty).
    """
    if not refs:
        raise ValueError("no references to score")
    extra = [k for k in hyps if k not in refs]
    if extra:
        raise ValueError(f"{len(extra)} hypothesis key(s) not in the references: {_show(extra)}")
    missing = [k for k in refs if k not in hyps]
    if missing:
        msg = f"{len(missing)} of {len(refs)} reference key(s) have no hypothesis: {_show(missing)}"
        if not allow_missing:
            raise ValueError(msg + " (partial decode? use allow_missing to score them as empty)")
        logger.warning("%s; scoring them as empty hypotheses", msg)
    keys = list(refs)
    return keys, [refs[k] for k in keys], [hyps.get(k, "") for k in keys], len(missing)


# --------------------------------------------------------------------------------------------
# ASR
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# sclite-style result.txt
# --------------------------------------------------------------------------------------------
def _fmt_pralign(utt: UttAlignment, unit: str, ident: str) -> list[str]:
    def show(tok: str) -> str:
        return SPACE_TOKEN if unit == "char" and tok == " " else tok

    ref_cols, hyp_cols, eval_cols = [], [], []
    for op, r, h in utt.ops:
        r = show(r) if r is not None else None
        h = show(h) if h is not None else None
        if op != "C":
            r = r.upper() if r is not None else None
            h = h.upper() if h is not None else None
        width = max(len(r or ""), len(h or ""))
        ref_cols.append((r if r is not None else "*" * width).ljust(width))
        hyp_cols.append((h if h is not None else "*" * width).ljust(width))
        eval_cols.append(("" if op == "C" else op).ljust(width))
    return [
        f"id: ({ident})",
        "Scores: (#C #S #D #I) " + " ".join(str(utt.count(op)) for op in "CSDI"),
        ("REF:  " + " ".join(ref_cols)).rstrip(),
        ("HYP:  " + " ".join(hyp_cols)).rstrip(),
        ("Eval: " + " ".join(eval_cols)).rstrip(),
        "",
    ]


def _f1(x: float) -> str:
    """One decimal rounded half away from zero, as SCTK's ``F_ROUND`` does (6.25 -> 6.3; Python's
    own formatting rounds half to even, 6.2)."""
    return f"{math.copysign(math.floor(abs(x) * 10 + 0.5) / 10, x):.1f}"


def format_sclite_result(
    utts: Sequence[UttAlignment],
    title: str = "hyp",
    unit: Literal["word", "char"] = "word",
    utt2spk: Mapping[str, str] | None = None,
) -> str:
    """The text of an sclite-style ``result.txt`` (summary by speaker, then per-utterance alignments).

    Utterance ids are ``<speaker>-<utt>`` with the speaker from ``utt2spk``, as in ESPnet's trn
    files, and speakers are what sclite's ``-i rm`` reads from them (up to the first ``-``), so the
    per-speaker rows are sclite's. The ``# Wrd`` column counts reference tokens (characters when
    ``unit="char"``, as sclite does).
    """
    groups: OrderedDict[str, list[UttAlignment]] = OrderedDict()
    idents = {u.key: trn_id(u.key, utt2spk) for u in utts}
    for u in utts:
        groups.setdefault(sclite_speaker(idents[u.key]), []).append(u)
    per_spk = {spk: _error_counts(us) for spk, us in groups.items()}
    total = _error_counts(utts)
    rate_keys = ("corr_rate", "sub_rate", "del_rate", "ins_rate", "err_rate", "sent_err_rate")

    spk_w = max(7, *(len(s) for s in groups))
    snt_w = max(5, len(str(total["num_utts"])) + 2)  # + 2 for the ".1" of the Mean row
    wrd_w = max(6, len(str(total["num_ref"])) + 2)

    def row(name: str, snt: str, wrd: str, rates: Sequence[str]) -> str:
        return f"| {name:<{spk_w}} | {snt:>{snt_w}} {wrd:>{wrd_w}} | " + " ".join(f"{r:>5}" for r in rates) + " |"

    def count_row(name: str, st: Mapping[str, Any]) -> str:
        return row(name, str(st["num_utts"]), str(st["num_ref"]), [_f1(st[k]) for k in rate_keys])

    header = row("SPKR", "# Snt", "# Wrd", ["Corr", "Sub", "Del", "Ins", "Err", "S.Err"])
    inner = len(header) - 2
    col1 = spk_w + 2
    col2 = snt_w + wrd_w + 3
    col3 = inner - col1 - col2 - 2
    sep = "|" + "-" * col1 + "+" + "-" * col2 + "+" + "-" * col3 + "|"
    dbl = "|" + "=" * inner + "|"
    lines = [
        "SYSTEM SUMMARY PERCENTAGES by SPEAKER".center(inner + 2),
        "",
        "," + "-" * inner + ".",
        "|" + title.center(inner) + "|",
        "|" + "-" * inner + "|",
        header,
        sep,
    ]
    for spk in groups:
        lines += [count_row(spk, per_spk[spk]), sep]
    lines[-1] = dbl
    lines += [count_row("Sum/Avg", total), dbl]
    stats_rows = (("Mean", statistics.fmean), ("S.D.", statistics.pstdev), ("Median", statistics.median))
    for name, fn in stats_rows:
        vals = {k: fn([float(st[k]) for st in per_spk.values()]) for k in ("num_utts", "num_ref", *rate_keys)}
        lines.append(row(name, _f1(vals["num_utts"]), _f1(vals["num_ref"]), [_f1(vals[k]) for k in rate_keys]))
    lines += ["`" + "-" * inner + "'", "", ""]

    for spk, us in groups.items():
        lines += [f"Speaker sentences {list(groups).index(spk):3d}:  {spk}   #utts: {len(us)}"]
        for u in us:
            lines += _fmt_pralign(u, unit, idents[u.key])
    return "\n".join(lines) + "\n"


def write_sclite_result(
    path: str | Path,
    utts: Sequence[UttAlignment],
    title: str = "hyp",
    unit: Literal["word", "char"] = "word",
    utt2spk: Mapping[str, str] | None = None,
) -> None:
    """Write :func:`format_sclite_result` to ``path`` (parent directories are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_sclite_result(utts, title=title, unit=unit, utt2spk=utt2spk), encoding="utf-8")
    logger.debug("wrote %s", path)


# --------------------------------------------------------------------------------------------
# Speech translation
# --------------------------------------------------------------------------------------------
def score_st(refs: Mapping[str, str], hyps: Mapping[str, str], allow_missing: bool = False) -> dict[str, Any]:
    """Corpus BLEU (cased and lower-cased) and chrF with sacrebleu, one reference per segment.

    Returns ``bleu``, ``bleu_lc``, ``chrf``, ``signature`` / ``signature_lc`` / ``signature_chrf``
    (sacrebleu's signature strings), ``bleu_str`` / ``bleu_lc_str`` / ``chrf_str`` (sacrebleu's
    one-line results), ``precisions`` / ``precisions_lc``, ``bp``, ``sys_len``, ``ref_len``,
    ``num_utts`` and ``num_missing``.
    """
    from sacrebleu.metrics import BLEU, CHRF

    _, ref_texts, hyp_texts, num_missing = pair_refs_hyps(refs, hyps, allow_missing)
    ref_streams = [ref_texts]
    bleu, bleu_lc, chrf = BLEU(), BLEU(lowercase=True), CHRF()
    b = bleu.corpus_score(hyp_texts, ref_streams)
    b_lc = bleu_lc.corpus_score(hyp_texts, ref_streams)
    c = chrf.corpus_score(hyp_texts, ref_streams)
    return {
        "bleu": b.score,
        "bleu_lc": b_lc.score,
        "chrf": c.score,
        "signature": str(bleu.get_signature()),
        "signature_lc": str(bleu_lc.get_signature()),
        "signature_chrf": str(chrf.get_signature()),
        "bleu_str": str(b),
        "bleu_lc_str": str(b_lc),
        "chrf_str": str(c),
        "precisions": list(b.precisions),
        "precisions_lc": list(b_lc.precisions),
        "bp": b.bp,
        "sys_len": b.sys_len,
        "ref_len": b.ref_len,
        "num_utts": len(ref_texts),
        "num_missing": num_missing,
    }


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------
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
