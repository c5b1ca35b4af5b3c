"""Score a decode against references: ASR (WER/CER), ST (BLEU/chrF) or classification (accuracy/UAR).

    python -m espnet_fastadasp.bin.score --task asr --ref data/test/text \\
        --hyp exp/.../decode_none/test/text --output_dir exp/.../decode_none/test [--normalizer whisper_en|none]
    python -m espnet_fastadasp.bin.score --task st  --ref ... --hyp ... --output_dir ...
    python -m espnet_fastadasp.bin.score --task cls --ref ... --hyp ... --output_dir ... [--labels happy,sad]

Both files are Kaldi-style ``<key> <text>``. Every reference needs a hypothesis unless
--allow_missing (missing ones are then scored as empty); a hypothesis key that is not a reference
key is always an error. ``--output_dir`` is the decode dir; it gets ``score/score.json``::

    {"task": ..., "metrics": {...}, "details": {...}, "num_utts": N}

with metrics ``wer``, ``cer`` (asr), ``bleu``, ``bleu_lc``, ``chrf`` (st) or ``accuracy``, ``uar``
(cls), all in percent, and for asr ESPnet's ``score_wer/`` and ``score_cer/`` (``ref.trn``,
``hyp.trn``, ``result.txt``): sclite's report where sclite is installed, the scorer of record then
(:mod:`espnet_fastadasp.evaluation.sclite`), else ours in its layout. Speakers come from
``--utt2spk`` (default: the ``utt2spk`` beside ``--ref``). See
:mod:`espnet_fastadasp.evaluation.scoring` for the metrics and normalisation.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from espnet_fastadasp.evaluation import sclite, scoring

logger = logging.getLogger("espnet_fastadasp.score")

TASKS = ("asr", "st", "cls")
MAIN_METRICS = {"asr": ("wer", "cer"), "st": ("bleu", "bleu_lc", "chrf"), "cls": ("accuracy", "uar")}


def score(
    task: str,
    ref: str | Path,
    hyp: str | Path,
    output_dir: str | Path,
    normalizer: str = "whisper_en",
    labels: Sequence[str] | None = None,
    allow_missing: bool = False,
    utt2spk: str | Path | None = None,
    scorer: str = "auto",
) -> dict[str, Any]:
    """Score ``hyp`` against ``ref`` for ``task``, write the outputs under the decode dir ``output_dir``,
    return score.json's dict."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if labels is not None and task != "cls":
        logger.warning("--labels is only used by --task cls; ignored for %s", task)
    refs = scoring.read_text(ref)
    hyps = scoring.read_text(hyp)
    logger.info("scoring %s: %d references (%s), %d hypotheses (%s)", task, len(refs), ref, len(hyps), hyp)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    if task == "asr":
        pairs = scoring.normalize_pairs(refs, hyps, normalizer=normalizer, allow_missing=allow_missing)
        spk_file = Path(utt2spk) if utt2spk is not None else Path(ref).parent / "utt2spk"
        speakers = scoring.read_text(spk_file) if spk_file.is_file() else None
        details = write_asr_score_dirs(output_dir, pairs, speakers, scorer)
        summary = (
            f"WER {details['wer']:.2f}% CER {details['cer']:.2f}% SER {details['ser']:.2f}% "
            f"({details['num_words']} words, normalizer={normalizer}, scorer {details['scorer']})"
        )
    elif task == "st":
        details = scoring.score_st(refs, hyps, allow_missing=allow_missing)
        summary = f"BLEU {details['bleu']:.2f} BLEU(lc) {details['bleu_lc']:.2f} chrF {details['chrf']:.2f}"
    else:
        details = scoring.score_classification(refs, hyps, labels=labels, allow_missing=allow_missing)
        summary = f"accuracy {details['accuracy']:.2f}% UAR {details['uar']:.2f}% ({details['num_other']} <other>)"

    details = {"ref": str(ref), "hyp": str(hyp), **details}
    result = {
        "task": task,
        "metrics": {k: details[k] for k in MAIN_METRICS[task]},
        "details": details,
        "num_utts": details["num_utts"],
    }
    out = output_dir / "score" / "score.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    missing = f", {details['num_missing']} missing" if details["num_missing"] else ""
    logger.info("%s: %s on %d utts%s -> %s", task, summary, result["num_utts"], missing, out)
    return result


