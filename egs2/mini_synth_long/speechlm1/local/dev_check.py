#!/usr/bin/env python3
"""Decode the dev sets without reduction and score them: the check local/train_gpu.sh runs on the
trained model before the call ends, so the model's quality is known without a second device call.

    python3 local/dev_check.py --model exp/train_gpu/model --device cuda data/*_dev > dev_scores.json

Writes one JSON object: per set, WER/CER (asr, lasr) or accuracy (the rest) and the number of
utterances. The test sets are never decoded here.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from espnet_fastadasp.core.config import ReductionConfig
from espnet_fastadasp.decoding.data import AudioReader, read_key_value
from espnet_fastadasp.decoding.speech2text import Speech2Text
from espnet_fastadasp.evaluation.scoring import score_asr, score_classification
from espnet_fastadasp.recipes.synth_long import TASKS

logger = logging.getLogger("dev_check")


def decode_set(s2t: Speech2Text, d: Path, batch_size: int) -> dict[str, str]:
    reader = AudioReader(d / "wav.scp", sampling_rate=s2t.sampling_rate)
    prompts = read_key_value(d / "prompt", allow_empty_value=False)
    keys = reader.keys()
    hyps: dict[str, str] = {}
    for i in range(0, len(keys), batch_size):
        chunk = keys[i : i + batch_size]
        batch = s2t.encode(chunk, [reader(k) for k in chunk], [prompts[k] for k in chunk])
        for hyp in s2t(batch, ReductionConfig(method="none")):
            hyps[hyp.key] = hyp.text
    return hyps


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--batch_size", type=int, default=16)
    # per task, so that a model that never ends its answer cannot spend the call's budget here
    p.add_argument("--max_new_tokens_asr", type=int, default=700, help="5-30 s: up to ~600 characters")
    p.add_argument("--max_new_tokens_lasr", type=int, default=2400, help="60-120 s: up to ~2,000 characters")
    p.add_argument("--max_new_tokens_cls", type=int, default=12, help="the longest label + end of turn")
    p.add_argument("dirs", type=Path, nargs="+")
    args = p.parse_args()
    s2t = Speech2Text(args.model, device=args.device, dtype=args.dtype)
    out = {}
    for d in args.dirs:
        t0 = time.time()
        task = d.name.rsplit("_", 1)[0]
        refs = read_key_value(d / "text")
        kind = task if task in ("asr", "lasr") else "cls"
        s2t.generate_kwargs["max_new_tokens"] = getattr(args, f"max_new_tokens_{kind}")
        hyps = decode_set(s2t, d, args.batch_size)
        if TASKS[task]["labels"] is None:
            m = score_asr(refs, hyps)
            out[d.name] = {"wer": m["wer"], "cer": m["cer"], "num_utts": m["num_utts"]}
        else:
            m = score_classification(refs, hyps, labels=TASKS[task]["labels"])
            out[d.name] = {"accuracy": m["accuracy"], "num_utts": m["num_utts"]}
        out[d.name]["seconds"] = round(time.time() - t0, 1)
        logger.info("%s: %s", d.name, out[d.name])
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
