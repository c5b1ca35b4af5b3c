"""Score a decode against references: ASR (WER/CER), ST (BLEU/chrF) or classification (accuracy/UAR).

    python -m espnet_fastadasp.bin.score --task asr --ref data/test/text \\
        --hyp exp/.../1best_recog/text --output_dir exp/.../score [--normalizer whisper_en|none]
    python -m espnet_fastadasp.bin.score --task st  --ref ... --hyp ... --output_dir ...
    python -m espnet_fastadasp.bin.score --task cls --ref ... --hyp ... --output_dir ... [--labels happy,sad]

Both files are Kaldi-style ``<key> <text>``. Every reference needs a hypothesis unless
--allow_missing (missing ones are then scored as empty); a hypothesis key that is not a reference
key is always an error. Writes ``output_dir/score.json``::

    {"task": ..., "metrics": {...}, "details": {...}, "num_utts": N}

with metrics ``wer``, ``cer`` (asr), ``bleu``, ``bleu_lc``, ``chrf`` (st) or ``accuracy``, ``uar``
(cls), all in percent, and for asr the sclite-style ``result.txt`` (words) and ``result_cer.txt``
(characters). See :mod:`espnet_fastadasp.evaluation.scoring` for the metrics and normalisation.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from espnet_fastadasp.evaluation import scoring

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
) -> dict[str, Any]:
    """Score ``hyp`` against ``ref`` for ``task``, write the outputs to ``output_dir``, return score.json's dict."""
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
        alignment = scoring.align_asr(refs, hyps, normalizer=normalizer, allow_missing=allow_missing)
        details = scoring.summarize_asr(alignment)
        title = str(hyp)
        scoring.write_sclite_result(output_dir / "result.txt", alignment.word, title=title, unit="word")
        scoring.write_sclite_result(output_dir / "result_cer.txt", alignment.char, title=title, unit="char")
        summary = (
            f"WER {details['wer']:.2f}% CER {details['cer']:.2f}% SER {details['ser']:.2f}% "
            f"({details['num_words']} words, normalizer={normalizer})"
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
    out = output_dir / "score.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    missing = f", {details['num_missing']} missing" if details["num_missing"] else ""
    logger.info("%s: %s on %d utts%s -> %s", task, summary, result["num_utts"], missing, out)
    return result


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, choices=TASKS, help="asr: WER/CER, st: BLEU/chrF, cls: accuracy/UAR")
    parser.add_argument("--ref", required=True, type=Path, help="reference Kaldi-style text file")
    parser.add_argument("--hyp", required=True, type=Path, help="hypothesis Kaldi-style text file")
    parser.add_argument("--output_dir", required=True, type=Path, help="where score.json (and result*.txt) go")
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
