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
* prompt modes (``--prompt_modes``): ``hf`` is plain ``generate``; ``once`` and ``shared`` run
  :func:`espnet_fastadasp.hf.shared_prompt.generate_with_shared_prompt`, whose cache drops the
  last prompt token after the prefill and ``generate`` feeds it again: ``new_tokens + 1``
  decoding forwards (step counts one higher; tok/s and step ms are per step as always);
  every ratio is against ``none`` under ``hf``, what users run today;
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
import contextlib
import gc
import json
import logging
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import espnet_fastadasp as fa
from espnet_fastadasp.core.config import ConfigError, parse_reduction_spec
from espnet_fastadasp.core.flops import DecoderDims, full_prefill_flops
from espnet_fastadasp.decoding.speech2text import generation_class
from espnet_fastadasp.decoding.timing import GenerationTimer, synchronize
from espnet_fastadasp.evaluation.environment import environment
from espnet_fastadasp.hf.compat import cache_of_output
from espnet_fastadasp.hf.parts import audio_token_id_of, audio_tokens_for, speech_lm_parts
from espnet_fastadasp.hf.shared_prompt import SharedPromptLayer, generate_with_shared_prompt

logger = logging.getLogger("espnet_fastadasp.benchmark")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
#: How the prompt reaches the beams: ``hf`` plain ``generate`` (the prompt repeated per beam before
#: the prefill), ``once`` prefilled once per prompt and its cache copied per beam, ``shared``
#: prefilled once and one cache shared by the beams (:mod:`espnet_fastadasp.hf.shared_prompt`).
PROMPT_MODES = ("hf", "once", "shared")
DEFAULT_REDUCTIONS = (
    "none",
    "fastadasp_constant@0.5",
    "fastadasp_decay@0.5",
    "fastadasp_once@0.5",
    "fastv@0.5",
    "h2o@0.5",
)
#: Whisper's log-mel front end, used when the checkpoint has no feature extractor to read.
WHISPER_HOP_LENGTH = 160
WHISPER_SAMPLING_RATE = 16000
#: Qwen2 special tokens start here; random prompt text is drawn below it.
QWEN_FIRST_SPECIAL_ID = 151643
GIB = 1024**3
MIB = 1024**2
OOM_ERRORS: tuple[type[BaseException], ...] = tuple(
    {getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError), torch.cuda.OutOfMemoryError}
)


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
        help="hf: plain generate (prompt repeated per beam); once: prefilled once, cache copied per beam; "
        "shared: prefilled once, one cache shared by the beams (espnet_fastadasp.hf.shared_prompt)",
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


# ---------------------------------------------------------------------------------------- model


def tiny_config() -> Any:
    """The tiny Qwen2-Audio config of the tests, with its tokenizer's special ids filled in."""
    from espnet_fastadasp.hf.tiny import AUDIO_TOKEN, char_tokenizer, tiny_qwen2_audio_config

    tok = char_tokenizer()
    cfg = tiny_qwen2_audio_config(len(tok), tok.convert_tokens_to_ids(AUDIO_TOKEN))
    cfg.audio_bos_token_id = tok.convert_tokens_to_ids("<|audio_bos|>")
    cfg.audio_eos_token_id = tok.convert_tokens_to_ids("<|audio_eos|>")
    cfg.text_config.pad_token_id = tok.pad_token_id
    cfg.text_config.eos_token_id = tok.eos_token_id
    return cfg


def load_config(spec: str) -> Any:
    """``tiny``, a config name shipped in ``espnet_fastadasp/configs``, or a JSON path."""
    from transformers import Qwen2AudioConfig

    if spec == "tiny":
        return tiny_config()
    path = Path(spec)
    if not path.is_file():
        shipped = CONFIG_DIR / (spec if spec.endswith(".json") else spec + ".json")
        if not shipped.is_file():
            raise FileNotFoundError(
                f"--model_config {spec}: not a file, and no {shipped.name} in {CONFIG_DIR} "
                f"(have: {', '.join(p.stem for p in sorted(CONFIG_DIR.glob('*.json')))})"
            )
        path = shipped
    return Qwen2AudioConfig.from_dict(json.loads(path.read_text()))


def model_class(config: Any) -> Any:
    """The class of ``config``'s architecture (any supported Speech LM); a config without one
    (the shipped Qwen2-Audio shapes, a bare Qwen2AudioConfig) is Qwen2-Audio's."""
    if getattr(config, "architectures", None):
        return generation_class(config)
    from transformers import Qwen2AudioForConditionalGeneration

    return Qwen2AudioForConditionalGeneration


