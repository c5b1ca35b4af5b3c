"""Issue 28's decoding targets, checked on a cost benchmark's ``results.json``, as a markdown report.

    python -m espnet_fastadasp.benchmark.targets exp/results.json --output RESULTS_cpu_bf16.md \\
        [--title "..."] [--command "..."]

Targets (each against plain ``generate`` without reduction, ``none`` under ``hf``, in the same run):

* decode tok/s with a reduction at 50 % on the best path: at least 2.0x at beam 5 / 240 s and 1.2x
  at beam 1 / 240 s;
* every reduced step within 1.3x of its floor (x floor <= 1.3);
* peak memory at least 30 % lower at beam 5 / 240 s (the best reduced row).

Besides the targets the report gives the per-row table (prefill s, step ms, floor ms, x floor, tok/s
and its ratio to ``hf`` none and to the same path's none, peak GiB, KV MiB), the reduction's own
share on each path (the same path with and without it), and, where a target is missed, the profile
of one decoding step of the rows concerned (top operators by self CPU time, when the run was made
with ``--profile_step``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from espnet_fastadasp.benchmark.results import bandwidth_line, layers_line

#: (audio seconds, beams, the least decode tok/s ratio to hf none with a 50 % reduction on the best path)
SPEED_TARGETS = ((240.0, 5, 2.0), (240.0, 1, 1.2))
FLOOR_TARGET = 1.3  # a reduced step within this many times its floor
PEAK_TARGET = (240.0, 5, 0.7)  # peak at most this fraction of hf none's at (audio, beams)


def _med(summary: dict[str, Any] | None, name: str) -> float | None:
    value = (summary or {}).get(name)
    return value["median"] if isinstance(value, dict) else value


def _rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The settings that were measured, with what the report needs flattened."""
    rows = []
    for s in data["settings"]:
        m, v = s.get("summary"), s.get("vs_none") or {}
        if m is None:
            continue
        last = (s.get("runs") or [{}])[-1]
        rows.append(
            {
                "key": s["key"],
                "audio": s["audio_seconds"],
                "beams": s["num_beams"],
                "setting": s["setting"],
                "method": s["config"]["method"],
                "path": s["prompt"],
                "prefill_s": _med(m, "prefill_s"),
                "step_ms": _med(m, "step_ms_median"),
                "floor_ms": m.get("floor_ms"),
                "x_floor": m.get("x_floor"),
                "tok_s": _med(m, "decode_tok_s"),
                "vs_hf_none": v.get("decode_tok_s_ratio"),
                "vs_path_none": (v.get("path_none") or {}).get("decode_tok_s_ratio"),
                "peak_gib": m.get("peak_gib"),
                "peak_added_gib": m.get("peak_added_gib"),
                "peak_ratio": v.get("peak_ratio"),
                "kv_mib": m.get("kv_mib"),
                "flops_reduction": m.get("flops_reduction"),
                "profile": last.get("profile"),
            }
        )
    return rows


def _rows_bound(data: dict[str, Any]) -> str | None:
    """The step's weights at the rate of a product with as many rows as beams: where that rate is
    below the one-row rate, steps at that beam count are bound by arithmetic above the byte floor."""
    probes = data.get("gemv_probes") or []
    one = next((g for g in probes if g["rows"] == 1), None)
    more = [g for g in probes if g["rows"] > 1]
    if one is None or not more:
        return None
    weights = data["decode_weight_bytes"]
    parts = [
        f"at {g['rows']} rows the product reads {g['bytes_per_s'] / 1e9:.1f} GB/s "
        f"({g['bytes_per_s'] / one['bytes_per_s']:.2f}x the one-row rate): the step's weights alone take "
        f"{1000 * weights / g['bytes_per_s']:.1f} ms at beam {g['rows']} (byte floor of the weights "
        f"{1000 * weights / one['bytes_per_s']:.1f} ms)"
        for g in more
    ]
    return "Rows: " + "; ".join(parts) + "."


