"""Bootstrap confidence intervals over utterances, for error rates and accuracies.

Why: a benchmark of a few hundred utterances per task can show differences between reduction
settings that are noise; RESULTS.md gives each figure with a percentile bootstrap interval over
the test utterances, and differences between two settings on the *same* utterances with a
paired bootstrap (resampling utterances jointly), which is much tighter than comparing two
independent intervals.

A metric is a ratio of sums over utterances: WER = sum(errors) / sum(reference words); accuracy
= sum(correct) / sum(1). Resampling utterances (not words) keeps the words of an utterance together,
as in Bisani and Ney (2004), "Bootstrap estimates for confidence intervals in ASR performance evaluation".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """A point estimate and its ``confidence`` percentile interval, in the units of the inputs x ``scale``."""

    value: float
    low: float
    high: float
    confidence: float
    num_utts: int

    def format(self, digits: int = 1) -> str:
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"


def _resample_indices(n: int, num_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(num_resamples, n))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return num / np.maximum(den, 1e-12)


def _check(numerators: Sequence[float], denominators: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    num = np.asarray(numerators, dtype=np.float64)
    den = np.ones_like(num) if denominators is None else np.asarray(denominators, dtype=np.float64)
    if num.ndim != 1 or num.shape != den.shape:
        raise ValueError(f"numerators and denominators must be 1-D of one length ({num.shape} vs {den.shape})")
    if num.size == 0:
        raise ValueError("no utterances to bootstrap")
    if den.sum() <= 0:
        raise ValueError("the denominators sum to zero (no reference words?)")
    return num, den


def bootstrap_ratio(
    numerators: Sequence[float],
    denominators: Sequence[float] | None = None,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    scale: float = 100.0,
) -> Interval:
    """``scale * sum(num) / sum(den)`` with a percentile bootstrap interval over utterances.

    Accuracy: ``numerators`` = 1 for a correct utterance, else 0, no denominators. WER: errors per
    utterance over reference words per utterance. Deterministic for a given ``seed``.
    """
    num, den = _check(numerators, denominators)
    idx = _resample_indices(num.size, num_resamples, seed)
    stats = scale * _ratio(num[idx].sum(1), den[idx].sum(1))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    value = scale * float(num.sum() / den.sum())
    return Interval(value, float(low), float(high), confidence, int(num.size))


def paired_bootstrap_delta(
    numerators_a: Sequence[float],
    numerators_b: Sequence[float],
    denominators: Sequence[float] | None = None,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    scale: float = 100.0,
) -> Interval:
    """The difference ``metric(b) - metric(a)`` of two systems on the same utterances, with a
    paired bootstrap interval (the same resampled utterances for both)."""
    a, den = _check(numerators_a, denominators)
    b, _ = _check(numerators_b, denominators)
    if a.shape != b.shape:
        raise ValueError(f"the two systems were scored on different numbers of utterances ({a.size} vs {b.size})")
    idx = _resample_indices(a.size, num_resamples, seed)
    d = den[idx].sum(1)
    stats = scale * (_ratio(b[idx].sum(1), d) - _ratio(a[idx].sum(1), d))
    alpha = (1 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1 - alpha])
    value = scale * float((b.sum() - a.sum()) / den.sum())
    return Interval(value, float(low), float(high), confidence, int(a.size))
