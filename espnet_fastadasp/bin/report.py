"""Collect the scores and costs of a recipe's decode dirs into RESULTS.md and a trade-off plot.

    python -m espnet_fastadasp.bin.report --exp_dir exp/Qwen2-Audio-7B-Instruct --task asr \\
        --test_sets "test_clean test_other" --output RESULTS.md --plot exp/.../tradeoff.png

Reads ``<exp_dir>/decode_<setting>/<test_set>/score/score.json`` (from ``bin/score.py``) and the
per-utterance ``cost`` lines beside the merged ``text`` (from ``bin/inference.py``). The achieved
FLOPs reduction of a setting is counted over the whole test set, ``1 - sum(reduced) / sum(full)``,
from the real per-layer token counts; the KV reduction is the mean over utterances.

For ASR it appends the WER/CER tables exactly as ESPnet's ``show_asr_result.sh`` prints them from
the ``score_wer/`` and ``score_cer/`` result.txt files (rows ``decode_<setting>/<test_set>``, the
Sum/Avg line's fields), so both read the same numbers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from espnet_fastadasp.evaluation.environment import environment

logger = logging.getLogger("espnet_fastadasp.report")

MAIN_METRIC = {"asr": "wer", "st": "bleu", "cls": "accuracy"}
COLUMNS = {"asr": ("wer", "cer"), "st": ("bleu", "bleu_lc"), "cls": ("accuracy", "uar")}
LOWER_IS_BETTER = {"wer", "cer"}


@dataclass
class Cell:
    task: str
    metrics: dict[str, float]
    flops_reduction: float | None
    kv_reduction: float | None
    num_utts: int


@dataclass
class Row:
    tag: str
    family: str
    amount: float
    cells: dict[str, Cell] = field(default_factory=dict)


def split_tag(tag: str) -> tuple[str, float]:
    """``fastadasp_constant@0.3`` -> (``fastadasp_constant``, 0.3); ``none`` -> (``none``, 0)."""
    for sep in ("@", "%"):
        if sep in tag:
            family, _, amount = tag.partition(sep)
            try:
                return family + ("" if sep == "@" else "%"), float(amount)
            except ValueError:
                break
    return tag, 0.0


def read_cost(path: Path) -> tuple[float | None, float | None]:
    full = reduced = 0
    kv = []
    if not path.is_file():
        return None, None
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        cost = json.loads(line.split(" ", 1)[1])
        if "flops_full" in cost:
            full += cost["flops_full"]
            reduced += cost["flops_reduced"]
            kv.append(cost.get("kv_reduction", 0.0))
    if not full:
        return None, None
    return 1 - reduced / full, sum(kv) / len(kv)


def collect(exp_dir: Path, test_sets: Sequence[str], default_task: str) -> list[Row]:
    rows: dict[str, Row] = {}
    for decode_dir in sorted(exp_dir.glob("decode_*")):
        tag = decode_dir.name[len("decode_") :]
        for dset in test_sets:
            score = decode_dir / dset / "score" / "score.json"
            if not score.is_file():
                continue
            data = json.loads(score.read_text())
            flops, kv = read_cost(decode_dir / dset / "cost")
            family, amount = split_tag(tag)
            row = rows.setdefault(tag, Row(tag, family, amount))
            row.cells[dset] = Cell(data.get("task", default_task), data["metrics"], flops, kv, data.get("num_utts", 0))
    return sorted(rows.values(), key=lambda r: (r.family != "none", r.family, r.amount))


def environment_lines(model: str | None) -> list[str]:
    env = environment()
    device = env["device_name"] if env["device"].startswith("cuda") else f"CPU ({env['device_name']})"
    return [
        f"- date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- espnet_fastadasp {env['espnet_fastadasp']}, python {env['python']}, "
        f"torch {env['torch']}, transformers {env['transformers']}",
        f"- device: {device}; host: {env['host']}",
        f"- model: {model or 'n/a'}",
    ]


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if pct else f"{value:.2f}"


def set_task(rows: list[Row], dset: str, default: str) -> str:
    """The task a test set was scored as (score.json), else the default."""
    return next((r.cells[dset].task for r in rows if dset in r.cells), default)


def markdown(rows: list[Row], task: str, test_sets: Sequence[str], model: str | None, title: str) -> str:
    lines = [f"# {title}", "", "## Environment", *environment_lines(model), ""]
    lines += [
        "Rows: reduction settings (`METHOD_SCHEDULE@TARGET`: prefill FLOPs reduction target). "
        "FLOPs red. %: achieved prefill FLOPs reduction of the LLM decoder counted from the real per-layer "
        "token counts over the test set; KV red. %: mean reduction of KV-cache entries.",
        "",
    ]
    for dset in test_sets:
        cols = COLUMNS[set_task(rows, dset, task)]
        lines += [f"## {dset}", ""]
        header = ["setting", *cols, "FLOPs red. %", "KV red. %", "utts"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            cell = row.cells.get(dset)
            if cell is None:
                continue
            vals = [_fmt(cell.metrics.get(c)) for c in cols]
            lines.append(
                "| "
                + " | ".join(
                    [
                        row.tag,
                        *vals,
                        _fmt(cell.flops_reduction, True),
                        _fmt(cell.kv_reduction, True),
                        str(cell.num_utts),
                    ]
                )
                + " |"
            )
        lines.append("")
    return "\n".join(lines)


def espnet_asr_tables(exp_dir: Path) -> list[str]:
    """The WER/CER/TER section ESPnet's ``show_asr_result.sh`` prints for ``exp_dir``: for each
    ``<exp_dir>/*/*/score_<type>/result.txt`` (C-sorted, as the shell's glob under ``LC_ALL=C``),
    the dataset ``<decode dir>/<test set>`` and the fields of its Sum/Avg line."""
    results = sorted(exp_dir.glob("*/*/score_*/result.txt"), key=lambda p: str(p).encode())
    if not results:
        return []
    lines = [f"## {exp_dir}"]
    for kind in ("wer", "cer", "ter"):
        lines += [
            f"### {kind.upper()}",
            "",
            "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        found = [p for p in results if p.parent.name == f"score_{kind}"]
        for path in found:
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if "Avg" in line:
                    fields = line.replace("Sum/Avg", "").replace("|", " ").split()
                    dataset = f"{path.parent.parent.parent.name}/{path.parent.parent.name}"
                    lines.append("|" + "|".join([dataset, *fields]) + "|")
        if found:  # the script prints its blank line only after rows
            lines.append("")
    return lines


#: Legend suffix of a family drawn against its KV-cache reduction (it saves no prefill FLOPs).
KV_AXIS_SUFFIX = " (x: KV-cache reduction)"


def plot_series(rows: list[Row], dset: str, metric: str) -> tuple[float | None, dict[str, list[tuple[float, float]]]]:
    """The baseline's value and, per method family, its (x, metric) points sorted by x.

    x is the achieved prefill FLOPs reduction in %. A family that saves no prefill FLOPs but
    shrinks the KV cache (H2O) would sit at x = 0 on top of the baseline, so its x is its
    KV-cache reduction instead, and its label says so.
    """
    baseline = None
    families: dict[str, list[tuple[float, float, float]]] = {}
    for row in rows:
        cell = row.cells.get(dset)
        if cell is None or metric not in cell.metrics:
            continue
        if row.family == "none":
            baseline = cell.metrics[metric]
            continue
        x = 100 * (cell.flops_reduction if cell.flops_reduction is not None else row.amount)
        kv = 100 * (cell.kv_reduction or 0.0)
        families.setdefault(row.family, []).append((x, kv, cell.metrics[metric]))
    series = {}
    for family, points in sorted(families.items()):
        kv_only = all(abs(p[0]) < 0.05 for p in points) and any(p[1] > 0 for p in points)
        label = family + KV_AXIS_SUFFIX if kv_only else family
        series[label] = sorted((p[1] if kv_only else p[0], p[2]) for p in points)
    return baseline, series


def plot(rows: list[Row], task: str, test_sets: Sequence[str], path: Path) -> None:
    """Main metric vs achieved FLOPs reduction, one line per method (the baseline dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(test_sets), figsize=(5.5 * len(test_sets), 4), squeeze=False)
    for ax, dset in zip(axes[0], test_sets):
        metric = MAIN_METRIC[set_task(rows, dset, task)]
        baseline, series = plot_series(rows, dset, metric)
        if baseline is not None:
            ax.axhline(baseline, color="gray", linestyle="--", label="no reduction")
        for label, points in series.items():
            style = ":" if label.endswith(KV_AXIS_SUFFIX) else "-"
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", linestyle=style, label=label)
        ax.set_xlim(left=0)
        ax.set_xlabel("achieved prefill FLOPs reduction (%); KV-only methods: KV-cache reduction")
        ax.set_ylabel(metric.upper() + (" (lower is better)" if metric in LOWER_IS_BETTER else ""))
        ax.set_title(dset)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp_dir", required=True)
    parser.add_argument("--task", required=True, choices=tuple(MAIN_METRIC))
    parser.add_argument("--test_sets", required=True, help="space separated")
    parser.add_argument("--output", default="RESULTS.md")
    parser.add_argument("--plot", default=None, help="PNG path (default: <exp_dir>/tradeoff.png)")
    parser.add_argument("--model", default=None, help="model name for the header")
    parser.add_argument("--title", default=None)
    return parser


def main(cmd: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    exp_dir = Path(args.exp_dir)
    test_sets = args.test_sets.split()
    rows = collect(exp_dir, test_sets, args.task)
    if not rows:
        raise SystemExit(f"report: no scored decode dirs under {exp_dir} for {test_sets}")
    plot_path = Path(args.plot) if args.plot else exp_dir / "tradeoff.png"
    title = args.title or f"Results: {exp_dir.name} ({args.task})"
    text = markdown(rows, args.task, test_sets, args.model, title)
    text += f"\n![trade-off]({plot_path})\n"
    espnet = espnet_asr_tables(exp_dir)
    if espnet:
        text += (
            "\n# ESPnet's tables\n\nAs `show_asr_result.sh` prints them from each decode dir's "
            "`score_wer/result.txt` and `score_cer/result.txt` (sclite's reports where sclite is "
            "installed): all decode dirs, by setting.\n\n" + "\n".join(espnet) + "\n"
        )
    Path(args.output).write_text(text)
    plot(rows, args.task, test_sets, plot_path)
    logger.info("wrote %s and %s (%d settings)", args.output, plot_path, len(rows))


if __name__ == "__main__":
    main()
