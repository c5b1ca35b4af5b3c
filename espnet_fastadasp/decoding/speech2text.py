"""The decoder object: a Speech LM loaded once, batches of audio + prompts in, hypotheses out.

After ESPnet's ``Speech2Text`` (``espnet2/bin/asr_inference.py``): the entry points
(``bin/inference.py``, ``bin/select_layer.py``) build one and call it; they hold no model code.

    s2t = Speech2Text("Qwen/Qwen2-Audio-7B-Instruct", beam_size=1, max_new_tokens=128)
    batch = s2t.encode(keys, waves, prompts)         # prompts contain "{audio}"
    for hyp in s2t(batch, ReductionConfig(method="fastadasp", flops_reduction=0.3)):
        print(hyp.key, hyp.text, hyp.cost)

Audio longer than the encoder's window is split into consecutive windows, each becoming one
audio placeholder of the prompt, in order. Each call applies its reduction for that call only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from espnet_fastadasp.core.config import ReductionConfig
from espnet_fastadasp.decoding.data import AUDIO_PLACEHOLDER, DataError, check_template, split_windows
from espnet_fastadasp.decoding.timing import GenerationTimer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def generation_class(config: Any) -> Any:
    """The transformers class for a checkpoint, from its config's architecture name."""
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if cls is not None and hasattr(cls, "generate"):
            return cls
    raise ValueError(f"cannot find a generation class for architectures={getattr(config, 'architectures', None)}")


def load_model(model_name_or_path: str, dtype: str, device: str, attn_implementation: str | None) -> tuple[Any, Any]:
    """Model and processor through the normal ``from_pretrained`` path (hub id or local dir)."""
    from transformers import AutoConfig, AutoProcessor

    from espnet_fastadasp.models.parts import UnsupportedModelError, audio_token_id_of

    path = Path(model_name_or_path).expanduser()
    if not path.exists() and (model_name_or_path.startswith(("/", ".", "~")) or path.parent.is_dir()):
        raise FileNotFoundError(f"model dir not found: {model_name_or_path} (no such directory)")
    try:
        config = AutoConfig.from_pretrained(model_name_or_path)
    except OSError as exc:
        raise OSError(
            f"cannot load model {model_name_or_path!r}: not a local dir, and not a hub id whose files can be had "
            f"here (offline machines need a local copy): {exc}"
        ) from None
    kwargs: dict[str, Any] = {"dtype": DTYPES[dtype]}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = generation_class(config).from_pretrained(model_name_or_path, **kwargs).to(device).eval()
    try:
        audio_token_id_of(model)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{model_name_or_path}: {exc}") from None
    processor = AutoProcessor.from_pretrained(model_name_or_path)
    if not hasattr(processor, "feature_extractor"):
        raise UnsupportedModelError(f"{model_name_or_path}: its processor has no audio feature extractor")
    processor.tokenizer.padding_side = "left"
    return model, processor


def build_prompt(template: str, processor: Any, n_clips: int) -> str:
    """Put ``n_clips`` audio placeholders (bos, audio, eos each) where ``{audio}`` stands.

    Prompt files are one line per utterance, so a literal ``\\n`` in the template becomes a
    line break (chat templates need them).
    """
    bos = getattr(processor, "audio_bos_token", "<|audio_bos|>")
    tok = getattr(processor, "audio_token", "<|AUDIO|>")
    eos = getattr(processor, "audio_eos_token", "<|audio_eos|>")
    check_template(template)
    return template.replace("\\n", "\n").replace(AUDIO_PLACEHOLDER, f"{bos}{tok}{eos}" * n_clips)


def window_samples(processor: Any) -> int:
    """Samples per encoder window (30 s for Whisper-style encoders)."""
    fe = processor.feature_extractor
    return int(getattr(fe, "n_samples", 0) or fe.chunk_length * fe.sampling_rate)


@dataclass
class EncodedBatch:
    """The model inputs of a batch of utterances, with what the cost records need."""

    keys: list[str]
    enc: dict[str, torch.Tensor]
    clips: list[int]
    seconds: list[float]


@dataclass
class Hypothesis:
    """One utterance's decoded text and what it cost (see :meth:`Speech2Text.__call__`)."""

    key: str
    text: str
    cost: dict[str, Any]


