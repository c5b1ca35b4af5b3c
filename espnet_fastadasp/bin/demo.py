"""A tour of the API on a tiny Qwen2-Audio built from a config (no download, CPU, seconds).

    python -m espnet_fastadasp.bin.demo [--checkpoint DIR] [--flops_reduction 0.3]

It saves the tiny model and processor with ``save_pretrained``, loads them back with
``from_pretrained`` / ``AutoProcessor`` (the path a real checkpoint takes), then decodes a
padded batch of synthetic clips with every reduction method and prints, per method, the audio
tokens left after the last layer, the achieved prefill FLOPs reduction, the KV-cache reduction,
whether the output equals the unreduced one, and whether the shared-prompt beam search
(:mod:`espnet_fastadasp.generation.shared_prompt`: one prefill per prompt, one prompt cache for its beams)
finds the same hypotheses as plain ``generate`` under that reduction. The weights are random, so
the text is noise: accuracy is measured by the mini benchmark recipe, not here.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import torch

import espnet_fastadasp as fa
from espnet_fastadasp.generation.shared_prompt import generate_with_shared_prompt
from espnet_fastadasp.models.tiny import save_tiny_qwen2_audio, synthetic_audio

logger = logging.getLogger("espnet_fastadasp.demo")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="where to save the tiny model (default: a temp dir)"
    )
    parser.add_argument("--flops_reduction", type=float, default=0.3, help="prefill FLOPs reduction target")
    parser.add_argument("--num_beams", type=int, default=2)
    parser.add_argument("--max_new_tokens", type=int, default=8)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    # warnings only: the table below is the output
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or Path(tmp) / "tiny_qwen2_audio"
        save_tiny_qwen2_audio(ckpt)
        model = Qwen2AudioForConditionalGeneration.from_pretrained(ckpt).eval()
        processor = AutoProcessor.from_pretrained(ckpt)
        prompt = "<|im_start|><|audio_bos|><|AUDIO|><|audio_eos|>ASR:<|im_end|>"
        seconds = [1.9, 1.1, 1.5]
        inputs = processor(
            text=[prompt] * len(seconds),
            audio=[synthetic_audio(s, i) for i, s in enumerate(seconds)],
            return_tensors="pt",
            padding=True,
            sampling_rate=16000,
        )
        gen = dict(max_new_tokens=args.max_new_tokens, num_beams=args.num_beams, do_sample=False)
        with torch.no_grad():
            reference = model.generate(**inputs, **gen)
        print(
            f"\n{'method':<14}{'schedule':<10}{'audio in->out':>15}{'FLOPs red.':>12}{'KV red.':>9}"
            "  same as none  shared prompt = plain"
        )
        for method in fa.METHODS:
            schedules = ["constant", "decay", "once"] if method == "fastadasp" else ["constant"]
            for schedule in schedules:
                amount = {} if method == "none" else {"flops_reduction": args.flops_reduction}
                cfg = fa.ReductionConfig(method=method, schedule=schedule, **amount)
                with fa.apply(model, cfg) as handle, torch.no_grad():
                    out = model.generate(**inputs, **gen)
                    stats = handle.stats
                    shared = generate_with_shared_prompt(model, inputs, **gen)
                row = stats.rows[0]
                print(
                    f"{method:<14}{schedule:<10}{row.audio_tokens[0]:>8} -> {row.audio_tokens_out:<4}"
                    f"{stats.flops_reduction:>11.1%}{stats.kv_reduction:>9.1%}  "
                    f"{str(torch.equal(out, reference)):<14}{torch.equal(shared, out)}"
                )
        if args.checkpoint:
            print(f"\ncheckpoint: {ckpt} (load it with from_pretrained like any other)")


if __name__ == "__main__":
    main()
