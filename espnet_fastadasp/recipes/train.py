"""Train a tiny Qwen2-Audio (the real transformers class) on Kaldi-style data dirs.

Used by the mini synthetic benchmark: no real Speech LM weights can be downloaded, so we train a
small one whose accuracy we can measure, then measure what token reduction does to it.

Design choices, and why:

* the model is ``Qwen2AudioForConditionalGeneration`` with a real ``Qwen2AudioProcessor``
  (Whisper features + a character-level tokenizer), saved with ``save_pretrained`` so every tool
  loads it like a downloaded checkpoint;
* the LLM has 8 decoder layers with GQA, so schedules and layer selection have room;
* features are computed on the training device in batches (Whisper's torch STFT), because a
  CPU feature pipeline, not the GPU, bounded a prototype's throughput;
* the loss is averaged per *sample* (over its answer tokens), then over the batch: short
  classification answers would otherwise be drowned by the long ASR transcripts;
* only the answer (and the closing end-of-turn token) is supervised; the prompt is context;
* an optional CTC loss (``ctc_weight``, the hybrid CTC/attention recipe of ESPnet) reads the
  transcript straight off the audio tokens of ASR utterances, through a linear head that exists
  only during training (it is not saved: the checkpoint is a plain Qwen2-Audio). It gives the
  encoder a per-frame signal from the first step; without it a prototype spent its first 60-70k
  samples on a plateau where the LLM ignored the audio, which a CPU cannot afford;
* training stops at ``max_steps`` or ``max_minutes``, whichever comes first, logging the loss
  curve to ``train_log.jsonl`` as it goes. With ``cosine_over: budget`` the cosine decay also
  follows whichever limit is nearer, so a run cut by its wall-clock budget (a lent GPU for one
  10-minute call, a Slurm time limit) still ends at learning rate 0 instead of mid-schedule;
* audio longer than the encoder window is split into consecutive windows, each one clip of the
  prompt (``<|audio_bos|><|AUDIO|>...<|audio_eos|>`` per window), exactly as the decoding tools
  split it (:func:`espnet_fastadasp.decoding.data.split_windows`), so long-form audio is in the
  training distribution in the form it is decoded in; the CTC head reads the clips of an
  utterance one after another;
* with ``batch_tokens`` set, batches hold utterances of similar length up to that many padded
  positions (audio tokens + text): one batch size for clips from 5 s to 120 s would either waste
  the GPU on short clips or run out of memory on long ones. Without it, batches are as before.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from espnet_fastadasp.decoding.data import AudioReader, read_key_value, split_windows
from espnet_fastadasp.hf.parts import audio_tokens_for
from espnet_fastadasp.hf.tiny import AUDIO_TOKEN, qwen2_audio_config, tiny_processor

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    train_dirs: list[str]
    output_dir: str
    seed: int = 1
    # audio front end and encoder (window: max_source_positions = 50 * window_seconds)
    n_mels: int = 80
    window_seconds: int = 6
    encoder_dim: int = 192
    encoder_layers: int = 3
    encoder_heads: int = 4
    encoder_ffn: int = 768
    # LLM
    hidden: int = 256
    layers: int = 8
    heads: int = 4
    kv_heads: int = 2
    ffn: int = 512
    # optimisation
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 300
    max_steps: int = 20000
    max_minutes: float = 18.0
    grad_clip: float = 1.0
    log_every: int = 50
    device: str = "cuda"
    bf16: bool = True
    max_utts_per_dir: int | None = None
    ctc_weight: float = 0.0  # weight of the auxiliary CTC loss on ASR utterances (0: off)
    threads: int | None = None  # torch CPU threads (None: torch's default)
    save_every_minutes: float | None = None  # also save the checkpoint as training goes
    init_from: str | None = None  # go on training this checkpoint (weights only; a fresh optimizer)
    cosine_over: str = "steps"  # "steps": decay over max_steps; "budget": over max_steps or max_minutes, the nearer
    load_threads: int = 8  # threads reading the training audio into RAM
    max_positions: int = 1024  # the LLM's max_position_embeddings (long-form prompts need more)
    batch_tokens: int | None = None  # length-bucketed batches of at most this many padded positions

    def __post_init__(self) -> None:
        if self.cosine_over not in COSINE_OVER:
            raise ValueError(f"cosine_over={self.cosine_over!r}: choose from {', '.join(COSINE_OVER)}")
        for name in ("batch_size", "max_steps", "layers", "hidden", "load_threads", "max_positions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be at least 1")
        if self.max_minutes <= 0:
            raise ValueError(f"max_minutes={self.max_minutes!r}: must be positive")
        if self.batch_tokens is not None and self.batch_tokens < 1:
            raise ValueError(f"batch_tokens={self.batch_tokens!r}: must be at least 1 (or unset)")


COSINE_OVER = ("steps", "budget")


def learning_rate(cfg: TrainConfig, step: int, minutes: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine to 0 at the end of the run.

    The end is ``max_steps``, or with ``cosine_over == "budget"`` whichever of ``max_steps`` and
    ``max_minutes`` is nearer (``minutes`` is the training time so far).
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    if cfg.cosine_over == "budget":
        progress = max(progress, minutes / cfg.max_minutes)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Example:
    wave: np.ndarray  # int16 at 16 kHz
    prefix: str
    suffix: str
    answer: str
    is_asr: bool = False  # the answer is the spoken transcript (the CTC target)


def load_examples(dirs: list[str], max_per_dir: int | None, sampling_rate: int, threads: int = 1) -> list[Example]:
    """All utterances of the data dirs, waveforms in RAM as int16 (half the memory of float32).

    ``threads`` read files in parallel (libsndfile runs without the GIL): a GPU run's 60k+
    utterances otherwise take a minute of its budget on one core.
    """
    out = []
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for d in dirs:
            d = Path(d)
            reader = AudioReader(d / "wav.scp", sampling_rate=sampling_rate)
            text = read_key_value(d / "text")
            prompts = read_key_value(d / "prompt", allow_empty_value=False)
            keys = reader.keys()[: max_per_dir or None]
            task_file = d / "task"
            is_asr = (task_file.read_text().strip() if task_file.is_file() else d.name.split("_")[0]) == "asr"
            waves = pool.map(functools.partial(_read_int16, reader), keys)
            bar = tqdm(zip(keys, waves), total=len(keys), desc=f"load {d.name}", unit="utt", leave=False, disable=None)
            for key, wave in bar:
                prefix, _, suffix = prompts[key].replace("\\n", "\n").partition("{audio}")
                out.append(Example(wave, prefix, suffix, text[key], is_asr))
            logger.info("%s: %d utterances", d, len(keys))
    return out


SAMPLES_PER_AUDIO_TOKEN = 640  # 16 kHz / 25 audio tokens per second


def example_length(e: Example) -> int:
    """The positions an example takes in a batch, near enough to bucket by: audio tokens (and two
    markers per 30 s clip), prompt and answer characters (one token each with the character tokenizer)."""
    n_clips = max(1, -(-len(e.wave) // (30 * SAMPLES_PER_AUDIO_TOKEN * 25)))
    return len(e.wave) // SAMPLES_PER_AUDIO_TOKEN + 2 * n_clips + len(e.prefix) + len(e.suffix) + len(e.answer) + 1


def token_batches(lengths: list[int], batch_tokens: int, max_size: int, rng: random.Random) -> list[list[int]]:
    """One epoch of batches of similar-length examples, each at most ``batch_tokens`` padded
    positions (``size * longest``; an example longer than that is a batch of its own) and at most
    ``max_size`` examples; the batches in random order.

    Lengths are sorted within pools of ``50 * max_size`` shuffled examples, so a batch mixes tasks
    and speakers of similar length rather than always the same neighbours.
    """
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    pool = 50 * max_size
    out: list[list[int]] = []
    for p in range(0, len(idx), pool):
        chunk = sorted(idx[p : p + pool], key=lambda i: lengths[i])
        batch: list[int] = []
        longest = 0
        for i in chunk:
            longest_new = max(longest, lengths[i])
            if batch and (len(batch) + 1 > max_size or (len(batch) + 1) * longest_new > batch_tokens):
                out.append(batch)
                batch, longest_new = [], lengths[i]
            batch.append(i)
            longest = longest_new
        if batch:
            out.append(batch)
    rng.shuffle(out)
    return out


def _read_int16(reader: AudioReader, key: str) -> np.ndarray:
    return np.clip(reader(key) * 32767, -32768, 32767).astype(np.int16)


def build_model_and_processor(cfg: TrainConfig) -> tuple[Any, Any]:
    from transformers import Qwen2AudioForConditionalGeneration

    processor = tiny_processor(n_mels=cfg.n_mels, window_seconds=cfg.window_seconds)
    tok = processor.tokenizer
    model_cfg = qwen2_audio_config(
        len(tok),
        tok.convert_tokens_to_ids(AUDIO_TOKEN),
        audio=dict(
            d_model=cfg.encoder_dim,
            encoder_layers=cfg.encoder_layers,
            encoder_attention_heads=cfg.encoder_heads,
            encoder_ffn_dim=cfg.encoder_ffn,
            num_mel_bins=cfg.n_mels,
            max_source_positions=50 * cfg.window_seconds,
        ),
        text=dict(
            hidden_size=cfg.hidden,
            intermediate_size=cfg.ffn,
            num_hidden_layers=cfg.layers,
            num_attention_heads=cfg.heads,
            num_key_value_heads=cfg.kv_heads,
            max_position_embeddings=cfg.max_positions,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        ),
    )
    torch.manual_seed(cfg.seed)
    model = Qwen2AudioForConditionalGeneration(model_cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model, processor


def load_for_training(path: str) -> tuple[Any, Any]:
    """A saved checkpoint and its processor, to train further (its own shape wins over the config's)."""
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"init_from={path!r}: no config.json there (a dir written by train_tiny)")
    model = Qwen2AudioForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
    logger.info("init_from %s: its architecture is used, the config's shape fields are ignored", path)
    return model, AutoProcessor.from_pretrained(path)


