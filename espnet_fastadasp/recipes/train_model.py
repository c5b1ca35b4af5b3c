"""The mini model itself: built from the config, loaded to train further, saved as a checkpoint.

Apart from the loop because tools build the same model without training it (the CPU cost
measurement of ``egs2/mini_synth_long`` builds one from a config).

* the model is ``Qwen2AudioForConditionalGeneration`` with a real ``Qwen2AudioProcessor``
  (Whisper features + a character-level tokenizer), saved with ``save_pretrained`` so every tool
  loads it like a downloaded checkpoint;
* the LLM has 8 decoder layers with GQA, so schedules and layer selection have room.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import yaml

from espnet_fastadasp.models.tiny import AUDIO_TOKEN, qwen2_audio_config, tiny_processor
from espnet_fastadasp.recipes.train_config import TrainConfig

#: the name these messages had before train.py was split (log formats show it)
logger = logging.getLogger("espnet_fastadasp.recipes.train")


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


def save_checkpoint(model: Any, processor: Any, cfg: TrainConfig, out: Path) -> None:
    """model + processor (``from_pretrained``-loadable) and the config that trained them."""
    was_training = model.training
    model.eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "train_config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    model.train(was_training)
