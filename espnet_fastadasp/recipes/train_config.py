"""The mini model's training settings and learning-rate schedule.

Apart from the loop (:mod:`~espnet_fastadasp.recipes.train`): the settings are checked when the
config is read, before any data is loaded or a model built, and the schedule is a function of the
config, the step and the time alone.

* training stops at ``max_steps`` or ``max_minutes``, whichever comes first. With
  ``cosine_over: budget`` the cosine decay also follows whichever limit is nearer, so a run cut
  by its wall-clock budget (a lent GPU for one 10-minute call, a Slurm time limit) still ends at
  learning rate 0 instead of mid-schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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