def build_random_model(config: Any, device: torch.device, dtype: torch.dtype, attn: str, seed: int) -> nn.Module:
    """Random weights created on ``device`` itself, in ``dtype``.

    Building under ``torch.device(device)`` makes every parameter's allocation and init happen
    on the target (the 8.4B parameters of the 7B shape never touch host RAM, and ``meta``
    builds nothing at all).
    """
    torch.manual_seed(seed)
    with torch.device(device):
        model = model_class(config)._from_config(config, dtype=dtype, attn_implementation=attn)
    return model.eval()


def load_pretrained(path: str, device: torch.device, dtype: torch.dtype, attn: str) -> nn.Module:
    """A real checkpoint; straight onto the device when ``accelerate`` is there, else via host RAM."""
    from transformers import AutoConfig

    kwargs: dict[str, Any] = dict(dtype=dtype, attn_implementation=attn)
    try:
        import accelerate  # noqa: F401

        kwargs["device_map"] = str(device)
    except ImportError:
        pass
    model = generation_class(AutoConfig.from_pretrained(path)).from_pretrained(path, **kwargs)
    return model.to(device).eval()


@dataclass(frozen=True)
class PromptSpec:
    """What is needed to build Qwen2-Audio prompts by hand (no processor, no tokenizer)."""

    mel_frames: int  # frames of one encoder window (2 * max_source_positions)
    num_mel_bins: int
    window_s: float  # seconds of audio in one window
    audio_token_id: int
    audio_bos_id: int
    audio_eos_id: int
    pad_id: int
    eos_id: int
    vocab_size: int
    max_positions: int


def prompt_spec(model_config: Any, hop_length: int, sampling_rate: int) -> PromptSpec:
    """Ids and window from the config; audio bos/eos default to Qwen2-Audio's (audio id + 1, + 2)."""
    audio_cfg, text_cfg = model_config.audio_config, model_config.get_text_config()
    audio_id = audio_token_id_of(_ConfigHolder(model_config))
    mel_frames = 2 * audio_cfg.max_source_positions
    eos = getattr(text_cfg, "eos_token_id", None)
    eos = eos[0] if isinstance(eos, (list, tuple)) else eos
    pad = getattr(text_cfg, "pad_token_id", None)
    eos = eos if eos is not None else (pad if pad is not None else 0)
    return PromptSpec(
        mel_frames=mel_frames,
        num_mel_bins=audio_cfg.num_mel_bins,
        window_s=mel_frames * hop_length / sampling_rate,
        audio_token_id=audio_id,
        audio_bos_id=getattr(model_config, "audio_bos_token_id", None) or audio_id + 1,
        audio_eos_id=getattr(model_config, "audio_eos_token_id", None) or audio_id + 2,
        pad_id=pad if pad is not None else eos,
        eos_id=eos,
        vocab_size=text_cfg.vocab_size,
        max_positions=getattr(text_cfg, "max_position_embeddings", 1 << 30),
    )


@dataclass
class _ConfigHolder:
    """Lets :func:`fa.models.audio_token_id_of` read a bare config."""

    config: Any


def feature_extractor_frame(path: str | None) -> tuple[int, int]:
    """(hop_length, sampling_rate) of the checkpoint's feature extractor, else Whisper's."""
    if path is not None:
        try:
            from transformers import AutoFeatureExtractor

            fe = AutoFeatureExtractor.from_pretrained(path)
            return int(fe.hop_length), int(fe.sampling_rate)
        except Exception as exc:  # noqa: BLE001 - any failure means "use the standard front end"
            logger.warning("no feature extractor in %s (%s); assuming Whisper's 10 ms hop at 16 kHz", path, exc)
    return WHISPER_HOP_LENGTH, WHISPER_SAMPLING_RATE


