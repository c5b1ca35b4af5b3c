"""Host time of a decoding step: plain ``generate``, the shared prompt, and the static path (issue 16).

    python benchmarks/static_decoding_cpu.py [--rounds 5] [--new_tokens 33] [--inductor] \\
        [--output benchmarks/results/static_decoding_cpu]

The tiny 8-layer Qwen2-Audio of the tests on CPU, one thread: its arithmetic is negligible, so a
step's wall time is what the host spends on it (Python, dispatch, allocation). Per path and
setting, ``new_tokens`` forced tokens (EOS blocked) on a left-padded batch of 2, beam 1 and 3,
rounds interleaved over all paths, the first step of each call left out (the static path's
first step also builds the cache), medians over the rounds of each call's median step.

Also counted, independent of the machine: Python function calls per decoding step (a profile hook
counts calls; the difference between a call with ``new_tokens`` and one with 2 tokens, divided
by the extra steps). On a GPU the static path replays each step as one CUDA graph, so none of
its Python runs after the capture; on CPU (``eager``, or ``torch.compile``) it runs the
decoder's Python without the per-step work of ``generate`` (logits processors, stopping
criteria, the cache's growth and the masks).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import espnet_fastadasp as fa
from espnet_fastadasp.decoding.timing import GenerationTimer
from espnet_fastadasp.evaluation.environment import environment
from espnet_fastadasp.generation.shared_prompt import generate_with_shared_prompt
from espnet_fastadasp.generation.static_decoding import generate_static
from espnet_fastadasp.models.tiny import build_tiny_qwen2_audio, synthetic_audio

PROMPT = "<|im_start|><|audio_bos|><|AUDIO|><|audio_eos|>ASR:<|im_end|>"


def make_inputs(proc: Any) -> dict[str, torch.Tensor]:
    return proc(
        text=[PROMPT] * 2,
        audio=[synthetic_audio(1.9, 1), synthetic_audio(1.3, 2)],
        return_tensors="pt",
        padding=True,
        sampling_rate=16000,
    )


def run_path(model: Any, inputs: dict, path: str, beams: int, new_tokens: int) -> list[float]:
    """One forced-length call; returns its step times (s), the first step left out."""
    gen = dict(num_beams=beams, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    if path in ("generate", "shared"):
        timer = GenerationTimer(model, per_step=True)
        try:
            if path == "generate":
                model.generate(**inputs, **gen)
            else:
                generate_with_shared_prompt(model, inputs, **gen)
        finally:
            timer.remove()
        return timer.step_seconds[1:]
    timings: dict[str, Any] = {}
    mode, _, backend = path.partition(":")
    generate_static(
        model,
        inputs,
        step_mode="compile" if backend else "eager",
        compile_backend=backend or None,
        timings=timings,
        **gen,
    )
    return timings["step_s"][1:]


def python_calls_per_step(model: Any, inputs: dict, path: str, beams: int, new_tokens: int) -> float:
    def count(n: int) -> int:
        calls = 0

        def profile(frame: Any, event: str, arg: Any) -> None:
            nonlocal calls
            if event == "call":
                calls += 1

        sys.setprofile(profile)
        try:
            run_path(model, inputs, path, beams, n)
        finally:
            sys.setprofile(None)
        return calls

    return (count(new_tokens) - count(2)) / (new_tokens - 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--new_tokens", type=int, default=33)
    parser.add_argument("--inductor", action="store_true", help="also torch.compile with inductor (slow to compile)")
    parser.add_argument("--output", type=Path, default=None, help="write OUTPUT.json and OUTPUT.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, proc = build_tiny_qwen2_audio()
    inputs = make_inputs(proc)
    paths = ["generate", "shared", "static", "static:aot_eager"] + (["static:inductor"] if args.inductor else [])
    settings = {"none": None, "fastadasp_constant@0.5": fa.ReductionConfig(method="fastadasp", flops_reduction=0.5)}
    cases = [(s, b, p) for s in settings for b in (1, 3) for p in paths if not (p == "shared" and b == 1)]
    medians: dict[tuple, list[float]] = {c: [] for c in cases}
    for r in range(args.rounds + 1):  # round 0 warms up (and compiles)
        for setting, beams, path in cases:
            cfg = settings[setting]
            handle = fa.apply(model, cfg) if cfg is not None else None
            try:
                steps = run_path(model, inputs, path, beams, args.new_tokens)
            finally:
                if handle is not None:
                    handle.remove()
            if r > 0:
                medians[setting, beams, path].append(statistics.median(steps))
    calls = {}
    for setting, beams, path in cases:
        if path.startswith("static:"):
            continue  # compiled: the profile hook would count the compiler's work
        cfg = settings[setting]
        handle = fa.apply(model, cfg) if cfg is not None else None
        try:
            calls[setting, beams, path] = python_calls_per_step(model, inputs, path, beams, args.new_tokens)
        finally:
            if handle is not None:
                handle.remove()
    rows = []
    for setting, beams, path in cases:
        vals = medians[setting, beams, path]
        base = statistics.median(medians[setting, beams, "generate"])
        rows.append(
            {
                "setting": setting,
                "beams": beams,
                "path": path,
                "step_us_median": 1e6 * statistics.median(vals),
                "step_us_min": 1e6 * min(vals),
                "step_us_max": 1e6 * max(vals),
                "vs_generate": base / statistics.median(vals),
                "python_calls_per_step": calls.get((setting, beams, path)),
            }
        )
    lines = [
        "| setting | beams | path | us/step median (min-max) | x faster than generate | Python calls/step |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        c = row["python_calls_per_step"]
        lines.append(
            f"| {row['setting']} | {row['beams']} | {row['path']} | {row['step_us_median']:.0f} "
            f"({row['step_us_min']:.0f}-{row['step_us_max']:.0f}) | {row['vs_generate']:.2f} | "
            f"{'-' if c is None else f'{c:.0f}'} |"
        )
    print("\n".join(lines))
    if args.output is not None:
        env = environment(torch.device("cpu"), torch.float32)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        meta = {"environment": env, "args": {k: str(v) for k, v in vars(args).items()}, "time": time.time()}
        args.output.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows}, indent=2, default=str) + "\n")
        header = (
            f"# Host time per decoding step (tiny model, CPU, 1 thread)\n\n{env['date']} | {env['device_name']}, "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} | "
            f"torch {env['torch']} | transformers {env['transformers']} | {args.new_tokens} forced tokens, batch 2 "
            f"(left-padded), {args.rounds} rounds\n\n"
        )
        args.output.with_suffix(".md").write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
