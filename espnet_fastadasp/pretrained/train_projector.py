"""SLAM-ASR-style training of the assembled model's projector on a CPU (frozen encoder and LLM).

Design choices, and why:

* **Only the projector trains** (Qwen2-Audio's linear 384 -> 576, 222k parameters), as in SLAM-ASR:
  the encoder (Whisper tiny.en) and the 30-layer LLM (SmolLM2-135M) stay frozen, so what is learnt
  fits in under 1 MB and the recipe re-assembles the rest from the pinned packages. No LoRA: it
  would multiply what must be committed and trained, and is only worth it once a projector-only
  model shows where it falls short.
* **Encoder outputs are computed once** per utterance and kept (float16) in the output dir: the
  encoder is frozen, so every later epoch costs only the projector, the LLM and the LM head. They
  are computed by the model's own path (30 s windows padded to 3,000 mel frames, the padded frames
  masked in the encoder's attention, then pooled), so decoding sees exactly the same features.
* **float32, not bf16**: this machine's CPU has no AMX / avx512_bf16; a bf16 matmul ran at
  ~0.06 TFLOP/s against ~0.26 for float32 (and a forward + backward of the frozen decoder was
  ~2x slower in bf16, measured on this task's shapes).
* **An auxiliary CTC loss on the projected audio** (the hybrid CTC/attention idea of
  ``recipes.train``), through a training-only head over the token ids the transcripts use
  (initialised from the LLM's embedding rows of those tokens, blank last): a per-frame signal
  that costs almost nothing next to the LLM. ``ctc_warmup_steps`` first trains on it alone (no
  LLM pass, ~100x cheaper a step) so the projector already carries the words when the LLM
  starts reading it; the joint stage then trains cross-entropy + ``ctc_weight`` x CTC.
* **Only answer positions reach the LM head** (49,155 x 576 per position): the prompt and the
  audio are context, their logits would be thrown away.
* **Resumable, pause-safe**: a checkpoint (projector, CTC head, optimizer, RNG states, the data
  order and position) is written atomically every ``save_every`` steps; a restart with the same
  output dir continues where it stopped. No wall-clock limits inside (the job may be SIGSTOPped
  while someone times a benchmark): it stops at ``max_steps``. The learning rate is constant after
  a linear warm-up, because the run's length is not known in advance.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

from espnet_fastadasp.decoding.data import AudioReader, read_key_value, split_windows
from espnet_fastadasp.models.parts import audio_tokens_for
from espnet_fastadasp.pretrained.assemble import AUDIO_TOKENS, SYSTEM_PROMPT
from espnet_fastadasp.pretrained.lora import LoRAAdapters
from espnet_fastadasp.recipes import synth_long
from espnet_fastadasp.recipes.train import pad_rows

logger = logging.getLogger(__name__)

ASR_INSTRUCTION = "Transcribe the audio."
# What the model is asked, per task of the long testbed (espnet_fastadasp.recipes.synth_long.TASKS):
# the training prompts and the test sets' prompt files (bin/slam_recipe prompts) use the same text.
TASK_INSTRUCTIONS: dict[str, str] = {
    "asr": ASR_INSTRUCTION,
    "lasr": ASR_INSTRUCTION,
    "keyword": f"Is the word {synth_long.KEYWORD} spoken in the audio? Answer yes or no.",
    "prosody": "Is the voice low or high, and is the speech slow or fast? Answer low or high, then slow or fast.",
    "samespk": "Are the two sentences spoken by the same speaker or by different speakers? Answer same or different.",
    "spkid": f"Which speaker is this? Answer spk01 to spk{synth_long.NUM_SPKID:02d}.",
}


def chat_prompt(instruction: str) -> str:
    """SmolLM2's chat format around the audio, in one line as a recipe's prompt file holds it
    ("\\n" written as backslash-n; ``{audio}``: where the clips go)."""
    return (
        "<|im_start|>system\\n" + SYSTEM_PROMPT + "<|im_end|>\\n<|im_start|>user\\n{audio}\\n"
        + instruction + "<|im_end|>\\n<|im_start|>assistant\\n"
    )


def task_prompt(task: str) -> str:
    """The chat prompt of one task of the long testbed; an unknown task is an error naming the known ones."""
    if task not in TASK_INSTRUCTIONS:
        raise ValueError(f"task {task!r}: no instruction; known: {', '.join(TASK_INSTRUCTIONS)}")
    return chat_prompt(TASK_INSTRUCTIONS[task])


ASR_PROMPT = chat_prompt(ASR_INSTRUCTION)


@dataclass
class ProjectorTrainConfig:
    train_dirs: list[str]
    output_dir: str
    model_dir: str  # the assembled checkpoint (bin/assemble_slam.py)
    seed: int = 1
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 50
    max_steps: int = 5000  # joint steps (after the CTC warm-up)
    # None: a constant rate after the warm-up (a run meant to be stopped by hand). A joint step:
    # from there the rate falls (half cosine) to min_lr_ratio x lr at max_steps, where the run ends.
    decay_start: int | None = None
    min_lr_ratio: float = 0.05
    ctc_warmup_steps: int = 1500  # CTC-only steps first (no LLM pass)
    ctc_warmup_batch_size: int = 32
    ctc_warmup_lr: float = 3e-3
    ctc_weight: float = 0.3
    grad_clip: float = 1.0
    log_every: int = 5
    save_every: int = 10
    threads: int | None = None
    max_utts_per_dir: int | None = None
    encode_batch: int = 4  # 30 s windows per encoder call while precomputing
    # LoRA on the decoder's linear layers (0: projector only); see espnet_fastadasp.pretrained.lora
    lora_rank: int = 0
    lora_alpha: float = 16.0
    lora_targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    lora_lr: float = 5e-4
    # a trained-parameters file (projector + LoRA, as a run saves and commits) to start from instead
    # of the assembled model's projector and zero adapters: training on past a finished run's
    # decayed schedule, on new data, with a fresh optimizer and schedule (its CTC head is not in the
    # file: use ctc_warmup_steps 0 and ctc_weight 0, or the head starts again from the embeddings)
    init_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("batch_size", "ctc_warmup_batch_size", "save_every", "log_every", "encode_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: must be at least 1")
        if self.lora_rank < 0:
            raise ValueError(f"lora_rank={self.lora_rank!r}: must be 0 (no LoRA) or more")
        if self.decay_start is not None and not 0 <= self.decay_start < self.max_steps:
            raise ValueError(f"decay_start={self.decay_start!r}: must be a joint step in [0, max_steps={self.max_steps})")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio={self.min_lr_ratio!r}: must be in [0, 1]")
        if self.ctc_weight < 0:
            raise ValueError(f"ctc_weight={self.ctc_weight!r}: must be 0 (no CTC loss) or more")
        if self.init_from is not None and not Path(self.init_from).is_file():
            raise FileNotFoundError(f"init_from={self.init_from!r}: no such trained-parameters file")


@dataclass
class Utterance:
    key: str
    feats: torch.Tensor  # (sum of clip lengths, d_model) float16: the encoder's output, valid tokens only
    clip_lengths: list[int]
    answer: str
    task: str = "asr"
    spoken: str = ""  # the words spoken: the CTC target (for a sparse task the answer is a label)


# --- encoder outputs, once -------------------------------------------------------------------


def _window_features(model: Any, processor: Any, waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Log-mel features of 30 s windows (padded to 3,000 frames), the valid lengths after the
    convolutions, and the audio tokens each window gives."""
    fe = processor.feature_extractor
    feats = fe(waves, sampling_rate=fe.sampling_rate, return_attention_mask=True, padding="max_length", return_tensors="pt")
    frames = feats["attention_mask"].sum(-1)
    conv_lengths, out_lengths = model.model.audio_tower._get_feat_extract_output_lengths(frames)
    if not torch.equal(out_lengths, audio_tokens_for(frames)):
        raise RuntimeError("audio token counts disagree with espnet_fastadasp.models.parts.audio_tokens_for")
    return feats["input_features"], conv_lengths, out_lengths


