"""Speech translation scoring: corpus BLEU and chrF with sacrebleu.

Apart from ASR scoring because it shares nothing with it but the key matching
(:mod:`~espnet_fastadasp.evaluation.pairing`): sacrebleu does the tokenisation and the counting.

Corpus BLEU from ``sacrebleu`` with its default 13a tokenisation, once cased (``bleu``) and
once with ``lowercase=True`` (``bleu_lc``), and chrF (``chrf``, sacrebleu defaults: chrF2,
character 6-grams, no word n-grams). No other normalisation. sacrebleu's signature strings are
returned so that the numbers can be reproduced.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from espnet_fastadasp.evaluation.pairing import pair_refs_hyps


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
