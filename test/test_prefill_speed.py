"""What makes a reduced prefill fast, checked as behaviour: no host synchronisation inside its
layer loop, and only the last prompt position through the LM head during generate."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import espnet_fastadasp as fa
from espnet_fastadasp.core.methods import REGISTRY

from .conftest import GEN, load, make_inputs, new_tokens

#: operators that make the host wait for the device: reading a value (item, bool, int, float go
#: through _local_scalar_dense) or producing a data-dependent shape
SYNCING_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "unique_consecutive")


class SyncCounter(TorchDispatchMode):
    """Counts syncing operators (and ``Tensor.tolist``) while ``inside`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.inside and func.__name__.split(".")[0] in SYNCING_OPS:
            self.calls.append(func.__name__)
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def counting_syncs_in_layer_loop(model):
    """Count syncs from the first decoder layer's start to the last one's end."""
    layers = model.model.language_model.layers
    counter = SyncCounter()
    original_tolist = torch.Tensor.tolist

    def tolist(self):
        if counter.inside:
            counter.calls.append("tolist")
        return original_tolist(self)

    def enter(*_args, **_kwargs):
        counter.inside = True

    def leave(*_args, **_kwargs):
        counter.inside = False

    hooks = [layers[0].register_forward_pre_hook(enter), layers[-1].register_forward_hook(leave)]
    torch.Tensor.tolist = tolist
    try:
        with counter:
            yield counter
    finally:
        torch.Tensor.tolist = original_tolist
        for h in hooks:
            h.remove()


def test_the_counter_sees_a_sync():
    counter = SyncCounter()
    counter.inside = True
    with counter:
        t = torch.ones(3)
        bool(t.any())
        t.nonzero()
    assert counter.calls == ["_local_scalar_dense.default", "nonzero.default"]


@pytest.mark.parametrize("name", [n for n, cls in REGISTRY.items() if cls.exact_counts])
def test_reduced_prefill_never_syncs_inside_the_layer_loop(checkpoint, processor, name):
    """Every length is planned before layer 0: no layer waits for the device (padded batch,
    several reducing layers)."""
    model = load(checkpoint)
    inputs = make_inputs(processor, [1.5, 0.8])
    with fa.apply(model, method=name, schedule="constant", ratio=0.3) as handle, torch.no_grad():
        with counting_syncs_in_layer_loop(model) as counter:
            model(**inputs, use_cache=True)
        assert handle.stats.rows[0].kv_tokens[-1] < handle.stats.rows[0].total_tokens[0]  # it did reduce
    assert counter.calls == []


def test_atome_is_the_documented_exception(checkpoint, processor):
    """A-ToMe's matching may find fewer pairs than planned, so its lengths come from the data."""
    assert not REGISTRY["atome"].exact_counts
    model = load(checkpoint)
    with fa.apply(model, method="atome", ratio=0.3), torch.no_grad():
        with counting_syncs_in_layer_loop(model) as counter:
            model(**make_inputs(processor, [1.5]), use_cache=True)
    assert counter.calls, "if A-ToMe no longer syncs, make it exact_counts"


@pytest.mark.parametrize(
    "setting", [dict(method="none"), dict(method="fastadasp", ratio=0.3)], ids=["none", "fastadasp"]
)
@pytest.mark.parametrize("beams", [1, 3])
def test_last_position_logits_give_the_same_tokens_and_scores(checkpoint, processor, setting, beams):
    model = load(checkpoint)
    inputs = make_inputs(processor, [1.2, 0.6])
    gen = dict(GEN, num_beams=beams, return_dict_in_generate=True, output_scores=True)
    seen = []
    hook = model.lm_head.register_forward_hook(lambda m, args, out: seen.append(out.shape[1]))
    with torch.no_grad(), fa.apply(model, **setting):
        full = model.generate(**inputs, **gen)
        prompt_positions, seen[:] = seen[0], []
        with fa.prefill_last_logits(model):
            last = model.generate(**inputs, **gen)
    hook.remove()
    assert prompt_positions > 1  # without the block, every (remaining) prompt position
    assert seen[0] == 1, "the prefill sent more than the last position to the LM head"
    assert torch.equal(new_tokens(full, inputs), new_tokens(last, inputs))
    for a, b in zip(full.scores, last.scores):
        assert torch.allclose(a, b, atol=1e-5)
    # outside the block the model is untouched: a forward returns every position's logits
    with torch.no_grad():
        assert model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]
