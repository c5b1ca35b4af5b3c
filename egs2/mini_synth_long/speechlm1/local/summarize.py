#!/usr/bin/env python3
"""RESULTS.md's bootstrap tables and verdict for the long-speech testbed, from the decode dirs.

    python3 local/summarize.py --exp_dir exp/tiny_qwen2_audio_long --data_dir data --targets "0.1 0.3 0.5" >> RESULTS.md

Every figure is recomputed per utterance from ``<decode dir>/text`` and ``data/<set>/text`` (WER:
word errors over reference words, whisper_en normalisation as stage 5; accuracy: the label found
in the answer), with a 95 % percentile bootstrap interval over the test utterances (1,000
resamples, seed 0). Differences between two settings are paired (the same resampled utterances),
and a difference counts only where its interval excludes 0. The questions and bars are fixed here,
before any trained model was decoded, and nothing is tuned to the method:

1. the model: ASR WER <= 15 %, long-form WER <= 25 % (``--bars``), and at least two sparse tasks in
   70-95 % without reduction (not saturated) with every sparse task decoded above chance;
2. dense: FastAdaSP constant and decay against no reduction, against FastAdaSP once and against
   every baseline decoded (the methods not named fastadasp), on asr and lasr, at each target;
3. sparse: FastAdaSP once (the Transfer Entropy layer) against no reduction, against the dense
   schedules and against every baseline decoded, on each sparse task, at each target.

The real-weights testbed (``../slam1``) runs this script with its own bars (``--bars asr_test=10``)
and sparse sets (``--sparse "keyword_test prosody_test"``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from espnet_fastadasp.evaluation.bootstrap import Interval, bootstrap_ratio, paired_bootstrap_delta
from espnet_fastadasp.evaluation.per_utterance import utterance_scores
from espnet_fastadasp.recipes.synth_long import TASKS

DENSE = ("asr_test", "lasr_test")
SPARSE = ("spkid_test", "samespk_test", "prosody_test", "keyword_test")
BARS = {"asr_test": 15.0, "lasr_test": 25.0}  # the default --bars
NOT_SATURATED = (70.0, 95.0)


def per_utt(exp_dir: Path, data_dir: Path, tag: str, dset: str) -> tuple[list[float], list[float]] | None:
    """(numerators, denominators) per utterance, in the reference's key order; None if not decoded."""
    method, _, target = tag.partition("@")
    for name in (tag, f"{method}_constant@{target}"):
        hyp_file = exp_dir / f"decode_{name}" / dset / "text"
        if hyp_file.is_file():
            break
    else:
        return None
    return utterance_scores(data_dir / dset / "text", hyp_file, TASKS[dset.rsplit("_", 1)[0]]["labels"])


def cell(iv: Interval | None) -> str:
    return "-" if iv is None else iv.format()


