"""Benchmark results: summaries and ratios against no reduction, written as JSON and markdown."""

from __future__ import annotations

import json
import logging
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from espnet_fastadasp.benchmark.inputs import GIB, MIB
from espnet_fastadasp.benchmark.measure import Setting, step_floor

logger = logging.getLogger("espnet_fastadasp.benchmark")


def spread(values: list[float | None]) -> dict[str, float | None] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


TIMINGS = (
    "prefill_s",
    "decode_s",
    "total_s",
    "step_ms_median",
    "step_ms_mean",
    "decode_tok_s",
    "reduce_s",
    "scoring_s",
    "setup_s",
)


@dataclass
class Results:
    """Everything measured so far; written to ``results.json`` / ``results.md`` after each run."""

    output_dir: Path
    meta: dict[str, Any]
    settings: list[Setting]
    weight_bytes: int = 0
    bandwidth: float = 1.0
    matmul_rate: float | None = None
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self, setting: Setting) -> dict[str, Any] | None:
        runs = self.runs.get(setting.key)
        if not runs:
            return None
        out: dict[str, Any] = {name: spread([r.get(name) for r in runs]) for name in TIMINGS}
        audio = setting.audio_seconds
        out["rtf"] = spread([r["total_s"] / audio for r in runs])
        peaks = [r["peak_bytes"] for r in runs if r["peak_bytes"] is not None]
        out["peak_gib"] = max(peaks) / GIB if peaks else None
        # what the call itself added at its peak (the peak less what was held before it: weights, inputs)
        added = [r["peak_bytes"] - r["peak_bytes_before"] for r in runs if r["peak_bytes"] is not None
                 and r.get("peak_bytes_before") is not None]
        out["peak_added_gib"] = max(added) / GIB if added else None
        last = runs[-1]
        for name in ("kv_bytes", "flops_full", "flops_reduced", "flops_reduction", "kv_reduction", "audio_tokens_out"):
            out[name] = last[name]
        out["kv_mib"] = last["kv_bytes"] / MIB
        out["kv_bytes_per_layer"] = [layer["bytes"] for layer in last["kv_layers"]]
        out["kv_entries_per_layer"] = [layer["entries"] for layer in last["kv_layers"]]
        # the prefill floor: the decoder's counted FLOPs at the measured matmul rate (encoder, LM head
        # and softmax left out, so it is a lower bound)
        out["prefill_floor_s"] = last["flops_reduced"] / self.matmul_rate if self.matmul_rate else None
        floor = step_floor(last, self.weight_bytes, self.bandwidth)
        out.update(floor)
        step = out["step_ms_median"]["median"] if out["step_ms_median"] else None
        out["x_floor"] = step / floor["floor_ms"] if step is not None and floor["floor_ms"] else None
        return out

    def _none_of(self, setting: Setting, prompt: str) -> dict[str, Any] | None:
        """The summary of ``none`` at ``setting``'s (audio, beams) in prompt mode ``prompt``."""
        base = next(
            (s for s in self.settings if s.group == setting.group and s.config.method == "none" and s.prompt == prompt),
            None,
        )
        return self.summary(base) if base is not None else None

    def versus_none(self, setting: Setting, summary: dict[str, Any]) -> dict[str, Any] | None:
        """Ratios against ``none`` under plain ``generate`` at the same (audio, beams): >1 means this
        setting is faster; and in ``path_none`` against ``none`` along the same path (the
        reduction's own share, apart from what the path alone does)."""
        base = self._none_of(setting, "hf")
        if base is None:
            return None

        def med(s: dict[str, Any], name: str) -> float | None:
            return s[name]["median"] if s.get(name) else None

        def ratio(a: float | None, b: float | None) -> float | None:
            return a / b if a is not None and b else None

        out = {
            "decode_tok_s_ratio": ratio(med(summary, "decode_tok_s"), med(base, "decode_tok_s")),
            "prefill_speedup": ratio(med(base, "prefill_s"), med(summary, "prefill_s")),
            "total_speedup": ratio(med(base, "total_s"), med(summary, "total_s")),
            "kv_ratio": ratio(summary["kv_bytes"], base["kv_bytes"]),
        }
        if summary["peak_gib"] is not None and base["peak_gib"] is not None:
            out["peak_gib_change"] = summary["peak_gib"] - base["peak_gib"]
            out["peak_ratio"] = summary["peak_gib"] / base["peak_gib"]
        else:
            out["peak_gib_change"] = out["peak_ratio"] = None
        path_base = base if setting.prompt == "hf" else self._none_of(setting, setting.prompt)
        out["path_none"] = None
        if path_base is not None:
            out["path_none"] = {
                "decode_tok_s_ratio": ratio(med(summary, "decode_tok_s"), med(path_base, "decode_tok_s")),
                "step_ms_ratio": ratio(med(summary, "step_ms_median"), med(path_base, "step_ms_median")),
                "prefill_speedup": ratio(med(path_base, "prefill_s"), med(summary, "prefill_s")),
                "kv_ratio": ratio(summary["kv_bytes"], path_base["kv_bytes"]),
                "peak_ratio": ratio(summary["peak_gib"], path_base["peak_gib"]),
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        settings = []
        for s in self.settings:
            summary = self.summary(s)
            settings.append(
                {
                    "key": s.key,
                    "audio_seconds": s.audio_seconds,
                    "num_beams": s.beams,
                    "setting": s.tag,
                    "prompt": s.prompt,
                    "config": s.config.to_dict(),
                    "inputs": self.inputs.get(s.group),
                    "error": self.errors.get(s.key),
                    "summary": summary,
                    "vs_none": self.versus_none(s, summary) if summary else None,
                    "runs": self.runs.get(s.key, []),
                }
            )
        return {
            **self.meta,
            "decode_weight_bytes": self.weight_bytes,
            "bandwidth_bytes_per_s": self.bandwidth,
            "matmul_flops_per_s": self.matmul_rate,
            "settings": settings,
        }

    def write(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        _atomic_write(self.output_dir / "results.json", json.dumps(data, indent=2, default=str) + "\n")
        _atomic_write(self.output_dir / "results.md", render_markdown(data))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _fmt_spread(s: dict[str, Any] | None, digits: int) -> str:
    if not s:
        return "-"
    if s["n"] == 1:
        return _fmt(s["median"], digits)
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


MD_HEADER = (
    "| setting | prefill s | prefill vs none | reduce s | scoring s | prefill floor s | decode s | tok/s "
    "| ratio vs none | vs path none | RTF | peak GiB | peak added GiB | peak vs none | KV MiB | FLOPs red. % "
    "| step ms | floor ms | x floor |"
)


def bandwidth_line(data: dict[str, Any]) -> str:
    """What the step floor divides by, and the probes behind it."""
    copy = data.get("bandwidth_probe") or {}
    gemv = data.get("gemv_probes") or []
    choice = data.get("floor_bandwidth") or "copy"
    parts = []
    if copy:
        parts.append(f"a copy moves {copy['bytes_per_s'] / 1e9:.1f} GB/s (read + written)")
    for g in gemv:
        shape = "x".join(map(str, g["shape"]))
        parts.append(f"a {g['rows']}-row product with a {shape} weight reads {g['bytes_per_s'] / 1e9:.1f} GB/s")
    what = "the 1-row product's read rate" if choice == "gemv" else "the copy's rate"
    text = "; ".join(parts)
    return (
        text[:1].upper()
        + text[1:]
        + f". floor = (weights + KV read per step) / {data['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s ({what}, "
        f"measured in this run); decoding reads {data['decode_weight_bytes'] / 1e9:.2f} GB of weights per step; "
        "x floor = step ms / floor ms."
    )


def layers_line(data: dict[str, Any]) -> str | None:
    """For a shape cut to fewer layers: how many, of how many, and what carries over."""
    full = data.get("layers_of_shape")
    if not full:
        return None
    n, a = data.get("decoder_layers"), (data.get("args") or {}).get("audio_layers")
    return (
        f"**{n} of the shape's {full['decoder_layers']} decoder layers** (each at the full width; LM head and "
        f"vocabulary in full)"
        + (f", {a} of its {full['audio_layers']} audio encoder layers" if a is not None else "")
        + ". Per-layer figures (KV MiB per layer, a layer's share of the step and of the prefill) and the ratios "
        "between settings of one layer count carry over to the full depth; whole-step ratios do not directly: "
        "the LM head, read once per step, weighs more in a step of fewer layers."
    )


def render_markdown(data: dict[str, Any]) -> str:
    """One table per (audio, beams); timings are median (min-max) over the repeats."""
    env = data["environment"]
    lines = [
        "# Cost benchmark",
        "",
        f"{env['date']} | {env['device_name']} | torch {env['torch']} | transformers {env['transformers']} | "
        f"CUDA {env['cuda']} | {data['dtype']} | model {data['model']} | {data['new_tokens']} forced new tokens "
        f"| warmup {data['warmup']}, repeats {data['repeats']}",
        "",
        *([layers_line(data), ""] if layers_line(data) else []),
        bandwidth_line(data),
        "",
        "peak GiB: "
        + ("the process's peak resident set during generate (VmHWM, reset before each call; weights included); "
           if data.get("environment", {}).get("device", "").startswith("cpu") else
           "torch.cuda.max_memory_allocated during generate (weights included); ")
        + "peak added GiB: that peak less what was held before the call (the call's own cache, activations, "
        "logits). ratio vs none: tok/s against none under plain generate (hf); vs path none: against none along "
        "the same path (the reduction's own share).",
        "",
        "reduce s: the reduction steps inside the prefill (choose, merge or evict); scoring s: the attention "
        "kernels of the reducing layers (their own attention and the sums of the attention each token received; "
        "projections excluded); both included in prefill s. "
        "prefill floor s: the decoder's counted prefill FLOPs / the measured matmul rate"
        + (f" ({data['matmul_flops_per_s'] / 1e12:.2f} TFLOP/s)" if data.get("matmul_flops_per_s") else "")
        + "; a lower bound (the encoder, LM head and softmax are left out).",
        "",
    ]
    groups: dict[str, list[dict[str, Any]]] = {}
    for s in data["settings"]:
        groups.setdefault(f"{s['audio_seconds']:g} s audio, beam {s['num_beams']}", []).append(s)
    for title, items in groups.items():
        inputs = items[0]["inputs"] or {}
        lines += [
            f"## {title}"
            + (f" ({inputs['prompt_tokens']} prompt tokens, {inputs['audio_tokens']} audio)" if inputs else ""),
            "",
            MD_HEADER,
            "|" + "---|" * (MD_HEADER.count("|") - 1),
        ]
        for s in items:
            if s["summary"] is None:
                err = s["error"] or "not run yet"
                empty = " |" * (MD_HEADER.count("|") - 3)
                lines.append(f"| {s['setting']} | error: {err.splitlines()[0][:120]} |" + empty)
                continue
            m, v = s["summary"], s["vs_none"] or {}
            peak_change = v.get("peak_gib_change")
            lines.append(
                "| "
                + " | ".join(
                    [
                        s["setting"],
                        _fmt_spread(m["prefill_s"], 3),
                        _fmt(v.get("prefill_speedup")),
                        _fmt(m["reduce_s"]["median"] if m.get("reduce_s") else None, 3),
                        _fmt(m["scoring_s"]["median"] if m.get("scoring_s") else None, 3),
                        _fmt(m.get("prefill_floor_s"), 3),
                        _fmt_spread(m["decode_s"], 3),
                        _fmt(m["decode_tok_s"]["median"] if m["decode_tok_s"] else None),
                        _fmt(v.get("decode_tok_s_ratio")),
                        _fmt((v.get("path_none") or {}).get("decode_tok_s_ratio")),
                        _fmt(m["rtf"]["median"] if m["rtf"] else None, 4),
                        _fmt(m["peak_gib"]),
                        _fmt(m.get("peak_added_gib")),
                        "-" if peak_change is None else f"{peak_change:+.2f}",
                        _fmt(m["kv_mib"], 1),
                        _fmt(100 * m["flops_reduction"], 1),
                        _fmt_spread(m["step_ms_median"], 2),
                        _fmt(m["floor_ms"]),
                        _fmt(m["x_floor"]),
                    ]
                )
                + " |"
            )
        lines.append("")
    return "\n".join(lines)
