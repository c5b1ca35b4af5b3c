"""KV sharing (Gemma 3n; Gemma 4 with num_kv_shared_layers > 0): later layers reuse earlier layers' keys.

The reduction stays exact by stopping before the first layer whose keys are reused, giving the
reusing layers their source's masks, and taking Gemma 4's last-token-only queries as they come.
The checks that matter: the plan stops where it must, a start layer past it is refused, and each
decoding step computes what a prefill of the same tokens computes (so the reusing layers' step
masks, built from their source's cache, are right), and an eviction leaves them to their source.
"""

from __future__ import annotations

import pytest
import torch

import espnet_fastadasp as fa
from espnet_fastadasp.core.config import ConfigError

from .speech_lms import build

#: the tiny KV-sharing models: S S S S F S (Gemma 3n: layer 5 reuses layer 3, layer 4 stores the full
#: keys) and S S S F S F (Gemma 4: layer 5 reuses layer 3, layer 4 stores the sliding keys)
SHARING = {"gemma3n": 3, "gemma4:kv_shared": 3}  # entry -> the first layer whose keys are reused
STEPS = 4


@pytest.fixture(scope="module", params=sorted(SHARING))
def shared(request):
    model, make_inputs = build(request.param)
    return request.param, model, make_inputs


def greedy(model, inputs, steps=STEPS):
    with torch.no_grad():
        out = model.generate(
            **inputs, max_new_tokens=steps, do_sample=False, output_logits=True, return_dict_in_generate=True
        )
    return out.sequences, torch.stack(out.logits, dim=1)  # (B, steps, V)


def prefill_of(model, inputs, sequences):
    """All logits of one prefill of the prompt and the tokens generated after it (but the last)."""
    n = sequences.shape[1] - inputs["input_ids"].shape[1]
    longer = dict(inputs, input_ids=sequences[:, :-1])
    longer["attention_mask"] = torch.cat(
        [inputs["attention_mask"], torch.ones(sequences.shape[0], n - 1, dtype=inputs["attention_mask"].dtype)], dim=1
    )
    with torch.no_grad():
        return model(**longer, use_cache=True).logits[:, -n:]


def test_reduction_stops_before_the_first_reused_layer(shared):
    name, model, make_inputs = shared
    stop = SHARING[name]
    assert fa.reducible_layers(model) == range(stop)
    with fa.apply(model, fa.ReductionConfig(method="fastadasp", schedule="constant", ratio=0.5, start_layer=0)) as h:
        assert h.reducing_layers == list(range(stop))
        greedy(model, make_inputs(0), steps=1)
        audio = h.stats.rows[0].audio_tokens
    assert audio[0] > audio[stop - 1] > audio[stop]  # reduced in every layer up to the stop
    assert len(set(audio[stop:])) == 1, audio  # and not after it


def test_a_start_layer_from_the_first_reused_layer_on_is_refused(shared):
    name, model, _ = shared
    with pytest.raises(ConfigError, match="KV sharing"):
        fa.apply(model, fa.ReductionConfig(method="fastadasp", schedule="once", ratio=0.5, start_layer=SHARING[name]))


def test_decoding_steps_equal_a_prefill_of_the_same_tokens(shared):
    """A-ToMe's merges of the prompt depend only on the prompt's own keys (causal), so a prefill
    of prompt + generated tokens reduces the prompt the same way; its logits at the generated
    positions are the decoding steps' when every layer, the reusing ones included, masks its
    cache as the prefill does (sliding windows by original positions too)."""
    name, model, make_inputs = shared
    inputs = make_inputs(0)
    config = fa.ReductionConfig(method="atome", schedule="constant", ratio=0.5, start_layer=0)
    with fa.apply(model, config) as handle:
        sequences, step_logits = greedy(model, inputs)
        assert handle.stats.rows[0].audio_tokens_out < handle.stats.rows[0].audio_tokens[0]
        again = prefill_of(model, inputs, sequences)
    torch.testing.assert_close(step_logits, again, rtol=1e-4, atol=1e-4)


def test_eviction_leaves_reusing_layers_to_their_source(shared):
    """H2O evicts from the storing layers (the reusing ones then read what they keep) and from no
    reusing layer (it holds no cache); a padded batch decodes each row as alone."""
    name, model, make_inputs = shared
    config = fa.ReductionConfig(method="h2o", schedule="constant", ratio=0.5, start_layer=0)
    batch = make_inputs(3, (1, 2))
    with fa.apply(model, config) as handle:
        reusing = [i for i, src in enumerate(handle.sharing.sources) if src != i]
        assert reusing and not set(reusing) & set(handle.reducing_layers)
        together, _ = greedy(model, batch)
        kv = handle.stats.rows[0].kv_tokens
        assert all(kv[i] == kv[handle.sharing.sources[i]] for i in reusing), kv
        for row, clips in enumerate((1, 2)):
            alone = make_inputs(3, (clips,), first_row=row)
            single, _ = greedy(model, alone)
            P, Q = batch["input_ids"].shape[1], alone["input_ids"].shape[1]
            assert torch.equal(single[0, Q:], together[row, P:]), (name, row)


def test_gemma4_reusing_layers_get_the_last_tokens_queries_only():
    """Gemma 4 keeps only the last token's queries from its first reusing layer on during
    ``generate``'s prefill; after a merge those are still the prompt's last token's."""
    model, make_inputs = build("gemma4:kv_shared")
    seen = []
    hook = model.model.language_model.layers[5].register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(args[0].shape[-2] if args else kwargs["hidden_states"].shape[-2]),
        with_kwargs=True,
    )
    try:
        with fa.apply(model, fa.ReductionConfig(method="fastadasp", schedule="constant", ratio=0.5, start_layer=0)):
            greedy(model, make_inputs(0), steps=2)
    finally:
        hook.remove()
    assert seen == [1, 1]  # the prefill's last token, then the step
