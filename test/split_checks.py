"""Checks every supported model class goes through: the split layer forward computes what the layer does.

Used by the tests of each model family (``test_speech_lm_classes.py``, ``test_sliding_window.py``).
"""

from __future__ import annotations

from typing import Any

import torch

import espnet_fastadasp as fa
import espnet_fastadasp.reduction.layer_forward as layer_forward


def first_step_logits(model: Any, inputs: dict[str, Any]) -> torch.Tensor:
    """The logits of a prefill (``use_cache=True``: what ``generate``'s first step runs)."""
    with torch.no_grad():
        return model(**inputs, use_cache=True).logits


def identity_split_logits(model: Any, inputs: dict[str, Any], monkeypatch: Any, method: str = "atome") -> torch.Tensor:
    """The first-step logits with every layer from 1 on running the split forward of a reducing
    layer, the reduction itself replaced by the identity: equal to the model's own logits, bit
    for bit, when each half runs exactly the layer's parts. ``method`` picks the attention path
    (``atome`` reads no attention: the model's own kernel runs)."""
    monkeypatch.setattr(layer_forward, "reduce_hidden", lambda layout, method, idx, h, key, received: h)
    with fa.apply(model, fa.ReductionConfig(method=method, ratio=0.5, start_layer=1)) as handle:
        logits = first_step_logits(model, inputs)
        assert handle.layout is None  # the prefill ran and ended
    return logits