@torch.no_grad()
def encode_windows(model: Any, processor: Any, waves: list[np.ndarray]) -> list[torch.Tensor]:
    """The encoder's output for each 30 s window, its valid audio tokens only (as the model's forward computes it).

    Cropped: the encoder runs on the longest window's valid frames (+ the two the convolutions
    look ahead), not on all 3,000. That gives the model's own outputs for the valid tokens (their
    attention masks the padding, so it never reached them; ``test_pretrained_testbed`` checks the
    two agree) at a fraction of the cost, which matters when thousands of utterances are cached.
    """
    from transformers.masking_utils import create_bidirectional_mask

    tower = model.model.audio_tower
    x, conv_lengths, out_lengths = _window_features(model, processor, waves)
    positions = min(tower.config.max_source_positions, int(conv_lengths.max() + 1) // 2 * 2)
    x = x[..., : 2 * positions + 2].to(tower.conv1.weight.dtype)
    hidden = torch.nn.functional.gelu(tower.conv1(x))
    hidden = torch.nn.functional.gelu(tower.conv2(hidden))[..., :positions].permute(0, 2, 1)
    hidden = hidden + tower.embed_positions.weight[:positions]
    mask_2d = (torch.arange(positions)[None, :] < conv_lengths[:, None]).long()
    mask = create_bidirectional_mask(config=tower.config, inputs_embeds=hidden, attention_mask=mask_2d)
    for layer in tower.layers:
        hidden = layer(hidden, mask)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
    hidden = tower.layer_norm(tower.avg_pooler(hidden.permute(0, 2, 1)).permute(0, 2, 1))
    return [hidden[i, : int(n)].to(torch.float16) for i, n in enumerate(out_lengths)]


@torch.no_grad()
def encode_windows_full(model: Any, processor: Any, waves: list[np.ndarray]) -> list[torch.Tensor]:
    """:func:`encode_windows` through the encoder's own forward on all 3,000 frames (the reference it must match)."""
    from transformers.masking_utils import create_bidirectional_mask

    tower = model.model.audio_tower
    x, conv_lengths, out_lengths = _window_features(model, processor, waves)
    max_len = (x.shape[-1] - 2) // 2 + 1
    mask_2d = (torch.arange(max_len)[None, :] < conv_lengths[:, None]).long()
    mask = create_bidirectional_mask(config=tower.config, inputs_embeds=torch.zeros(len(waves), max_len, 1), attention_mask=mask_2d)
    hidden = tower(x, attention_mask=mask).last_hidden_state
    return [hidden[i, : int(n)].to(torch.float16) for i, n in enumerate(out_lengths)]


def load_utterances(
    model: Any, processor: Any, dirs: list[str], cache: Path, max_per_dir: int | None, encode_batch: int
) -> list[Utterance]:
    """Every utterance of the data dirs with its encoder output, computed once and cached in ``cache``.

    The cache is saved every 100 utterances, so an interrupted precomputation resumes.
    """
    stored: dict[str, dict[str, Any]] = torch.load(cache) if cache.is_file() else {}
    fe = processor.feature_extractor
    window = int(fe.n_samples)
    out: list[Utterance] = []
    for d in map(Path, dirs):
        text = read_key_value(d / "text")
        reader = AudioReader(d / "wav.scp", sampling_rate=fe.sampling_rate)
        keys = reader.keys()[: max_per_dir or None]
        todo = [k for k in keys if k not in stored]
        if (d / "utt2dur").is_file():  # similar lengths together: a batch's encoder cost is its longest window's
            dur = read_key_value(d / "utt2dur")
            todo.sort(key=lambda k: float(dur.get(k, 0.0)))
        bar = tqdm(total=len(todo), desc=f"encode {d.name}", unit="utt", disable=None)
        for start in range(0, len(todo), encode_batch):
            chunk = todo[start : start + encode_batch]
            clips = {k: split_windows(reader(k), window) for k in chunk}
            flat = [c for k in chunk for c in clips[k]]
            encoded = encode_windows(model, processor, flat)
            i = 0
            for k in chunk:
                parts = encoded[i : i + len(clips[k])]
                i += len(clips[k])
                stored[k] = {"feats": torch.cat(parts), "clip_lengths": [len(p) for p in parts]}
            bar.update(len(chunk))
            if (start // encode_batch) % max(1, 100 // encode_batch) == 0 or start + encode_batch >= len(todo):
                _atomic_save(stored, cache)
        bar.close()
        meta = read_meta(d)
        for k in keys:
            task, spoken = meta.get(k, ("asr", text[k]))
            out.append(Utterance(k, stored[k]["feats"], stored[k]["clip_lengths"], text[k], task, spoken))
        logger.info("%s: %d utterances (%d encoded now)", d, len(keys), len(todo))
    return out


def read_meta(d: Path) -> dict[str, tuple[str, str]]:
    """Per utterance of a synthetic data dir's ``meta.jsonl``: (task, the words spoken); empty without one.

    A sparse task's answer is a label, but its audio still has words: the CTC loss trains on them.
    """
    path = d / "meta.jsonl"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out[row["utt"]] = (row["task"], " ".join(row["sentences"]))
    return out


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


# --- batches ---------------------------------------------------------------------------------


class PromptBatcher:
    """Utterances -> input ids with the audio placeholders (each in its task's prompt), answer-only
    labels, and the features to project."""

    def __init__(self, tokenizer: Any, prompts: dict[str, str]) -> None:
        self.tok = tokenizer
        self.parts = {}
        for task, prompt in prompts.items():
            prefix, _, suffix = prompt.replace("\\n", "\n").partition("{audio}")
            self.parts[task] = (self.encode(prefix), self.encode(suffix))
        self.bos, self.audio, self.eos_audio = tokenizer.convert_tokens_to_ids(list(AUDIO_TOKENS))
        self.end = tokenizer.eos_token_id
        self.pad = tokenizer.pad_token_id

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def answer_ids(self, u: Utterance) -> list[int]:
        return self.encode(u.answer) + [self.end]

    def prompt_ids(self, u: Utterance) -> list[int]:
        """The prompt of ``u``: its task's prefix, the audio placeholders of each clip, the suffix."""
        prefix, suffix = self.parts[u.task]
        audio: list[int] = []
        for n in u.clip_lengths:
            audio += [self.bos] + [self.audio] * n + [self.eos_audio]
        return prefix + audio + suffix

    def decode_prompt(self, u: Utterance) -> str:
        return self.tok.decode(self.prompt_ids(u))

    def __call__(self, utts: list[Utterance]) -> dict[str, torch.Tensor]:
        rows, labels = [], []
        for u in utts:
            prompt = self.prompt_ids(u)
            answer = self.answer_ids(u)
            rows.append(prompt + answer)
            labels.append([-100] * len(prompt) + answer)
        input_ids, label_t, mask = pad_rows(rows, labels, self.pad)
        return {
            "input_ids": input_ids,
            "attention_mask": mask,
            "labels": label_t,
            "feats": torch.cat([u.feats for u in utts]).float(),
        }


def length_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """One epoch of batches of similar length (sorted within shuffled pools of 20 batches), in random order:
    padding to the longest of a batch costs the LLM as much as real tokens."""
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    pool = 20 * batch_size
    out = []
    for p in range(0, len(idx), pool):
        chunk = sorted(idx[p : p + pool], key=lambda i: lengths[i])
        out += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(out)
    return out


# --- losses ----------------------------------------------------------------------------------


class SubsetCTC(torch.nn.Module):
    """CTC over the token ids the transcripts use (+ blank), on the projected audio; training only.

    The head's rows start as the LLM's embedding rows of those tokens: the projector is pulled
    towards vectors the LLM already reads as those words.
    """

    def __init__(self, token_ids: list[int], embedding: torch.Tensor) -> None:
        super().__init__()
        self.token_ids = sorted(set(token_ids))
        self.index = {t: i for i, t in enumerate(self.token_ids)}
        self.head = torch.nn.Linear(embedding.shape[1], len(self.token_ids) + 1)
        with torch.no_grad():
            rows = embedding[self.token_ids].float()
            self.head.weight[: len(self.token_ids)] = rows / rows.norm(dim=-1, keepdim=True) * 4.0
            self.head.weight[-1].zero_()
            self.head.bias.zero_()
        self.blank = len(self.token_ids)

    def forward(self, projected: torch.Tensor, lengths: list[int], targets: list[list[int]]) -> torch.Tensor:
        """Mean CTC (per target token) of utterances whose projected audio is concatenated in ``projected``."""
        pieces = list(torch.split(projected, lengths))
        seq = torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True)
        logp = self.head(seq).log_softmax(-1).transpose(0, 1)
        tgt = [torch.tensor([self.index[t] for t in ids]) for ids in targets]
        return torch.nn.functional.ctc_loss(
            logp, torch.cat(tgt), torch.tensor(lengths), torch.tensor([len(t) for t in tgt]),
            blank=self.blank, reduction="mean", zero_infinity=True,
        )


def embed_with_audio(model: Any, input_ids: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
    """The decoder's input embeddings of ``input_ids``, the projected audio (rows in placeholder
    order) in place of the audio placeholders: what Qwen2-Audio's forward builds, from
    precomputed encoder outputs."""
    embeds = model.model.language_model.embed_tokens(input_ids)
    audio_mask = (input_ids == model.config.audio_token_id).unsqueeze(-1)
    return embeds.masked_scatter(audio_mask, projected.to(embeds.dtype))


def answer_loss(model: Any, batch: dict[str, torch.Tensor], projected: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the answers (mean per utterance, then over the batch), the LM head on answer positions only."""
    lm = model.model.language_model
    labels = batch["labels"]
    embeds = embed_with_audio(model, batch["input_ids"], projected)
    hidden = lm(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).last_hidden_state
    target = labels[:, 1:]
    sel = target != -100
    logits = model.lm_head(hidden[:, :-1][sel]).float()
    tok_loss = torch.nn.functional.cross_entropy(logits, target[sel], reduction="none")
    rows = sel.nonzero()[:, 0]
    per_row = torch.zeros(len(labels)).index_add_(0, rows, tok_loss) / sel.sum(-1).clamp(min=1)
    return per_row.mean()


# --- the loop --------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def learning_rate(cfg: ProjectorTrainConfig, step: int) -> float:
    """The schedule's rate at ``step`` (CTC warm-up steps, then joint steps, counted together):
    a linear warm-up in each stage, then constant, or a half-cosine decay from ``decay_start``.

    The decay exists because a constant rate plateaus: the answer cross-entropy stops falling
    well before the model has learned what it can (``egs2/mini_synth_long/slam1/README.md``).
    """
    if step < cfg.ctc_warmup_steps:
        return cfg.ctc_warmup_lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    joint = step - cfg.ctc_warmup_steps
    lr = cfg.lr * min(1.0, (joint + 1) / max(1, cfg.warmup_steps))
    if cfg.decay_start is not None and joint >= cfg.decay_start:
        frac = min(1.0, (joint - cfg.decay_start) / (cfg.max_steps - cfg.decay_start))
        lr *= cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac))
    return lr


class Trainer:
    """Holds the model, the data and the state that a checkpoint saves; :meth:`run` trains to ``max_steps``."""

    def __init__(self, cfg: ProjectorTrainConfig) -> None:
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        self.cfg = cfg
        self.out = Path(cfg.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.model = Qwen2AudioForConditionalGeneration.from_pretrained(cfg.model_dir, dtype=torch.float32).eval()
        self.processor = AutoProcessor.from_pretrained(cfg.model_dir)
        self.model.requires_grad_(False)
        self.projector = self.model.model.multi_modal_projector
        self.projector.requires_grad_(True)
        self.utts = load_utterances(
            self.model, self.processor, cfg.train_dirs, self.out / "encoder_outputs.pt", cfg.max_utts_per_dir, cfg.encode_batch
        )
        if not self.utts:
            raise ValueError(f"no training utterances in {cfg.train_dirs}")
        self.batcher = PromptBatcher(self.processor.tokenizer, {t: task_prompt(t) for t in {u.task for u in self.utts}})
        self.targets = [self.batcher.encode(u.spoken) for u in self.utts]
        self.ctc = SubsetCTC([t for ids in self.targets for t in ids], self.model.model.language_model.embed_tokens.weight)
        self.lora = None
        groups = [{"params": list(self.projector.parameters()) + list(self.ctc.parameters()), "base_lr": 1.0}]
        if cfg.lora_rank:
            self.lora = LoRAAdapters(self.model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_targets, seed=cfg.seed)
            self.lora.attach(self.model)
            # the adapters learn in the joint stage only (the CTC warm-up never reaches the decoder)
            groups.append({"params": list(self.lora.parameters()), "base_lr": cfg.lora_lr / cfg.lr})
            logger.info("LoRA rank %d on %d decoder layers (%d parameters)", cfg.lora_rank, len(self.lora.names),
                        sum(p.numel() for p in self.lora.parameters()))
        if cfg.init_from and not self.ckpt_path.is_file():
            self._warm_start(Path(cfg.init_from))
        self.params = [p for g in groups for p in g["params"]]
        self.opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
        self.step = 0  # CTC warm-up steps, then joint steps, counted together
        self.batches: list[list[int]] = []
        self.batch_rng = random.Random(cfg.seed)
        self.lengths = [len(u.feats) for u in self.utts]
        self._resume()

    # checkpoints
    @property
    def ckpt_path(self) -> Path:
        return self.out / "checkpoint.pt"

    def _warm_start(self, path: Path) -> None:
        """Start from a trained-parameters file: its projector and, with LoRA, its adapters (same
        rank and scale). A file with adapters cannot start a run without them, and vice versa."""
        from espnet_fastadasp.pretrained.assemble import read_trained_file

        proj, lora, meta = read_trained_file(path)
        self.projector.load_state_dict(proj, strict=True)
        if bool(lora) != (self.lora is not None):
            raise ValueError(f"init_from={str(path)!r}: {'has' if lora else 'has no'} LoRA adapters, "
                             f"this run has lora_rank={self.cfg.lora_rank}")
        if self.lora is not None:
            if float(meta.get("lora_scale", "nan")) != self.lora.scale:
                raise ValueError(f"init_from={str(path)!r}: lora_scale {meta.get('lora_scale')}, "
                                 f"this run's is {self.lora.scale!r} (lora_alpha / lora_rank)")
            self.lora.load_state(lora)
        logger.info("warm start from %s (trained to step %s there)", path, meta.get("step", "?"))

    def _resume(self) -> None:
        if not self.ckpt_path.is_file():
            return
        state = torch.load(self.ckpt_path, weights_only=False)
        self.projector.load_state_dict(state["projector"])
        self.ctc.load_state_dict(state["ctc"])
        if self.lora is not None:
            self.lora.load_state_dict(state["lora"])
        self.opt.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.batches = state["batches"]
        self.batch_rng.setstate(state["batch_rng"])
        _set_rng_state(state["rng"])
        # the loss curve keeps only what the checkpoint holds (steps logged after it are redone)
        log = self.out / "train_log.jsonl"
        if log.is_file():
            rows = [line for line in log.read_text().splitlines() if line.strip()]
            log.write_text("".join(f"{r}\n" for r in rows if json.loads(r)["step"] <= self.step))
        logger.info("resumed from %s at step %d", self.ckpt_path, self.step)

    def save(self) -> None:
        from safetensors.torch import save_file

        state = {
            "projector": self.projector.state_dict(),
            "ctc": self.ctc.state_dict(),
            "lora": self.lora.state_dict() if self.lora is not None else None,
            "optimizer": self.opt.state_dict(),
            "step": self.step,
            "batches": self.batches,
            "batch_rng": self.batch_rng.getstate(),
            "rng": _rng_state(),
        }
        _atomic_save(state, self.ckpt_path)
        tmp = self.out / "projector.safetensors.tmp"
        tensors, meta = self.trained_state()
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, self.out / "projector.safetensors")
        (self.out / "train_config.yaml").write_text(yaml.safe_dump(asdict(self.cfg), sort_keys=False))
        if (self.out / "train_log.jsonl").is_file():
            plot_loss(self.out / "train_log.jsonl", self.out / "loss.png")

    def trained_state(self) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """What is committed: the projector and, with LoRA, the adapters (merged at assembly by
        :func:`~espnet_fastadasp.pretrained.assemble.load_projector`), with their metadata."""
        from espnet_fastadasp.pretrained.assemble import projector_state

        tensors, meta = projector_state(self.model), {"step": str(self.step)}
        if self.lora is not None:
            tensors.update(self.lora.state())
            meta.update(lora_scale=repr(self.lora.scale), lora_rank=str(self.lora.rank))
        return tensors, meta

    def _next_batch(self, batch_size: int) -> list[int]:
        if not self.batches or len(self.batches[-1]) > batch_size:
            self.batches = length_batches(self.lengths, batch_size, self.batch_rng)
        return self.batches.pop()

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        warmup = self.step < cfg.ctc_warmup_steps
        if self.step == cfg.ctc_warmup_steps:
            self.batches = []  # the joint stage has its own batch size
        idx = self._next_batch(cfg.ctc_warmup_batch_size if warmup else cfg.batch_size)
        utts = [self.utts[i] for i in idx]
        lr = learning_rate(cfg, self.step)
        for group in self.opt.param_groups:
            group["lr"] = lr * group["base_lr"]  # base_lr: the group's share of the schedule's rate
        feats = torch.cat([u.feats for u in utts]).float()
        projected = self.projector(feats)
        entry = {"lr": lr}
        if warmup or cfg.ctc_weight > 0:
            ctc = self.ctc(projected, [len(u.feats) for u in utts], [self.targets[i] for i in idx])
            entry["ctc_loss"] = ctc.item()
        if warmup:
            loss = ctc
        else:
            ce = answer_loss(self.model, self.batcher(utts), projected)
            entry["ce_loss"] = ce.item()
            loss = ce + cfg.ctc_weight * ctc if cfg.ctc_weight > 0 else ce
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.opt.step()
        self.step += 1
        entry["loss"] = loss.item()
        return entry

    def run(self) -> Path:
        cfg = self.cfg
        total = cfg.ctc_warmup_steps + cfg.max_steps
        log = (self.out / "train_log.jsonl").open("a")
        running: list[dict[str, float]] = []
        with log, tqdm(total=total, initial=self.step, desc="train projector", unit="step", disable=None) as bar:
            while self.step < total:
                stage_end = self.step + 1 in (cfg.ctc_warmup_steps, total)
                running.append(self.train_step())
                bar.update(1)
                if self.step % cfg.log_every == 0 or stage_end:
                    entry = {"step": self.step, "stage": "ctc" if self.step <= cfg.ctc_warmup_steps else "joint"}
                    for k in running[-1]:
                        vals = [r[k] for r in running if k in r]
                        entry[k] = float(np.mean(vals)) if k != "lr" else vals[-1]
                    log.write(json.dumps(entry) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{entry['loss']:.3f}", stage=entry["stage"])
                    running = []
                if self.step % cfg.save_every == 0 or stage_end:
                    self.save()
        self.save()
        logger.info("trained to step %d -> %s", self.step, self.out)
        return self.out / "projector.safetensors"


def plot_loss(log_path: Path, png: Path) -> None:
    """The loss curve by step: CTC (both stages) and the answer cross-entropy (joint stage)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ctc = [r for r in rows if "ctc_loss" in r]  # none where ctc_weight is 0 (a warm-started run)
    if ctc:
        ax.plot([r["step"] for r in ctc], [r["ctc_loss"] for r in ctc], label="CTC on the projected audio (per token)")
    joint = [r for r in rows if "ce_loss" in r]
    if joint:
        ax.plot([r["step"] for r in joint], [r["ce_loss"] for r in joint], label="answer cross-entropy (per token, mean per utt)")
        if ctc:
            ax.axvline(joint[0]["step"] - 0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("step (CTC warm-up: batch 32; joint: batch 4)")
    ax.set_ylabel("loss (nats)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)


def load_config(path: str | Path, **overrides: Any) -> ProjectorTrainConfig:
    """A YAML config with command-line overrides (None values ignored)."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return ProjectorTrainConfig(**data)



@torch.no_grad()
def ctc_greedy_transcripts(model_dir: str | Path, checkpoint: str | Path, train_dirs: list[str], data_dir: str | Path) -> dict[str, str]:
    """Greedy CTC transcripts of a data dir from a training checkpoint's projector and CTC head.

    A diagnostic, not the model's output (the CTC head is training-only): whether the projected
    audio already carries the words, before the frozen LLM has learnt to read them. ``train_dirs``
    rebuild the head's token subset exactly as the trainer did.
    """
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    model = Qwen2AudioForConditionalGeneration.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(str(model_dir))
    tok = processor.tokenizer
    state = torch.load(checkpoint, weights_only=False)
    model.model.multi_modal_projector.load_state_dict(state["projector"])
    answers = []
    for d in map(Path, train_dirs):  # as the trainer's targets: the words spoken (meta.jsonl), else the text
        meta = read_meta(d)
        answers += [meta[k][1] if k in meta else t for k, t in read_key_value(d / "text").items()]
    ids = [t for a in answers for t in tok(a, add_special_tokens=False)["input_ids"]]
    ctc = SubsetCTC(ids, model.model.language_model.embed_tokens.weight)
    ctc.load_state_dict(state["ctc"])
    reader = AudioReader(Path(data_dir) / "wav.scp", sampling_rate=processor.feature_extractor.sampling_rate)
    out = {}
    for key in tqdm(reader.keys(), desc="ctc greedy", unit="utt", disable=None):
        feats = torch.cat(encode_windows(model, processor, split_windows(reader(key), int(processor.feature_extractor.n_samples))))
        best = ctc.head(model.model.multi_modal_projector(feats.float())).argmax(-1).tolist()
        tokens, prev = [], None
        for b in best:
            if b != prev and b != ctc.blank:
                tokens.append(ctc.token_ids[b])
            prev = b
        out[key] = tok.decode(tokens)
    return out
