"""Transfer Entropy layer selection for the sparse strategy (one reduction at one layer).

FastAdaSP picks the layer of the sparse reduction by Transfer Entropy (slides, Table 6):

    TE(i) = | H(Phi(F_final; W_final)) - H(F_final | Phi(F_i; W_i)) |,  lowest TE wins,

where Phi is the token reduction, F the embedding output and H entropy. The estimator was never
published; ours, and why:

* **Reading of the formula.** ``H(F_final | Phi(F_i; W_i))`` is read as "the entropy of the
  final features *when the reduction is applied at layer i*", and ``H(Phi(F_final; W_final))``
  as the same with the reduction at the last layer (where it can change almost nothing: only
  that layer's MLP sees fewer tokens). TE(i) is then how much reducing at layer i moves the
  information content of the final representation away from the least-disturbed reference.
  (Reading the bar as a true conditional entropy would make TE a mutual information, for which
  *lowest wins* would pick the most destructive layer.)
* **Features.** One vector per utterance: the decoder's final hidden state (after the final
  norm) at the last prompt position, the position that emits the first answer token, so it
  carries what the answer is decided from. Token counts differ between layers under reduction,
  so per-token statistics would be biased; this vector is the same size for every layer.
* **Entropy estimator.** Gaussian differential entropy ``0.5 * (k log(2 pi e) + log det S)`` of
  the N calibration vectors, after projecting every layer's features onto the top-``k``
  principal axes of the *reference* features (shared axes, so entropies are comparable;
  ``k = min(32, N // 4)`` keeps the covariance well estimated), with the covariance shrunk
  toward its scaled identity (Ledoit-Wolf's closed-form intensity) so that it stays positive
  definite with few samples. Closed-form and deterministic: no sampling, no random projection.
* **Samples.** The first ``num_utts`` utterances of the task's calibration data dir in sorted
  key order (default 64): enough for a 16-dim Gaussian fit, a few minutes on a GPU per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def shrunk_covariance(x: np.ndarray) -> np.ndarray:
    """Ledoit-Wolf shrinkage of the sample covariance of ``x`` (n, d) toward ``mu * I``."""
    n, d = x.shape
    xc = x - x.mean(0, keepdims=True)
    s = xc.T @ xc / n
    mu = np.trace(s) / d
    delta = np.sum((s - mu * np.eye(d)) ** 2) / d
    beta_bar = sum(np.sum((np.outer(r, r) - s) ** 2) for r in xc) / (d * n * n)
    shrink = min(beta_bar, delta) / delta if delta > 0 else 1.0
    return (1 - shrink) * s + shrink * mu * np.eye(d)


def gaussian_entropy(x: np.ndarray) -> float:
    """Differential entropy (nats) of a Gaussian fitted to the rows of ``x`` (shrunk covariance)."""
    d = x.shape[1]
    sign, logdet = np.linalg.slogdet(shrunk_covariance(x))
    if sign <= 0:
        raise ValueError("covariance is not positive definite")
    return 0.5 * (d * math.log(2 * math.pi * math.e) + logdet)


def principal_axes(reference: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and top-``k`` principal axes (d, k) of the reference features."""
    mean = reference.mean(0)
    _, _, vt = np.linalg.svd(reference - mean, full_matrices=False)
    return mean, vt[:k].T


def projection_dim(num_samples: int, dim: int, cap: int = 32) -> int:
    return max(1, min(cap, num_samples // 4, dim))


@dataclass(frozen=True)
class LayerScore:
    layer: int
    entropy: float
    te: float


def transfer_entropy(reference: np.ndarray, per_layer: dict[int, np.ndarray], k: int | None = None) -> list[LayerScore]:
    """TE of every candidate layer, best (lowest) first.

    reference: (N, d) final features with the reduction at the last layer; per_layer: layer ->
    (N, d) final features with the reduction at that layer (same utterances, same order).
    """
    n, d = reference.shape
    for layer, feats in per_layer.items():
        if feats.shape != reference.shape:
            raise ValueError(f"layer {layer}: features {feats.shape} != reference {reference.shape}")
    k = k or projection_dim(n, d)
    mean, axes = principal_axes(reference.astype(np.float64), k)
    h_ref = gaussian_entropy((reference - mean) @ axes)
    scores = []
    for layer, feats in per_layer.items():
        h = gaussian_entropy((feats.astype(np.float64) - mean) @ axes)
        scores.append(LayerScore(layer, h, abs(h_ref - h)))
    return rank_layers(scores)


def rank_layers(scores: list[LayerScore]) -> list[LayerScore]:
    """Lowest TE first; ties go to the earlier layer (it saves more FLOPs)."""
    return sorted(scores, key=lambda s: (s.te, s.layer))


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None when undefined (a constant input)."""
    if len(set(a)) < 2 or len(set(b)) < 2:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)
