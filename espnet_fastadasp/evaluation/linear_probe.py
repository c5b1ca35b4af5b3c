"""Linear probes: is a binary label linearly readable off a set of feature vectors?

Used to find where a trained Speech LM loses an attribute of the audio (the prosody task's pitch:
``egs2/mini_synth_long/slam1/local/probe_prosody.py`` on the encoder outputs,
``local/probe_decoder_pitch.py`` on the decoder's hidden states). Held-out accuracy of an
L2-regularised logistic regression, k-fold, with a fixed split: the same features give the same
figure.
"""

from __future__ import annotations

import numpy as np
import torch


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per dimension (a constant dimension stays zero)."""
    return (x - x.mean(0)) / (x.std(0) + 1e-6)


def cv_accuracy(x: torch.Tensor, y: torch.Tensor, l2: float, folds: int = 5, seed: int = 0) -> float:
    """Held-out accuracy (%) of an L2-regularised logistic regression (LBFGS) of ``y`` (0/1) on
    ``x`` (n, d), ``folds``-fold cross-validated."""
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"features {tuple(x.shape)} and labels {tuple(y.shape)}: want (n, d) and (n,)")
    if len(y) < folds:
        raise ValueError(f"{len(y)} examples for {folds}-fold cross-validation")
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
        with torch.no_grad():
            acc.append(((x[held] @ w + b > 0).float() == y[held]).float().mean().item())
    return 100.0 * float(np.mean(acc))


def roc_auc(score: np.ndarray, y: np.ndarray) -> float:
    """Probability that a random positive example scores above a random negative one (ties: half)."""
    pos, neg = score[y == 1], score[y == 0]
    if not len(pos) or not len(neg):
        raise ValueError("ROC AUC needs positive and negative examples")
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())
