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
  :func:`espnet_fastadasp.generation.shared_prompt.generate_with_shared_prompt`, whose cache drops the
  last prompt token after the prefill and ``generate`` feeds it again: ``new_tokens + 1``
  decoding forwards (step counts one higher; tok/s and step ms are per step as always);
  ``static`` runs :func:`espnet_fastadasp.generation.static_decoding.generate_static`: one prefill per
  prompt, each layer's (reduced) prompt cache shared by the beams, fixed-shape steps over static
  per-layer buffers, replayed as one CUDA graph per step on a GPU (eager on CPU); its steps are
  timed by the loop itself (CUDA events), its decode s includes building the cache and capturing
  the graph (``setup_s`` in the JSON), its step ms is the steady state;
  every ratio is against ``none`` under ``hf``, as our tools run it;
* RTF: ``generate`` wall time / audio seconds;
* peak GiB: ``torch.cuda.max_memory_allocated`` during ``generate`` (weights included); on CPU
  the process's peak resident set during the call (VmHWM of /proc/self/status, reset through
  /proc/self/clear_refs just before it, after freed heap pages are handed back with
  ``malloc_trim``): every byte the process held at its highest point, weights, Python and
  libraries included; peak added GiB: that peak less what was held just before the call (the
  call's own cache, activations and logits); KV MiB: bytes of the KV cache after generation,
  summed over layers and rows (per layer in the JSON), read from
  ``return_dict_in_generate=True``'s cache;
* FLOPs: the analytic prefill FLOPs of the decoder (``espnet_fastadasp.core.flops``) and the
  achieved reduction from ``handle.stats``;
* floor ms: the least time a decoding step can take on this memory system: the bytes it must
  read (decoder weights + LM head, and the KV cache of every row at the step's average
  length) / a read rate measured once in the run (``--floor_bandwidth``): on CUDA the bandwidth
  of a large device-to-device copy ((read + written bytes) / time), on CPU the read rate of a
  one-row product with a weight of the model's up-projection shape in its dtype (weight bytes /
  time: what the CPU's decoding kernels stream at, below a copy's rate); both probes, and the
  product at the beam count's rows, are in the JSON. ``x floor = step ms / floor ms``:
  near 1 the step is bandwidth-bound and a smaller KV cache shows directly; far above 1 it is
  bound by overheads (kernel launches, Python, cache copies) that token reduction does not
  touch, or (bfloat16 without AMX at several rows) by arithmetic;
* ``vs path none``: tok/s against ``none`` along the same path, the reduction's own share apart
  from the path's (a static cache alone already avoids ``DynamicLayer``'s re-concatenation);
* ``--profile_step``: one decoding step of each setting under ``torch.profiler`` (its top
  operators by self CPU time in the JSON, the table in ``profiles/``);
