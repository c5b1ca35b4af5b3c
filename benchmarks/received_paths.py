"""Which way to get the attention received is fastest here: measured, not assumed (issue 15).

For one attention layer at a given shape (default: Qwen2-Audio-7B's, 32 heads of 128, MHA, at
the prompt lengths of 120 s and 240 s), times, median of ``--repeats`` after a warm-up:

* ``sdpa``: the model's own attention alone (causal SDPA), the cost without any sums;
* ``sdpa+triton``: SDPA, then the two tiled Triton kernels of ``espnet_fastadasp.reduction.triton_received``
  (CUDA only);
* ``flash_lse+triton``: PyTorch's CUDA flash kernel (the output and each row's log-sum-exp), then
  the column kernel alone: what an unpadded float16 / bfloat16 CUDA prefill uses;
* ``fused_torch``: the blocked torch pass of ``attention_with_received`` (output and sums at once);
* ``lse_two_pass``: ``attention_with_received_lse``, two passes of PyTorch's fused CPU attention
  (CPU only: what an unpadded CPU prefill uses);
* ``sdpa+blocked``: SDPA, then the blocked torch sums of ``attention_received``;
* ``sdpa+windowW``: SDPA, then the sums of the last W query rows only
  (``ReductionConfig(scores_from="window")``: an approximation, not the same weights);
* ``sdpa+flash_colreduce``: SDPA, then ``flash_colreduce`` (PyPI, pure-Python Triton; carry its
  wheel: ``pip download flash-colreduce --no-deps``), where installed. It has no padding mask
  (causal only) and returns the sums in the query's dtype, so it could serve unpadded batches only.

and the largest relative error of every exact path's sums against the float64 softmax of the
same (rounded) inputs, beside what eager attention's own weights get in that dtype (logits in the
dtype, softmax in float32, weights rounded): the accuracy a model in that dtype has anyway. It also runs one reduced
prefill of the tiny test model with ``torch.cuda.set_sync_debug_mode("error")`` inside the
decoder's layer loop (CUDA only): it passes only if no layer waits for the host.

    python benchmarks/received_paths.py --output exp/received_paths.json            # GPU
    python benchmarks/received_paths.py --heads 16 --head_dim 64 --repeats 5 --dtype float32 \
        --output benchmarks/results/received_paths_cpu.json                          # CPU (committed)
    python benchmarks/received_paths.py --heads 16 --head_dim 64 --repeats 5 --dtype bfloat16 \
        --output benchmarks/results/received_paths_cpu_bf16.json                     # CPU (committed)

Results are written after each measurement (a killed run keeps what it measured).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from espnet_fastadasp.decoding.timing import synchronize
from espnet_fastadasp.evaluation.environment import environment
from espnet_fastadasp.reduction import triton_received
from espnet_fastadasp.reduction.attention import (
    attention_received,
    attention_with_received,
    attention_with_received_lse,
    lse_path_usable,
)

logger = logging.getLogger("received_paths")


def interleaved_medians(fns: dict[str, Any], device: torch.device, repeats: int) -> dict[str, float]:
    """Median seconds of each function, the functions taking turns (one warm-up each first), so a
    slow spell of a shared machine falls on all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def float64_column_sums(q: torch.Tensor, k: torch.Tensor, scale: float, rows: int = 256) -> torch.Tensor:
    """The exact reference: causal softmax column sums of the (rounded) inputs in float64, (B, K)."""
    B, H, T, _ = q.shape
    qd, kd = q.double(), k.double()
    out = torch.zeros(B, T, dtype=torch.float64, device=q.device)
    for start in range(0, T, rows):
        stop = min(T, start + rows)
        logits = (qd[:, :, start:stop] @ kd[:, :, :stop].transpose(-1, -2)) * scale
        causal = torch.arange(stop, device=q.device)[None, :] <= torch.arange(start, stop, device=q.device)[:, None]
        out[:, :stop] += logits.masked_fill(~causal, float("-inf")).softmax(-1).sum(dim=(1, 2))
    return out


def eager_column_sums(q: torch.Tensor, k: torch.Tensor, scale: float, rows: int = 256) -> torch.Tensor:
    """What eager attention's own weights sum to in the inputs' dtype (logits in that dtype, softmax
    in float32, weights rounded to the dtype): the accuracy a model in that dtype has anyway."""
    B, H, T, _ = q.shape
    out = torch.zeros(B, T, dtype=torch.float32, device=q.device)
    for start in range(0, T, rows):
        stop = min(T, start + rows)
        logits = (q[:, :, start:stop] @ k[:, :, :stop].transpose(-1, -2)) * scale
        causal = torch.arange(stop, device=q.device)[None, :] <= torch.arange(start, stop, device=q.device)[:, None]
        logits = logits.masked_fill(~causal, torch.finfo(logits.dtype).min)
        out[:, :stop] += torch.softmax(logits, -1, dtype=torch.float32).to(q.dtype).float().sum(dim=(1, 2))
    return out


def max_relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """max |got - ref| / ref over the keys, ref floored at 1e-3 (a key nobody attends to is no weight)."""
    return ((got.double() - ref).abs() / ref.clamp_min(1e-3)).max().item()