def clip_frames(audio_seconds: float, spec: PromptSpec) -> list[int]:
    """Mel frames per clip: full windows, then the remainder as a partial (padded) last clip."""
    frames_per_s = spec.mel_frames / spec.window_s
    total = round(audio_seconds * frames_per_s)
    clips = [spec.mel_frames] * (total // spec.mel_frames)
    if total % spec.mel_frames:
        clips.append(total % spec.mel_frames)
    if not clips:
        raise ValueError(f"--audio_seconds {audio_seconds}: less than one mel frame")
    return clips


def build_inputs(
    audio_seconds: float,
    spec: PromptSpec,
    batch_size: int,
    prefix_tokens: int,
    suffix_tokens: int,
    device: torch.device,
    dtype: torch.dtype,
    seed: int,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ``generate`` inputs for ``audio_seconds`` of audio, as Qwen2-Audio's processor lays them out.

    ``input_features`` is (batch * clips, mels, mel_frames): the encoder only accepts full
    windows, and ``feature_attention_mask`` marks the real frames of a partial last clip.
    """
    gen = torch.Generator().manual_seed(seed)
    frames = clip_frames(audio_seconds, spec)
    special = {spec.audio_token_id, spec.audio_bos_id, spec.audio_eos_id, spec.pad_id, spec.eos_id}
    allowed = torch.tensor([i for i in range(min(spec.vocab_size, QWEN_FIRST_SPECIAL_ID)) if i not in special])

    def text(n: int) -> list[int]:
        return allowed[torch.randint(len(allowed), (n,), generator=gen)].tolist()

    ids = text(prefix_tokens)
    for f in frames:
        ids += [spec.audio_bos_id] + [spec.audio_token_id] * audio_tokens_for(f) + [spec.audio_eos_id]
    ids += text(suffix_tokens)
    input_ids = torch.tensor([ids] * batch_size, dtype=torch.long)
    feats = torch.randn(batch_size * len(frames), spec.num_mel_bins, spec.mel_frames, generator=gen)
    fmask = torch.zeros(batch_size * len(frames), spec.mel_frames, dtype=torch.long)
    for i, f in enumerate(frames * batch_size):
        fmask[i, :f] = 1
    inputs = {
        "input_ids": input_ids.to(device),
        "attention_mask": torch.ones_like(input_ids).to(device),
        "input_features": feats.to(device=device, dtype=dtype),
        "feature_attention_mask": fmask.to(device),
    }
    info = {
        "clips": len(frames),
        "clip_frames": frames,
        "audio_tokens": sum(audio_tokens_for(f) for f in frames),
        "prompt_tokens": len(ids),
    }
    return inputs, info


# ---------------------------------------------------------------------------------------- measuring


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
) -> dict[str, Any]:
    """One forced-length ``generate`` under ``setting``; returns timings, memory, KV and FLOPs."""
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
    # "none" runs the pristine model (no hooks at all): the baseline users have today
    ctx = contextlib.nullcontext(None) if setting.config.method == "none" else fa.apply(model, setting.config)
    with ctx as handle:
        timer.reset()
        peak_base = None
        if device.type == "cuda":
            synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            peak_base = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        if setting.prompt == "hf":
            out = model.generate(**inputs, **gen_kwargs)
        else:
            out = generate_with_shared_prompt(model, inputs, share_kv=setting.prompt == "shared", **gen_kwargs)
        synchronize(device)
        t1 = time.perf_counter()
        stats = handle.stats if handle is not None else None
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    kv = kv_cache_layers(cache_of_output(out))
    generated = out.sequences.shape[1] - inputs["input_ids"].shape[1]
    del out
    if timer.start is None or not timer.ends:
        raise RuntimeError("the forward hooks saw no call: generate() did not call the model")
    steps = timer.step_seconds
    prefill_s = timer.prefill_seconds
    decode_s = t1 - timer.ends[0]
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
    }


def step_floor(run: dict[str, Any], weight_bytes: int, bandwidth: float) -> dict[str, float]:
    """The least time a decoding step can take: bytes read / bandwidth.

    Each step reads every decoder weight and the LM head once, and each row's KV cache. The
    final cache of a layer holds L entries after ``s`` decoding steps; step ``i`` (1..s) reads
    ``L - s + i``, so on average ``L - s + (s + 1) / 2`` entries.
    """
    s = run["decode_steps"]
    kv_read = 0.0
    for layer in run["kv_layers"]:
        if layer["entries"]:
            mean_entries = layer["entries"] - s + (s + 1) / 2
            kv_read += layer["bytes"] * mean_entries / layer["entries"]
    floor_s = (weight_bytes + kv_read) / bandwidth
    return {"kv_read_bytes": kv_read, "floor_ms": 1000 * floor_s}


# ---------------------------------------------------------------------------------------- results


def spread(values: list[float | None]) -> dict[str, float | None] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


TIMINGS = ("prefill_s", "decode_s", "total_s", "step_ms_median", "step_ms_mean", "decode_tok_s")


@dataclass
class Results:
    """Everything measured so far; written to ``results.json`` / ``results.md`` after each run."""

    output_dir: Path
    meta: dict[str, Any]
    settings: list[Setting]
    weight_bytes: int = 0
    bandwidth: float = 1.0
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def summary(self, setting: Setting) -> dict[str, Any] | None:
        runs = self.runs.get(setting.key)
        if not runs:
            return None
        out: dict[str, Any] = {name: spread([r[name] for r in runs]) for name in TIMINGS}
        audio = setting.audio_seconds
        out["rtf"] = spread([r["total_s"] / audio for r in runs])
        peaks = [r["peak_bytes"] for r in runs if r["peak_bytes"] is not None]
        out["peak_gib"] = max(peaks) / GIB if peaks else None
        last = runs[-1]
        for name in ("kv_bytes", "flops_full", "flops_reduced", "flops_reduction", "kv_reduction", "audio_tokens_out"):
            out[name] = last[name]
        out["kv_mib"] = last["kv_bytes"] / MIB
        out["kv_bytes_per_layer"] = [layer["bytes"] for layer in last["kv_layers"]]
        out["kv_entries_per_layer"] = [layer["entries"] for layer in last["kv_layers"]]
        floor = step_floor(last, self.weight_bytes, self.bandwidth)
        out.update(floor)
        step = out["step_ms_median"]["median"] if out["step_ms_median"] else None
        out["x_floor"] = step / floor["floor_ms"] if step is not None and floor["floor_ms"] else None
        return out

    def versus_none(self, setting: Setting, summary: dict[str, Any]) -> dict[str, Any] | None:
        """Ratios against ``none`` at the same (audio, beams): >1 means this setting is faster."""
        base_setting = next(
            (s for s in self.settings if s.group == setting.group and s.config.method == "none" and s.prompt == "hf"),
            None,
        )
        base = self.summary(base_setting) if base_setting is not None else None
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
    "| setting | prefill s | decode s | tok/s | ratio vs none | prefill vs none | RTF | peak GiB | peak vs none "
    "| KV MiB | FLOPs red. % | step ms | floor ms | x floor |"
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
        f"Copy bandwidth {data['bandwidth_bytes_per_s'] / 1e12:.2f} TB/s (read + written); decoding reads "
        f"{data['decode_weight_bytes'] / 1e9:.2f} GB of weights per step. floor = (weights + KV read per step) / "
        "bandwidth; x floor = step ms / floor ms.",
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
                lines.append(f"| {s['setting']} | error: {err.splitlines()[0][:120]} |" + " |" * 12)
                continue
            m, v = s["summary"], s["vs_none"] or {}
            peak_change = v.get("peak_gib_change")
            lines.append(
                "| "
                + " | ".join(
                    [
                        s["setting"],
                        _fmt_spread(m["prefill_s"], 3),
                        _fmt_spread(m["decode_s"], 3),
                        _fmt(m["decode_tok_s"]["median"] if m["decode_tok_s"] else None),
                        _fmt(v.get("decode_tok_s_ratio")),
                        _fmt(v.get("prefill_speedup")),
                        _fmt(m["rtf"]["median"] if m["rtf"] else None, 4),
                        _fmt(m["peak_gib"]),
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


# ---------------------------------------------------------------------------------------- driver


def make_settings(
    audio_seconds: Sequence[float],
    beams: Sequence[int],
    reductions: Sequence[str],
    start_layer: int,
    prompt_modes: Sequence[str] = ("hf",),
) -> list[Setting]:
    """Every (audio, beams, reduction, prompt mode) combination; specs are parsed once, up front,
    so a typo fails at once. A mode other than ``hf`` is tagged ``<reduction>+<mode>``."""
    # each item may itself hold several space-separated settings, as recipes write them
    reductions = [spec for item in reductions for spec in item.split()]
    parsed = [parse_reduction_spec(spec, start_layer=start_layer) for spec in reductions]
    if len({tag for tag, _ in parsed}) != len(parsed):
        raise ConfigError(f"duplicate reduction settings in {list(reductions)}")
    bad = [m for m in prompt_modes if m not in PROMPT_MODES]
    if bad or len(set(prompt_modes)) != len(prompt_modes):
        raise ConfigError(f"--prompt_modes: each of {PROMPT_MODES} at most once; got {list(prompt_modes)}")
    return [
        Setting(float(a), int(b), tag if mode == "hf" else f"{tag}+{mode}", cfg, mode)
        for a in audio_seconds
        for b in beams
        for mode in prompt_modes
        for tag, cfg in parsed
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
                run = run_once(model, inputs_by_audio[setting.audio_seconds], setting, timer, spec, new_tokens, device)
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
    )


if __name__ == "__main__":
    main()
