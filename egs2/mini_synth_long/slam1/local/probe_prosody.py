#!/usr/bin/env python3
"""Can the pitch (low / high) and rate (slow / fast) of the prosody training clips be read off the
Whisper tiny.en encoder outputs the projector sees? A logistic-regression probe on their mean and
standard deviation over time (768 dims), 5-fold cross-validated (README.md, "Why prosody stays at 50 %").

    local/probe_prosody.py --cache exp/projector_continued/encoder_outputs.pt --data_dir data_seed2/prosody_train
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import torch

from espnet_fastadasp.evaluation.linear_probe import cv_accuracy, standardize

logger = logging.getLogger("probe_prosody")


def features(cache: dict, keys: list[str]) -> torch.Tensor:
    """Mean and standard deviation over time of each clip's encoder outputs, standardised per dimension."""
    x = torch.stack([torch.cat([cache[k]["feats"].float().mean(0), cache[k]["feats"].float().std(0)]) for k in keys])
    return standardize(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", required=True, help="a training run's encoder_outputs.pt")
    parser.add_argument("--data_dir", required=True, help="a prosody data dir whose utterances the cache holds")
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(message)s")
    cache = torch.load(args.cache)
    labels = dict(line.split(" ", 1) for line in open(f"{args.data_dir}/text").read().splitlines())
    keys = sorted(labels)
    missing = [k for k in keys if k not in cache]
    if missing:
        raise SystemExit(f"probe_prosody: {len(missing)} utterance(s) of {args.data_dir} are not in {args.cache}, e.g. {missing[0]}")
    x = features(cache, keys)
    female = np.array(["+f" in k for k in keys])
    for axis, (name, positive) in enumerate((("pitch", "high"), ("rate", "fast"))):
        y = torch.tensor([1.0 if labels[k].split()[axis] == positive else 0.0 for k in keys])
        logger.info("%s (%d clips, %.0f %% %s): %s; within female voices %.1f %%, within male %.1f %%", name, len(keys),
                    100 * y.mean().item(), positive,
                    ", ".join(f"l2 {l2:g}: {cv_accuracy(x, y, l2):.1f} %" for l2 in (1e-3, 1e-2, 1e-1)),
                    cv_accuracy(x[female], y[female], 1e-2), cv_accuracy(x[~female], y[~female], 1e-2))


if __name__ == "__main__":
    main()
