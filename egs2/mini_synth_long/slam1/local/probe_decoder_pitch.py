#!/usr/bin/env python3
"""Where does the pitch of a prosody clip get lost between the encoder and the answer? For each
clip of a prosody data dir, the trained model (an assembled checkpoint dir) reads its prosody
prompt; at the position that predicts the first answer word (the pitch: "low" / "high") this
takes the hidden state of every decoder layer and the model's own margin
logit("high") - logit("low"). A logistic-regression probe per layer (5-fold) says whether the
pitch is still linearly readable there; the margin's ROC AUC says whether the model's own answer
ranks the clips right, however it sets its threshold (README.md, "Why prosody stays at 50 %").

    local/probe_decoder_pitch.py --model_dir exp/slam_model --data_dir data_seed3/prosody_train \
        --cache exp/probe_pitch/encoder_outputs.pt --num 200
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

from espnet_fastadasp.evaluation.linear_probe import cv_accuracy, roc_auc, standardize
from espnet_fastadasp.pretrained.train_projector import PromptBatcher, embed_with_audio, load_utterances, task_prompt

logger = logging.getLogger("probe_decoder_pitch")


@torch.no_grad()
def answer_states(model, batcher: PromptBatcher, utt, high: int, low: int) -> tuple[torch.Tensor, float]:
    """The hidden states (layers + 1, width) at the last prompt position and the pitch margin there."""
    ids = torch.tensor([batcher.prompt_ids(utt)])
    projected = model.model.multi_modal_projector(utt.feats.float())
    out = model.model.language_model(inputs_embeds=embed_with_audio(model, ids, projected), output_hidden_states=True)
    states = torch.stack([h[0, -1] for h in out.hidden_states])
    logits = model.lm_head(out.last_hidden_state[0, -1])
    return states, float(logits[high] - logits[low])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, help="an assembled checkpoint dir (assemble_slam --projector ...)")
    parser.add_argument("--data_dir", required=True, help="a prosody data dir (text: '<pitch> <rate>')")
    parser.add_argument("--cache", required=True, help="where the encoder outputs are kept (computed once)")
    parser.add_argument("--num", type=int, default=200, help="clips to probe (the first of the dir)")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(message)s")
    torch.set_grad_enabled(False)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(args.model_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(args.model_dir)
    Path(args.cache).parent.mkdir(parents=True, exist_ok=True)
    utts = load_utterances(model, processor, [args.data_dir], Path(args.cache), args.num, encode_batch=4)
    batcher = PromptBatcher(processor.tokenizer, {"prosody": task_prompt("prosody")})
    high, low = (batcher.encode(w)[0] for w in ("high", "low"))
    states, margins, labels = [], [], []
    for u in tqdm(utts, desc="decoder states", unit="utt", disable=None):
        s, m = answer_states(model, batcher, u, high, low)
        states.append(s)
        margins.append(m)
        labels.append(1.0 if u.answer.split()[0] == "high" else 0.0)
    y = torch.tensor(labels)
    margin = np.array(margins)
    logger.info("%d clips (%.0f %% high); the model's margin logit(high)-logit(low): mean %.2f, answers high %.0f %%, "
                "ROC AUC %.3f", len(y), 100 * y.mean(), margin.mean(), 100 * (margin > 0).mean(), roc_auc(margin, y.numpy()))
    x_all = torch.stack(states).float()  # (clips, layers + 1, width)
    for layer in range(x_all.shape[1]):
        logger.info("layer %2d: pitch probe %.1f %%", layer, cv_accuracy(standardize(x_all[:, layer]), y, 1e-2))


if __name__ == "__main__":
    main()
