"""One benchmark run: generate under one setting, timed, with its memory, KV cache and floor."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import espnet_fastadasp as fa
from espnet_fastadasp.benchmark.inputs import PromptSpec
from espnet_fastadasp.core.flops import DecoderDims, full_prefill_flops
from espnet_fastadasp.decoding.timing import GenerationTimer, synchronize
from espnet_fastadasp.generation.shared_prompt import SharedPromptLayer, generate_with_shared_prompt
from espnet_fastadasp.generation.static_cache import StaticStepLayer
from espnet_fastadasp.generation.static_decoding import generate_static
from espnet_fastadasp.models.compat import cache_of_output
from espnet_fastadasp.models.parts import speech_lm_parts

logger = logging.getLogger("espnet_fastadasp.benchmark")


def measure_bandwidth(device: torch.device, nbytes: int, repeats: int = 10) -> dict[str, float]:
    """Memory bandwidth as (bytes read + bytes written) / time of a large copy, median of ``repeats``.

    This is what a decoding step can at best stream from memory: the floor of a step is the
    bytes it must read divided by this.
    """
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    src.fill_(1)
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        synchronize(device)
        times.append(time.perf_counter() - t0)
    del src, dst
    t = statistics.median(times)
    return {"bytes_copied": nbytes, "seconds": t, "bytes_per_s": 2 * nbytes / t}


def measure_gemv_bandwidth(
    device: torch.device,
    dtype: torch.dtype,
    rows: int = 1,
    shape: tuple[int, int] = (11008, 4096),
    repeats: int = 10,
) -> dict[str, float]:
    """The read rate of a decoding step's kind of product: ``rows`` rows times a weight of ``shape``
    (Qwen2-Audio-7B's up projection by default: 90 MB in bf16, larger than a CPU's caches), as the
    weight's bytes / time, median of ``repeats``.

    Why beside the copy: a decoding step streams its weights through matrix-vector products, and a
    CPU's product kernels read more slowly than a copy moves bytes (and a copy's bytes are read and
    written), so on a CPU this is the rate the step's floor is reached at. With ``rows`` > 1 (the
    beams) it shows whether the product is still bound by reading (the same rate) or by arithmetic
    (a lower one: bfloat16 without AMX or AVX512-BF16 units)."""
    weight = torch.randn(*shape, device=device).to(dtype)
    x = torch.randn(rows, shape[1], device=device).to(dtype)
    for _ in range(3):
        torch.nn.functional.linear(x, weight)
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        torch.nn.functional.linear(x, weight)
        synchronize(device)
        times.append(time.perf_counter() - t0)
    nbytes = weight.numel() * weight.element_size()
    del weight, x
    t = statistics.median(times)
    return {"rows": rows, "shape": list(shape), "bytes_read": nbytes, "seconds": t, "bytes_per_s": nbytes / t}


def measure_matmul_rate(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 5) -> dict[str, float]:
    """FLOP/s of a large square matmul in ``dtype``, median of ``repeats``: what a prefill's
    matmuls can at best run at on this device (the prefill floor is its FLOPs / this)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - t0)
    del a, b
    t = statistics.median(times)
    return {"size": size, "seconds": t, "flops_per_s": 2 * size**3 / t}


_STATUS = Path("/proc/self/status")


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM) in bytes; None where there is none."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def release_freed_host_memory() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``), so the next call's peak RSS
    starts from what is live, not from what an earlier call freed but the allocator kept."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> int | None:
    """Reset this process's peak resident set (Linux: ``echo 5 > /proc/self/clear_refs`` sets
    VmHWM to the current VmRSS) and return the RSS it starts from; None where that is not possible
    (not Linux, no permission): then no CPU peak is reported."""
    gc.collect()  # an earlier call's cache may sit in reference cycles
    release_freed_host_memory()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_bytes("VmRSS")


def peak_rss() -> int | None:
    """The process's peak resident set since :func:`reset_peak_rss` (VmHWM): every byte the
    process held in RAM at its highest point, the model's weights included."""
    return _status_bytes("VmHWM")