* ``--num_layers N`` (``--audio_layers M``): the shape's first N decoder (M encoder) layers at
  full width, for a real layer shape on a machine too small or slow for the whole model;
  ``--groups 240:5 120:1``: only these (audio, beams) pairs; ``--resume``: keep the runs of an
  earlier ``results.json`` and run only the missing repeats.

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
    truncate_layers,
)
from espnet_fastadasp.benchmark.measure import (
    Setting,
    decode_weight_bytes,
    measure_bandwidth,
    measure_gemv_bandwidth,
    measure_matmul_rate,
    run_once,
)
from espnet_fastadasp.benchmark.results import Results
from espnet_fastadasp.core.config import ConfigError, parse_reduction_spec
from espnet_fastadasp.core.flops import DecoderDims
from espnet_fastadasp.decoding.timing import GenerationTimer
from espnet_fastadasp.evaluation.environment import environment
from espnet_fastadasp.generation.static_decoding import STEP_MODES
from espnet_fastadasp.models.parts import audio_tokens_for, speech_lm_parts

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
    model.add_argument(
        "--num_layers",
        type=int,
        default=None,
        help="keep only the first N decoder layers of --model_config's shape (width, heads, FFN, vocab "
        "unchanged): a real layer shape where the whole model does not fit or takes too long; per-layer "
        "figures and the ratios between settings carry over, the LM head weighs more in a step",
    )
    model.add_argument(
        "--audio_layers",
        type=int,
        default=None,
        help="keep only the first M audio encoder layers (0: the convolutional front end alone); the encoder "
        "is idle while decoding, this only shortens the prefill (prefill s then holds less of the encoder)",
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
        "--groups",
        nargs="+",
        default=None,
        metavar="AUDIO:BEAMS",
        help="run only these (audio seconds, beams) pairs, e.g. 240:5 240:1 120:1, instead of every "
        "--audio_seconds x --beams",
    )
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
        "shared: prefilled once, one cache shared by the beams (espnet_fastadasp.generation.shared_prompt); "
        "static: prefilled once, the prompt shared, fixed-shape steps over per-layer static caches, a CUDA graph "
        "per step on a GPU (espnet_fastadasp.generation.static_decoding)",
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
    run.add_argument(
        "--warmup_audio_seconds",
        type=float,
        default=None,
        help="run the warm-up passes on this much audio instead of each setting's own (every code path and "
        "kernel warmed at a fraction of a long prefill's cost)",
    )
    run.add_argument(
        "--warmup_new_tokens",
        type=int,
        default=None,
        help="forced new tokens of the warm-up passes (default --new_tokens)",
    )
    run.add_argument("--repeats", type=int, default=3, help="recorded passes over all settings (interleaved)")
    run.add_argument("--bandwidth_mib", type=int, default=None, help="copy size for the bandwidth probe")
    run.add_argument(
        "--floor_bandwidth",
        default="auto",
        choices=["auto", "copy", "gemv"],
        help="the read rate the step floor divides by: copy ((read + written bytes) / time of a large copy), "
        "gemv (weight bytes / time of a one-row product with an 11008x4096 weight in --dtype, what a CPU's "
        "decoding kernels read at); auto: gemv on CPU, copy on CUDA. Both are measured and recorded",
    )
    run.add_argument(
        "--profile_step",
        action="store_true",
        help="profile one decoding step (torch.profiler, the middle step) of every setting in its last recorded "
        "repeat: top operators by self CPU time in results.json, the full table in profiles/<setting>.txt; "
        "the two steps the profiled window overlaps are left out of that run's timings",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="keep the runs and errors of --output_dir's results.json (same model, dtype and run settings) and "
        "run only the repeats still missing",
    )
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
    warmup_audio_seconds: float | None = None,
    warmup_new_tokens: int | None = None,
    floor_bandwidth: str = "auto",
    profile_step: bool = False,
    resume: bool = False,
    groups: Sequence[tuple[float, int]] | None = None,
) -> dict[str, Any]:
    """Measure every setting ``warmup + repeats`` times, interleaved; returns ``results.json``'s content.

    Passes run over all settings in turn (pass -> audio -> beams -> reduction), so slow drift
    (clocks, temperature, allocator state) is shared by all settings instead of biasing the
    ones measured last. Warm-up passes are not recorded; with ``warmup_audio_seconds`` they run
    on that much audio and ``warmup_new_tokens`` tokens. ``groups``: only these (audio seconds,
    beams) pairs. ``resume``: keep what ``output_dir/results.json`` already holds (see
    :func:`_resume`) and run only the missing repeats.
    """
    if new_tokens < 2 or (warmup_new_tokens is not None and warmup_new_tokens < 2):
        raise ValueError("--new_tokens must be >= 2 (one from the prefill, at least one decoding step)")
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    if groups is not None:
        audio_seconds = sorted({float(a) for a, _ in groups}, reverse=True)
        beams = sorted({int(b) for _, b in groups}, reverse=True)
    settings = make_settings(audio_seconds, beams, reductions, start_layer, prompt_modes)
    if groups is not None:
        wanted = {(float(a), int(b)) for a, b in groups}
        settings = [s for s in settings if (s.audio_seconds, s.beams) in wanted]
    spec = prompt_spec(model.config, hop_length, sampling_rate)
    text_config = speech_lm_parts(model).text_config
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
            "decoder_layers": text_config.num_hidden_layers,
            "peak_memory": "torch.cuda.max_memory_allocated"
            if device.type == "cuda"
            else "process peak RSS (VmHWM, reset before each generate)",
            "warmup_audio_seconds": warmup_audio_seconds,
            "warmup_new_tokens": warmup_new_tokens,
            **(meta or {}),
        },
        settings=settings,
    )
    results.weight_bytes = decode_weight_bytes(model)
    if resume:
        _resume(results, Path(output_dir))
    if results.meta.get("bandwidth_probe") is None:  # a resumed run keeps its first probes
        _probe(results, device, dtype, text_config, beams, bandwidth_bytes, floor_bandwidth)

    inputs_by_audio: dict[float, dict[str, torch.Tensor]] = {}
    if warmup_audio_seconds is not None and warmup > 0:
        inputs_by_audio[warmup_audio_seconds] = build_inputs(
            warmup_audio_seconds, spec, batch_size, prefix_tokens, suffix_tokens, device, dtype, seed
        )[0]
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
            done = len(results.runs.get(setting.key, []))
            if done >= repeats or (recorded and done > p - warmup):
                continue  # resumed: this repeat (or every repeat of the setting) is in results.json
            warm_audio = not recorded and warmup_audio_seconds is not None
            audio = warmup_audio_seconds if warm_audio else setting.audio_seconds
            tokens = warmup_new_tokens if not recorded and warmup_new_tokens else new_tokens
            error = None
            try:
                run = run_once(
                    model,
                    inputs_by_audio[audio],
                    setting,
                    timer,
                    spec,
                    tokens,
                    device,
                    static_step_mode,
                    profile_step=profile_step and p == warmup + repeats - 1,
                )
            except (*OOM_ERRORS, ConfigError) as exc:
                kind = "out of memory" if isinstance(exc, OOM_ERRORS) else "config"
                error = f"{kind}: {exc}"
            if error is not None and warm_audio:
                # a target unreachable on the short warm-up audio says nothing of the setting's own
                logger.warning("warm-up of %s on %g s: %s", setting.key, audio, error.splitlines()[0][:300])
                _free(device)
                continue
            if error is not None:
                # outside the except block: the traceback (and the tensors its frames hold) is gone
                results.errors[setting.key] = error
                logger.error("%s: %s; skipped from now on", setting.key, error.splitlines()[0][:300])
                _free(device)
                results.write()
                continue
            if run["new_tokens"] != tokens:
                logger.warning("%s: generated %d tokens, not %d", setting.key, run["new_tokens"], tokens)
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
            if run["profile"] is not None:
                table = run["profile"].pop("table")
                if recorded:
                    path = Path(output_dir) / "profiles" / (setting.key.replace("/", "__") + ".txt")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(f"{setting.key}: one decoding step ({run['profile']['wall_ms']:.1f} ms under "
                                    f"the profiler), operators by self CPU time\n\n{table}\n")
                    run["profile"]["file"] = str(path.relative_to(output_dir))
            if recorded:
                results.runs.setdefault(setting.key, []).append(run)
                results.write()
    finally:
        timer.remove()
    results.write()
    return results.to_dict()


