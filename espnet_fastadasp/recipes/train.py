"""Train a tiny Qwen2-Audio (the real transformers class) on Kaldi-style data dirs.

Used by the mini synthetic benchmark: no real Speech LM weights can be downloaded, so we train a
small one whose accuracy we can measure, then measure what token reduction does to it.

This module is the training loop (:func:`train`) and the loss curve; the rest lives in a module
per job, whose docstrings give the design choices and why:

* :mod:`~espnet_fastadasp.recipes.train_config`: :class:`TrainConfig` and the learning-rate
  schedule (warm-up, then cosine over the steps or the time budget);
* :mod:`~espnet_fastadasp.recipes.train_data`: utterances in RAM, length-bucketed batches and
  the model inputs (features on the training device, answer-only labels, long audio in windows);
* :mod:`~espnet_fastadasp.recipes.train_model`: the model and processor, built or loaded, and the
  checkpoint;
* :mod:`~espnet_fastadasp.recipes.train_losses`: the per-sample cross-entropy and the
  training-only CTC head.

All their names can still be imported from here.

Training stops at ``max_steps`` or ``max_minutes``, whichever comes first, logging the loss
curve to ``train_log.jsonl`` as it goes.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from espnet_fastadasp.recipes.train_config import COSINE_OVER, TrainConfig, learning_rate
from espnet_fastadasp.recipes.train_data import (
    SAMPLES_PER_AUDIO_TOKEN,
    Batcher,
    Example,
    example_length,
    load_examples,
    pad_rows,
    token_batches,
)
from espnet_fastadasp.recipes.train_losses import AudioCTC, per_sample_loss, submodule
from espnet_fastadasp.recipes.train_model import build_model_and_processor, load_for_training, save_checkpoint

__all__ = [
    "COSINE_OVER",
    "SAMPLES_PER_AUDIO_TOKEN",
    "AudioCTC",
    "Batcher",
    "Example",
    "TrainConfig",
    "build_model_and_processor",
    "example_length",
    "learning_rate",
    "load_examples",
    "load_for_training",
    "pad_rows",
    "per_sample_loss",
    "plot_loss",
    "save_checkpoint",
    "submodule",
    "token_batches",
    "train",
]

logger = logging.getLogger(__name__)


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
