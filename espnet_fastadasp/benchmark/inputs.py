"""Benchmark inputs: the model (random weights of a shape, or a checkpoint) and synthetic prompts."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from espnet_fastadasp.decoding.speech2text import generation_class
from espnet_fastadasp.models.parts import audio_token_id_of, audio_tokens_for

logger = logging.getLogger("espnet_fastadasp.benchmark")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
#: How the prompt reaches the beams: ``hf`` plain ``generate`` (the prompt repeated per beam before
#: the prefill), ``once`` prefilled once per prompt and its cache copied per beam, ``shared``
#: prefilled once and one cache shared by the beams (:mod:`espnet_fastadasp.generation.shared_prompt`),
#: ``static`` prefilled once, the prompt shared, fixed-shape steps over per-layer static caches
#: replayed as a CUDA graph on a GPU (:mod:`espnet_fastadasp.generation.static_decoding`).
PROMPT_MODES = ("hf", "hf_all_logits", "once", "shared", "static")
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


def tiny_config() -> Any:
    """The tiny Qwen2-Audio config of the tests, with its tokenizer's special ids filled in."""
    from espnet_fastadasp.models.tiny import AUDIO_TOKEN, char_tokenizer, tiny_qwen2_audio_config

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


def truncate_layers(config: Any, num_layers: int | None, audio_layers: int | None) -> dict[str, int]:
    """Keep the first ``num_layers`` decoder layers and ``audio_layers`` audio encoder layers of
    ``config`` (in place; None: unchanged), every width unchanged; returns the layer counts of the
    full shape (``decoder_layers``, ``audio_layers``)."""
    text, audio = config.get_text_config(), config.audio_config
    full = {"decoder_layers": text.num_hidden_layers, "audio_layers": audio.encoder_layers}
    if num_layers is not None:
        if not 1 <= num_layers <= text.num_hidden_layers:
            raise ValueError(f"--num_layers {num_layers}: the shape has 1 to {text.num_hidden_layers} decoder layers")
        text.num_hidden_layers = num_layers
        if getattr(text, "layer_types", None):
            text.layer_types = list(text.layer_types[:num_layers])
    if audio_layers is not None:
        if not 0 <= audio_layers <= audio.encoder_layers:
            raise ValueError(f"--audio_layers {audio_layers}: the shape has 0 to {audio.encoder_layers}")
        audio.encoder_layers = audio_layers
    return full


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
