"""The linear probe used to find where a trained model loses an attribute of the audio."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from espnet_fastadasp.evaluation.linear_probe import cv_accuracy, roc_auc, standardize


def test_a_linearly_readable_label_is_read_and_noise_is_not():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 16, generator=g)
    y = (x[:, 3] - 0.5 * x[:, 7] > 0).float()
    assert cv_accuracy(standardize(x), y, 1e-3) >= 90.0
    noise = (torch.rand(200, generator=g) > 0.5).float()
    assert 30.0 <= cv_accuracy(standardize(x), noise, 1e-2) <= 70.0
    # the same features give the same figure (a fixed split)
    assert cv_accuracy(x, y, 1e-2) == cv_accuracy(x, y, 1e-2)


def test_roc_auc():
    y = np.array([0, 0, 1, 1])
    assert roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), y) == 1.0
    assert roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), y) == 0.0
    assert roc_auc(np.zeros(4), y) == 0.5  # a constant answer ranks nothing
    with pytest.raises(ValueError, match="positive and negative"):
        roc_auc(np.zeros(3), np.ones(3))


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match=r"want \(n, d\) and \(n,\)"):
        cv_accuracy(torch.zeros(10, 3), torch.zeros(9), 1e-2)
    with pytest.raises(ValueError, match="3 examples for 5-fold"):
        cv_accuracy(torch.zeros(3, 2), torch.zeros(3), 1e-2)
    assert torch.equal(standardize(torch.ones(4, 2)), torch.zeros(4, 2))