def _probe(
    results: Results,
    device: torch.device,
    dtype: torch.dtype,
    text_config: Any,
    beams: Sequence[int],
    bandwidth_bytes: int | None,
    floor_bandwidth: str,
) -> None:
    """Measure the memory system and the matmul rate once, and choose the floor's read rate."""
    if bandwidth_bytes is None:
        bandwidth_bytes = (2048 if device.type == "cuda" else 64) * MIB
    bw = measure_bandwidth(device, bandwidth_bytes)
    # the decoding step's own kind of product, at the model's up-projection shape: one row, and the beams
    shape = (text_config.intermediate_size, text_config.hidden_size)
    gemv = [measure_gemv_bandwidth(device, dtype, rows, shape) for rows in sorted({1, *beams})]
    if floor_bandwidth == "auto":
        floor_bandwidth = "copy" if device.type == "cuda" else "gemv"
    results.bandwidth = gemv[0]["bytes_per_s"] if floor_bandwidth == "gemv" else bw["bytes_per_s"]
    results.meta.update(bandwidth_probe=bw, gemv_probes=gemv, floor_bandwidth=floor_bandwidth)
    mm = measure_matmul_rate(device, dtype, 8192 if device.type == "cuda" else 2048)
    results.matmul_rate = mm["flops_per_s"]
    results.meta["matmul_probe"] = mm
    logger.info(
        "device %s: copy %.1f GB/s (read + written), %s product reads %s; floor at %.1f GB/s (%s); "
        "decoding reads %.2f GB of weights per step (floor %.2f ms + KV)",
        device,
        bw["bytes_per_s"] / 1e9,
        "x".join(map(str, shape)),
        ", ".join(f"{g['bytes_per_s'] / 1e9:.1f} GB/s at {g['rows']} row(s)" for g in gemv),
        results.bandwidth / 1e9,
        floor_bandwidth,
        results.weight_bytes / 1e9,
        1000 * results.weight_bytes / results.bandwidth,
    )


