#!/usr/bin/env python3
"""Markdown for RESULTS.md from select_layer's te.json files (one per task, with --validate_dir).

python3 local/te_summary.py exp/.../te_validation/{lang,gender,rate,nspk}/te.json > te_validation.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def summary(results: dict[str, dict]) -> str:
    targets = sorted({r.get("flops_reduction") or r.get("ratio") for r in results.values()})
    amount = ", ".join(f"{100 * t:.0f} %" for t in targets)
    lines = [
        f"## Transfer Entropy layer selection, validated at {amount} FLOPs reduction",
        "",
        "Per sparse task: TE on the dev set (calibration), and test accuracy with the sparse reduction "
        "(FastAdaSP, schedule once) at that layer and that reduction; lower TE should mean higher accuracy, so a good "
        "estimator gives a negative Spearman correlation.",
        "",
        "| task | chosen layer (lowest TE) | its accuracy % | best layer | best accuracy % | within 1 point | "
        "Spearman(TE, accuracy) |",
        "|---|---|---|---|---|---|---|",
    ]
    for task, r in results.items():
        v = r["validation"]
        if "error" in v:
            lines.append(f"| {task} | {r['chosen_layer']} | {v['error']} | - | - | - | - |")
            continue
        rho = v["spearman_te_vs_accuracy"]
        within = {None: "not validated", True: "yes", False: "no"}[v["chosen_within_1_point"]]
        lines.append(
            f"| {task} | {r['chosen_layer']} | {fmt(v['chosen_accuracy'], '.1f')} | {v['best_layer']} | "
            f"{v['best_accuracy']:.1f} | {within} | {fmt(rho, '.2f', 'undefined')} |"
        )
    layers = sorted({row["layer"] for r in results.values() for row in r["layers"]})
    lines += [
        "",
        "TE (and accuracy %) per candidate layer; '-': some test utterance cannot reach the target "
        "with the reduction at that layer, so that layer is not compared:",
        "",
    ]
    lines.append("| task | " + " | ".join(f"layer {x}" for x in layers) + " |")
    lines.append("|---" * (len(layers) + 1) + "|")
    for task, r in results.items():
        by_layer = {row["layer"]: row for row in r["layers"]}
        cells = [
            f"{by_layer[x]['te']:.3f} ({fmt(by_layer[x].get('accuracy'), '.0f')})" if x in by_layer else "-"
            for x in layers
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    cost = sum(r["seconds"] for r in results.values())
    n = {r["num_utts"] for r in results.values()}
    lines += [
        "",
        f"Calibration utterances per task: {', '.join(map(str, sorted(n)))}; "
        f"total time of the selections and validations: {cost / 60:.1f} CPU-job minutes.",
    ]
    return "\n".join(lines) + "\n"


def main(paths: list[str]) -> None:
    if not paths:
        sys.exit("usage: te_summary.py TE_JSON [TE_JSON ...]")
    results = {}
    for p in paths:
        r = json.loads(Path(p).read_text())
        if "validation" not in r:
            sys.exit(f"te_summary.py: {p} has no validation (run select_layer with --validate_dir)")
        results[Path(p).parent.name] = r
    sys.stdout.write(summary(results))


if __name__ == "__main__":
    main(sys.argv[1:])
