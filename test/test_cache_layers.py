"""Reduction state lives in the cache: ReducedLayer after a reduced prefill (reduction/cache_layers.py)."""

from __future__ import annotations

import pytest
import torch

import espnet_fastadasp as fa
from espnet_fastadasp.models.compat import DynamicLayer, cache_of_output
from espnet_fastadasp.reduction.cache_layers import ReducedLayer
from espnet_fastadasp.reduction.masks import causal_key_mask

from .conftest import make_inputs

BATCH_SECONDS = [1.6, 0.8]  # left padding: the shorter row removes fewer tokens


@pytest.mark.parametrize("method", ["fastadasp", "fastv", "h2o"])
def test_shortened_layers_hold_their_validity(model, processor, method):
    inputs = make_inputs(processor, BATCH_SECONDS)
    with fa.apply(model, fa.ReductionConfig(method=method, ratio=0.3, start_layer=1)) as handle:
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
        rows = handle.stats.rows
    layers = cache_of_output(out).layers
    assert type(layers[0]) is DynamicLayer, "layer 0 caches the whole prompt"
    reduced = [i for i, layer in enumerate(layers) if isinstance(layer, ReducedLayer)]
    assert reduced, "some later layers hold a reduced cache"
    for i in reduced:
        layer = layers[i]
        assert layer.prompt_valid.shape == (len(BATCH_SECONDS), layer.keys.shape[-2] - layer.generated)
        assert layer.prompt_valid.sum(-1).tolist() == [r.kv_tokens[i] for r in rows]
        assert layer.generated == 2  # the last generated token is never fed back


def test_no_reduction_leaves_plain_layers(model, processor):
    inputs = make_inputs(processor, BATCH_SECONDS)
    with fa.apply(model, fa.ReductionConfig(method="none")):
        out = model.generate(**inputs, max_new_tokens=2, do_sample=False, return_dict_in_generate=True)
    assert all(type(layer) is DynamicLayer for layer in cache_of_output(out).layers)


def test_step_mask_reorder_and_crop():
    keys = torch.randn(2, 1, 5, 4)
    valid = torch.tensor([[False, True, True, True, True], [True, True, True, True, True]])
    layer = ReducedLayer(keys, keys.clone(), valid)
    assert layer.padded and layer.generated == 0
    mask = layer.step_mask(1, "sdpa", torch.float32)
    assert mask.shape == (2, 1, 1, 6) and not mask[0, 0, 0, 0] and mask[1].all()
    multi = layer.step_mask(2, "sdpa", torch.float32)
    assert torch.equal(multi, causal_key_mask(torch.cat([valid, torch.ones(2, 2, dtype=torch.bool)], 1), 2))
    additive = layer.step_mask(1, "eager", torch.float32)
    assert additive[0, 0, 0, 0] == torch.finfo(torch.float32).min and additive[0, 0, 0, 1] == 0
    layer.reorder_cache(torch.tensor([1, 0]))
    assert torch.equal(layer.prompt_valid, valid.flip(0)) and torch.equal(layer.keys[0], keys[1])
    layer.drop_newest(1)
    assert layer.prompt_valid.shape == (2, 4) and layer.keys.shape[-2] == 4
    unpadded = ReducedLayer(keys, keys.clone(), torch.ones(2, 5, dtype=torch.bool))
    assert unpadded.step_mask(1, "sdpa", torch.float32) is None  # nothing to mask in the hot loop
    with pytest.raises(ValueError, match="does not fit"):
        ReducedLayer(keys, keys, valid[:, :3])