#: what must match for a resumed run's earlier repeats to count
RESUME_KEYS = (
    "dtype",
    "new_tokens",
    "batch_size",
    "model",
    "decoder_layers",
    "parameters",
    "audio_layers",
    "prefix_tokens",
    "suffix_tokens",
    "start_layer",
    "static_step_mode",
)


def _resume(results: Results, output_dir: Path) -> None:
    """Take the earlier runs, errors and probes of ``output_dir/results.json`` into ``results``;
    refuse when they were measured under other settings (:data:`RESUME_KEYS`)."""
    path = output_dir / "results.json"
    if not path.is_file():
        return
    old = json.loads(path.read_text())
    mine = {k: results.meta.get(k, results.meta.get("args", {}).get(k)) for k in RESUME_KEYS}
    theirs = {k: old.get(k, old.get("args", {}).get(k)) for k in RESUME_KEYS}
    differ = {k: (theirs[k], mine[k]) for k in RESUME_KEYS if theirs[k] != mine[k]}
    if differ:
        raise ConfigError(f"--resume: {path} was measured under other settings (earlier, now): {differ}")
    keys = {s.key for s in results.settings}
    for s in old["settings"]:
        if s["key"] in keys:
            if s["runs"]:
                results.runs[s["key"]] = s["runs"]
            if s["error"]:
                results.errors[s["key"]] = s["error"]
    for name in ("bandwidth_probe", "gemv_probes", "floor_bandwidth", "matmul_probe"):
        results.meta[name] = old.get(name)
    results.bandwidth = old["bandwidth_bytes_per_s"]
    results.matmul_rate = old.get("matmul_flops_per_s")
    results.meta["resumed"] = results.meta.get("resumed", []) + [old.get("environment", {}).get("date")]
    logger.info(
        "resumed %s: %d runs of %d settings, %d errors", path, sum(map(len, results.runs.values())),
        len(results.runs), len(results.errors)
    )


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
    layers_of_shape = None
    if args.num_layers is not None or args.audio_layers is not None:
        if config is None:
            parser.error("--num_layers / --audio_layers shape a --model_config, not a checkpoint")
        layers_of_shape = truncate_layers(config, args.num_layers, args.audio_layers)
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
        meta={
            "model": model_name,
            "attn_implementation": args.attn_implementation,
            "layers_of_shape": layers_of_shape,
            "args": vars(args),
        },
        static_step_mode=args.static_step_mode,
        warmup_audio_seconds=args.warmup_audio_seconds,
        warmup_new_tokens=args.warmup_new_tokens,
        floor_bandwidth=args.floor_bandwidth,
        profile_step=args.profile_step,
        resume=args.resume,
        groups=parse_groups(parser, args.groups),
    )


def parse_groups(parser: argparse.ArgumentParser, groups: Sequence[str] | None) -> list[tuple[float, int]] | None:
    """``--groups 240:5 120:1`` -> [(240.0, 5), (120.0, 1)]."""
    if groups is None:
        return None
    out = []
    for item in groups:
        audio, sep, beams = item.partition(":")
        try:
            out.append((float(audio), int(beams)))
        except ValueError:
            sep = ""
        if not sep:
            parser.error(f"--groups {item!r}: want AUDIO_SECONDS:BEAMS, e.g. 240:5")
    return out


if __name__ == "__main__":
    main()
