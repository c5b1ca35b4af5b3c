#!/usr/bin/env python3
"""The mini benchmark's verdict, as markdown for RESULTS.md, read from the scores of stage 5.

    python3 local/check_bars.py --exp_dir exp/tiny_qwen2_audio >> RESULTS.md

It answers the benchmark's questions with the numbers, whatever they are:
1. the model: without reduction, ASR WER <= 10 % and every sparse task >= 90 % accuracy?
2. FastAdaSP constant within 2 absolute WER of no reduction at 30 %?
3. FastAdaSP constant clearly better than FastV and random evict at 40 and 50 % (lower WER by more
   than 2 absolute, our reading of "clearly")?
4. the sparse strategy (FastAdaSP once, at the Transfer Entropy layer) within 2 points of no
   reduction at 50 %, per sparse task?
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DENSE = "asr_test"
SPARSE = ("lang_test", "gender_test", "rate_test", "nspk_test")


def metric(exp_dir: Path, tag: str, dset: str) -> float | None:
    """WER or accuracy of one setting; ``fastv@0.4`` also finds the tag ``fastv_constant@0.4``."""
    method, _, target = tag.partition("@")
    for name in (tag, f"{method}_constant@{target}"):
        path = exp_dir / f"decode_{name}" / dset / "score" / "score.json"
        if path.is_file():
            m = json.loads(path.read_text())["metrics"]
            return m["wer"] if "wer" in m else m["accuracy"]
    return None


def yes(ok: bool | None) -> str:
    return "n/a (not decoded)" if ok is None else ("**yes**" if ok else "**no**")


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def verdict(exp_dir: Path) -> str:
    wer0 = metric(exp_dir, "none", DENSE)
    acc0 = {d: metric(exp_dir, "none", d) for d in SPARSE}
    lines = ["## Verdict (local/check_bars.py)", ""]
    lines += ["| question | numbers | answer |", "|---|---|---|"]
    ok_model = None if wer0 is None or None in acc0.values() else wer0 <= 10 and all(a >= 90 for a in acc0.values())
    lines.append(
        "| without reduction: ASR WER <= 10 %, every sparse task >= 90 % | WER "
        + fmt(wer0)
        + "; "
        + ", ".join(f"{d.split('_')[0]} {fmt(a)}" for d, a in acc0.items())
        + f" | {yes(ok_model)} |"
    )
    c30 = metric(exp_dir, "fastadasp_constant@0.3", DENSE)
    ok = None if c30 is None or wer0 is None else c30 - wer0 <= 2
    lines.append(f"| FastAdaSP constant within 2 WER of none at 30 % | {fmt(c30)} vs {fmt(wer0)} | {yes(ok)} |")
    for target in ("0.4", "0.5"):
        c = metric(exp_dir, f"fastadasp_constant@{target}", DENSE)
        for base in ("fastv", "random_evict"):
            b = metric(exp_dir, f"{base}@{target}", DENSE)
            ok = None if c is None or b is None else b - c > 2
            lines.append(
                f"| FastAdaSP constant clearly (> 2 WER) better than {base} at {float(target):.0%} | "
                f"{fmt(c)} vs {fmt(b)} | {yes(ok)} |"
            )
    for d in SPARSE:
        s50 = metric(exp_dir, "fastadasp_once@0.5", d)
        ok = None if s50 is None or acc0[d] is None else acc0[d] - s50 <= 2
        lines.append(
            f"| sparse (once) within 2 points of none at 50 %: {d.split('_')[0]} | {fmt(s50)} vs {fmt(acc0[d])} | "
            f"{yes(ok)} |"
        )
    lines += [
        "",
        "WER and accuracy in %, on the committed test sets. Where the model itself misses its bar "
        "(first row), the rows about that task measure the method on a weak model, not on the one the "
        "benchmark asks for.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp_dir", type=Path, required=True)
    args = parser.parse_args()
    print(verdict(args.exp_dir), end="")


if __name__ == "__main__":
    main()
