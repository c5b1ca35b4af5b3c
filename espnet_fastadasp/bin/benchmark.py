"""The cost benchmark: prefill, decoding, throughput and memory of a Speech LM on long audio.

    python -m espnet_fastadasp.bin.benchmark --output_dir exp/bench \\
        [--model_config qwen2_audio_7b | tiny | CONFIG.json | --model_name_or_path CKPT] \\
        [--audio_seconds 120 240] [--beams 1 5] [--new_tokens 64] [--repeats 3] [--warmup 1] \\
        [--reductions none fastadasp_constant@0.5 fastv@0.5 ...]

Why this exists: token reduction only pays off if it makes generation faster or smaller on a
real GPU at the real model size, and the paper's numbers (FASTADASP.md, "Cost") cannot be
reproduced without the exact setting. Cost does not depend on the weights' values, so by
default the model is Qwen2-Audio-7B's *shape* (``configs/qwen2_audio_7b.json``) with random
weights created directly on the device (no download, no 17 GB on the host). The prompt is
built by hand the way Qwen2-Audio's processor builds it: a text prefix, then per 30 s clip
``<|audio_bos|>``, one ``<|AUDIO|>`` per audio token (750 per full clip), ``<|audio_eos|>``,
and a text suffix; the mel features are random. Generation is forced to exactly
``--new_tokens`` tokens (``min_new_tokens = max_new_tokens``: EOS can never end it early), so
every setting decodes the same number of steps.

What is measured per (audio length, beams, reduction setting), each repetition interleaved
over all settings so that clock or thermal drift hits all of them alike:

* prefill s: the first forward call of ``generate`` (audio encoder + decoder over the whole
  prompt + LM head), timed by forward pre/post hooks on the model, synchronised on CUDA;
* decode s: from the end of the prefill to the return of ``generate``; the decoding steps are
  ``new_tokens - 1`` forward calls (the prefill already produced the first token);
* tok/s: ``(new_tokens - 1) / decode s``, new tokens per second per sequence (the paper's
  decoding throughput); step ms: the median time between the ends of consecutive forwards,
  which includes the work ``generate`` does between them (logits processing, beam search
  bookkeeping and the cache reorder), i.e. what one new token really costs;
* reduce s / scoring s: the reduction's own steps inside the prefill, timed with CUDA events (no
  synchronisation inside the prefill): choosing and merging or evicting tokens; and the attention
  kernels of the reducing layers (their own attention and the sums of the attention each token
  received, without the projections: about twice a plain attention for the exact sums, about
  once with ``-wW`` windows). prefill floor s:
  the decoder's counted prefill FLOPs / the FLOP/s of a large matmul measured once in the run;
* prompt modes (``--prompt_modes``): ``hf`` is plain ``generate`` with only the last prompt
  position through the LM head (:func:`espnet_fastadasp.prefill_last_logits`);
  ``hf_all_logits`` is plain ``generate`` as transformers runs it (every prompt position through
  the LM head: the cost users had before); ``once`` and ``shared`` run
  :func:`espnet_fastadasp.hf.shared_prompt.generate_with_shared_prompt`, whose cache drops the
  last prompt token after the prefill and ``generate`` feeds it again: ``new_tokens + 1``
  decoding forwards (step counts one higher; tok/s and step ms are per step as always);
  ``static`` runs :func:`espnet_fastadasp.hf.static_decoding.generate_static`: one prefill per
  prompt, each layer's (reduced) prompt cache shared by the beams, fixed-shape steps over static
  per-layer buffers, replayed as one CUDA graph per step on a GPU (eager on CPU); its steps are
  timed by the loop itself (CUDA events), its decode s includes building the cache and capturing
  the graph (``setup_s`` in the JSON), its step ms is the steady state;
  every ratio is against ``none`` under ``hf``, as our tools run it;
* RTF: ``generate`` wall time / audio seconds;
* peak GiB: ``torch.cuda.max_memory_allocated`` during ``generate`` (weights included; null
  on CPU); KV MiB: bytes of the KV cache after generation, summed over layers and rows (per
  layer in the JSON), read from ``return_dict_in_generate=True``'s cache;
* FLOPs: the analytic prefill FLOPs of the decoder (``espnet_fastadasp.core.flops``) and the
  achieved reduction from ``handle.stats``;
* floor ms: the least time a decoding step can take on this memory system: the bytes it must
  read (decoder weights + LM head, and the KV cache of every row at the step's average
  length) / the bandwidth of a large device-to-device copy measured once in the run ((read +
  written bytes) / time; on CPU it is only indicative). ``x floor = step ms / floor ms``:
  near 1 the step is bandwidth-bound and a smaller KV cache shows directly; far above 1 it is
  bound by overheads (kernel launches, Python, cache copies) that token reduction does not
  touch.

``results.json`` (every run, summaries, ratios against ``none`` at the same audio and beams,
and the environment) and ``results.md`` (one table per audio length and beams) are rewritten
after each run, so a killed run keeps what it measured. A setting that runs out of GPU memory
or whose FLOPs target is unreachable is recorded as an error and skipped from then on.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from espnet_fastadasp.benchmark.inputs import (
    DEFAULT_REDUCTIONS,
    GIB,
    MIB,
    OOM_ERRORS,
    PROMPT_MODES,
    WHISPER_HOP_LENGTH,
    WHISPER_SAMPLING_RATE,
    build_inputs,
    build_random_model,
    clip_frames,
    feature_extractor_frame,
    load_config,
    load_pretrained,
    prompt_spec,
)
from espnet_fastadasp.benchmark.measure import (
    Setting,
    decode_weight_bytes,
    measure_bandwidth,
    measure_matmul_rate,
    run_once,
)
from espnet_fastadasp.benchmark.results import Results
from espnet_fastadasp.core.config import ConfigError, parse_reduction_spec
from espnet_fastadasp.core.flops import DecoderDims
from espnet_fastadasp.decoding.timing import GenerationTimer
from espnet_fastadasp.evaluation.environment import environment
from espnet_fastadasp.hf.parts import audio_tokens_for, speech_lm_parts
from espnet_fastadasp.hf.static_decoding import STEP_MODES

logger = logging.getLogger("espnet_fastadasp.benchmark")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model_config",
        default="qwen2_audio_7b",
        help="random weights of this shape: a Qwen2AudioConfig JSON path, a name in espnet_fastadasp/configs "
        "(qwen2_audio_7b), or 'tiny' (the test model)",
    )
    model.add_argument(
        "--model_name_or_path", default=None, help="a real checkpoint (from_pretrained) instead of --model_config"
    )
    model.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    model.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    model.add_argument("--attn_implementation", default="sdpa", choices=["sdpa", "eager"])
    model.add_argument("--seed", type=int, default=0, help="for the random weights and inputs")
    model.add_argument(
        "--dry_run",
        action="store_true",
        help="build the model on the meta device, print its size and the prompt lengths, run nothing",
    )
    run = parser.add_argument_group("settings")
    run.add_argument("--audio_seconds", type=float, nargs="+", default=[120.0, 240.0])
    run.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    run.add_argument(
        "--reductions",
        nargs="+",
        default=list(DEFAULT_REDUCTIONS),
        help="recipe spec strings (none, METHOD[_SCHEDULE]@FLOPS_TARGET, METHOD[_SCHEDULE]%%RATIO, a .yaml)",
    )
    run.add_argument(
        "--prompt_modes",
        nargs="+",
        default=["hf"],
        choices=PROMPT_MODES,
        help="hf: plain generate (prompt repeated per beam), the prefill's LM head on the last position only "
        "(espnet_fastadasp.prefill_last_logits); hf_all_logits: the same with the LM head on every prompt "
        "position (transformers' default); once: prefilled once, cache copied per beam; "
        "shared: prefilled once, one cache shared by the beams (espnet_fastadasp.hf.shared_prompt); "
        "static: prefilled once, the prompt shared, fixed-shape steps over per-layer static caches, a CUDA graph "
        "per step on a GPU (espnet_fastadasp.hf.static_decoding)",
    )
    run.add_argument(
        "--static_step_mode",
        default="auto",
        choices=STEP_MODES,
        help="how the static prompt mode runs its steps (auto: a CUDA graph on CUDA, eager on CPU; "
        "compile_cuda_graph: torch.compile's fused step captured as a graph, compiled anew per shape)",
    )
    run.add_argument("--start_layer", type=int, default=2, help="first reducing layer (once: the only one)")
    run.add_argument("--new_tokens", type=int, default=64, help="forced number of new tokens per sequence")
    run.add_argument("--batch_size", type=int, default=1, help="identical prompts per generate call")
    run.add_argument("--prefix_tokens", type=int, default=20, help="text tokens before the audio")
    run.add_argument("--suffix_tokens", type=int, default=20, help="text tokens after the audio")
    run.add_argument("--warmup", type=int, default=1, help="unrecorded passes over all settings")
    run.add_argument("--repeats", type=int, default=3, help="recorded passes over all settings (interleaved)")
    run.add_argument("--bandwidth_mib", type=int, default=None, help="copy size for the bandwidth probe")
    parser.add_argument("--output_dir", type=Path, default=None, help="results.json, results.md (required to run)")
    parser.add_argument("--log_level", default="INFO")
    return parser


# ---------------------------------------------------------------------------------------- driver


def make_settings(
    audio_seconds: Sequence[float],
    beams: Sequence[int],
    reductions: Sequence[str],
    start_layer: int,
    prompt_modes: Sequence[str] = ("hf",),
) -> list[Setting]:
    """Every (audio, beams, reduction, prompt mode) combination; specs are parsed once, up front,
    so a typo fails at once. A mode other than ``hf`` is tagged ``<reduction>+<mode>``; a spec
    written ``<reduction>+<mode>`` runs in that mode only (``none+hf_all_logits``)."""
    # each item may itself hold several space-separated settings, as recipes write them
    reductions = [spec for item in reductions for spec in item.split()]
    bad = [m for m in prompt_modes if m not in PROMPT_MODES]
    if bad or len(set(prompt_modes)) != len(prompt_modes):
        raise ConfigError(f"--prompt_modes: each of {PROMPT_MODES} at most once; got {list(prompt_modes)}")
    pairs = []  # (spec, the modes it runs in)
    for spec in reductions:
        base, _, mode = spec.rpartition("+")
        if base and mode in PROMPT_MODES:
            pairs.append((base, (mode,)))
        else:
            pairs.append((spec, tuple(prompt_modes)))
    parsed = [(parse_reduction_spec(spec, start_layer=start_layer), modes) for spec, modes in pairs]
    tags = [tag if mode == "hf" else f"{tag}+{mode}" for (tag, _), modes in parsed for mode in modes]
    if len(set(tags)) != len(tags):
        raise ConfigError(f"duplicate reduction settings in {list(reductions)}")
    return [
        Setting(float(a), int(b), tag if mode == "hf" else f"{tag}+{mode}", cfg, mode)
        for a in audio_seconds
        for b in beams
        for mode in prompt_modes
        for (tag, cfg), modes in parsed
        if mode in modes
    ] + [
        Setting(float(a), int(b), f"{tag}+{mode}", cfg, mode)
        for a in audio_seconds
        for b in beams
        for (tag, cfg), modes in parsed
        for mode in modes
        if mode not in prompt_modes
    ]


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def benchmark(
    model: nn.Module,
    output_dir: str | Path,
    *,
    audio_seconds: Sequence[float] = (120.0, 240.0),
    beams: Sequence[int] = (1, 5),
    reductions: Sequence[str] = DEFAULT_REDUCTIONS,
    prompt_modes: Sequence[str] = ("hf",),
    start_layer: int = 2,
    new_tokens: int = 64,
    batch_size: int = 1,
    prefix_tokens: int = 20,
    suffix_tokens: int = 20,
    warmup: int = 1,
    repeats: int = 3,
    hop_length: int = WHISPER_HOP_LENGTH,
    sampling_rate: int = WHISPER_SAMPLING_RATE,
    bandwidth_bytes: int | None = None,
    seed: int = 0,
    meta: dict[str, Any] | None = None,
    static_step_mode: str = "auto",
) -> dict[str, Any]:
    """Measure every setting ``warmup + repeats`` times, interleaved; returns ``results.json``'s content.

    Passes run over all settings in turn (pass -> audio -> beams -> reduction), so slow drift
    (clocks, temperature, allocator state) is shared by all settings instead of biasing the
    ones measured last. Warm-up passes are not recorded.
    """
    if new_tokens < 2:
        raise ValueError("--new_tokens must be >= 2 (one from the prefill, at least one decoding step)")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    settings = make_settings(audio_seconds, beams, reductions, start_layer, prompt_modes)
    spec = prompt_spec(model.config, hop_length, sampling_rate)
    results = Results(
        output_dir=Path(output_dir),
        meta={
            "environment": environment(device, dtype),
            "dtype": str(dtype).removeprefix("torch."),
            "new_tokens": new_tokens,
            "batch_size": batch_size,
            "warmup": warmup,
            "repeats": repeats,
            "window_s": spec.window_s,
            "parameters": sum(p.numel() for p in model.parameters()),
            "parameter_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
            "model": getattr(model.config, "_name_or_path", "") or type(model).__name__,
            **(meta or {}),
        },
        settings=settings,
    )
    results.weight_bytes = decode_weight_bytes(model)
    if bandwidth_bytes is None:
        bandwidth_bytes = (2048 if device.type == "cuda" else 64) * MIB
    bw = measure_bandwidth(device, bandwidth_bytes)
    results.bandwidth = bw["bytes_per_s"]
    results.meta["bandwidth_probe"] = bw
    mm = measure_matmul_rate(device, dtype, 8192 if device.type == "cuda" else 2048)
    results.matmul_rate = mm["flops_per_s"]
    results.meta["matmul_probe"] = mm
    logger.info(
        "device %s: copy bandwidth %.2f TB/s; decoding reads %.2f GB of weights per step (floor %.2f ms + KV)",
        device,
        bw["bytes_per_s"] / 1e12,
        results.weight_bytes / 1e9,
        1000 * results.weight_bytes / bw["bytes_per_s"],
    )

    inputs_by_audio: dict[float, dict[str, torch.Tensor]] = {}
    for a in sorted({s.audio_seconds for s in settings}):
        inputs, info = build_inputs(a, spec, batch_size, prefix_tokens, suffix_tokens, device, dtype, seed)
        if info["prompt_tokens"] + new_tokens > spec.max_positions:
            logger.warning(
                "%g s: %d prompt + %d new tokens exceed max_position_embeddings=%d",
                a,
                info["prompt_tokens"],
                new_tokens,
                spec.max_positions,
            )
        inputs_by_audio[a] = inputs
        for s in settings:
            if s.audio_seconds == a:
                results.inputs[s.group] = info
        logger.info(
            "%g s audio: %d clips, %d audio tokens, %d prompt tokens",
            a,
            info["clips"],
            info["audio_tokens"],
            info["prompt_tokens"],
        )
    results.write()

    timer = GenerationTimer(model, device, per_step=True)
    try:
        for p, setting in _progress(settings, warmup + repeats):
            if setting.key in results.errors:
                continue
            recorded = p >= warmup
            error = None
            try:
                run = run_once(
                    model,
                    inputs_by_audio[setting.audio_seconds],
                    setting,
                    timer,
                    spec,
                    new_tokens,
                    device,
                    static_step_mode,
                )
            except (*OOM_ERRORS, ConfigError) as exc:
                kind = "out of memory" if isinstance(exc, OOM_ERRORS) else "config"
                error = f"{kind}: {exc}"
            if error is not None:
                # outside the except block: the traceback (and the tensors its frames hold) is gone
                results.errors[setting.key] = error
                logger.error("%s: %s; skipped from now on", setting.key, error.splitlines()[0][:300])
                _free(device)
                results.write()
                continue
            if run["new_tokens"] != new_tokens:
                logger.warning("%s: generated %d tokens, not %d", setting.key, run["new_tokens"], new_tokens)
            logger.info(
                "%s %s: prefill %.3f s, decode %.3f s (%.1f tok/s, step %.2f ms), peak %s, KV %.1f MiB, FLOPs -%.1f%%",
                "run" if recorded else "warm-up",
                setting.key,
                run["prefill_s"],
                run["decode_s"],
                run["decode_tok_s"] or 0.0,
                run["step_ms_median"] or 0.0,
                "-" if run["peak_bytes"] is None else f"{run['peak_bytes'] / GIB:.2f} GiB",
                run["kv_bytes"] / MIB,
                100 * run["flops_reduction"],
            )
            if recorded:
                results.runs.setdefault(setting.key, []).append(run)
                results.write()
    finally:
        timer.remove()
    results.write()
    return results.to_dict()


def _progress(settings: list[Setting], passes: int) -> Iterator[tuple[int, Setting]]:
    from tqdm import tqdm

    order = [(p, s) for p in range(passes) for s in settings]
    yield from tqdm(order, desc="benchmark", unit="run", mininterval=5.0)


def dry_run(config: Any, args: argparse.Namespace, dtype: torch.dtype) -> dict[str, Any]:
    """Build the model on ``meta`` (no memory) and report its size and the prompts; runs nothing."""
    model = build_random_model(config, torch.device("meta"), dtype, args.attn_implementation, args.seed)
    spec = prompt_spec(model.config, *feature_extractor_frame(args.model_name_or_path))
    dims = DecoderDims.from_config(speech_lm_parts(model).text_config)
    kv_per_token = 2 * dims.num_layers * dims.num_kv_heads * dims.head_dim * torch.empty((), dtype=dtype).element_size()
    prompts = {}
    for a in args.audio_seconds:
        frames = clip_frames(a, spec)
        audio = sum(audio_tokens_for(f) for f in frames)
        prompts[f"{a:g}"] = {
            "clips": len(frames),
            "audio_tokens": audio,
            "prompt_tokens": args.prefix_tokens + audio + 2 * len(frames) + args.suffix_tokens,
        }
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "decode_weight_bytes": decode_weight_bytes(model),
        "kv_bytes_per_token": kv_per_token,
        "window_s": spec.window_s,
        "prompts": prompts,
    }


def main(cmd: Sequence[str] | None = None) -> dict[str, Any]:
    parser = get_parser()
    args = parser.parse_args(cmd)
    if args.output_dir is None and not args.dry_run:
        parser.error("--output_dir is required (except with --dry_run)")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dtype = getattr(torch, args.dtype)
    config = None if args.model_name_or_path else load_config(args.model_config)
    if args.dry_run:
        if config is None:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(args.model_name_or_path)
        info = dry_run(config, args, dtype)
        print(json.dumps(info, indent=2))
        return info
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    t0 = time.perf_counter()
    if args.model_name_or_path:
        model = load_pretrained(args.model_name_or_path, device, dtype, args.attn_implementation)
        model_name = args.model_name_or_path
    else:
        model = build_random_model(config, device, dtype, args.attn_implementation, args.seed)
        model_name = f"{args.model_config} (random weights)"
    logger.info(
        "model %s: %.2fB parameters, %s on %s, built in %.1f s",
        model_name,
        sum(p.numel() for p in model.parameters()) / 1e9,
        dtype,
        device,
        time.perf_counter() - t0,
    )
    hop, sr = feature_extractor_frame(args.model_name_or_path)
    return benchmark(
        model,
        args.output_dir,
        audio_seconds=args.audio_seconds,
        beams=args.beams,
        reductions=args.reductions,
        prompt_modes=args.prompt_modes,
        start_layer=args.start_layer,
        new_tokens=args.new_tokens,
        batch_size=args.batch_size,
        prefix_tokens=args.prefix_tokens,
        suffix_tokens=args.suffix_tokens,
        warmup=args.warmup,
        repeats=args.repeats,
        hop_length=hop,
        sampling_rate=sr,
        bandwidth_bytes=args.bandwidth_mib * MIB if args.bandwidth_mib else None,
        seed=args.seed,
        meta={"model": model_name, "attn_implementation": args.attn_implementation, "args": vars(args)},
        static_step_mode=args.static_step_mode,
    )


if __name__ == "__main__":
    main()