def measure_length(
    T: int, heads: int, head_dim: int, dtype: torch.dtype, device: torch.device, repeats: int, windows: list[int]
) -> dict:
    g = torch.Generator(device=device).manual_seed(0)
    shape = (1, heads, T, head_dim)
    q, k, v = (torch.randn(shape, generator=g, device=device).to(dtype) for _ in range(3))
    valid = torch.ones(1, T, dtype=torch.bool, device=device)
    scale = head_dim**-0.5
    ref = float64_column_sums(q, k, scale)
    errors: dict[str, float] = {"eager_in_dtype": max_relative_error(eager_column_sums(q, k, scale), ref)}
    sums: dict[str, Any] = {}  # path -> a function returning its (B, K) sums, for the errors
    paths: dict[str, Any] = {
        "sdpa": lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "fused_torch": lambda: attention_with_received(q, k, v, valid, valid, scale),
        "sdpa+blocked": lambda: (
            F.scaled_dot_product_attention(q, k, v, is_causal=True),
            attention_received(q, k, valid, valid, scale),
        ),
    }
    sums["fused_torch"] = lambda: attention_with_received(q, k, v, valid, valid, scale)[1]
    if lse_path_usable(q, k):
        paths["lse_two_pass"] = lambda: attention_with_received_lse(q, k, v, scale)
        sums["lse_two_pass"] = lambda: attention_with_received_lse(q, k, v, scale)[1]
    def sdpa_and_window(w: int) -> tuple[torch.Tensor, torch.Tensor]:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True), attention_received(
            q[:, :, -w:], k, valid, valid[:, -w:], scale
        )

    for w in windows:  # the approximation: only the last w rows' scores (not an error to shrink)
        paths[f"sdpa+window{w}"] = functools.partial(sdpa_and_window, w)
    if triton_received.usable(q):
        paths["sdpa+triton"] = lambda: (
            F.scaled_dot_product_attention(q, k, v, is_causal=True),
            triton_received.attention_received(q, k, valid, valid, scale),
        )
        sums["sdpa+triton"] = lambda: triton_received.attention_received(q, k, valid, valid, scale)
    if triton_received.usable(q) and triton_received.flash_lse_usable(q, k):

        def flash_then_columns() -> tuple[torch.Tensor, torch.Tensor]:
            out, lse = triton_received.flash_attention_with_lse(q, k, v, scale)
            return out, triton_received.attention_received(q, k, valid, valid, scale, lse=lse)

        paths["flash_lse+triton"] = flash_then_columns
        sums["flash_lse+triton"] = lambda: flash_then_columns()[1]
    try:
        from flash_colreduce import flash_colreduce
    except ImportError:
        flash_colreduce = None
    if flash_colreduce is not None and q.is_cuda:

        def colreduce() -> torch.Tensor:
            return flash_colreduce(q, k, reduction="sum", is_causal=True, scale=scale).float().sum(1)

        paths["sdpa+flash_colreduce"] = lambda: (F.scaled_dot_product_attention(q, k, v, is_causal=True), colreduce())
        sums["sdpa+flash_colreduce"] = colreduce
    errors.update({name: max_relative_error(fn(), ref) for name, fn in sums.items()})
    out: dict[str, Any] = {"tokens": T, "max_relative_error_vs_float64": errors}
    for name, seconds in interleaved_medians(paths, device, repeats).items():
        out[f"{name}_s"] = seconds
        logger.info("T=%d %s: %.4f s", T, name, seconds)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    out["peak_bytes"] = peak
    return out


def sync_free_prefill(device: torch.device) -> dict:
    """A reduced prefill of the tiny model with CUDA's sync debug mode set to error in the layer loop."""
    import tempfile

    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    import espnet_fastadasp as fa
    from espnet_fastadasp.models.tiny import save_tiny_qwen2_audio, synthetic_audio

    with tempfile.TemporaryDirectory() as tmp:
        path = save_tiny_qwen2_audio(Path(tmp), seed=0)
        model = Qwen2AudioForConditionalGeneration.from_pretrained(path, attn_implementation="sdpa").to(device).eval()
        proc = AutoProcessor.from_pretrained(path)
    prompt = "<|im_start|><|audio_bos|><|AUDIO|><|audio_eos|>ASR:<|im_end|>"
    enc = proc(
        text=[prompt, prompt],
        audio=[synthetic_audio(1.5, 0), synthetic_audio(0.8, 1)],
        return_tensors="pt",
        padding=True,
        sampling_rate=16000,
    )
    enc = {k: v.to(device) for k, v in enc.items()}
    layers = model.model.language_model.layers
    results = {}
    for method in ("fastadasp", "fastv", "random_merge", "h2o"):
        hooks = [
            layers[0].register_forward_pre_hook(lambda *a: torch.cuda.set_sync_debug_mode("error")),
            layers[-1].register_forward_hook(lambda *a: torch.cuda.set_sync_debug_mode("default")),
        ]
        try:
            with torch.no_grad(), fa.apply(model, method=method, ratio=0.3):
                model(**enc, use_cache=True)
            results[method] = "passed"
        except RuntimeError as exc:
            results[method] = f"failed: {exc}"[:300]
        finally:
            torch.cuda.set_sync_debug_mode("default")
            for h in hooks:
                h.remove()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[3048, 6056])
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--head_dim", type=int, default=128)
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on CUDA, float32 on CPU")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--windows", type=int, nargs="*", default=[32], help="score windows W to time")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    settings = {**vars(args), "output": str(args.output)}
    data: dict[str, Any] = {"environment": environment(device, dtype), "args": settings}
    args.output.parent.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        args.output.write_text(json.dumps(data, indent=2, default=str) + "\n")

    data["lengths"] = []
    for T in args.lengths:
        data["lengths"].append(measure_length(T, args.heads, args.head_dim, dtype, device, args.repeats, args.windows))
        write()
    if device.type == "cuda":
        data["sync_debug_prefill"] = sync_free_prefill(device)
        write()
    logger.info("wrote %s", args.output)


if __name__ == "__main__":
    main()
