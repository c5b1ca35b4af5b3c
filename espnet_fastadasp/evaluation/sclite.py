"""NIST sclite (SCTK) as the WER/CER scorer of record, laid out as ESPnet's ``asr.sh`` does.

For each unit (``score_wer`` for words, ``score_cer`` for characters) a decode dir gets
``ref.trn`` and ``hyp.trn`` (one ``<tokens>\\t(<speaker>-<utt>)`` line per utterance, ESPnet's
format; characters are space-separated with ``<space>`` between words) and ``result.txt``, which
is sclite's own report (``sclite -r ref.trn trn -h hyp.trn trn -i rm -o all stdout``) wherever
sclite is installed, and otherwise this package's report of the same alignment in sclite's layout
(:func:`espnet_fastadasp.evaluation.sclite_report.format_sclite_result`, sclite's edit weights), which
gives the same Sum/Avg line. The texts written are the normalised ones, so both score the same
tokens.

sclite is looked up as ``$SCLITE``, then ``sclite`` on the ``PATH``, then Debian's ``sctk``
package location (``/usr/lib/sctk/bin/sclite``, not on the ``PATH``).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DEBIAN_SCLITE = "/usr/lib/sctk/bin/sclite"
SPACE_TOKEN = "<space>"
_SUM_AVG = re.compile(r"^\s*\|\s*Sum/Avg\s*\|(?P<rest>.*)\|\s*$")
_SUM_COUNTS = re.compile(r"^\s*\|\s*Sum\s*\|(?P<rest>.*)\|\s*$")


def find_sclite() -> str | None:
    """The sclite executable, or None (see the module docstring for the order)."""
    for candidate in (os.environ.get("SCLITE"), shutil.which("sclite"), DEBIAN_SCLITE):
        if candidate and os.access(candidate, os.X_OK) and Path(candidate).is_file():
            return candidate
    return None


def trn_id(key: str, utt2spk: Mapping[str, str] | None) -> str:
    """``<speaker>-<utt>`` as ESPnet writes it (the key alone without a speaker)."""
    spk = utt2spk.get(key) if utt2spk else None
    return f"{spk}-{key}" if spk else key


def sclite_speaker(ident: str) -> str:
    """The speaker sclite's ``-i rm`` reads from an id: everything before the first ``-``."""
    return ident.split("-", 1)[0]


def trn_tokens(text: str, unit: str) -> str:
    """A normalised text as a trn line's tokens: words, or characters with ``<space>``."""
    if unit == "word":
        return " ".join(text.split())
    return " ".join(SPACE_TOKEN if c == " " else c for c in text)


def write_trn(
    path: Path, keys: Sequence[str], texts: Sequence[str], unit: str, utt2spk: Mapping[str, str] | None
) -> None:
    for key, text in zip(keys, texts, strict=True):
        if "(" in text or ")" in text:
            raise ValueError(
                f"{path}: {key!r}: '(' and ')' mark optional words in sclite's trn format; "
                "normalise them away (--normalizer whisper_en)"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(f"{trn_tokens(t, unit)}\t({trn_id(k, utt2spk)})\n" for k, t in zip(keys, texts, strict=True)),
        encoding="utf-8",
    )


def run_sclite(sclite: str, ref_trn: Path, hyp_trn: Path) -> str:
    """sclite's whole report (``-o all stdout``) of ``hyp_trn`` against ``ref_trn``."""
    cmd = [sclite, "-r", str(ref_trn), "trn", "-h", str(hyp_trn), "trn", "-i", "rm", "-o", "all", "stdout"]
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if proc.returncode != 0 or "Sum/Avg" not in proc.stdout:
        raise RuntimeError(f"sclite failed ({' '.join(cmd)}; exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout


@dataclass(frozen=True)
class SumAvg:
    """sclite's Sum/Avg line: sentences, reference tokens, then percentages."""

    snt: int
    wrd: int
    corr: float
    sub: float
    dele: float
    ins: float
    err: float
    s_err: float

    def row(self) -> list[str]:
        """As show_asr_result.sh prints it: ``Snt Wrd Corr Sub Del Ins Err S.Err``."""
        return [str(self.snt), str(self.wrd)] + [
            f"{v:.1f}" for v in (self.corr, self.sub, self.dele, self.ins, self.err, self.s_err)
        ]


def parse_sum_avg(report: str) -> SumAvg:
    """The Sum/Avg line of a result.txt (sclite's or ours)."""
    for line in report.splitlines():
        m = _SUM_AVG.match(line)
        if m:
            values = m["rest"].replace("|", " ").split()
            return SumAvg(int(values[0]), int(values[1]), *(float(v) for v in values[2:8]))
    raise ValueError("no Sum/Avg line in the sclite report")


def parse_sum_counts(report: str) -> dict[str, int] | None:
    """The counts of sclite's second summary (``| Sum | snt wrd corr sub del ins err s.err |``)."""
    for line in report.splitlines():
        m = _SUM_COUNTS.match(line)
        if m:
            v = [int(x) for x in m["rest"].replace("|", " ").split()]
            names = ("num_utts", "num_ref", "hits", "sub", "del", "ins", "errors", "num_sent_err")
            return dict(zip(names, v, strict=True))
    return None
