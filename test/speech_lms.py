"""A tiny random model of every audio-text Speech LM class of the installed transformers (issue 27).

Why: the reduction hooks into the *text decoder* of whatever Speech LM it is given, and each class
wires audio into that decoder differently (placeholder ids in the top config or in a sub-config,
sliding-window layers, per-layer inputs, M-RoPE, residual multipliers, hybrid Mamba blocks...).
Tests that only ever see Qwen2-Audio cannot tell whether a new class is reduced exactly, refused, or
silently wrong. This module gives the tests one entry per model type:

* ``audio_text_model_types()`` lists, from the installed transformers, every model type that is an
  audio-text model, so a test can fail when a new release adds one that has no entry here.
* ``ENTRIES`` maps an entry name (the model type, or ``model_type:variant``) to a
  :class:`SpeechLMEntry`: either a ``build`` function returning ``(model, make_inputs)`` for a
  decoder-only Speech LM whose audio reaches the text decoder through placeholder tokens, or
  ``build=None`` with the reason in ``notes`` (encoder-decoder ASR, TTS, streaming, sub-configs...).

Every builder makes a randomly initialised (``torch.manual_seed(0)``) model of the real class,
built from its own config class, with the text decoder at 6 layers, hidden 64, 4 heads, 2 KV
heads, head_dim 16 (where the class allows: MLA has KV heads == heads, Gemma 4's full layers have
head_dim 32) and a 256-token vocabulary, a tiny audio encoder, float32, eval mode, SDPA attention.
``make_inputs(seed, clips_per_row=(1,), first_row=0)`` returns processor-free inputs for
``generate``: text tokens, the class's audio placeholders (as many as its encoder emits for the
features given) and more text, one row per entry of ``clips_per_row``, left-padded, with a 2-D
``attention_mask``. Row ``r`` has ``r`` extra prefix tokens, so a batch is padded, and its content
depends only on (seed, r): ``make_inputs(seed, (k,), first_row=r)`` is row ``r`` alone.
Generation never stops early: ``generation_config.eos_token_id`` is ``None`` (pad id set).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

# ---------------------------------------------------------------------------------------------
# shared token layout and text decoder size
# ---------------------------------------------------------------------------------------------

VOCAB = 256
PAD, EOS, BOS = 0, 1, 2
#: text tokens are drawn from [TEXT_LO, TEXT_HI); ids >= TEXT_HI are reserved for special tokens
#: (and for Gemma 3n's vision / audio soft-token ranges, which start at 192)
TEXT_LO, TEXT_HI = 16, 180
AUDIO = 250  #: the audio placeholder id used wherever the class lets us choose it
AUDIO_BOS, AUDIO_EOS = 248, 249  #: audio start / end markers, where the class has them
SEED = 0  #: torch.manual_seed before every model construction

#: the common tiny text decoder (keys that every Llama-like text config accepts)
TEXT = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=1024,
    pad_token_id=PAD,
    bos_token_id=BOS,
    eos_token_id=EOS,
    tie_word_embeddings=False,
)

Inputs = dict[str, Any]
MakeInputs = Callable[..., Inputs]


def tiny_text(**overrides: Any) -> dict[str, Any]:
    """The common tiny text-decoder fields, with per-class overrides (``None`` drops a key)."""
    out = dict(TEXT)
    out.update(overrides)
    return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class SpeechLMEntry:
    """One audio-text model type (or a variant of one) and how the tests can build it.

    ``build`` is ``None`` where no tiny generating model is made; ``notes`` then says why.
    ``batchable`` says whether a left-padded batch of rows with different lengths generates what
    each row generates alone (checked by the zoo tests).
    """

    model_type: str
    model_class: str
    build: Callable[[], tuple[Any, MakeInputs]] | None
    batchable: bool = False
    notes: str = ""
    placeholder_id: int | None = None
    #: where the class keeps its placeholder id, e.g. ``config.audio_token_id``
    placeholder_attr: str = ""
    variant: str = ""
    #: ``speech_lm`` (decoder-only, placeholders in input_ids) or why there is no builder:
    #: ``encoder_decoder``, ``tts``, ``streaming``, ``sub_config``, ``not_generative``,
    #: ``omni_wrapper`` (thinker + talker; the thinker has its own entry)
    category: str = "speech_lm"
    #: audio placeholders per clip in the tiny model's default inputs
    tokens_per_clip: int | None = None
    #: what ``generate`` produces: ``text`` (token ids) or ``audio_codes`` (Higgs Audio v2: its
    #: ``audio_lm_head`` predicts codebook ids; ``return_dict_in_generate=True`` still gives
    #: ``sequences`` = prompt + one placeholder per step, the codes are ``audio_sequences``)
    generates: str = "text"

    @property
    def name(self) -> str:
        """``model_type`` or ``model_type:variant``: the key in ``ENTRIES``."""
        return f"{self.model_type}:{self.variant}" if self.variant else self.model_type


# ---------------------------------------------------------------------------------------------
# discovery
# ---------------------------------------------------------------------------------------------

AUDIO_ID_ATTRS = ("audio_token_id", "audio_token_index")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence transformers' logging and Python warnings (default configs warn a lot)."""
    import transformers

    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        transformers.logging.set_verbosity(level)


def _placeholder_attrs(config: Any) -> list[str]:
    """Where a config (or one of its sub-configs) has an audio placeholder id attribute.

    The attribute counts even when its default is ``None`` (Voxtral, NemotronH-Omni set it from
    the checkpoint), since having the attribute is what makes the class an audio-text model.
    """
    from transformers import PretrainedConfig

    found = []
    subs: list[tuple[str, Any]] = [("", config)]
    subs += [(k, v) for k, v in vars(config).items() if isinstance(v, PretrainedConfig)]
    for prefix, cfg in subs:
        for attr in AUDIO_ID_ATTRS:
            if hasattr(cfg, attr):
                found.append(f"{prefix}.{attr}" if prefix else attr)
    return found


def _candidate_model_types(names: dict[str, str]) -> set[str]:
    """Model types whose configuration module's *source* mentions an audio placeholder attribute,
    or names (as a quoted model type) a module that does, e.g. a sub-config from another model.

    Why: importing all ~800 configuration classes takes ~11 s; reading their source ~0.5 s. The
    candidates' default configs are then constructed and checked as in the exhaustive scan.
    """
    import re
    from pathlib import Path

    import transformers
    from transformers.models.auto.configuration_auto import model_type_to_module_name

    root = Path(transformers.__file__).parent / "models"
    texts: dict[str, str] = {}
    for model_type in names:
        module = model_type_to_module_name(model_type)
        if module not in texts:
            texts[module] = "".join(p.read_text(errors="ignore") for p in (root / module).glob("configuration_*.py"))
    hits = {m for m, text in texts.items() if any(a in text for a in AUDIO_ID_ATTRS)}
    hit_types = {mt for mt in names if model_type_to_module_name(mt) in hits}
    while True:  # modules that name a hit model type, e.g. SubConfigSpec(model_type="...")
        pattern = re.compile("[\"'](" + "|".join(map(re.escape, sorted(hit_types))) + ")[\"']")
        more = {m for m, text in texts.items() if m not in hits and pattern.search(text)}
        if not more:
            return hit_types
        hits |= more
        hit_types = {mt for mt in names if model_type_to_module_name(mt) in hits}


def audio_text_model_types(exhaustive: bool = False) -> list[str]:
    """Every audio-text model type of the installed transformers, sorted.

    The union of (a) the speech-seq2seq auto mapping, (b) the multimodal-LM mapping minus the
    image-text-to-text one, and (c) every config whose default instance, or a sub-config of it
    (``thinker_config``, ``text_config``, ``audio_config``, ...), has an audio placeholder id
    attribute. For (c) only the candidates of :func:`_candidate_model_types` are constructed,
    unless ``exhaustive`` (every config of ``CONFIG_MAPPING_NAMES``; same result, ~12 s).

    Nested types are kept as transformers lists them: ``qwen2_5_omni`` (thinker + talker,
    generates speech) and ``qwen2_5_omni_thinker`` (the Speech LM) are separate entries, and so
    are sub-config-only types such as ``qwen2_5_omni_talker`` or ``phi4_multimodal_audio`` (their
    entries say they are not models of their own).
    """
    from transformers.models.auto import modeling_auto as ma
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING, CONFIG_MAPPING_NAMES

    types = set(ma.MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES)
    types |= set(ma.MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES) - set(ma.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)
    scan = list(CONFIG_MAPPING_NAMES) if exhaustive else sorted(_candidate_model_types(CONFIG_MAPPING_NAMES))
    with quiet():
        for model_type in scan:
            try:
                config = CONFIG_MAPPING[model_type]()
            except Exception:  # some default configs do not construct (gemma4_assistant, nougat)
                continue
            if _placeholder_attrs(config):
                types.add(model_type)
    return sorted(types)


# ---------------------------------------------------------------------------------------------
# prompt assembly
# ---------------------------------------------------------------------------------------------


def _text(g: torch.Generator, n: int) -> list[int]:
    """``n`` random ordinary text tokens."""
    return torch.randint(TEXT_LO, TEXT_HI, (n,), generator=g).tolist()


def row_generator(seed: int, row: int) -> torch.Generator:
    """The random stream of one prompt row: a row's text and audio depend only on (seed, row),
    so ``make_inputs(seed, (k,), first_row=r)`` is row ``r`` of a batch alone (what a batch's
    rows are compared with)."""
    return torch.Generator().manual_seed(1_000_003 * seed + row)


def prompt_row(g: torch.Generator, row: int, spans: Sequence[Sequence[int]], bos: int | None = BOS) -> list[int]:
    """One prompt row: [bos] text(3 + row) (clip span, text(1))* text(3).

    Row ``r`` has ``r`` extra prefix tokens, so rows of a batch always differ in length.
    """
    out = ([bos] if bos is not None else []) + _text(g, 3 + row)
    for i, span in enumerate(spans):
        out += list(span)
        if i + 1 < len(spans):
            out += _text(g, 1)
    return out + _text(g, 3)


