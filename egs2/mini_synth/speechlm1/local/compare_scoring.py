#!/usr/bin/env python3
"""Scores from the last W query rows against scores from all rows, with paired bootstrap intervals.

    python3 local/compare_scoring.py --exp_dir exp/tiny_qwen2_audio --data_dir data --window 8 > RESULTS_scoring_window.md

For each method that reads attention, test set and FLOPs target decoded by ``./run.sh`` (all rows,
the paper's weights) and by ``local/compare_scoring.sh`` (``METHOD-wW@TARGET``): both figures with
95 % bootstrap intervals over the test utterances, and the paired difference (window - all rows)
on the same resampled utterances (1,000 resamples, seed 0). A difference counts only where its
interval excludes 0. WER: lower is better; accuracy: higher.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from espnet_fastadasp.evaluation.bootstrap import bootstrap_ratio, paired_bootstrap_delta
from espnet_fastadasp.evaluation.per_utterance import utterance_scores
from espnet_fastadasp.recipes.synth import TASKS

METHODS = ("fastadasp_constant", "fastadasp_decay", "fastadasp_once", "fastv_constant", "h2o_constant")
TARGETS = ("0.1", "0.2", "0.3", "0.4", "0.5")
TEST_SETS = ("asr_test", "lang_test", "gender_test", "rate_test", "nspk_test")


def reading(low: float, high: float, lower_is_better: bool) -> str:
    if low <= 0.0 <= high:
        return "no difference"
    better = (high < 0.0) == lower_is_better
    return "window better" if better else "window worse"


def compare(exp_dir: Path, data_dir: Path, window: int) -> str:
    lines = [
        f"## Scores from the last {window} query rows vs all rows (local/compare_scoring.py)",
        "",
        "WER (asr) or accuracy (the other sets) in %, with 95 % bootstrap intervals over the test utterances; "
        "window - all: paired bootstrap difference on the same utterances. 'no difference' where its interval "
        "includes 0.",
        "",
        "| test set | setting | all rows | window | window - all [95 % CI] | reading |",
        "|---|---|---|---|---|---|",
    ]
    counts = {"no difference": 0, "window better": 0, "window worse": 0}
    for dset in TEST_SETS:
        ref = data_dir / dset / "text"
        if not ref.is_file():
            continue
        labels = TASKS[dset.rsplit("_", 1)[0]]["labels"]
        for method in METHODS:
            for target in TARGETS:
                hyps = [exp_dir / f"decode_{tag}" / dset / "text" for tag in (f"{method}@{target}", f"{method}-w{window}@{target}")]
                if not all(h.is_file() for h in hyps):
                    continue
                (a, den), (b, _) = (utterance_scores(ref, h, labels) for h in hyps)
                delta = paired_bootstrap_delta(a, b, den)
                verdict = reading(delta.low, delta.high, lower_is_better=labels is None)
                counts[verdict] += 1
                lines.append(
                    f"| {dset} | {method}@{target} | {bootstrap_ratio(a, den).format()} | "
                    f"{bootstrap_ratio(b, den).format()} | {delta.format()} | {verdict} |"
                )
    total = sum(counts.values())
    lines += ["", f"Of {total} comparisons: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp_dir", type=Path, default=Path("exp/tiny_qwen2_audio"))
    parser.add_argument("--data_dir", type=Path, default=Path("data"))
    parser.add_argument("--window", type=int, default=8)
    args = parser.parse_args()
    print(compare(args.exp_dir, args.data_dir, args.window), end="")


if __name__ == "__main__":
    main()