def pad_rows(rows: list[list[int]], labels: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token rows and their labels, right-padded into (input_ids, labels, attention_mask) tensors
    (padding: ``pad`` ids, label -100, mask 0)."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    label_t = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (r, lab) in enumerate(zip(rows, labels)):
        input_ids[i, : len(r)] = torch.tensor(r)
        label_t[i, : len(r)] = torch.tensor(lab)
        mask[i, : len(r)] = 1
    return input_ids, label_t, mask


class Batcher:
    """Examples -> model inputs on the device: features, token ids, answer-only labels."""

    def __init__(self, processor: Any, device: str) -> None:
        self.fe = processor.feature_extractor
        self.tok = processor.tokenizer
        self.device = device
        self.window = int(getattr(self.fe, "n_samples", 0) or self.fe.chunk_length * self.fe.sampling_rate)
        t = self.tok
        self.ids = {name: t.convert_tokens_to_ids(name) for name in ("<|audio_bos|>", AUDIO_TOKEN, "<|audio_eos|>")}
        self.eos = t.eos_token_id
        self.pad = t.pad_token_id

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        clips_of = [split_windows(e.wave, self.window) for e in examples]
        waves = [c.astype(np.float32) / 32768.0 for clips in clips_of for c in clips]
        feats = self.fe(
            waves,
            sampling_rate=self.fe.sampling_rate,
            return_attention_mask=True,
            padding="max_length",
            return_tensors="pt",
            device=self.device if self.device != "cpu" else "cpu",
        )
        n_audio = audio_tokens_for(feats["attention_mask"].sum(-1)).tolist()  # per clip
        clip_counts = [len(clips) for clips in clips_of]
        rows, labels = [], []
        first = 0
        for e, n_clips in zip(examples, clip_counts):
            audio = []
            for n in n_audio[first : first + n_clips]:
                audio += [self.ids["<|audio_bos|>"]] + [self.ids[AUDIO_TOKEN]] * n + [self.ids["<|audio_eos|>"]]
            first += n_clips
            prompt = self.encode(e.prefix) + audio + self.encode(e.suffix)
            answer = self.encode(e.answer) + [self.eos]
            rows.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
        input_ids, label_t, mask = pad_rows(rows, labels, self.pad)
        ctc = [self.encode(e.answer) if e.is_asr else [] for e in examples]
        return {
            "ctc_targets": [torch.tensor(t, dtype=torch.long) for t in ctc],
            "audio_lengths": torch.tensor(n_audio, dtype=torch.long),
            "clip_counts": torch.tensor(clip_counts, dtype=torch.long),
            "input_ids": input_ids.to(self.device),
            "attention_mask": mask.to(self.device),
            "labels": label_t.to(self.device),
            "input_features": feats["input_features"].to(self.device),
            "feature_attention_mask": feats["attention_mask"].to(self.device),
        }


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over each sample's answer tokens, then over the batch."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    tok_loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100, reduction="none"
    ).view(shift_labels.shape)
    valid = (shift_labels != -100).float()
    return ((tok_loss * valid).sum(-1) / valid.sum(-1).clamp(min=1)).mean()


