"""The static decoding path against plain ``generate`` on a device (issue 16's GPU check, part 1).

    python benchmarks/static_exactness.py --device cuda --output exp/decode_gpu/static_exactness.json

The tiny Qwen2-Audio of the tests (random weights, float32), a left-padded batch of 3 prompts,
every reduction method, greedy and beam 3, 8 new tokens (and a repetition penalty of 1.3, as
instruction-tuned checkpoints often set one, under two methods): the same tokens and beam scores as
plain ``generate`` with the same reduction, with the steps run the way the device runs them
(``auto``: one captured CUDA graph per step on CUDA). A capture needs a step without host
synchronisation, so a row whose ``step_mode`` is ``cuda_graph`` also shows that. The CPU test
suite checks the same on CPU (``test/test_static_decoding.py``). Exits 1 if a row differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import espnet_fastadasp as fa
from espnet_fastadasp.core.config import METHODS
from espnet_fastadasp.evaluation.environment import environment
from espnet_fastadasp.generation.static_decoding import generate_static
from espnet_fastadasp.models.tiny import build_tiny_qwen2_audio, synthetic_audio

PROMPT = "<|im_start|><|audio_bos|><|AUDIO|><|audio_eos|>ASR:<|im_end|>"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--step_mode", default="auto")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    model, proc = build_tiny_qwen2_audio()
    model = model.to(device)
    inputs = proc(
        text=[PROMPT] * 3,
        audio=[synthetic_audio(s, 10 * i) for i, s in enumerate([1.8, 0.9, 1.3])],
        return_tensors="pt",
        padding=True,
        sampling_rate=16000,
    )
    inputs = {k: v.to(device) for k, v in inputs.items()}
    gen = dict(max_new_tokens=8, do_sample=False, return_dict_in_generate=True, output_scores=True)
    rows = []
    cases = [(method, beams, 1.0) for method in METHODS for beams in (1, 3)]
    cases += [(method, beams, 1.3) for method in ("none", "fastadasp") for beams in (1, 3)]
    for method, beams, penalty in cases:
        cfg = fa.ReductionConfig(method=method, flops_reduction=0.3 if method != "none" else None)
        with fa.apply(model, cfg):
            plain = model.generate(**inputs, num_beams=beams, repetition_penalty=penalty, **gen)
            timings: dict = {}
            static = generate_static(
                model,
                inputs,
                num_beams=beams,
                repetition_penalty=penalty,
                step_mode=args.step_mode,
                timings=timings,
                **gen,
            )
        same = bool(torch.equal(plain.sequences, static.sequences))
        diff = None
        if beams > 1:
            diff = float((plain.sequences_scores - static.sequences_scores).abs().max())
        rows.append(
            {
                "method": method,
                "beams": beams,
                "repetition_penalty": penalty,
                "same_tokens": same,
                "max_score_diff": diff,
                "ok": same and (diff is None or diff <= 1e-4),
                "step_mode": timings["step_mode"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    expected = args.step_mode if args.step_mode != "auto" else ("cuda_graph" if device.type == "cuda" else "eager")
    ok = all(r["ok"] and r["step_mode"] == expected for r in rows)
    data = {"environment": environment(device, torch.float32), "ok": ok, "rows": rows}
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(data, indent=2) + "\n")
    print("static exactness:", "all rows equal" if ok else "SOME ROWS DIFFER (or fell back to eager)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