class Speech2Text:
    """A Speech LM and its processor, loaded once; ``__call__`` decodes an encoded batch.

    ``model`` and ``processor`` may be given instead of ``model_name_or_path`` (already loaded).
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        attn_implementation: str | None = None,
        beam_size: int = 1,
        max_new_tokens: int = 128,
        share_prompt: bool = False,
        static_decoding: bool = False,
        static_step_mode: str = "auto",
        model: Any = None,
        processor: Any = None,
    ) -> None:
        from espnet_fastadasp.generation.fixes import BeamClipOrderFix

        if beam_size < 1 or max_new_tokens < 1:
            raise ValueError("beam_size and max_new_tokens must be >= 1")
        if model is None:
            if model_name_or_path is None:
                raise ValueError("Speech2Text needs model_name_or_path, or a loaded model and processor")
            model, processor = load_model(model_name_or_path, dtype, device, attn_implementation)
        self.model, self.processor = model, processor
        self.share_prompt = share_prompt
        #: decode with fixed-shape steps over per-layer static caches (espnet_fastadasp.generation.static_decoding;
        #: one CUDA graph per step on a GPU); the prompt is prefilled once per utterance, as with share_prompt
        self.static_decoding = static_decoding
        #: how each static step runs (espnet_fastadasp.generation.static_decoding.STEP_MODES)
        self.static_step_mode = static_step_mode
        self.generate_kwargs = dict(num_beams=beam_size, max_new_tokens=max_new_tokens, do_sample=False)
        self.sampling_rate = processor.feature_extractor.sampling_rate
        self.window = window_samples(processor)
        self._clip_fix = BeamClipOrderFix(model)  # transformers scrambles multi-clip prompts under beam search
        self.timer = GenerationTimer(model)

    def encode(self, keys: list[str], waves: list[np.ndarray], templates: list[str]) -> EncodedBatch:
        """Audio (split into encoder windows) and prompt templates -> the processor's tensors."""
        texts, audios, clips_per_utt, seconds = [], [], [], []
        for key, wave, template in zip(keys, waves, templates):
            clips = split_windows(wave, self.window)
            try:
                texts.append(build_prompt(template, self.processor, len(clips)))
            except DataError as exc:
                raise DataError(f"utterance {key!r}: {exc}") from None
            audios.extend(clips)
            clips_per_utt.append(len(clips))
            seconds.append(len(wave) / self.sampling_rate)
        enc = self.processor(
            text=texts, audio=audios, return_tensors="pt", padding=True, sampling_rate=self.sampling_rate
        )
        self._check_length(keys, enc)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        if "input_features" in enc:
            enc["input_features"] = enc["input_features"].to(self.model.dtype)
        return EncodedBatch(list(keys), enc, clips_per_utt, seconds)

    @property
    def max_positions(self) -> int | None:
        """The longest sequence (prompt + new tokens) the decoder has positions for."""
        from espnet_fastadasp.models.parts import speech_lm_parts

        return getattr(speech_lm_parts(self.model).text_config, "max_position_embeddings", None)

    def _check_length(self, keys: list[str], enc: dict[str, torch.Tensor]) -> None:
        """Refuse, before decoding, a prompt the model has no positions for (it would decode garbage
        silently: rotary positions past the trained range)."""
        limit = self.max_positions
        if limit is None or "attention_mask" not in enc:
            return
        lengths = enc["attention_mask"].sum(-1).tolist()
        new = self.generate_kwargs["max_new_tokens"]
        over = [(k, n) for k, n in zip(keys, lengths) if n + new > limit]
        if over:
            listed = ", ".join(f"{k!r} ({n} prompt tokens)" for k, n in over[:5])
            raise DataError(
                f"{len(over)} utterance(s) too long for the model: {listed}; with max_new_tokens={new} they "
                f"need more than its max_position_embeddings={limit}. Shorten or segment the audio "
                "(a segments file), or lower --max_audio_seconds to reject it up front"
            )

    @property
    def prompt_once(self) -> bool:
        """Whether each utterance is prefilled once (not once per beam): its stats have one row."""
        return self.share_prompt or self.static_decoding

    def generate(self, batch: EncodedBatch, reduction: ReductionConfig) -> tuple[torch.Tensor, Any]:
        """New token ids (B, N) under ``reduction`` (applied for this call only), and its stats."""
        import espnet_fastadasp as fa

        enc = batch.enc
        self.timer.reset()
        with torch.no_grad(), fa.apply(self.model, reduction) as handle, fa.prefill_last_logits(self.model):
            # errors about a row (an unreachable target) name the utterance; plain generate
            # prefills one row per beam, the shared prompt one per utterance
            per_key = 1 if self.prompt_once else self.generate_kwargs["num_beams"]
            handle.row_names = [f"utterance {key!r}" for key in batch.keys for _ in range(per_key)]
            if self.static_decoding:
                from espnet_fastadasp.generation.static_decoding import generate_static

                generated = generate_static(self.model, enc, step_mode=self.static_step_mode, **self.generate_kwargs)
            elif self.share_prompt:  # one prefill per prompt, one prompt cache for all its beams
                generated = fa.generate_with_shared_prompt(self.model, enc, **self.generate_kwargs)
            else:
                generated = self.model.generate(**enc, **self.generate_kwargs)
            stats = handle.stats
        self.timer.finish()
        return generated[:, enc["input_ids"].shape[1] :], stats

    def __call__(self, batch: EncodedBatch, reduction: ReductionConfig) -> list[Hypothesis]:
        """Decode ``batch`` under ``reduction``: one :class:`Hypothesis` per utterance, its cost with
        audio seconds, clips, new tokens, the batch's prefill / decode seconds and, from the
        reduction's stats, audio tokens in and out, prompt tokens, FLOPs and KV reduction."""
        new, stats = self.generate(batch, reduction)
        decoded = self.processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        pad = self.processor.tokenizer.pad_token_id
        beams = self.generate_kwargs["num_beams"]
        hyps = []
        for i, key in enumerate(batch.keys):
            # plain generate prefills every beam (stats per beam row); a shared prompt once per utterance
            row = stats.rows[i if self.prompt_once else i * beams] if stats is not None else None
            cost = {
                "seconds": round(batch.seconds[i], 3),
                "clips": batch.clips[i],
                "new_tokens": int((new[i] != pad).sum()) if pad is not None else int(new.shape[1]),
                "prefill_s": round(self.timer.prefill_seconds, 5),
                "decode_s": round(self.timer.decode_seconds, 5),
                "batch_size": len(batch.keys),
            }
            if row is not None:
                cost.update(
                    audio_tokens=row.audio_tokens[0],
                    audio_tokens_out=row.audio_tokens_out,
                    prompt_tokens=row.total_tokens[0],
                    flops_full=row.flops_full,
                    flops_reduced=row.flops_reduced,
                    flops_reduction=round(row.flops_reduction, 5),
                    kv_reduction=round(row.kv_reduction, 5),
                )
            hyps.append(Hypothesis(key, " ".join(decoded[i].split()), cost))
        return hyps

    def close(self) -> None:
        """Take the decoder's hooks off the model."""
        self.timer.remove()
        self._clip_fix.remove()
