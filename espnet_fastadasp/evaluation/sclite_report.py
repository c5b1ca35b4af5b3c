"""sclite's ``result.txt`` layout, written from this package's own alignment.

Where sclite is not installed, the recipes still get a ``result.txt`` that reads like sclite's
(and gives the same Sum/Avg line), so this report of an alignment of
:mod:`~espnet_fastadasp.evaluation.wer` has a module of its own.

:func:`write_sclite_result` writes an sclite-style ``result.txt``: the summary table by speaker
(``Corr Sub Del Ins Err S.Err`` in percent of reference tokens / sentences, 1 decimal), then
for each utterance ``id:``, ``Scores: (#C #S #D #I)`` and ``REF:``/``HYP:``/``Eval:`` lines
in which errors are upper-cased and a missing token is shown as asterisks, as sclite's
``pralign`` report does.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from espnet_fastadasp.evaluation.sclite import sclite_speaker, trn_id
from espnet_fastadasp.evaluation.wer import UttAlignment, _error_counts

#: the name these messages had before scoring.py was split (log formats show it)
logger = logging.getLogger("espnet_fastadasp.evaluation.scoring")

SPACE_TOKEN = "<space>"


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