def _fmt(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def evaluate(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what it asks, the row that comes closest, met or not, and the rows to profile."""
    rows = _rows(data)
    reduced = [r for r in rows if r["method"] != "none"]
    out = []
    for audio, beams, least in SPEED_TARGETS:
        cands = [r for r in reduced if r["audio"] == audio and r["beams"] == beams and r["vs_hf_none"] is not None]
        best = max(cands, key=lambda r: r["vs_hf_none"], default=None)
        out.append(
            {
                "target": f"beam {beams} / {audio:g} s: decode tok/s >= {least:.1f}x plain generate without reduction "
                "(a 50 % reduction, best path)",
                "best": best and f"{best['setting']}: {best['vs_hf_none']:.2f}x",
                "met": None if best is None else best["vs_hf_none"] >= least,
                "rows": [r for r in rows if r["audio"] == audio and r["beams"] == beams],
            }
        )
    floors = [r for r in reduced if r["x_floor"] is not None]
    worst = max(floors, key=lambda r: r["x_floor"], default=None)
    within = [r for r in floors if r["x_floor"] <= FLOOR_TARGET]
    out.append(
        {
            "target": f"every reduced step within {FLOOR_TARGET}x of its floor",
            "best": worst
            and f"{len(within)} of {len(floors)} reduced rows within; worst {worst['key']}: {worst['x_floor']:.2f}x",
            "met": None if worst is None else not (len(within) < len(floors)),
            "rows": [r for r in floors if r["x_floor"] > FLOOR_TARGET],
        }
    )
    audio, beams, most = PEAK_TARGET
    cands = [r for r in reduced if r["audio"] == audio and r["beams"] == beams and r["peak_ratio"] is not None]
    best = min(cands, key=lambda r: r["peak_ratio"], default=None)
    base = next(
        (r for r in rows if (r["audio"], r["beams"], r["method"], r["path"]) == (audio, beams, "none", "hf")), None
    )
    added = ""
    if best is not None and base is not None and best["peak_added_gib"] is not None and base["peak_added_gib"]:
        # what the call itself held at its peak, weights and what was live before it left out
        added = f"; the call's own: {best['peak_added_gib']:.2f} vs {base['peak_added_gib']:.2f} GiB"
    out.append(
        {
            "target": f"beam {beams} / {audio:g} s: peak memory at least {100 * (1 - most):.0f} % lower than plain "
            "generate without reduction",
            "best": best
            and f"{best['setting']}: {best['peak_ratio']:.2f}x ({100 * (1 - best['peak_ratio']):.0f} % lower{added})",
            "met": None if best is None else best["peak_ratio"] <= most,
            "rows": [],
        }
    )
    return out


def _share_table(rows: list[dict[str, Any]]) -> list[str]:
    """The reduction's own share: per group and path, each reduction's tok/s against that path's none."""
    lines = ["| audio, beams | path | none tok/s (vs hf none) | reduction: tok/s vs path none |", "|---|---|---|---|"]
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["audio"], r["beams"], r["path"]), []).append(r)
    for (audio, beams, path), items in groups.items():
        none = next((r for r in items if r["method"] == "none"), None)
        red = ", ".join(
            f"{r['setting'].split('+')[0]} {_fmt(r['vs_path_none'])}x" for r in items if r["method"] != "none"
        )
        base = "-" if none is None else f"{_fmt(none['tok_s'])} ({_fmt(none['vs_hf_none'])}x)"
        lines.append(f"| {audio:g} s, beam {beams} | {path} | {base} | {red or '-'} |")
    return lines


def _profile_lines(rows: list[dict[str, Any]], top: int = 8) -> list[str]:
    lines = []
    for r in rows:
        prof = r["profile"]
        if not prof:
            continue
        wall = prof["wall_ms"]
        ops = ", ".join(
            f"{op['name']} {op['self_cpu_ms']:.1f} ms ({100 * op['self_cpu_ms'] / wall:.0f} %)"
            for op in prof["top"][:top]
        )
        lines.append(
            f"- `{r['key']}` (step {_fmt(r['step_ms'], 1)} ms, floor {_fmt(r['floor_ms'], 1)} ms; profiled step "
            f"{wall:.1f} ms{', ' + prof['file'] if prof.get('file') else ''}): {ops}"
        )
    return lines


TABLE_HEADER = (
    "| setting | prefill s | step ms | floor ms | x floor | tok/s | vs hf none | vs path none | peak GiB "
    "| peak added GiB | peak vs hf none | KV MiB | FLOPs red. % |"
)