def write_asr_score_dirs(
    decode_dir: Path, pairs: scoring.NormalizedPairs, utt2spk: dict[str, str] | None, scorer: str
) -> dict[str, Any]:
    """``score_wer/`` and ``score_cer/`` as ESPnet's asr.sh writes them; returns score.json's details.

    With sclite, its counts are the result and the builtin aligner does not run (it is pure Python:
    on long-form character scoring it costs far more than sclite)."""
    path = sclite.find_sclite() if scorer in ("auto", "sclite") else None
    if scorer == "sclite" and path is None:
        raise RuntimeError(
            "--scorer sclite: sclite not found ($SCLITE, PATH, /usr/lib/sctk/bin/sclite; Debian: apt-get install sctk)"
        )
    alignment = None if path else scoring.align_pairs(pairs)
    counts: dict[str, dict[str, Any]] = {}
    for unit, name in (("word", "score_wer"), ("char", "score_cer")):
        d = decode_dir / name
        sclite.write_trn(d / "ref.trn", pairs.keys, pairs.ref_norm, unit, utt2spk)
        sclite.write_trn(d / "hyp.trn", pairs.keys, pairs.hyp_norm, unit, utt2spk)
        if alignment is not None:
            utts = alignment.word if unit == "word" else alignment.char
            scoring.write_sclite_result(d / "result.txt", utts, title="hyp.trn", unit=unit, utt2spk=utt2spk)
            continue
        report = sclite.run_sclite(path, d / "ref.trn", d / "hyp.trn")
        (d / "result.txt").write_text(report, encoding="utf-8")
        total = sclite.parse_sum_counts(report)
        if total is None:
            raise RuntimeError(f"{d / 'result.txt'}: no counts summary in sclite's report")
        counts[unit] = scoring.error_rates(
            total["num_utts"],
            total["num_ref"],
            total["hits"],
            total["sub"],
            total["del"],
            total["ins"],
            total["num_sent_err"],
        )
    if alignment is not None:
        return {**scoring.summarize_asr(alignment), "scorer": "builtin (sclite's weights and layout)"}
    return {**scoring.asr_details(pairs, counts["word"], counts["char"]), "scorer": f"sclite ({path})"}


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=TASKS, help="asr: WER/CER, st: BLEU/chrF, cls: accuracy/UAR")
    parser.add_argument("--ref", required=True, type=Path, help="reference Kaldi-style text file")
    parser.add_argument("--hyp", required=True, type=Path, help="hypothesis Kaldi-style text file")
    parser.add_argument(
        "--output_dir",
        required=True,
        type=Path,
        help="the decode dir: score/score.json and, for asr, score_wer/ and score_cer/ go there",
    )
    parser.add_argument("--utt2spk", default=None, type=Path, help="asr: speakers (default: utt2spk beside --ref)")
    parser.add_argument(
        "--scorer",
        default="auto",
        choices=("auto", "sclite", "builtin"),
        help="asr: sclite where installed (auto), sclite or fail, or the builtin scorer",
    )
    parser.add_argument(
        "--normalizer", default="whisper_en", choices=scoring.NORMALIZERS, help="ASR text normalisation"
    )
    parser.add_argument(
        "--labels",
        default=None,
        type=lambda s: [x for x in s.split(",") if x.strip()],
        help="cls: comma-separated label set (default: the labels seen in the references)",
    )
    parser.add_argument("--allow_missing", action="store_true", help="score references without a hypothesis as empty")
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(cmd: Sequence[str] | None = None) -> dict[str, Any]:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    kwargs = vars(args)
    kwargs.pop("log_level")
    return score(**kwargs)


if __name__ == "__main__":
    main()