class StepProfiler:
    """``torch.profiler`` over one decoding step of any path: from the decoder's call ``call``
    (1 = the prefill) to its next call, both taken at the decoder's forward pre-hook.

    Every path calls the text decoder once per step (plain ``generate`` inside the model's
    forward; the static path from its step function), so the window holds one step and what runs
    between two steps (the LM head, the search, the cache reorder, ``generate``'s bookkeeping).
    The window overlaps two of the timed steps, which the caller drops from its timings
    (:meth:`overlapped_steps`): the profiler's own overhead stays out of the figures."""

    def __init__(self, decoder: nn.Module, call: int, device: torch.device) -> None:
        if call < 2:
            raise ValueError("call must be >= 2 (call 1 is the prefill)")
        self.call, self.device = call, device
        self.calls = 0
        self.prof: Any = None
        self.wall_s: float | None = None
        self._t0 = 0.0
        self._hook = decoder.register_forward_pre_hook(self._pre)

    def _pre(self, module: nn.Module, args: Any) -> None:
        self.calls += 1
        if self.calls == self.call:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device.type == "cuda" else [])
            self.prof = profile(activities=activities)
            self.prof.start()
            synchronize(self.device)
            self._t0 = time.perf_counter()
        elif self.calls == self.call + 1 and self.prof is not None:
            self._stop()

    def _stop(self) -> None:
        synchronize(self.device)
        self.wall_s = time.perf_counter() - self._t0
        self.prof.stop()

    def remove(self) -> None:
        self._hook.remove()
        if self.prof is not None and self.wall_s is None:  # the generation ended inside the window
            self._stop()

    @property
    def done(self) -> bool:
        return self.wall_s is not None

    def overlapped_steps(self) -> tuple[int, int]:
        """Indices in the step-time list of the two steps the window overlaps: step ``i`` runs
        from the end of decoder call ``i + 1`` to the end of call ``i + 2``."""
        return self.call - 2, self.call - 1

    def top(self, n: int = 12) -> list[dict[str, Any]]:
        """The ``n`` operators with the most self CPU time in the window."""
        events = sorted(self.prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
        return [
            {"name": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1000.0} for e in events[:n]
        ]

    def table(self, rows: int = 30) -> str:
        return self.prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def decode_weight_bytes(model: nn.Module) -> int:
    """Bytes of the weights one decoding step reads: the text decoder (without the embedding
    table, of which it reads one row) and the LM head. The audio encoder is idle while decoding."""
    decoder = speech_lm_parts(model).decoder
    embed = decoder.get_input_embeddings() if hasattr(decoder, "get_input_embeddings") else None
    skip = {id(p) for p in embed.parameters()} if embed is not None else set()
    params = {id(p): p for p in decoder.parameters() if id(p) not in skip}
    head = model.get_output_embeddings()
    if head is not None:  # a head tied to the embeddings is read in full: count it here
        params.update({id(p): p for p in head.parameters()})
    return sum(p.numel() * p.element_size() for p in params.values())


def kv_cache_layers(cache: Any) -> list[dict[str, int]]:
    """Per decoder layer: entries held (per row) and bytes (keys + values, all rows)."""
    layers = getattr(cache, "layers", None)
    if layers is not None and any(isinstance(layer, StaticStepLayer) for layer in layers):
        # the prompt part once per prompt, the generated buffers (all slots) once per beam
        return [
            {
                "entries": layer.get_seq_length(),
                "bytes": layer.nbytes(),
                "prompt_bytes": _bytes(layer.prompt_keys, layer.prompt_values),
                "generated_bytes": _bytes(layer.keys, layer.values),
                "generated_slots": layer.state.steps,
            }
            for layer in layers
        ]
    if layers is not None and any(isinstance(layer, SharedPromptLayer) for layer in layers):
        # the prompt is held once per prompt, the generated tokens once per beam
        return [
            {
                "entries": layer.get_seq_length(),
                "bytes": sum(t.numel() * t.element_size() for t in _shared_tensors(layer)),
            }
            for layer in layers
        ]
    pairs: list[tuple[torch.Tensor, torch.Tensor]]
    if layers is not None:
        pairs = [(layer.keys, layer.values) for layer in layers]
    elif hasattr(cache, "key_cache"):
        pairs = list(zip(cache.key_cache, cache.value_cache))
    else:
        return []
    out = []
    for k, v in pairs:
        if not torch.is_tensor(k):
            out.append({"entries": 0, "bytes": 0})
            continue
        out.append({"entries": int(k.shape[-2]), "bytes": k.numel() * k.element_size() + v.numel() * v.element_size()})
    return out


def _bytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _shared_tensors(layer: SharedPromptLayer) -> tuple[torch.Tensor, ...]:
    return (layer.prompt_keys, layer.prompt_values, layer.keys, layer.values)


@dataclass(frozen=True)
class Setting:
    audio_seconds: float
    beams: int
    tag: str
    config: fa.ReductionConfig
    prompt: str = "hf"  # one of PROMPT_MODES

    @property
    def group(self) -> str:
        return f"audio{self.audio_seconds:g}s_beam{self.beams}"

    @property
    def key(self) -> str:
        return f"{self.group}/{self.tag}"


def run_once(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    setting: Setting,
    timer: GenerationTimer,
    spec: PromptSpec,
    new_tokens: int,
    device: torch.device,
    static_step_mode: str = "auto",
    profile_step: bool = False,
) -> dict[str, Any]:
    """One forced-length ``generate`` under ``setting``; returns timings, memory, KV and FLOPs.

    static_step_mode: how the ``static`` prompt mode runs its steps
    (:data:`espnet_fastadasp.generation.static_decoding.STEP_MODES`). profile_step: profile the decoding
    step in the middle (:class:`StepProfiler`; not compiled or graph-replayed static steps, at
    least 5 new tokens), returned as ``profile``: the top operators by self CPU time, and in
    ``table`` the profiler's table; the two steps its window overlaps are left out of the step
    times and of decode s (a static row's ``setup_s`` still holds the profiler's overhead)."""
    gen_kwargs = dict(
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        num_beams=setting.beams,
        do_sample=False,
        return_dict_in_generate=True,
        use_cache=True,
        pad_token_id=spec.pad_id,
        eos_token_id=spec.eos_id,
    )
    # "none" runs the model without our hooks; every mode but hf_all_logits sends only the last
    # prompt position through the LM head (what Speech2Text does), hf_all_logits is transformers' default
    ctx = contextlib.nullcontext(None) if setting.config.method == "none" else fa.apply(model, setting.config)
    logits = contextlib.nullcontext() if setting.prompt == "hf_all_logits" else fa.prefill_last_logits(model)
    with ctx as handle, logits:
        if handle is not None:
            handle.timer.enable(device)
        timer.reset()
        peak_base = None
        if device.type == "cuda":
            synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            peak_base = torch.cuda.memory_allocated(device)
        elif device.type == "cpu":
            peak_base = reset_peak_rss()
        profiler = None
        # compiled steps and graph replays call no Python hooks: only eager static steps are profiled
        eager = static_step_mode == "eager" or (static_step_mode == "auto" and device.type != "cuda")
        if profile_step and (setting.prompt != "static" or eager) and new_tokens >= 5:
            # the middle of the steps; a shared prompt runs one decoding forward more
            profiler = StepProfiler(speech_lm_parts(model).decoder, 2 + (new_tokens - 1) // 2, device)
        t0 = time.perf_counter()
        static: dict[str, Any] = {}
        if setting.prompt in ("hf", "hf_all_logits"):
            out = model.generate(**inputs, **gen_kwargs)
        elif setting.prompt == "static":
            out = generate_static(model, inputs, step_mode=static_step_mode, timings=static, **gen_kwargs)
        else:
            out = generate_with_shared_prompt(model, inputs, share_kv=setting.prompt == "shared", **gen_kwargs)
        synchronize(device)
        t1 = time.perf_counter()
        if profiler is not None:
            profiler.remove()
        stats = handle.stats if handle is not None else None
        steps_s = handle.timer.seconds() if handle is not None else {}
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = peak_rss() if peak_base is not None else None
    kv = kv_cache_layers(cache_of_output(out))
    generated = out.sequences.shape[1] - inputs["input_ids"].shape[1]
    del out
    if timer.start is None or not timer.ends:
        raise RuntimeError("the forward hooks saw no call: generate() did not call the model")
    if static:  # the steps are graph replays, not model calls: the loop times them itself
        steps, prefill_s, decode_s = static["step_s"], static["prefill_s"], t1 - t0 - static["prefill_s"]
    else:
        steps = timer.step_seconds
        prefill_s = timer.prefill_seconds
        decode_s = t1 - timer.ends[0]
    profile = None
    if profiler is not None and profiler.done:
        # the profiled window's two steps leave the timings: the profiler's overhead is in them
        dropped = [i for i in profiler.overlapped_steps() if 0 <= i < len(steps)]
        decode_s -= sum(steps[i] for i in dropped)
        steps = [s for i, s in enumerate(steps) if i not in dropped]
        profile = {
            "decoder_call": profiler.call,
            "wall_ms": 1000 * profiler.wall_s,
            "dropped_steps": dropped,
            "top": profiler.top(),
            "table": profiler.table(),
        }
    rows = inputs["input_ids"].shape[0] * setting.beams
    if stats is not None:
        flops_full = sum(r.flops_full for r in stats.rows)
        flops_reduced = sum(r.flops_reduced for r in stats.rows)
        audio_out = stats.rows[0].audio_tokens_out
        kv_reduction = stats.kv_reduction
    else:
        dims = DecoderDims.from_config(speech_lm_parts(model).text_config)
        flops_full = flops_reduced = rows * full_prefill_flops(dims, inputs["input_ids"].shape[1])
        audio_out = int((inputs["input_ids"][0] == spec.audio_token_id).sum())
        kv_reduction = 0.0
    return {
        "prefill_s": prefill_s,
        "decode_s": decode_s,
        "total_s": t1 - t0,
        "new_tokens": generated,
        "decode_steps": len(steps),
        "step_ms_median": 1000 * statistics.median(steps) if steps else None,
        "step_ms_mean": 1000 * decode_s / len(steps) if steps else None,
        "decode_tok_s": len(steps) / decode_s if steps and decode_s > 0 else None,
        "peak_bytes": peak,
        "peak_bytes_before": peak_base,
        "kv_layers": kv,
        "kv_bytes": sum(layer["bytes"] for layer in kv),
        "rows": rows,
        "flops_full": flops_full,
        "flops_reduced": flops_reduced,
        "flops_reduction": 1.0 - flops_reduced / flops_full if flops_full else 0.0,
        "kv_reduction": kv_reduction,
        "audio_tokens_out": audio_out,
        # the reduction's own steps in the prefill (CUDA events, read after generate): choosing and
        # merging / evicting; and the attention of the reducing layers, which also sums what each
        # token received (null for none)
        "reduce_s": steps_s.get("reduce") if stats is not None else None,
        "scoring_s": steps_s.get("scoring") if stats is not None else None,
        # static: decode_s less its steps at the median step time: building the static cache, the first
        # choice, the graph's warm-up step and its capture (step_ms_median is the steady state)
        "setup_s": static.get("setup_s"),
        "step_mode": static.get("step_mode"),
        # one profiled step (profile_step): its wall time under the profiler and the top operators
        # by self CPU time ("table": the profiler's full table, written to a file by the driver)
        "profile": profile,
    }


def step_floor(run: dict[str, Any], weight_bytes: int, bandwidth: float) -> dict[str, float]:
    """The least time a decoding step can take: bytes read / bandwidth.

    Each step reads every decoder weight and the LM head once, and each row's KV cache. The
    final cache of a layer holds L entries after ``s`` decoding steps; step ``i`` (1..s) reads
    ``L - s + i``, so on average ``L - s + (s + 1) / 2`` entries. A static cache's layer counts
    its prompt part once and, of its generated buffers, the slots written so far on average.
    """
    s = run["decode_steps"]
    kv_read = 0.0
    for layer in run["kv_layers"]:
        if "generated_slots" in layer:
            # a static cache: the prompt part once, and the generated slots written so far (on
            # average (s + 1) / 2 of them), not the empty ones the fixed-shape step also reads
            slots = max(layer["generated_slots"], 1)
            kv_read += layer["prompt_bytes"] + layer["generated_bytes"] * min(1.0, (s + 1) / 2 / slots)
        elif layer["entries"]:
            mean_entries = layer["entries"] - s + (s + 1) / 2
            kv_read += layer["bytes"] * mean_entries / layer["entries"]
    floor_s = (weight_bytes + kv_read) / bandwidth
    return {"kv_read_bytes": kv_read, "floor_ms": 1000 * floor_s}