def render(data: dict[str, Any], title: str = "CPU bfloat16 decoding benchmark", command: str | None = None) -> str:
    env = data["environment"]
    rows = _rows(data)
    lines = [
        f"# {title}",
        "",
        f"{env['date']} | {env['device_name']} ({', '.join(env.get('cpu_matmul_flags') or []) or 'no AMX'}, "
        f"{env.get('cpu_threads', '?')} threads) | torch {env['torch']} | transformers {env['transformers']} | "
        f"{data['dtype']} | model {data['model']} | {data['new_tokens']} forced new tokens | warmup {data['warmup']}"
        + (f" on {data['warmup_audio_seconds']:g} s" if data.get("warmup_audio_seconds") and data['warmup'] else "")
        + (f" ({data['warmup_new_tokens']} tokens)" if data.get("warmup_new_tokens") and data['warmup'] else "")
        + f", repeats {data['repeats']}",
        "",
    ]
    if command:
        lines += ["```bash", command, "```", ""]
    if layers_line(data):
        lines += [layers_line(data), ""]
    lines += [bandwidth_line(data), ""]
    mm = data.get("matmul_flops_per_s")
    if mm:
        lines += [f"A {data['dtype']} matmul runs at {mm / 1e12:.3f} TFLOP/s here (the prefill's bound).", ""]
    bound = _rows_bound(data)
    if bound:
        lines += [bound, ""]
    lines += ["## Targets", "", "| target | closest row | met |", "|---|---|---|"]
    verdicts = evaluate(data)
    for t in verdicts:
        met = "-" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {t['best'] or '-'} | {met} |")
    lines += ["", "## The reduction's own share (same path, with and without it)", ""] + _share_table(rows)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["audio"], r["beams"]), []).append(r)
    for (audio, beams), items in groups.items():
        rule = "|" + "---|" * (TABLE_HEADER.count("|") - 1)
        lines += ["", f"## {audio:g} s audio, beam {beams}", "", TABLE_HEADER, rule]
        for r in items:
            lines.append(
                "| "
                + " | ".join(
                    [
                        r["setting"],
                        _fmt(r["prefill_s"], 2),
                        _fmt(r["step_ms"], 1),
                        _fmt(r["floor_ms"], 1),
                        _fmt(r["x_floor"]),
                        _fmt(r["tok_s"]),
                        _fmt(r["vs_hf_none"]),
                        _fmt(r["vs_path_none"]),
                        _fmt(r["peak_gib"]),
                        _fmt(r["peak_added_gib"]),
                        _fmt(r["peak_ratio"]),
                        _fmt(r["kv_mib"], 1),
                        _fmt(100 * r["flops_reduction"] if r["flops_reduction"] is not None else None, 1),
                    ]
                )
                + " |"
            )
    errors = [s for s in data["settings"] if s.get("error")]
    missing = [s["key"] for s in data["settings"] if s.get("summary") is None and not s.get("error")]
    if errors or missing:
        lines += ["", "## Not measured", ""]
        lines += [f"- `{s['key']}`: {s['error'].splitlines()[0][:200]}" for s in errors]
        lines += [f"- `{k}`: not run yet" for k in missing]
    missed = [t for t in verdicts if t["met"] is False]
    if missed:
        lines += ["", "## Where the step's time goes (targets missed)", ""]
        profiled = False
        for t in missed:
            prof = _profile_lines(t["rows"])
            if prof:
                profiled = True
                lines += [f"{t['target']}:", ""] + prof + [""]
        if not profiled:
            lines += ["No step profiles in this run (run the benchmark with --profile_step).", ""]
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a cost benchmark's results.json")
    parser.add_argument("--output", type=Path, default=None, help="the markdown file (default: stdout)")
    parser.add_argument("--title", default="CPU bfloat16 decoding benchmark")
    parser.add_argument("--command", default=None, help="the command that made the results, shown in the report")
    args = parser.parse_args(argv)
    text = render(json.loads(args.results.read_text()), args.title, args.command)
    if args.output is None:
        print(text)
    else:
        args.output.write_text(text)
    return text


if __name__ == "__main__":
    main()
