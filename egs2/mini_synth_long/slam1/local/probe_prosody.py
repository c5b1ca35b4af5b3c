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

logger = logging.getLogger("probe_prosody")


def features(cache: dict, keys: list[str]) -> torch.Tensor:
    """Mean and standard deviation over time of each clip's encoder outputs, standardised per dimension."""
    x = torch.stack([torch.cat([cache[k]["feats"].float().mean(0), cache[k]["feats"].float().std(0)]) for k in keys])
    return (x - x.mean(0)) / (x.std(0) + 1e-6)


def cv_accuracy(x: torch.Tensor, y: torch.Tensor, l2: float, folds: int = 5, seed: int = 0) -> float:
    """Held-out accuracy (%) of an L2-regularised logistic regression (LBFGS), k-fold."""
    idx = np.random.default_rng(seed).permutation(len(y))
    acc = []
    for held in np.array_split(idx, folds):
        train = np.setdiff1d(idx, held)
        w = torch.zeros(x.shape[1], requires_grad=True)
        b = torch.zeros(1, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], max_iter=200)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(x[train] @ w + b, y[train]) + l2 * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)
        acc.append(((x[held] @ w + b > 0).float() == y[held]).float().mean().item())
    return 100.0 * float(np.mean(acc))


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
