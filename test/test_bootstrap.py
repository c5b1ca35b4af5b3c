"""Bootstrap intervals over utterances (espnet_fastadasp.evaluation.bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest

from espnet_fastadasp.evaluation.bootstrap import bootstrap_ratio, paired_bootstrap_delta


def test_accuracy_interval_contains_the_estimate_and_narrows_with_more_utterances():
    rng = np.random.default_rng(0)
    small = rng.random(100) < 0.8
    large = rng.random(2000) < 0.8
    a, b = bootstrap_ratio(small), bootstrap_ratio(large)
    assert a.low <= a.value <= a.high and b.low <= b.value <= b.high
    assert a.value == pytest.approx(100 * small.mean())
    assert (b.high - b.low) < (a.high - a.low)
    # a binomial's 95 % interval is about +-1.96 sqrt(p(1-p)/n)
    assert (b.high - b.low) / 2 == pytest.approx(196 * np.sqrt(0.8 * 0.2 / 2000), rel=0.2)
    assert a.num_utts == 100 and "[" in a.format()


def test_wer_is_a_ratio_of_sums_and_deterministic():
    errors, words = [1, 0, 3, 2], [10, 5, 10, 5]
    iv = bootstrap_ratio(errors, words)
    assert iv.value == pytest.approx(100 * 6 / 30)
    assert iv == bootstrap_ratio(errors, words)
    assert bootstrap_ratio([0, 0], [3, 4]).high == 0.0


def test_paired_difference_is_tighter_than_independent_intervals():
    rng = np.random.default_rng(1)
    base = (rng.random(300) < 0.7).astype(float)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:15]] = 1  # fixes 15 utterances, breaks none
    d = paired_bootstrap_delta(base, better)
    assert d.value == pytest.approx(100 * 15 / 300) and d.low > 0
    a, b = bootstrap_ratio(base), bootstrap_ratio(better)
    assert a.high > b.low  # the independent intervals overlap, the paired one excludes 0


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="no utterances"):
        bootstrap_ratio([])
    with pytest.raises(ValueError, match="one length"):
        bootstrap_ratio([1, 2], [1])
    with pytest.raises(ValueError, match="sum to zero"):
        bootstrap_ratio([0, 0], [0, 0])
    with pytest.raises(ValueError, match="different numbers"):
        paired_bootstrap_delta([1, 0], [1, 0, 1])