def summarize(
    exp_dir: Path,
    data_dir: Path,
    targets: Sequence[str],
    methods: Sequence[str],
    wer_bars: dict[str, float] | None = None,
    sparse: Sequence[str] = SPARSE,
) -> str:
    wer_bars = BARS if wer_bars is None else wer_bars
    sparse = [d for d in sparse if (data_dir / d / "text").is_file()]
    sets = [d for d in DENSE if (data_dir / d / "text").is_file()] + sparse
    baselines = [m for m in methods if not m.startswith("fastadasp")]
    tags = ["none"] + [f"{m}@{t}" for t in targets for m in methods]
    scores = {(tag, d): per_utt(exp_dir, data_dir, tag, d) for tag in tags for d in sets}
    ivs = {k: (bootstrap_ratio(*v) if v is not None else None) for k, v in scores.items()}

    def delta(a: str, b: str, d: str) -> Interval | None:
        x, y = scores.get((a, d)), scores.get((b, d))
        if x is None or y is None or len(x[0]) != len(y[0]):
            return None
        return paired_bootstrap_delta(x[0], y[0], x[1])

    out = ["## Bootstrap intervals (local/summarize.py)", ""]
    n = {d: (ivs[("none", d)].num_utts if ivs.get(("none", d)) else 0) for d in sets}
    out.append(
        "WER (asr, lasr) or accuracy (the sparse tasks) in %, with a 95 % bootstrap interval over the "
        "test utterances (" + ", ".join(f"{d.split('_')[0]} {n[d]}" for d in sets) + " utterances decoded)."
    )
    out += ["", "| setting | " + " | ".join(d.split("_")[0] for d in sets) + " |", "|---" * (len(sets) + 1) + "|"]
    for tag in tags:
        if any(ivs.get((tag, d)) for d in sets):
            out.append(f"| {tag} | " + " | ".join(cell(ivs.get((tag, d))) for d in sets) + " |")

    out += ["", "## Verdict (local/summarize.py)", ""]
    base = {d: ivs.get(("none", d)) for d in sets}
    model_rows = []
    bars: list[bool | None] = []
    for d, bar in wer_bars.items():
        iv = base.get(d)
        ok = None if iv is None else iv.value <= bar
        model_rows.append(f"| without reduction: {d.split('_')[0]} WER <= {bar:g} % | {cell(iv)} | {yes(ok)} |")
        bars.append(ok)
    in_band = [d for d in sparse if base.get(d) and NOT_SATURATED[0] <= base[d].value <= NOT_SATURATED[1]]
    chance = {d: 100.0 / len(TASKS[d.rsplit("_", 1)[0]]["labels"]) for d in sparse}
    above = [d for d in sparse if base.get(d) and base[d].low > chance[d]]
    missing = [d for d in sparse if base.get(d) is None]
    ok = None if missing or len(sparse) < 2 else len(in_band) >= 2 and len(above) == len(sparse)
    model_rows.append(
        f"| at least two sparse tasks in {NOT_SATURATED[0]:g}-{NOT_SATURATED[1]:g} %, all above chance | "
        + ", ".join(f"{d.split('_')[0]} {cell(base.get(d))} (chance {chance[d]:.0f})" for d in sparse)
        + f" | {yes(ok)} |"
    )
    bars.append(ok)
    out += ["| question | numbers | answer |", "|---|---|---|", *model_rows]
    out += [
        "",
        "Differences below are paired bootstrap intervals of (setting - reference) on the same utterances; "
        "'better' or 'worse' only where the interval excludes 0. For WER lower is better, for accuracy higher. "
        "Comparisons with a setting that was not decoded are left out.",
        "",
        "| test set | target | comparison | difference [95 % CI] | reading |",
        "|---|---|---|---|---|",
    ]
    for t in targets:
        for d in DENSE:
            if d not in sets:
                continue
            for m in ("fastadasp_constant", "fastadasp_decay"):
                out.append(row(d, t, f"{m} - none", delta("none", f"{m}@{t}", d), lower_is_better=True))
                for b in ("fastadasp_once", *baselines):
                    if b in methods:
                        out.append(row(d, t, f"{m} - {b}", delta(f"{b}@{t}", f"{m}@{t}", d), lower_is_better=True))
        for d in sparse:
            out.append(row(d, t, "fastadasp_once - none", delta("none", f"fastadasp_once@{t}", d), False))
            for b in ("fastadasp_constant", "fastadasp_decay", *baselines):
                if b in methods:
                    out.append(row(d, t, f"fastadasp_once - {b}", delta(f"{b}@{t}", f"fastadasp_once@{t}", d), False))
    out = [line for line in out if line is not None]
    if False in bars:
        note = (
            "**The model misses its bars**: the comparisons measure the method on a model that is not the one "
            "the testbed asks for."
        )
    elif None in bars:
        note = "Not every bar could be checked (sets not decoded)."
    else:
        note = "The model meets its bars."
    out += ["", note, ""]
    return "\n".join(out)


def row(d: str, t: str, what: str, iv: Interval | None, lower_is_better: bool) -> str | None:
    if iv is None:
        return None
    if iv.low <= 0 <= iv.high:
        reading = "no clear difference"
    else:
        reading = "better" if (iv.high < 0) == lower_is_better else "worse"
    return f"| {d.split('_')[0]} | {float(t):.0%} | {what} | {cell(iv)} | {reading} |"


def yes(ok: bool | None) -> str:
    return "n/a (not decoded)" if ok is None else ("**yes**" if ok else "**no**")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", type=Path, required=True)
    p.add_argument("--data_dir", type=Path, default=Path("data"))
    p.add_argument("--targets", default="0.1 0.3 0.5")
    p.add_argument(
        "--methods",
        default="fastadasp_constant fastadasp_decay fastadasp_once merge_avg random_merge atome fastv random_evict h2o",
        help="settings shown in the table (those not decoded are left out)",
    )
    p.add_argument("--bars", default=",".join(f"{d}={b:g}" for d, b in BARS.items()),
                   help="WER bars without reduction: set=percent,... (default: %(default)s)")
    p.add_argument("--sparse", default=" ".join(SPARSE), help="the sparse test sets (default: %(default)s)")
    args = p.parse_args()
    bars = {}
    for item in args.bars.split(","):
        name, sep, value = item.partition("=")
        if not sep:
            p.error(f"--bars: {item!r} is not set=percent")
        bars[name] = float(value)
    print(summarize(args.exp_dir, args.data_dir, args.targets.split(), args.methods.split(), bars, args.sparse.split()))


if __name__ == "__main__":
    main()