def left_pad(rows: Sequence[Sequence[int]], pad: int = PAD) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` and a 2-D ``attention_mask`` for left-padded rows."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


def finish(model: Any) -> Any:
    """Eval mode, float32, and a generation config that pads with PAD and never stops early."""
    model = model.float().eval()
    gc = model.generation_config
    gc.pad_token_id = PAD
    gc.bos_token_id = BOS
    gc.eos_token_id = None
    gc.do_sample = False
    return model


def new_model(cls: Any, config: Any) -> Any:
    """``cls(config)`` after ``torch.manual_seed(SEED)``, eval, float32.

    The attention implementation is left to transformers' default, which is SDPA for every
    sub-model that supports it (forcing ``"sdpa"`` on the top config would also force it on
    sub-models that have no SDPA path, e.g. VibeVoice's tokenizer encoders, and fail).
    """
    torch.manual_seed(SEED)
    with quiet():
        model = cls(config)
    return finish(model)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pooled_len(out: Any) -> int:
    """Number of audio embeddings a ``get_audio_features`` call returned (flattened or batched)."""
    pooled = out.pooler_output if hasattr(out, "pooler_output") else out
    if isinstance(pooled, (list, tuple)):
        return sum(_pooled_len(p) for p in pooled)
    return pooled.shape[0] if pooled.dim() == 2 else pooled.shape[0] * pooled.shape[1]


# ---------------------------------------------------------------------------------------------
# Whisper-style encoders (log-mel features, conv stride 2, fixed length = 2 * max_source_positions)
# ---------------------------------------------------------------------------------------------

N_MELS = 16


def whisper_audio(**overrides: Any) -> dict[str, Any]:
    """A 2-layer Whisper-like encoder config (the field names of Qwen2-Audio's encoder)."""
    out = dict(
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=2,
        encoder_ffn_dim=64,
        num_mel_bins=N_MELS,
        max_source_positions=40,
    )
    out.update(overrides)
    return out


def hf_audio(**overrides: Any) -> dict[str, Any]:
    """The same encoder with the newer field names (hidden_size / num_hidden_layers / ...)."""
    out = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_mel_bins=N_MELS,
        max_source_positions=40,
    )
    out.update(overrides)
    return out


def mel_clips(g: torch.Generator, n: int, frames: int, mels: int = N_MELS) -> torch.Tensor:
    """``n`` random log-mel clips, ``(n, mels, frames)``."""
    return torch.randn(n, mels, frames, generator=g)


def _cat_features(parts: Sequence[Inputs]) -> Inputs:
    """Concatenate per-row feature dicts along the clip axis (non-tensors are taken as they are)."""
    out: Inputs = {}
    for key, value in parts[0].items():
        if isinstance(value, torch.Tensor):
            out[key] = torch.cat([p[key] for p in parts], dim=0)
        else:
            out[key] = value
    return out


def _simple(
    model: Any,
    per_clip: int,
    features: Callable[[torch.Generator, int], Inputs],
    span: Callable[[int], list[int]] | None = None,
    bos: int | None = BOS,
    audio_id: int = AUDIO,
) -> MakeInputs:
    """make_inputs for classes with a fixed number of placeholders per clip.

    ``features(g, n_clips)`` returns the audio tensors for ``n_clips`` clips, first axis = clip;
    the rows' features are concatenated in prompt order. ``span(per_clip)`` is one clip's
    tokens in the prompt (default: the placeholders alone).
    """
    span = span or (lambda n: [audio_id] * n)

    def make_inputs(seed: int = 0, clips_per_row: Sequence[int] = (1,), first_row: int = 0) -> Inputs:
        rows, parts = [], []
        for i, n_clips in enumerate(clips_per_row):
            g = row_generator(seed, first_row + i)
            parts.append(features(g, n_clips))
            rows.append(prompt_row(g, first_row + i, [span(per_clip)] * n_clips, bos))
        ids, mask = left_pad(rows)
        return dict(input_ids=ids, attention_mask=mask, **_cat_features(parts))

    make_inputs.tokens_per_clip = per_clip  # type: ignore[attr-defined]
    return make_inputs


def _count(model: Any, **feats: Any) -> int:
    """Placeholders one clip needs: what the class's own ``get_audio_features`` returns for it.

    Outputs that carry a validity mask (Gemma 4: ``attention_mask``, True = valid) count only the
    valid positions, as the model's forward does before scattering.
    """
    owner = model if hasattr(model, "get_audio_features") else model.model
    with torch.no_grad(), quiet():
        out = owner.get_audio_features(**feats)
    valid = getattr(out, "attention_mask", None)
    if valid is not None and valid.dtype == torch.bool:
        return int(valid.sum())
    return _pooled_len(out)


def _mel_and_mask(frames: int, mask_key: str, mels: int = N_MELS) -> Callable[[torch.Generator, int], Inputs]:
    """Features for Whisper-like classes: ``input_features`` (n, mels, frames) and an all-ones mask."""

    def features(g: torch.Generator, n: int) -> Inputs:
        out = dict(input_features=mel_clips(g, n, frames, mels))
        if mask_key:
            out[mask_key] = torch.ones(n, frames, dtype=torch.long)
        return out

    return features


# ---------------------------------------------------------------------------------------------
# builders: Whisper-encoder + projector + Llama/Qwen decoder family
# ---------------------------------------------------------------------------------------------


def build_qwen2_audio() -> tuple[Any, MakeInputs]:
    """Qwen2-Audio: Whisper encoder (2 * max_source_positions mel frames), avg-pool 2 -> 20 tokens."""
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    cfg = Qwen2AudioConfig(
        audio_config=whisper_audio(), text_config=dict(model_type="qwen2", **tiny_text()), audio_token_id=AUDIO
    )
    model = new_model(Qwen2AudioForConditionalGeneration, cfg)
    feats = _mel_and_mask(80, "feature_attention_mask")
    return model, _simple(model, 20, feats)


def build_voxtral() -> tuple[Any, MakeInputs]:
    """Voxtral: Whisper encoder whose frames are stacked 4 by 4 (intermediate_size = 4 * hidden)."""
    from transformers import VoxtralConfig, VoxtralForConditionalGeneration

    cfg = VoxtralConfig(
        audio_config=hf_audio(intermediate_size=128, max_source_positions=80),
        text_config=dict(model_type="llama", **tiny_text()),
        audio_token_id=AUDIO,
    )
    model = new_model(VoxtralForConditionalGeneration, cfg)
    feats = _mel_and_mask(160, "")
    n = _count(model, input_features=feats(_gen(0), 1)["input_features"])
    return model, _simple(model, n, feats)


def build_audioflamingo3() -> tuple[Any, MakeInputs]:
    """Audio Flamingo 3: Qwen2-Audio's encoder layout (avg-pool 2), Qwen2 decoder."""
    from transformers import AudioFlamingo3Config, AudioFlamingo3ForConditionalGeneration

    cfg = AudioFlamingo3Config(
        audio_config=hf_audio(), text_config=dict(model_type="qwen2", **tiny_text()), audio_token_id=AUDIO
    )
    model = new_model(AudioFlamingo3ForConditionalGeneration, cfg)
    feats = _mel_and_mask(80, "input_features_mask")
    n = _count(model, **feats(_gen(0), 1))
    return model, _simple(model, n, feats)


def build_musicflamingo() -> tuple[Any, MakeInputs]:
    """Music Flamingo: AF3's encoder plus rotary time embeddings over each contiguous placeholder
    run (``head_dim`` at the top level is the audio width the time rotary rotates)."""
    from transformers import MusicFlamingoConfig, MusicFlamingoForConditionalGeneration

    cfg = MusicFlamingoConfig(
        audio_config=hf_audio(model_type="audioflamingo3_encoder"),
        text_config=dict(model_type="qwen2", **tiny_text()),
        audio_token_id=AUDIO,
        audio_bos_token_id=AUDIO_BOS,
        audio_eos_token_id=AUDIO_EOS,
    )
    model = new_model(MusicFlamingoForConditionalGeneration, cfg)
    feats = _mel_and_mask(80, "input_features_mask")
    n = 20  # (80 - 1) // 2 + 1 = 40 frames after conv2, avg-pool 2
    return model, _simple(model, n, feats, span=lambda k: [AUDIO_BOS] + [AUDIO] * k + [AUDIO_EOS])


def build_glmasr() -> tuple[Any, MakeInputs]:
    """GLM-ASR: rotary Whisper-like encoder, 4 frames merged per token (intermediate = 4 * hidden)."""
    from transformers import GlmAsrConfig, GlmAsrForConditionalGeneration

    audio = dict(
        hidden_size=32,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_mel_bins=N_MELS,
        max_position_embeddings=200,
    )
    cfg = GlmAsrConfig(audio_config=audio, text_config=dict(model_type="llama", **tiny_text()), audio_token_id=AUDIO)
    model = new_model(GlmAsrForConditionalGeneration, cfg)
    feats = _mel_and_mask(160, "input_features_mask")
    n = _count(model, **feats(_gen(0), 1))
    return model, _simple(model, n, feats)


def build_moss_transcribe_diarize() -> tuple[Any, MakeInputs]:
    """MOSS Transcribe-Diarize: Whisper encoder, 4 frames merged per token (``audio_merge_size``)."""
    from transformers import MossTranscribeDiarizeConfig, MossTranscribeDiarizeForConditionalGeneration

    cfg = MossTranscribeDiarizeConfig(
        audio_config=hf_audio(max_source_positions=80),
        text_config=dict(model_type="qwen3", **tiny_text()),
        audio_token_id=AUDIO,
    )
    model = new_model(MossTranscribeDiarizeForConditionalGeneration, cfg)
    feats = _mel_and_mask(160, "input_features_mask")
    n = _count(model, padding_mask=None, **feats(_gen(0), 1))
    return model, _simple(model, n, feats)


def build_qwen3_asr() -> tuple[Any, MakeInputs]:
    """Qwen3-ASR: the Qwen3-Omni audio encoder (100-frame chunks -> 13 tokens each), Qwen3 decoder."""
    from transformers import Qwen3ASRConfig, Qwen3ASRForConditionalGeneration

    audio = whisper_audio(downsample_hidden_size=16, output_dim=64)
    audio.pop("max_source_positions")
    cfg = Qwen3ASRConfig(
        audio_config=audio,
        text_config=dict(model_type="qwen3", **tiny_text()),
        audio_token_id=AUDIO,
        pad_token_id=PAD,
        eos_token_id=EOS,
    )
    model = new_model(Qwen3ASRForConditionalGeneration, cfg)
    feats = _mel_and_mask(200, "input_features_mask")
    n = _count(model, **feats(_gen(0), 1))
    return model, _simple(model, n, feats)


def build_fun_asr_nano() -> tuple[Any, MakeInputs]:
    """Fun-ASR-Nano: SAN-M encoder over low-frame-rate stacked features ``(n, frames, mels * stack)``,
    one audio token per feature frame (the adaptor does not downsample)."""
    from transformers import FunAsrNanoConfig, FunAsrNanoForConditionalGeneration

    audio = dict(
        num_mel_bins=N_MELS,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        num_hidden_layers=2,
        num_timestamp_prediction_layers=1,
        num_stacked_frames=2,
        max_position_embeddings=256,
        fsmn_kernel_size=3,
    )
    adaptor = dict(
        hidden_size=64, num_attention_heads=2, intermediate_size=16, num_hidden_layers=1, projector_hidden_size=64
    )
    cfg = FunAsrNanoConfig(
        audio_config=audio,
        adaptor_config=adaptor,
        text_config=dict(model_type="qwen3", **tiny_text()),
        audio_token_id=AUDIO,
    )
    model = new_model(FunAsrNanoForConditionalGeneration, cfg)
    frames, width = 20, N_MELS * 2

    def features(g: torch.Generator, n: int) -> Inputs:
        return dict(
            input_features=torch.randn(n, frames, width, generator=g),
            input_features_mask=torch.ones(n, frames, dtype=torch.long),
        )

    n = _count(model, **features(_gen(0), 1))
    return model, _simple(model, n, features)


def build_omniasr() -> tuple[Any, MakeInputs]:
    """Omnilingual ASR (LLM-ASR): wav2vec2-style conv feature encoder on the raw waveform
    ``input_values (n, 1, samples)``; two convs (stride 5, 2) -> 210 samples give 20 tokens."""
    from transformers import OmniASRConfig, OmniASRForConditionalGeneration

    audio = dict(
        hidden_size=32,
        conv_dim=[16, 16],
        conv_kernel=[10, 3],
        conv_stride=[5, 2],
        num_attention_heads=2,
        num_hidden_layers=2,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        intermediate_size=64,
    )
    cfg = OmniASRConfig(
        audio_config=audio,
        text_config=dict(model_type="llama", **tiny_text()),
        audio_token_id=AUDIO,
        bos_token_id=BOS,
        pad_token_id=PAD,
        eos_token_id=EOS,
    )
    model = new_model(OmniASRForConditionalGeneration, cfg)
    samples = 210

    def features(g: torch.Generator, n: int) -> Inputs:
        return dict(
            input_values=torch.randn(n, 1, samples, generator=g), padding_mask=torch.ones(n, samples, dtype=torch.long)
        )

    n = _count(model, **features(_gen(0), 1))
    return model, _simple(model, n, features)


def build_vibevoice_asr() -> tuple[Any, MakeInputs]:
    """VibeVoice-ASR: acoustic + semantic convolutional tokenizer encoders on the raw waveform
    ``input_values (n, 1, samples)``, one token per hop (product of ``downsampling_ratios``).

    ``sample=False`` is part of the inputs: by default the class adds Gaussian noise to the
    acoustic latents (sigma-VAE sampling), which would make every generate differ.
    """
    from transformers import VibeVoiceAsrConfig, VibeVoiceAsrForConditionalGeneration

    tok = dict(hidden_size=16, num_filters=8, downsampling_ratios=[2, 2], depths=[1, 1, 1], kernel_size=3)
    cfg = VibeVoiceAsrConfig(
        acoustic_tokenizer_encoder_config=dict(tok),
        semantic_tokenizer_encoder_config=dict(tok),
        text_config=dict(model_type="qwen2", **tiny_text()),
        audio_token_id=AUDIO,
        audio_bos_token_id=AUDIO_BOS,
        audio_eos_token_id=AUDIO_EOS,
        acoustic_tokenizer_chunk_size=4 * 1024,
    )
    model = new_model(VibeVoiceAsrForConditionalGeneration, cfg)
    samples = 80

    def features(g: torch.Generator, n: int) -> Inputs:
        return dict(
            input_values=torch.randn(n, 1, samples, generator=g),
            padding_mask=torch.ones(n, samples, dtype=torch.bool),
            sample=False,
        )

    n = _count(model, **features(_gen(0), 1))
    return model, _simple(model, n, features, span=lambda k: [AUDIO_BOS] + [AUDIO] * k + [AUDIO_EOS])


# ---------------------------------------------------------------------------------------------
# Granite Speech: conformer CTC encoder + windowed Q-Former projector + Granite LLM
# ---------------------------------------------------------------------------------------------

#: Granite-3.3-2B-instruct's multipliers, the LLM of ibm-granite/granite-speech-3.3-2b: the
#: config-class defaults are all 1.0, which hides the residual scaling that the split layer
#: forward must reproduce.
GRANITE_RELEASED = dict(
    embedding_multiplier=12.0, logits_scaling=8.0, residual_multiplier=0.22, attention_multiplier=0.015625
)


def _granite_speech(plus: bool, released: bool) -> tuple[Any, MakeInputs]:
    """Granite Speech (plus: also concatenates chosen conformer layers' outputs for the projector).

    Features are ``(n, frames, input_dim)`` (stacked log-mels, no downsampling in the encoder);
    the Q-Former projector turns each ``window_size``-frame window into ``window_size //
    downsample_rate`` tokens: 100 frames -> 7 windows of 15 -> 21 tokens. Audio placeholders are
    replaced by id 0 before the embedding lookup, so the id may lie outside the LLM vocabulary
    (the real one, 49155, does).
    """
    import transformers

    prefix = "GraniteSpeechPlus" if plus else "GraniteSpeech"
    encoder = dict(
        input_dim=32,
        num_layers=2,
        hidden_dim=32,
        feedforward_mult=2,
        num_heads=2,
        dim_head=16,
        output_dim=8,
        context_size=20,
        max_pos_emb=32,
        conv_kernel_size=3,
    )
    cat = 0
    if plus:
        encoder["cat_hidden_layers"] = [0]
        cat = 1
    projector = dict(
        model_type="blip_2_qformer",
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        encoder_hidden_size=32 * (1 + cat),
        vocab_size=VOCAB,
    )
    text = dict(model_type="granite", **tiny_text(head_dim=None))
    if released:
        text.update(GRANITE_RELEASED)
    cfg = getattr(transformers, prefix + "Config")(
        text_config=text,
        encoder_config=encoder,
        projector_config=projector,
        audio_token_index=AUDIO,
        window_size=15,
        downsample_rate=5,
        has_lora_adapter=False,
    )
    model = new_model(getattr(transformers, prefix + "ForConditionalGeneration"), cfg)
    frames, n_tokens = 100, 21

    def features(g: torch.Generator, n: int) -> Inputs:
        return dict(
            input_features=torch.randn(n, frames, 32, generator=g),
            input_features_mask=torch.ones(n, n_tokens, dtype=torch.bool),
        )

    return model, _simple(model, n_tokens, features)


def build_granite_speech() -> tuple[Any, MakeInputs]:
    """Granite Speech with the config-class defaults (all multipliers 1.0)."""
    return _granite_speech(plus=False, released=False)


def build_granite_speech_released() -> tuple[Any, MakeInputs]:
    """Granite Speech with the released LLM's multipliers (residual 0.22, embedding 12, ...)."""
    return _granite_speech(plus=False, released=True)


def build_granite_speech_plus() -> tuple[Any, MakeInputs]:
    """Granite Speech Plus with the config-class defaults."""
    return _granite_speech(plus=True, released=False)


def build_granite_speech_plus_released() -> tuple[Any, MakeInputs]:
    """Granite Speech Plus with Granite-3.3-2B's multipliers (residual 0.22, ...)."""
    return _granite_speech(plus=True, released=True)


# ---------------------------------------------------------------------------------------------
# Omni thinkers (M-RoPE text decoders with an unused vision tower)
# ---------------------------------------------------------------------------------------------

#: image / video / vision-start ids the thinkers' rope index reads (never present in our prompts)
IMAGE, VIDEO, VISION_START = 245, 246, 247
#: M-RoPE sections (temporal, height, width) for head_dim 16: half the rotary dims, 8 = 2 + 3 + 3
MROPE = dict(rope_type="default", rope_theta=1_000_000.0, mrope_section=[2, 3, 3])


def _omni_audio(**overrides: Any) -> dict[str, Any]:
    out = whisper_audio(output_dim=64, max_source_positions=100)
    out.update(overrides)
    return out


def build_qwen2_5_omni_thinker() -> tuple[Any, MakeInputs]:
    """Qwen2.5-Omni thinker: Qwen2-Audio-like encoder in ``n_window`` chunks, M-RoPE decoder whose
    audio positions come from ``get_rope_index`` (it needs ``audio_start`` before and
    ``audio_end`` after every clip's placeholders, and the feature lengths)."""
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    vision = dict(
        depth=1,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        fullatt_block_indexes=[0],
        window_size=28,
    )
    cfg = Qwen2_5OmniThinkerConfig(
        audio_config=_omni_audio(n_window=50),
        vision_config=vision,
        text_config=dict(model_type="qwen2_5_omni_text", rope_parameters=MROPE, **tiny_text()),
        audio_token_index=AUDIO,
        audio_start_token_id=AUDIO_BOS,
        audio_end_token_id=AUDIO_EOS,
        image_token_index=IMAGE,
        video_token_index=VIDEO,
        vision_start_token_id=VISION_START,
    )
    model = new_model(Qwen2_5OmniThinkerForConditionalGeneration, cfg)
    feats = _mel_and_mask(80, "feature_attention_mask")
    n = 20  # ((80 - 1) // 2 + 1 - 2) // 2 + 1, the formula in get_rope_index
    return model, _simple(model, n, feats, span=lambda k: [AUDIO_BOS] + [AUDIO] * k + [AUDIO_EOS])


def build_qwen3_omni_moe_thinker() -> tuple[Any, MakeInputs]:
    """Qwen3-Omni-MoE thinker: Qwen3-ASR's audio encoder (100-frame chunks -> 13 tokens), a MoE
    M-RoPE decoder (4 experts, top 2, every layer sparse)."""
    from transformers import Qwen3OmniMoeThinkerConfig, Qwen3OmniMoeThinkerForConditionalGeneration

    vision = dict(
        depth=1,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        out_hidden_size=64,
        deepstack_visual_indexes=[0],
        num_position_embeddings=64,
    )
    text = dict(
        model_type="qwen3_omni_moe_text",
        rope_parameters=dict(MROPE, interleaved=True),
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        **tiny_text(),
    )
    audio = _omni_audio(downsample_hidden_size=16)
    cfg = Qwen3OmniMoeThinkerConfig(
        audio_config=audio,
        vision_config=vision,
        text_config=text,
        audio_token_id=AUDIO,
        audio_start_token_id=AUDIO_BOS,
        image_token_id=IMAGE,
        video_token_id=VIDEO,
        vision_start_token_id=VISION_START,
    )
    model = new_model(Qwen3OmniMoeThinkerForConditionalGeneration, cfg)
    feats = _mel_and_mask(200, "feature_attention_mask")
    n = _count(model, **feats(_gen(0), 1))
    return model, _simple(model, n, feats, span=lambda k: [AUDIO_BOS] + [AUDIO] * k + [AUDIO_EOS])


# ---------------------------------------------------------------------------------------------
# Gemma 3n: per-layer inputs, AltUp, LAuReL, KV sharing, sliding-window layers, soft-token ranges
# ---------------------------------------------------------------------------------------------

#: Gemma 3n's vocabulary at toy size, in the real model's order: text ids, then the vision
#: soft-token range, then the audio soft-token range (ids >= an embedder's ``vocab_offset`` are
#: embedded by that modality's embedder, not by ``embed_tokens``).
G3N_VISION_OFFSET, G3N_AUDIO_OFFSET, G3N_MM_VOCAB = 192, 224, 32
G3N_BOI, G3N_BOA = 190, 191
G3N_EOI, G3N_IMAGE = G3N_VISION_OFFSET, G3N_VISION_OFFSET + 1  # as in the real ids 262144, 262145
G3N_EOA, G3N_AUDIO = G3N_AUDIO_OFFSET, G3N_AUDIO_OFFSET + 1  # as in the real ids 262272, 262273
#: a window smaller than the prompts, so sliding-window layers really drop early tokens
SLIDING_WINDOW = 16

_STUBS: dict[str, Any] = {}


def _gemma3n_vision_stub() -> Any:
    """A vision config + model pair that stands in for Gemma 3n's timm MobileNet-V5 tower.

    Why: ``Gemma3nVisionConfig`` is a ``TimmWrapperConfig``; constructing the model builds the
    tower through timm (not installed, and the smallest architecture has 300M parameters). The
    stub config subclasses ``Gemma3nVisionConfig`` (so the strict config accepts it) and is
    registered with ``AutoModel`` to a parameter-free module. The vision embedder
    (``embed_vision``) is real; our prompts have no images, so the tower is never called.
    """
    if "gemma3n" in _STUBS:
        return _STUBS["gemma3n"]
    from transformers import AutoConfig, AutoModel, Gemma3nVisionConfig, PreTrainedModel

    class Gemma3nVisionStubConfig(Gemma3nVisionConfig):
        model_type = "gemma3n_vision_stub_fastadasp"

    class Gemma3nVisionStub(PreTrainedModel):
        config_class = Gemma3nVisionStubConfig
        base_model_prefix = "vision_stub"

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.post_init()

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError("the Gemma 3n vision tower is stubbed out in the tiny test model")

    with quiet():
        AutoConfig.register(Gemma3nVisionStubConfig.model_type, Gemma3nVisionStubConfig, exist_ok=True)
        AutoModel.register(Gemma3nVisionStubConfig, Gemma3nVisionStub, exist_ok=True)
    _STUBS["gemma3n"] = Gemma3nVisionStubConfig
    return Gemma3nVisionStubConfig


def build_gemma3n() -> tuple[Any, MakeInputs]:
    """Gemma 3n: the class-default layer_types for 6 layers (S S S S F S) with sliding_window 16,
    KV sharing (the last layer reuses layer 3's sliding KV), per-layer inputs (8 dims per layer),
    AltUp (4 streams), LAuReL (rank 8), activation sparsity 0.95 in the first two layers (as the
    real model's first 10 of 35), per-layer ``intermediate_size`` (a list), final logit soft-cap.

    Audio: USM conformer over ``input_features (n, frames, mels)`` with a boolean
    ``input_features_mask`` (True = valid); 4x subsampling by the SSCP convs, 4x by the conformer
    -> 320 frames give 20 tokens; the model pads every clip to ``audio_soft_tokens_per_image``
    (set to 20 here; 188 in the real model), so each clip is [boa] + 20 x audio_token + [eoa],
    and ``eoa`` lies in the audio soft-token range (embedded by ``embed_audio``).
    """
    from transformers import Gemma3nAudioConfig, Gemma3nConfig, Gemma3nForConditionalGeneration, Gemma3nTextConfig

    n_tokens, frames = 20, 320
    text = Gemma3nTextConfig(
        **tiny_text(intermediate_size=[128, 128, 96, 96, 128, 128]),
        sliding_window=SLIDING_WINDOW,
        vocab_size_per_layer_input=G3N_VISION_OFFSET,
        hidden_size_per_layer_input=8,
        laurel_rank=8,
        num_kv_shared_layers=1,
        activation_sparsity_pattern=[0.95, 0.95, 0.0, 0.0, 0.0, 0.0],
    )
    audio = Gemma3nAudioConfig(
        vocab_size=G3N_MM_VOCAB,
        vocab_offset=G3N_AUDIO_OFFSET,
        input_feat_size=N_MELS,
        hidden_size=32,
        conf_num_attention_heads=2,
        conf_num_hidden_layers=1,
        sscp_conv_channel_size=[8, 8],
        conf_attention_chunk_size=4,
        conf_attention_context_left=5,
    )
    vision = _gemma3n_vision_stub()(hidden_size=16, vocab_size=G3N_MM_VOCAB, vocab_offset=G3N_VISION_OFFSET)
    cfg = Gemma3nConfig(
        text_config=text,
        audio_config=audio,
        vision_config=vision,
        audio_soft_tokens_per_image=n_tokens,
        boi_token_id=G3N_BOI,
        eoi_token_id=G3N_EOI,
        image_token_id=G3N_IMAGE,
        boa_token_id=G3N_BOA,
        eoa_token_id=G3N_EOA,
        audio_token_id=G3N_AUDIO,
    )
    model = new_model(Gemma3nForConditionalGeneration, cfg)

    def features(g: torch.Generator, n: int) -> Inputs:
        return dict(
            input_features=torch.randn(n, frames, N_MELS, generator=g),
            input_features_mask=torch.ones(n, frames, dtype=torch.bool),
        )

    with torch.no_grad(), quiet():
        f = features(_gen(0), 1)
        emitted = model.model.get_audio_features(f["input_features"], ~f["input_features_mask"]).pooler_output
    assert emitted.shape[1] <= n_tokens, emitted.shape
    span = lambda k: [G3N_BOA] + [G3N_AUDIO] * k + [G3N_EOA]  # noqa: E731
    return model, _simple(model, n_tokens, features, span=span, audio_id=G3N_AUDIO)


# ---------------------------------------------------------------------------------------------
# Gemma 4 (and gemma4_unified): sliding / full layers with per-layer head_dim, per-layer inputs
# ---------------------------------------------------------------------------------------------

G4_BOA, G4_EOA, G4_AUDIO = 247, 249, 250  # the real 256000, 258883, 258881 (all inside the vocab)
G4_BOI, G4_EOI, G4_IMAGE, G4_VIDEO = 243, 244, 245, 246


def _gemma4_audio(**overrides: Any) -> dict[str, Any]:
    """Gemma 4's conformer audio encoder at toy size: two stride-2 convs (4x in time). The first
    conv's channel count must equal the mel count (the projection after the convs assumes
    ``mels / 4 == channels[0] / 4``)."""
    out = dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        subsampling_conv_channels=[N_MELS, 8],
        attention_chunk_size=4,
        attention_context_left=5,
        output_proj_dims=32,
    )
    out.update(overrides)
    return out


def _gemma_features(frames: int) -> Callable[[torch.Generator, int], Inputs]:
    def features(g: torch.Generator, n: int) -> Inputs:
        return dict(
            input_features=torch.randn(n, frames, N_MELS, generator=g),
            input_features_mask=torch.ones(n, frames, dtype=torch.bool),
        )

    return features


def _gemma4_text(**overrides: Any) -> dict[str, Any]:
    """Class-default layer_types for 6 layers (S S S S S F); full layers get head_dim 32 (the
    ``global_head_dim`` per-layer override, 512 vs 256 in the real model), sliding_window 16,
    per-layer inputs of 8 dims."""
    out = tiny_text(
        sliding_window=SLIDING_WINDOW,
        hidden_size_per_layer_input=8,
        vocab_size_per_layer_input=VOCAB,
        global_head_dim=32,
    )
    out.update(overrides)
    return out


def build_gemma4(**text_overrides: Any) -> tuple[Any, MakeInputs]:
    """Gemma 4 (E2B layout): audio via a USM-style conformer, ``input_features (n, frames, mels)``
    with a boolean ``input_features_mask``; 4x subsampling -> 80 frames give 20 tokens. No
    vision tower (``vision_config=None``). Each clip is [boa] + audio tokens + [eoa]."""
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration

    cfg = Gemma4Config(
        text_config=_gemma4_text(**text_overrides),
        audio_config=_gemma4_audio(),
        vision_config=None,
        boi_token_id=G4_BOI,
        eoi_token_id=G4_EOI,
        image_token_id=G4_IMAGE,
        video_token_id=G4_VIDEO,
        boa_token_id=G4_BOA,
        eoa_token_index=G4_EOA,
        audio_token_id=G4_AUDIO,
    )
    model = new_model(Gemma4ForConditionalGeneration, cfg)
    features = _gemma_features(80)
    n = _count(model, **features(_gen(0), 1))
    span = lambda k: [G4_BOA] + [G4_AUDIO] * k + [G4_EOA]  # noqa: E731
    return model, _simple(model, n, features, span=span, audio_id=G4_AUDIO)


def build_gemma4_kv_shared() -> tuple[Any, MakeInputs]:
    """Gemma 4 with KV sharing (the class default has none; Gemma 3n's default reuses in the last
    15 of 35 layers): layer_types S S S F S F and num_kv_shared_layers 1, so layer 5 (full) reuses layer 3's keys
    and values and layer 4 stores the sliding ones; the model drops all but the last token's
    queries from layer 5 on during ``generate``'s prefill (``_maybe_slice_kv_shared_inputs``)."""
    types = ["sliding_attention"] * 3 + ["full_attention", "sliding_attention", "full_attention"]
    return build_gemma4(layer_types=types, num_kv_shared_layers=1)


def build_gemma4_unified() -> tuple[Any, MakeInputs]:
    """Gemma 4 unified: no audio encoder at all; ``input_features (n, tokens, audio_embed_dim)``
    are raw-waveform frames (640 samples per token in the real model) that ``embed_audio``
    projects, one placeholder per frame. No per-layer inputs; bidirectional attention over vision
    tokens only (``use_bidirectional_attention="vision"``), sliding / full layers as Gemma 4."""
    from transformers import Gemma4UnifiedConfig, Gemma4UnifiedForConditionalGeneration

    text = _gemma4_text()
    for key in ("hidden_size_per_layer_input", "vocab_size_per_layer_input"):
        text.pop(key)
    cfg = Gemma4UnifiedConfig(
        text_config=text,
        audio_config=dict(audio_embed_dim=16),
        vision_config=None,
        boi_token_id=G4_BOI,
        eoi_token_id=G4_EOI,
        image_token_id=G4_IMAGE,
        video_token_id=G4_VIDEO,
        boa_token_id=G4_BOA,
        eoa_token_index=G4_EOA,
        audio_token_id=G4_AUDIO,
    )
    model = new_model(Gemma4UnifiedForConditionalGeneration, cfg)
    n = 20

    def features(g: torch.Generator, k: int) -> Inputs:
        return dict(
            input_features=torch.randn(k, n, 16, generator=g), input_features_mask=torch.ones(k, n, dtype=torch.bool)
        )

    span = lambda k: [G4_BOA] + [G4_AUDIO] * k + [G4_EOA]  # noqa: E731
    return model, _simple(model, n, features, span=span, audio_id=G4_AUDIO)


# ---------------------------------------------------------------------------------------------
# Phi-4-multimodal: the text decoder's fields are the top config; placeholder id in audio_config
# ---------------------------------------------------------------------------------------------

PHI4_IMAGE = 245


def build_phi4_multimodal() -> tuple[Any, MakeInputs]:
    """Phi-4-multimodal: ``Phi4MultimodalConfig`` *is* the text config (decoder fields at the top
    level), with ``vision_config`` and ``audio_config`` sub-configs; the audio placeholder id is
    ``config.audio_config.audio_token_id`` (there is no top-level one). Conformer audio encoder
    (NeMo conv subsampling, ``time_reduction`` 8) on ``audio_input_features (n, frames, mels)``;
    ``audio_embed_sizes`` says how many placeholders each clip has (160 frames -> 20); the
    embeddings are ``index_put`` at the placeholder positions. A tiny SigLIP vision tower is built
    but unused."""
    from transformers import Phi4MultimodalConfig, Phi4MultimodalForCausalLM

    audio = dict(
        hidden_size=32,
        intermediate_size=64,
        num_blocks=1,
        num_attention_heads=2,
        ext_pw_out_channel=32,
        depthwise_separable_out_channel=32,
        nemo_conv_channels=16,
        input_size=N_MELS,
        nemo_final_size=N_MELS // 8,
        left_chunk=4,
        audio_token_id=AUDIO,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        crop_size=28,
        patch_size=14,
        image_token_id=PHI4_IMAGE,
    )
    text = tiny_text()
    text.pop("head_dim")
    cfg = Phi4MultimodalConfig(**text, original_max_position_embeddings=1024, audio_config=audio, vision_config=vision)
    model = new_model(Phi4MultimodalForCausalLM, cfg)
    frames, n = 160, 20

    def features(g: torch.Generator, k: int) -> Inputs:
        return dict(
            audio_input_features=torch.randn(k, frames, N_MELS, generator=g),
            audio_embed_sizes=torch.full((k,), n, dtype=torch.long),
            audio_attention_mask=torch.ones(k, frames, dtype=torch.bool),
        )

    return model, _simple(model, n, features)


# ---------------------------------------------------------------------------------------------
# Apertus 1.5: discrete audio codes (WavTokenizer) embedded by the text embedding
# ---------------------------------------------------------------------------------------------

#: Apertus 1.5's vocabulary layout at toy size: text ids, then the image codebook range, then
#: the audio codebook range, which must end inside the vocabulary (checked by the config)
AP_IMAGE_OFFSET, AP_IMAGE_CODES, AP_AUDIO_OFFSET, AP_AUDIO_CODES = 180, 12, 192, 64
AP_AUDIO, AP_IMAGE = 10, 11  # placeholder ids (the real 131085 / 131079 are ordinary vocab entries)


def build_apertus1p5() -> tuple[Any, MakeInputs]:
    """Apertus 1.5: the decoder's norms are ``attention_layernorm`` / ``feedforward_layernorm``
    (not input_layernorm / post_attention_layernorm), xIELU activation, QK-norm. Audio is
    ``input_values (n, 1, samples)`` at 24 kHz with a right-padded ``padding_mask``; the
    WavTokenizer encoder (kept in float32) turns it into codebook ids, offset by
    ``audio_token_offset`` and embedded by the *text* embedding table, then scattered into the
    placeholder positions: one placeholder per code, hop = prod(upsampling_ratios) = 4 -> 80
    samples give 20 tokens (the real hop is 600)."""
    from transformers import Apertus1p5Config, Apertus1p5ForConditionalGeneration

    audio = dict(
        model_type="wavtokenizer_encoder",
        num_filters=4,
        upsampling_ratios=[2, 2],
        hidden_size=16,
        codebook_size=AP_AUDIO_CODES,
        codebook_dim=16,
        num_lstm_layers=1,
        kernel_size=3,
        last_kernel_size=3,
        decoder_hidden_size=16,
        decoder_intermediate_size=32,
        decoder_num_layers=1,
        decoder_attention_num_groups=4,
    )
    # the VQ image tokenizer's GroupNorms have 32 groups: 32 channels is the least it takes
    vision = dict(
        codebook_size=AP_IMAGE_CODES,
        embed_dim=8,
        latent_channels=32,
        base_channels=32,
        channel_multiplier=[1, 1],
        num_res_blocks=1,
        attn_resolutions=[],
        resolution=16,
    )
    cfg = Apertus1p5Config(
        # the class-default llama3 rope scaling needs max_position_embeddings > its original 8192
        text_config=tiny_text(max_position_embeddings=65536),
        audio_config=audio,
        vision_config=vision,
        image_token_id=AP_IMAGE,
        audio_token_id=AP_AUDIO,
        image_token_offset=AP_IMAGE_OFFSET,
        audio_token_offset=AP_AUDIO_OFFSET,
    )
    model = new_model(Apertus1p5ForConditionalGeneration, cfg)
    samples = 80

    def features(g: torch.Generator, k: int) -> Inputs:
        return dict(
            input_values=torch.randn(k, 1, samples, generator=g), padding_mask=torch.ones(k, samples, dtype=torch.long)
        )

    n = _count(model, **features(_gen(0), 1))
    return model, _simple(model, n, features, audio_id=AP_AUDIO)


# ---------------------------------------------------------------------------------------------
# Higgs Audio v2: discrete audio codes in, audio codes out, dual-FFN decoder layers
# ---------------------------------------------------------------------------------------------

HIGGS_CODEBOOKS, HIGGS_CODES = 2, 16
HIGGS_AUDIO_BOS, HIGGS_DELAY = 247, 248


def build_higgs_audio_v2() -> tuple[Any, MakeInputs]:
    """Higgs Audio v2 (a TTS model): each decoder layer has a second, audio-only input norm,
    post-attention norm and MLP (``audio_input_layernorm`` / ``audio_post_attention_layernorm``
    / ``audio_mlp``) applied to the positions in the per-token ``audio_token_mask`` (placeholder
    or delay tokens), which the model passes to every layer. Audio enters as codebook ids
    ``audio_input_ids (n_rows, frames, codebooks)`` (right-padded per row, with a boolean
    ``audio_input_ids_mask``), one placeholder per frame; the output head predicts the next
    frame's codes, and each generated step appends an ``audio_token_id`` (or delay token) to
    ``input_ids``. 20 frames per clip here."""
    from transformers import HiggsAudioV2Config, HiggsAudioV2ForConditionalGeneration

    cfg = HiggsAudioV2Config(
        **tiny_text(max_position_embeddings=2048),
        num_codebooks=HIGGS_CODEBOOKS,
        codebook_size=HIGGS_CODES,
        audio_stream_bos_id=HIGGS_CODES - 2,
        audio_stream_eos_id=HIGGS_CODES - 1,
        audio_token_id=AUDIO,
        audio_bos_token_id=HIGGS_AUDIO_BOS,
        audio_delay_token_id=HIGGS_DELAY,
    )
    model = new_model(HiggsAudioV2ForConditionalGeneration, cfg)
    n = 20

    def make_inputs(seed: int = 0, clips_per_row: Sequence[int] = (1,), first_row: int = 0) -> Inputs:
        rows, row_codes = [], []
        for i, k in enumerate(clips_per_row):
            g = row_generator(seed, first_row + i)
            row_codes.append(torch.randint(0, HIGGS_CODES - 2, (k * n, HIGGS_CODEBOOKS), generator=g))
            rows.append(prompt_row(g, first_row + i, [[HIGGS_AUDIO_BOS] + [AUDIO] * n] * k))
        ids, mask = left_pad(rows)
        # frames are right-padded per row (what prepare_inputs_for_generation assumes)
        frames = max(clips_per_row) * n
        codes = torch.zeros(len(rows), frames, HIGGS_CODEBOOKS, dtype=torch.long)
        valid = torch.zeros(len(rows), frames, dtype=torch.bool)
        for r, c in enumerate(row_codes):
            codes[r, : len(c)] = c
            valid[r, : len(c)] = True
        return dict(input_ids=ids, attention_mask=mask, audio_input_ids=codes, audio_input_ids_mask=valid)

    make_inputs.tokens_per_clip = n  # type: ignore[attr-defined]
    return model, make_inputs


# ---------------------------------------------------------------------------------------------
# Inkling: hybrid attention + short-conv layers, MoE, quantised-mel audio tokens
# ---------------------------------------------------------------------------------------------

INK_MELS, INK_MEL_VOCAB = 8, 16
INK_AUDIO, INK_AUDIO_BOS, INK_IMAGE, INK_IMAGE_BOS = 250, 248, 245, 246


def build_inkling_mm_model() -> tuple[Any, MakeInputs]:
    """Inkling (``inkling_mm_model``): class-default layer_types for 6 layers (5 x
    ``hybrid_sliding`` + ``hybrid``), whose layers carry short causal convolutions
    (``attn_sconv`` / ``mlp_sconv``, 4 conv states per layer in the cache) beside attention;
    sliding layers have their own head counts (``swa_*``) and a window of 16 here; every MLP is
    MoE (4 experts, top 2, 1 shared). Audio is ``audio_input_ids (n, frames, n_mel_bins)``:
    quantised log-mel bins (each in ``[0, mel_vocab_size)``) summed through per-bin embeddings,
    one placeholder per frame (20 here), after an ``audio_bos`` token."""
    from transformers import InklingConfig, InklingForConditionalGeneration

    text = tiny_text(
        swa_num_attention_heads=4,
        swa_num_key_value_heads=2,
        swa_head_dim=16,
        sliding_window_size=SLIDING_WINDOW,
        d_rel=4,
        rel_extent=32,
        moe_intermediate_size=32,
        n_routed_experts=4,
        num_experts_per_tok=2,
        n_shared_experts=1,
    )
    cfg = InklingConfig(
        text_config=text,
        audio_config=dict(n_mel_bins=INK_MELS, mel_vocab_size=INK_MEL_VOCAB, text_hidden_size=64),
        vision_config=dict(
            text_hidden_size=64, patch_size=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=2
        ),
        audio_token_id=INK_AUDIO,
        audio_bos_token_id=INK_AUDIO_BOS,
        image_token_id=INK_IMAGE,
        image_bos_token_id=INK_IMAGE_BOS,
    )
    model = new_model(InklingForConditionalGeneration, cfg)
    n = 20

    def features(g: torch.Generator, k: int) -> Inputs:
        return dict(
            audio_input_ids=torch.randint(0, INK_MEL_VOCAB, (k, n, INK_MELS), generator=g),
            audio_input_ids_mask=torch.ones(k, n, dtype=torch.bool),
        )

    span = lambda k: [INK_AUDIO_BOS] + [INK_AUDIO] * k  # noqa: E731
    return model, _simple(model, n, features, span=span, audio_id=INK_AUDIO)


# ---------------------------------------------------------------------------------------------
# Muse Spark: sliding / full (NoPE) layers, MoE everywhere, waveform patch-conv audio encoder
# ---------------------------------------------------------------------------------------------

MS_AUDIO, MS_IMAGE, MS_VIDEO = 250, 245, 246


def build_muse_spark() -> tuple[Any, MakeInputs]:
    """Muse Spark: class-default layer_types for 6 layers (full where ``(5 - i) % 4 == 0``:
    S F S S S F), full layers are NoPE (``layer_rope_theta`` 0), sliding_window 16, every MLP
    MoE (4 experts, top 2), final logit soft-cap, residual gates. Audio is the raw waveform
    ``input_values (n, samples)`` (+ ``input_values_mask``), patch-convolved stage by stage:
    ``samples_per_token = prod(patch_sizes)`` = 20 here (1920 in the real model), so 400 samples
    give 20 tokens; audio embeddings pass the text embedding's ``embed_norm``."""
    from transformers import MuseSparkConfig, MuseSparkForConditionalGeneration

    text = tiny_text(
        sliding_window=SLIDING_WINDOW,
        moe_intermediate_size=32,
        num_local_experts=4,
        num_experts_per_tok=2,
        moe_hidden_size=32,
    )
    audio = dict(
        patch_sizes=[4, 5],
        hidden_sizes=[16, 32],
        depths=[1, 1],
        num_hidden_layers=2,
        conv_kernel_size=3,
        out_hidden_size=64,
    )
    vision = dict(
        patch_size=14,
        pos_emb_height=4,
        pos_emb_width=4,
        num_attention_heads=2,
        num_hidden_layers=1,
        hidden_size=32,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    cfg = MuseSparkConfig(
        text_config=text,
        vision_config=vision,
        audio_config=audio,
        out_hidden_size=64,
        projector_hidden_size=64,
        image_token_id=MS_IMAGE,
        video_token_id=MS_VIDEO,
        audio_token_id=MS_AUDIO,
    )
    model = new_model(MuseSparkForConditionalGeneration, cfg)
    samples, n = 400, 20

    def features(g: torch.Generator, k: int) -> Inputs:
        return dict(
            input_values=torch.randn(k, samples, generator=g),
            input_values_mask=torch.ones(k, samples, dtype=torch.long),
        )

    return model, _simple(model, n, features, audio_id=MS_AUDIO)


# ---------------------------------------------------------------------------------------------
# dots.3 note: MLA attention, DSA "indexed" + sliding layers, MoE, Whisper-like conv audio stem
# ---------------------------------------------------------------------------------------------

DOTS_AUDIO, DOTS_IMAGE, DOTS_VIDEO = 250, 245, 246


def build_dots3_note() -> tuple[Any, MakeInputs]:
    """dots.3 note: class-default layer_types for 6 layers (``indexed_attention`` where ``i < 2``
    or ``i % 4 == 1``, else ``sliding_attention``: I I S S S I). All attention is MLA
    (``q_lora_rank`` / ``kv_lora_rank`` / nope + rope head dims, so KV heads == query heads,
    4 here); sliding layers have their own MLA sizes (2 heads, kv_lora_rank 32: the
    ``per_layer_config`` built from the ``swa_*`` kwargs) and window 16; indexed (DSA) layers
    keep only the ``index_topk`` keys a lightning indexer scores highest: 16 here (2048 in the
    real model), so the selection really drops keys in our prompts. MLPs: the first is dense,
    the rest MoE (4 routed experts, top 2, 1 shared).

    Audio: ``input_features (chunks, mels, frames)`` and ``chunk_sample_lengths`` (samples per
    chunk); the conv stem subsamples 8x, ``samples_per_token = hop_length * 8`` = 1280 ->
    25600 samples (160 frames) give 20 tokens."""
    from transformers import Dots3NoteConfig, Dots3NoteForConditionalGeneration

    mla = dict(q_lora_rank=16, kv_lora_rank=16, head_dim=16, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=16)
    text = tiny_text(
        num_key_value_heads=4,
        **mla,
        sliding_window=SLIDING_WINDOW,
        index_topk=16,
        index_head_dim=16,
        index_n_heads=2,
        n_routed_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        shared_experts_intermediate_size=32,
    )
    # sliding layers get their own MLA sizes, as in the real model (fewer heads, larger kv rank)
    text.update({f"swa_{k}": v for k, v in mla.items()})
    text.update(swa_num_attention_heads=2, swa_num_key_value_heads=2, swa_kv_lora_rank=32)
    audio = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        feature_size=N_MELS,
        downsample_hidden_size=8,
        adapter_input_size=32,
        adapter_out_dim=64,
        max_position_embeddings=256,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        mlp_layer_types=["dense"],
        adapter_in_dim=32,
        adapter_out_dim=64,
    )
    cfg = Dots3NoteConfig(
        text_config=text,
        audio_config=audio,
        vision_config=vision,
        audio_token_id=DOTS_AUDIO,
        image_token_id=DOTS_IMAGE,
        video_token_id=DOTS_VIDEO,
    )
    model = new_model(Dots3NoteForConditionalGeneration, cfg)
    frames, hop = 160, 160

    def features(g: torch.Generator, k: int) -> Inputs:
        return dict(
            input_features=torch.randn(k, N_MELS, frames, generator=g),
            chunk_sample_lengths=torch.full((k,), frames * hop, dtype=torch.long),
        )

    n = _count(model, **features(_gen(0), 1))
    return model, _simple(model, n, features, audio_id=DOTS_AUDIO)


# ---------------------------------------------------------------------------------------------
# NemotronH hybrids (Mamba-2 / MoE / attention blocks): Nemotron 3.5 Transcribe, NemotronH-Omni
# ---------------------------------------------------------------------------------------------


def _nemotron_h_text(pattern: str | list[str]) -> dict[str, Any]:
    """A tiny NemotronH decoder: 6 blocks, each ONE of Mamba-2 (M / linear_attention), MoE
    (E / moe), attention (* / full_attention) or MLP (- / mlp): only the attention blocks have a
    KV cache; Mamba blocks carry conv + SSM state. Torch Mamba path (no CUDA kernels)."""
    blocks = dict(layers_block_type=pattern) if isinstance(pattern, list) else dict(hybrid_override_pattern=pattern)
    text = tiny_text(
        model_type="nemotron_h",
        **blocks,
        use_mamba_kernels=False,
        ssm_state_size=8,
        mamba_num_heads=8,
        mamba_head_dim=16,
        n_groups=1,
        chunk_size=16,
        n_routed_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        moe_shared_expert_intermediate_size=32,
    )
    text.pop("num_hidden_layers")
    return text


def build_nemo_speechlm() -> tuple[Any, MakeInputs]:
    """Nemotron 3.5 Transcribe (``nemo_speechlm``): the first 6 blocks of the class-default
    pattern ``MEMEM*...`` (Mamba, MoE, Mamba, MoE, Mamba, attention). Audio: a FastConformer-like
    ASR encoder and a Sortformer diarization model run in parallel on
    ``input_features (n, frames, mels)`` (+ ``input_features_mask``), speaker activities are
    added to the ASR states; 8x subsampling -> 160 frames give 20 tokens."""
    from transformers import Nemotron3_5TranscribeConfig, Nemotron3_5TranscribeForConditionalGeneration

    enc = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_mel_bins=N_MELS,
        max_position_embeddings=512,
    )
    audio = dict(
        asr_config=dict(enc),
        diarization_config=dict(
            model_type="nemotron3_diarization",
            audio_config=dict(enc),
            head_config=dict(hidden_size=16, num_speakers=4, audio_hidden_size=32),
            streaming_config=dict(fifo_length=8, speaker_cache_update_period=8, speaker_cache_length=8, num_speakers=4),
            chunk_length=40,
            chunk_left_context=4,
            chunk_right_context=4,
            fifo_length=8,
            speaker_cache_update_period=8,
        ),
    )
    words = dict(
        hidden_size=32,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        vocab_size=32,
        blank_token_id=31,
    )
    cfg = Nemotron3_5TranscribeConfig(
        audio_config=audio, text_config=_nemotron_h_text("MEMEM*"), word_timestamp_config=words, audio_token_id=AUDIO
    )
    model = new_model(Nemotron3_5TranscribeForConditionalGeneration, cfg)

    def features(g: torch.Generator, k: int) -> Inputs:
        return dict(
            input_features=torch.randn(k, 160, N_MELS, generator=g),
            input_features_mask=torch.ones(k, 160, dtype=torch.long),
        )

    n = _count(model, **features(_gen(0), 1))
    return model, _simple(model, n, features)


NHO_AUDIO, NHO_IMAGE, NHO_VIDEO = 250, 245, 246
#: six blocks covering the four block types of the class default (M E * -)
NHO_BLOCKS = ["linear_attention", "moe", "full_attention", "mlp", "linear_attention", "full_attention"]


def build_nemotron_h_omni() -> tuple[Any, MakeInputs]:
    """NemotronH-Omni (``NemotronH_Omni_Reasoning_V3``, the class itself generates; its decoder is
    ``model.language_model``, a NemotronH CausalLM): blocks M E * - M * (Mamba-2, MoE,
    attention, MLP, Mamba-2, attention). The audio placeholder id is ``None`` in the class
    defaults (checkpoints store it as ``sound_context_token_id``) and the audio tower exists only
    with an ``audio_config`` (a Parakeet FastConformer encoder + a 2-layer projector, whose
    ``projection_hidden_size`` / ``projection_bias`` come from the checkpoint's audio config).
    ``input_features (n, frames, mels)`` + ``input_features_mask``; 8x subsampling -> 160 frames
    give 20 tokens. A tiny RADIO vision tower is built but unused."""
    from transformers import NemotronH_Omni_Reasoning_V3, NemotronH_Omni_Reasoning_V3_Config

    audio = dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        subsampling_conv_channels=8,
        num_mel_bins=N_MELS,
        conv_kernel_size=3,
        max_position_embeddings=512,
        projection_hidden_size=64,
        projection_bias=False,
    )
    vision = dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        patch_size=16,
        image_size=32,
        max_img_size=64,
        num_cls_tokens=1,
        num_registers=0,
        summary_idxs=[0],
        video_temporal_patch_size=2,
    )
    cfg = NemotronH_Omni_Reasoning_V3_Config(
        text_config=_nemotron_h_text(NHO_BLOCKS),
        vision_config=vision,
        audio_config=audio,
        vision_hidden_size=32,
        projector_hidden_size=64,
        audio_token_id=NHO_AUDIO,
        image_token_id=NHO_IMAGE,
        video_token_id=NHO_VIDEO,
    )
    model = new_model(NemotronH_Omni_Reasoning_V3, cfg)

    def features(g: torch.Generator, k: int) -> Inputs:
        return dict(
            input_features=torch.randn(k, 160, N_MELS, generator=g),
            input_features_mask=torch.ones(k, 160, dtype=torch.long),
        )

    n = _count(model, **features(_gen(0), 1))
    return model, _simple(model, n, features, audio_id=NHO_AUDIO)


# ---------------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------------


def _lm(
    model_type: str,
    model_class: str,
    build: Callable[[], tuple[Any, MakeInputs]],
    placeholder_id: int,
    placeholder_attr: str,
    tokens_per_clip: int,
    notes: str,
    batchable: bool = True,
    variant: str = "",
    generates: str = "text",
) -> SpeechLMEntry:
    return SpeechLMEntry(
        model_type=model_type,
        model_class=model_class,
        build=build,
        batchable=batchable,
        notes=notes,
        placeholder_id=placeholder_id,
        placeholder_attr=placeholder_attr,
        variant=variant,
        category="speech_lm",
        tokens_per_clip=tokens_per_clip,
        generates=generates,
    )


def _out(model_type: str, model_class: str, category: str, notes: str, placeholder_attr: str = "") -> SpeechLMEntry:
    return SpeechLMEntry(
        model_type=model_type,
        model_class=model_class,
        build=None,
        notes=notes,
        placeholder_attr=placeholder_attr,
        category=category,
    )


_ENCDEC = (
    "encoder-decoder: the audio is the encoder's input and the text decoder cross-attends to it; "
    "no audio placeholder tokens in the decoder's input_ids, so nothing for a text-decoder token "
    "reduction to shorten"
)

ENTRY_LIST: list[SpeechLMEntry] = [
    # --- decoder-only Speech LMs, placeholders in input_ids, Llama/Qwen-like decoders
    _lm(
        "qwen2_audio",
        "Qwen2AudioForConditionalGeneration",
        build_qwen2_audio,
        AUDIO,
        "config.audio_token_id",
        20,
        "Real id 151646 (config.audio_token_index is an alias). Whisper encoder: input_features (n, mels, "
        "2 * max_source_positions) + feature_attention_mask; tokens = ((frames - 1) // 2 + 1 - 2) // 2 + 1. "
        "Qwen2 decoder, norms input_layernorm / post_attention_layernorm.",
    ),
    _lm(
        "voxtral",
        "VoxtralForConditionalGeneration",
        build_voxtral,
        AUDIO,
        "config.audio_token_id",
        20,
        "Default audio_token_id is None (checkpoints set 24). Whisper encoder without a feature mask "
        "(input_features only, fixed 2 * max_source_positions frames); the projector stacks 4 encoder frames "
        "(audio intermediate_size = 4 * hidden) -> frames / 8 tokens. Llama decoder.",
    ),
    _lm(
        "audioflamingo3",
        "AudioFlamingo3ForConditionalGeneration",
        build_audioflamingo3,
        AUDIO,
        "config.audio_token_id",
        20,
        "Real id 151669. Qwen2-Audio's encoder layout with input_features_mask; Qwen2 decoder.",
    ),
    _lm(
        "musicflamingo",
        "MusicFlamingoForConditionalGeneration",
        build_musicflamingo,
        AUDIO,
        "config.audio_token_id",
        20,
        "Real ids 151669 (audio), 151670 / 151671 (audio_bos / audio_eos, around each clip). AF3's encoder plus "
        "rotary *time* embeddings applied to the encoder output, computed from each contiguous run of "
        "placeholders in input_ids (get_audio_features takes input_ids): the run structure must survive until "
        "the features are merged (prefill), which it does since reduction happens inside the decoder.",
    ),
    _lm(
        "glmasr",
        "GlmAsrForConditionalGeneration",
        build_glmasr,
        AUDIO,
        "config.audio_token_id",
        20,
        "Real id 59260. Rotary Whisper-like encoder (no fixed length), 4 conv frames merged per token "
        "(audio intermediate_size = 4 * hidden): tokens = frames / 8. Llama decoder.",
    ),
    _lm(
        "granite_speech",
        "GraniteSpeechForConditionalGeneration",
        build_granite_speech,
        AUDIO,
        "config.audio_token_index (audio_token_id is an alias)",
        21,
        "Real id 49155, outside the text vocabulary: placeholders are mapped to id 0 before the embedding. "
        "Conformer CTC encoder on input_features (n, frames, input_dim) (no downsampling) + windowed Q-Former: "
        "ceil(frames / window_size) * (window_size // downsample_rate) tokens (100 frames -> 21). "
        "input_features_mask (n, tokens) selects valid projected tokens. Granite decoder with the config-class "
        "multipliers (all 1.0).",
    ),
    _lm(
        "granite_speech",
        "GraniteSpeechForConditionalGeneration",
        build_granite_speech_released,
        AUDIO,
        "config.audio_token_index",
        21,
        "As granite_speech, with the released LLM's multipliers: residual_multiplier 0.22 (the layer computes "
        "residual + 0.22 * attn and residual + 0.22 * mlp), embedding_multiplier 12, attention_multiplier "
        "1/64 (replaces 1/sqrt(head_dim) as the score scale), logits_scaling 8 (logits divided).",
        variant="released",
    ),
    _lm(
        "granite_speech_plus",
        "GraniteSpeechPlusForConditionalGeneration",
        build_granite_speech_plus,
        AUDIO,
        "config.audio_token_index (audio_token_id is an alias)",
        21,
        "As granite_speech; the encoder also concatenates the outputs of encoder_config.cat_hidden_layers "
        "([0] here) for the projector. Config-class multipliers (1.0).",
    ),
    _lm(
        "granite_speech_plus",
        "GraniteSpeechPlusForConditionalGeneration",
        build_granite_speech_plus_released,
        AUDIO,
        "config.audio_token_index",
        21,
        "granite_speech_plus with Granite-3.3-2B's multipliers (residual 0.22, embedding 12, attention 1/64, "
        "logits 8); the plus checkpoints' own LLM values were not checked here.",
        variant="released",
    ),
    _lm(
        "qwen3_asr",
        "Qwen3ASRForConditionalGeneration",
        build_qwen3_asr,
        AUDIO,
        "config.audio_token_id",
        26,
        "Real id 151676. Qwen3-Omni audio encoder: features in 2 * n_window (= 100) frame chunks, 13 tokens per "
        "full chunk (200 frames -> 26); input_features (n, mels, frames) + input_features_mask. Qwen3 decoder "
        "(q_norm / k_norm in attention).",
    ),
    _lm(
        "moss_transcribe_diarize",
        "MossTranscribeDiarizeForConditionalGeneration",
        build_moss_transcribe_diarize,
        AUDIO,
        "config.audio_token_id",
        20,
        "Real id 151671. Whisper encoder (fixed 2 * max_source_positions frames), audio_merge_size = 4 frames "
        "per token after conv2 (frames / 8). Forward also takes padding_mask (raw-audio mask; unused when None). "
        "Qwen3 decoder.",
    ),
    _lm(
        "fun_asr_nano",
        "FunAsrNanoForConditionalGeneration",
        build_fun_asr_nano,
        AUDIO,
        "config.audio_token_id",
        20,
        "Real id 151646. SAN-M encoder on low-frame-rate stacked features input_features (n, frames, mels * "
        "num_stacked_frames) + input_features_mask, adaptor without downsampling: one token per feature frame. "
        "Qwen3 decoder.",
    ),
    _lm(
        "omniasr",
        "OmniASRForConditionalGeneration",
        build_omniasr,
        AUDIO,
        "config.audio_token_id",
        20,
        "Real id 10289. wav2vec2-style conv feature encoder on the raw waveform input_values (n, 1, samples) + "
        "padding_mask; one token per conv frame (real stride 320 samples). Config-level bos 0 / pad 1 / eos 2 "
        "by default. Llama decoder.",
    ),
    _lm(
        "vibevoice_asr",
        "VibeVoiceAsrForConditionalGeneration",
        build_vibevoice_asr,
        AUDIO,
        "config.audio_token_id",
        20,
        "Real ids 151648 (audio), 151646 / 151647 (bos / eos around each clip). Acoustic + semantic conv "
        "tokenizer encoders on input_values (n, 1, samples); one token per hop = prod(downsampling_ratios) "
        "(3200 samples at 24 kHz in the real model). The inputs carry sample=False: the default sample=True adds "
        "random noise to the acoustic latents, so two generates would differ. Qwen2 decoder.",
    ),
    _lm(
        "qwen2_5_omni_thinker",
        "Qwen2_5OmniThinkerForConditionalGeneration",
        build_qwen2_5_omni_thinker,
        AUDIO,
        "config.audio_token_id (audio_token_index alias)",
        20,
        "Real ids 151646 (audio), 151647 / 151648 (audio_start / audio_end around each clip). M-RoPE: 3-D "
        "position ids from get_rope_index (audio positions are plain 1-D runs; mrope_section [2, 3, 3] for "
        "head_dim 16), rope_deltas kept on the model between prefill and decoding. Audio encoder in n_window "
        "chunks; tokens = ((frames - 1) // 2 + 1 - 2) // 2 + 1. A tiny vision tower is built but unused.",
    ),
    _lm(
        "qwen3_omni_moe_thinker",
        "Qwen3OmniMoeThinkerForConditionalGeneration",
        build_qwen3_omni_moe_thinker,
        AUDIO,
        "config.audio_token_id",
        26,
        "Real ids 151646 / audio_start 151647 (the end marker is an ordinary token here). Interleaved M-RoPE "
        "(mrope_section [2, 3, 3]). Every decoder MLP is sparse MoE (4 experts, top 2, moe_intermediate_size "
        "32; the dense intermediate_size 128 is in the config but unused): FLOPs must count active experts. "
        "Qwen3-ASR's audio encoder (200 frames -> 26).",
    ),
    # --- Gemma family: sliding windows, per-layer dims, per-layer inputs
    _lm(
        "gemma3n",
        "Gemma3nForConditionalGeneration",
        build_gemma3n,
        G3N_AUDIO,
        "config.audio_token_id",
        20,
        "Real ids: audio 262273 = audio vocab_offset + 1, boa 256000, eoa 262272 = audio vocab_offset. Ids >= "
        "an embedder's vocab_offset are embedded by embed_vision / embed_audio (eoa too); the model pads every "
        "clip's features to audio_soft_tokens_per_image (188 real, 20 here). Decoder: layer_types S S S S F S "
        "(class default) with sliding_window 16; per-layer inputs (get_per_layer_inputs from input_ids < "
        "vocab_size_per_layer_input, projected from inputs_embeds; each layer gets per_layer_input), AltUp (4 "
        "streams; hidden_states is (altup, B, T, H) inside the stack), LAuReL, KV sharing "
        "(num_kv_shared_layers 1: layer 5 reuses layer 3's sliding KV, shared_kv_states), activation sparsity "
        "0.95 in layers 0-1, per-layer intermediate_size list [128, 128, 96, 96, 128, 128], final logit "
        "soft-cap 30. Layer forward(hidden_states, position_embeddings, per_layer_input, shared_kv_states, ...) "
        "positional order; norms input_layernorm, post_attention_layernorm, pre_feedforward_layernorm, "
        "post_feedforward_layernorm, post_per_layer_input_norm. The timm vision tower is replaced by a "
        "registered stub (timm is not installed, and the smallest tower has 300M parameters).",
    ),
    _lm(
        "gemma4",
        "Gemma4ForConditionalGeneration",
        build_gemma4,
        G4_AUDIO,
        "config.audio_token_id",
        20,
        "Real ids audio 258881, boa 256000, eoa 258883 (config.eoa_token_index), all inside the vocabulary. "
        "Default audio_config is None (no audio tower); the tiny one is a conformer with 4x subsampling "
        "(input_features (n, frames, mels) + boolean input_features_mask; 80 frames -> 20). Decoder: "
        "layer_types S S S S S F (class default), sliding_window 16; full layers get head_dim 32 via the "
        "per-layer config (global_head_dim; config.head_dim raises AmbiguousGlobalPerLayerAttributeError, "
        "read config.per_layer_config[i].head_dim or config.per_layer_attributes); full layers use "
        "proportional RoPE with partial_rotary_factor 0.25; per-layer inputs (8 dims) as Gemma 3n; layer "
        "forward(hidden_states, per_layer_input, shared_kv_states, position_embeddings, ...).",
    ),
    _lm(
        "gemma4",
        "Gemma4ForConditionalGeneration",
        build_gemma4_kv_shared,
        G4_AUDIO,
        "config.audio_token_id",
        20,
        "As gemma4, with KV sharing (num_kv_shared_layers 1, layer_types S S S F S F): layer 5 computes no keys "
        "or values and attends over layer 3's (shared_kv_states; its cache layer is a DummyLayer), layer 4 "
        "stores the sliding ones; from layer 5 on generate's prefill keeps only the last token's queries "
        "(_maybe_slice_kv_shared_inputs slices hidden states, per-layer inputs, rotary embeddings and masks).",
        variant="kv_shared",
    ),
    _lm(
        "gemma4_unified",
        "Gemma4UnifiedForConditionalGeneration",
        build_gemma4_unified,
        G4_AUDIO,
        "config.audio_token_id",
        20,
        "Ids as gemma4. No audio encoder: input_features (n, tokens, audio_embed_dim) are raw-waveform frames "
        "(640 samples per token) that embed_audio projects, one placeholder per frame, input_features_mask "
        "marks valid frames. Decoder as gemma4 without per-layer inputs; use_bidirectional_attention='vision' "
        "(bidirectional over vision tokens only).",
    ),
    _lm(
        "dots3_note",
        "Dots3NoteForConditionalGeneration",
        build_dots3_note,
        DOTS_AUDIO,
        "config.audio_token_id",
        20,
        "Real id 151720. MLA attention everywhere (KV heads == query heads; cache holds compressed KV), "
        "layer_types I I S S S I (indexed_attention = DSA with a lightning indexer that keeps index_topk keys "
        "per query: 16 here; sliding_attention window 16), sliding layers with their own MLA sizes via "
        "config.per_layer_config (num_attention_heads and num_key_value_heads raise "
        "AmbiguousGlobalPerLayerAttributeError globally). MLP dense in layer 0, MoE after (4 experts top 2 + 1 "
        "shared). Audio: input_features (chunks, mels, frames) + chunk_sample_lengths; tokens = "
        "ceil(samples / (hop_length * 8)). Not batchable: in a left-padded batch the padded row's logits move "
        "by ~1e-3 (the indexer's top-k reaches padded keys while a query has fewer than index_topk real keys).",
        batchable=False,
    ),
    _lm(
        "muse_spark",
        "MuseSparkForConditionalGeneration",
        build_muse_spark,
        MS_AUDIO,
        "config.audio_token_id",
        20,
        "Real id 200038. Decoder: layer_types S F S S S F (class default: full where (L - 1 - i) % 4 == 0), "
        "full layers NoPE (layer_rope_theta 0), sliding_window 16, MoE everywhere (4 experts top 2), residual "
        "gates (post_attention_residual_gate / post_feedforward_residual_gate), extra norms "
        "pre_feedforward_layernorm / post_feedforward_layernorm, final logit soft-cap. Layer forward("
        "hidden_states, position_embeddings, attention_mask, ...). Audio: raw waveform input_values (n, "
        "samples) + input_values_mask, samples_per_token = prod(audio patch_sizes) (1920 real, 20 here).",
    ),
    _lm(
        "phi4_multimodal",
        "Phi4MultimodalForCausalLM",
        build_phi4_multimodal,
        AUDIO,
        "config.audio_config.audio_token_id (no top-level id)",
        20,
        "Real id 200011, only in audio_config (vision id in vision_config.image_token_id). The decoder's "
        "fields are the top-level config itself (Phi4MultimodalConfig is the text config; head_dim not a field). "
        "Audio: audio_input_features (n, frames, mels), audio_embed_sizes (placeholders per clip = "
        "ceil(frames / time_reduction)), audio_attention_mask; embeddings are index_put at the placeholders. "
        "The audio encoder's config is a sub-config of the same model: an attention swap keyed on the config "
        "reaches the audio encoder too.",
    ),
    _lm(
        "apertus1p5",
        "Apertus1p5ForConditionalGeneration",
        build_apertus1p5,
        AP_AUDIO,
        "config.audio_token_id",
        20,
        "Real ids 131085 (audio placeholder), audio_token_offset 262344. Decoder norms are attention_layernorm "
        "/ feedforward_layernorm (not input_layernorm / post_attention_layernorm), xIELU MLP, llama3 RoPE. "
        "Audio: input_values (n, 1, samples) + right-padded padding_mask; the WavTokenizer encoder (float32) "
        "gives discrete codes, offset by audio_token_offset and embedded by the text embedding, then scattered "
        "into the placeholders (one per code; hop 600 real, 4 here).",
    ),
    _lm(
        "higgs_audio_v2",
        "HiggsAudioV2ForConditionalGeneration",
        build_higgs_audio_v2,
        AUDIO,
        "config.audio_token_id (+ audio_delay_token_id)",
        20,
        "A TTS model (generates audio codes). Real ids 128016 (audio), 128013 (audio_bos), 128014 (delay). "
        "Dual-FFN layers: positions in the per-token audio_token_mask (placeholder or delay ids, passed to every "
        "layer) go through audio_input_layernorm / audio_post_attention_layernorm / audio_mlp instead of the "
        "text ones; a shortened sequence needs the mask shortened too. Audio in: audio_input_ids (rows, frames, "
        "num_codebooks) right-padded + audio_input_ids_mask; one placeholder per frame. generate returns "
        "audio_input_ids unless return_dict_in_generate (then .sequences = prompt + 5 placeholders).",
        generates="audio_codes",
    ),
    _lm(
        "inkling_mm_model",
        "InklingForConditionalGeneration",
        build_inkling_mm_model,
        INK_AUDIO,
        "config.audio_token_id",
        20,
        "Real ids 200053 (audio), 200020 (audio_bos). Hybrid layers: every layer has short causal convolutions "
        "attn_sconv / mlp_sconv (4 conv states per layer in the cache) beside attention and MoE; layer_types "
        "hybrid_sliding x5 + hybrid (class default), sliding layers with separate swa_* head counts, window 16. "
        "Layer forward(hidden_states, attention_mask, conv_mask, cache). Audio: audio_input_ids (n, frames, "
        "n_mel_bins) quantised mel bins, one placeholder per frame, after audio_bos.",
    ),
    _lm(
        "nemo_speechlm",
        "Nemotron3_5TranscribeForConditionalGeneration",
        build_nemo_speechlm,
        AUDIO,
        "config.audio_token_id",
        20,
        "Real id 131072 (= the vocab size). NemotronH decoder: blocks M E M E M * (Mamba-2, MoE, attention: the "
        "first 6 of the class pattern), each block one mixer + one norm (NemotronHBlock.mixer / .norm); only "
        "attention blocks have KV, Mamba blocks keep conv + SSM state. Audio: ASR encoder + Sortformer "
        "diarization in parallel on input_features (n, frames, mels) + input_features_mask, 8x subsampling.",
    ),
    _lm(
        "nemotron_h_omni",
        "NemotronH_Omni_Reasoning_V3",
        build_nemotron_h_omni,
        NHO_AUDIO,
        "config.audio_token_id",
        20,
        "Default audio_token_id None (checkpoints: sound_context_token_id); audio tower only with an "
        "audio_config (Parakeet encoder + projector; projection_hidden_size / projection_bias come from the "
        "checkpoint). The class generates itself; its decoder is model.language_model.model (NemotronH), blocks "
        "M E * - M * here. input_features (n, frames, mels) + input_features_mask, 8x subsampling.",
    ),
    # --- audio-text model types without a tiny Speech LM here, with the reason
    _out(
        "qwen2_5_omni",
        "Qwen2_5OmniForConditionalGeneration",
        "omni_wrapper",
        "Thinker + talker (+ token2wav); the Speech LM is model.thinker (entry qwen2_5_omni_thinker). Its "
        "generate ignores max_new_tokens for the thinker (thinker_max_new_tokens, default 1024, takes "
        "priority) and needs the checkpoint's speaker map even for text (empty in a fresh model: 'Chelsie is "
        "not available').",
        "config.thinker_config.audio_token_id",
    ),
    _out(
        "qwen3_omni_moe",
        "Qwen3OmniMoeForConditionalGeneration",
        "omni_wrapper",
        "Thinker + talker + code2wav; the Speech LM is model.thinker (entry qwen3_omni_moe_thinker). With "
        "enable_audio_output=False, generate(**inputs, max_new_tokens=5) runs the thinker for 1024 new tokens: "
        "pass thinker_max_new_tokens.",
        "config.thinker_config.audio_token_id",
    ),
    _out(
        "qwen2_5_omni_talker",
        "(Qwen2_5OmniTalkerForConditionalGeneration, inside qwen2_5_omni)",
        "sub_config",
        "The talker sub-config: generates codec tokens from the thinker's hidden states; not a Speech LM.",
        "audio_token_id",
    ),
    _out(
        "phi4_multimodal_audio",
        "(Phi4MultimodalAudioModel, inside phi4_multimodal)",
        "sub_config",
        "The audio encoder's sub-config of phi4_multimodal (it holds that model's audio_token_id).",
        "audio_token_id",
    ),
    _out(
        "embedding_gemma2",
        "EmbeddingGemma2Model",
        "not_generative",
        "An embedding model (no generate); it shares Gemma's multimodal config fields, audio_token_id included.",
    ),
    _out(
        "csm",
        "CsmForConditionalGeneration",
        "tts",
        "Sesame CSM, text-to-speech: a backbone + depth decoder that generate audio codebook frames; audio "
        "context enters as codec frames. Output is speech, not text.",
        "audio_token_id",
    ),
    _out(
        "vibevoice",
        "VibeVoiceForConditionalGeneration",
        "tts",
        "VibeVoice text-to-speech (diffusion head over acoustic latents); output is speech, not text.",
        "audio_token_id",
    ),
    _out("dia", "DiaForConditionalGeneration", "tts", "Dia text-to-speech, encoder-decoder; output is speech."),
    _out(
        "pop2piano",
        "Pop2PianoForConditionalGeneration",
        "encoder_decoder",
        "Audio to MIDI tokens, T5 encoder-decoder. " + _ENCDEC,
    ),
    _out(
        "kyutai_speech_to_text",
        "KyutaiSpeechToTextForConditionalGeneration",
        "streaming",
        "Streaming ASR: at every step the audio frame's codec embeddings are added to the text token's; no "
        "audio placeholders, so out of scope by design.",
    ),
    _out(
        "voxtral_realtime",
        "VoxtralRealtimeForConditionalGeneration",
        "streaming",
        "Streaming ASR: audio embeddings are added to the text stream step by step; no placeholders, out of "
        "scope by design.",
    ),
    *[
        _out(mt, cls, "encoder_decoder", _ENCDEC)
        for mt, cls in [
            ("canary", "CanaryForConditionalGeneration"),
            ("cohere_asr", "CohereAsrForConditionalGeneration"),
            ("moonshine", "MoonshineForConditionalGeneration"),
            ("moonshine_streaming", "MoonshineStreamingForConditionalGeneration"),
            ("seamless_m4t", "SeamlessM4TForSpeechToText"),
            ("seamless_m4t_v2", "SeamlessM4Tv2ForSpeechToText"),
            ("speech-encoder-decoder", "SpeechEncoderDecoderModel"),
            ("speech_to_text", "Speech2TextForConditionalGeneration"),
            ("speecht5", "SpeechT5ForSpeechToText"),
            ("whisper", "WhisperForConditionalGeneration"),
        ]
    ],
]

#: entry name -> entry
ENTRIES: dict[str, SpeechLMEntry] = {e.name: e for e in ENTRY_LIST}
assert len(ENTRIES) == len(ENTRY_LIST), "duplicate entry names"


def build(name: str) -> tuple[Any, MakeInputs]:
    """``(model, make_inputs)`` for an entry name (``model_type`` or ``model_type:variant``)."""
    entry = ENTRIES[name]
    if entry.build is None:
        raise ValueError(f"{name} has no tiny Speech LM: {entry.notes}")
    return entry.build()


def buildable() -> list[SpeechLMEntry]:
    """The entries with a builder, in registry order."""
    return [e for e in ENTRY_LIST if e.build is not None]


def entry_model_types() -> set[str]:
    """The model types the registry covers (each has at least one entry)."""
    return {e.model_type for e in ENTRY_LIST}


if __name__ == "__main__":  # the discovered list, and which types have which kind of entry
    discovered = audio_text_model_types()
    print(f"{len(discovered)} audio-text model types in transformers:")
    for mt in discovered:
        kinds = sorted({e.category for e in ENTRY_LIST if e.model_type == mt}) or ["NO ENTRY"]
        print(f"  {mt:28s} {', '.join(kinds)}")