def submodule(model: Any, name: str) -> torch.nn.Module:
    """``model.<name>`` on transformers 4.x, ``model.model.<name>`` on 5.x (where it moved)."""
    for owner in (model, getattr(model, "model", None)):
        module = getattr(owner, name, None) if owner is not None else None
        if isinstance(module, torch.nn.Module):
            return module
    raise AttributeError(f"{type(model).__name__} has no {name} (nor model.{name})")


class AudioCTC(torch.nn.Module):
    """Training-only CTC head on the audio tokens the LLM receives (the projector's output).

    A forward hook on ``multi_modal_projector`` keeps its output of the model's own forward pass,
    so the audio is encoded once; :meth:`loss` then scores the ASR rows of the batch. Blank is the
    extra class ``vocab_size``.
    """

    def __init__(self, model: Any, vocab_size: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(model.config.text_config.hidden_size, vocab_size + 1)
        self.blank = vocab_size
        self._audio: torch.Tensor | None = None
        self._hook = submodule(model, "multi_modal_projector").register_forward_hook(self._keep)

    def _keep(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        self._audio = output

    def loss(
        self, targets: list[torch.Tensor], audio_lengths: torch.Tensor, clip_counts: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """Mean CTC loss per ASR row (normalised by target length); None if the batch has none.

        ``audio_lengths`` are per clip (the projector's rows); ``clip_counts`` says how many clips each
        utterance has (default one each): an utterance's clips are read one after another.
        """
        rows = [i for i, t in enumerate(targets) if len(t)]
        audio, self._audio = self._audio, None
        if not rows or audio is None:
            return None
        counts = [1] * len(targets) if clip_counts is None else clip_counts.tolist()
        starts = np.cumsum([0] + counts[:-1]).tolist()
        if all(counts[i] == 1 for i in rows):
            seq = audio[[starts[i] for i in rows]]
            lengths = audio_lengths[[starts[i] for i in rows]].clamp(max=seq.shape[1])
        else:
            pieces = [
                torch.cat([audio[c, : int(audio_lengths[c])] for c in range(starts[i], starts[i] + counts[i])])
                for i in rows
            ]
            seq = torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True)
            lengths = torch.tensor([len(p) for p in pieces], dtype=torch.long)
        logp = self.head(seq.float()).log_softmax(-1).transpose(0, 1)  # (T, N, C)
        tgt = [targets[i] for i in rows]
        return torch.nn.functional.ctc_loss(
            logp,
            torch.cat(tgt).to(logp.device),
            lengths,
            torch.tensor([len(t) for t in tgt]),
            blank=self.blank,
            reduction="mean",
            zero_infinity=True,
        )

    def remove(self) -> None:
        self._hook.remove()


def save_checkpoint(model: Any, processor: Any, cfg: TrainConfig, out: Path) -> None:
    """model + processor (``from_pretrained``-loadable) and the config that trained them."""
    was_training = model.training
    model.eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "train_config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    model.train(was_training)


def train(cfg: TrainConfig) -> Path:
    """Train, save the checkpoint (model + processor + config + loss curve), return its dir."""
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.init_from:
        model, processor = load_for_training(cfg.init_from)
    else:
        model, processor = build_model_and_processor(cfg)
    model.to(cfg.device).train()
    ctc = AudioCTC(model, len(processor.tokenizer)).to(cfg.device) if cfg.ctc_weight > 0 else None
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("model: %.2fM parameters; device %s", n_params / 1e6, cfg.device)
    t_load = time.time()
    examples = load_examples(
        cfg.train_dirs, cfg.max_utts_per_dir, processor.feature_extractor.sampling_rate, cfg.load_threads
    )
    logger.info("loaded %d utterances in %.1f s", len(examples), time.time() - t_load)
    if not examples:
        raise ValueError(f"no training utterances in {cfg.train_dirs}")
    batcher = Batcher(processor, cfg.device)
    params = list(model.parameters()) + (list(ctc.parameters()) if ctc is not None else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))

    use_bf16 = cfg.bf16 and cfg.device.startswith("cuda")
    log_path = out / "train_log.jsonl"
    t0 = time.time()
    order: list[int] = []
    batches: list[list[int]] = []
    lengths = [example_length(e) for e in examples] if cfg.batch_tokens else []
    batch_rng = random.Random(cfg.seed)
    step = 0
    running: list[float] = []
    running_ce: list[float] = []  # the answer's cross-entropy alone (loss = ce + ctc_weight * ctc)
    running_ctc: list[float] = []
    last_save = t0
    with log_path.open("w") as log, tqdm(total=cfg.max_steps, desc="train", unit="step", disable=None) as bar:
        while step < cfg.max_steps and (time.time() - t0) / 60 < cfg.max_minutes:
            if cfg.batch_tokens:
                if not batches:
                    batches = token_batches(lengths, cfg.batch_tokens, cfg.batch_size, batch_rng)
                idx = batches.pop()
            else:
                if len(order) < cfg.batch_size:
                    order += random.sample(range(len(examples)), len(examples))
                idx, order = order[: cfg.batch_size], order[cfg.batch_size :]
            batch = batcher([examples[i] for i in idx])
            labels = batch.pop("labels")
            ctc_targets, audio_lengths = batch.pop("ctc_targets"), batch.pop("audio_lengths")
            clip_counts = batch.pop("clip_counts")
            lr = learning_rate(cfg, step, (time.time() - t0) / 60)
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                logits = model(**batch).logits
            loss = per_sample_loss(logits, labels)
            running_ce.append(loss.item())
            if ctc is not None:
                ctc_loss = ctc.loss(ctc_targets, audio_lengths, clip_counts)
                if ctc_loss is not None:
                    running_ctc.append(ctc_loss.item())
                    loss = loss + cfg.ctc_weight * ctc_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            step += 1
            running.append(loss.item())
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.max_steps:
                entry = {
                    "step": step,
                    "samples": step * cfg.batch_size,
                    "loss": float(np.mean(running)),
                    "lr": lr,
                    "minutes": (time.time() - t0) / 60,
                }
                if running_ctc:
                    entry["ce_loss"] = float(np.mean(running_ce))
                    entry["ctc_loss"] = float(np.mean(running_ctc))
                log.write(json.dumps(entry) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{entry['loss']:.3f}")
                running, running_ce, running_ctc = [], [], []
            if cfg.save_every_minutes and (time.time() - last_save) / 60 >= cfg.save_every_minutes:
                save_checkpoint(model, processor, cfg, out)
                last_save = time.time()
                logger.info("step %d: checkpoint saved to %s", step, out)
    if ctc is not None:
        ctc.remove()
    if running:
        with log_path.open("a") as log:
            log.write(
                json.dumps(
                    {
                        "step": step,
                        "samples": step * cfg.batch_size,
                        "loss": float(np.mean(running)),
                        "lr": lr,
                        "minutes": (time.time() - t0) / 60,
                    }
                )
                + "\n"
            )
    model.to("cpu")
    save_checkpoint(model, processor, cfg, out)
    model.eval()
    plot_loss(log_path, out / "loss.png")
    logger.info(
        "trained %d steps (%d samples) in %.1f min -> %s", step, step * cfg.batch_size, (time.time() - t0) / 60, out
    )
    return out


def plot_loss(log_path: Path, png: Path) -> None:
    try:
        import matplotlib
    except ImportError:  # a bare GPU host: the curve is in train_log.jsonl, plot it elsewhere
        logger.warning("matplotlib is missing: no %s (train_log.jsonl has the curve)", png)
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = [r["samples"] for r in rows]
    ax.plot(x, [r["loss"] for r in rows], label="loss")
    if any("ctc_loss" in r for r in rows):  # loss = answer cross-entropy + ctc_weight * CTC
        ax.plot(x, [r.get("ctc_loss", np.nan) for r in rows], label="CTC (ASR rows)", alpha=0.7)
        ax.legend()
    ax.set_xlabel("training samples")
    ax.set_ylabel("loss (per-sample mean)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
