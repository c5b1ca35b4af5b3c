"""A reduction inside ESPnet's own Qwen2-Audio decoding (``espnet2/ps2st``), on transformers 5.

ESPnet decodes Qwen2-Audio with its own ``BeamSearch`` over ``Qwen2HFScorer``, a scorer that
prefills the prompt once and then feeds one token per hypothesis and step with the KV cache of
the hypothesis' state. A reduction applied to the HF model inside ESPnet's model
(:func:`apply_reduction`) shortens the later layers' caches during that prefill; the scorer
never looks inside the cache except for layer 0's length, from which it takes the decoding
positions, and layer 0 always keeps every prompt entry (a layer reduces what *leaves* it). So
ESPnet's scorer runs as it is.

ESPnet 202511 was written against transformers 4 and this package needs transformers >= 5.17,
where three things ESPnet reads moved. This module bridges them, without changing ESPnet's code:

* ``espnet2/ps2st/espnet_model.py`` imports ``no_init_weights`` from ``transformers.modeling_utils``
  (transformers 5 has it in ``transformers.initialization``); the failed import makes ESPnet say
  transformers is missing. :func:`import_espnet_model` provides the old name before ESPnet imports it.
* ``ESPnetQwen2AudioModel.inference`` takes sos/eos from ``model.language_model.config``; the
  top model of the releases this package supports has no ``language_model`` attribute (the
  language model moved into ``model.model``; its config is ``config.text_config``).
  :class:`FastAdaSPQwen2AudioModel` is ESPnet's model with that one line of its decoding changed.
* the scorer reads the prompt length as ``past_kv[0][0].size(-2)``, the legacy indexing that
  ``DynamicCache`` no longer has: :class:`ScorerCache` adds it back.

And one thing that is ESPnet's own (with transformers 4.57 as well): every hypothesis
``BeamSearch`` branches from a state shares that state's cache object, and a transformers cache
grows in place, so with ``beam_size > 1`` each hypothesis' step appends to the cache the other
hypotheses read (they attend to each other's tokens). :func:`per_hypothesis_caches` hands each
scorer call its own cache object over the same tensors (a cache append concatenates into new
tensors, so nothing is copied).

Importing this module imports ESPnet (``pip install espnet``; ``tools/setup.sh --espnet``).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from espnet_fastadasp.core.config import ReductionConfig
from espnet_fastadasp.models.compat import CACHE_KWARG, DynamicCache, cache_from_kwargs, without_cache_kwargs
from espnet_fastadasp.reduction.patch import ReductionHandle
from espnet_fastadasp.reduction.patch import apply as apply_to_hf_model

logger = logging.getLogger(__name__)

#: the module whose import needs :func:`_provide_moved_transformers_names` first
ESPNET_MODEL_MODULE = "espnet2.ps2st.espnet_model"


def _provide_moved_transformers_names() -> None:
    """Make ``from transformers.modeling_utils import no_init_weights`` work on transformers 5.

    Only adds the name where it is missing, pointing at the function transformers moved it to;
    ESPnet uses it only to build an untrained model in its own unit tests.
    """
    import transformers.modeling_utils as modeling_utils

    if not hasattr(modeling_utils, "no_init_weights"):
        from transformers.initialization import no_init_weights

        modeling_utils.no_init_weights = no_init_weights


def import_espnet_model() -> Any:
    """``espnet2.ps2st.espnet_model``, imported so that it sees the installed transformers."""
    already = ESPNET_MODEL_MODULE in sys.modules
    _provide_moved_transformers_names()
    module = importlib.import_module(ESPNET_MODEL_MODULE)
    if not module.is_transformers_available:
        raise ImportError(
            f"{ESPNET_MODEL_MODULE} could not import its transformers names"
            + (
                " because it was imported before espnet_fastadasp.integrations.espnet_ps2st: import this module first"
                if already
                else " (is transformers installed?)"
            )
        )
    return module


_espnet_model = import_espnet_model()
ESPnetQwen2AudioModel = _espnet_model.ESPnetQwen2AudioModel

from espnet.nets.beam_search import BeamSearch, Hypothesis  # noqa: E402
from espnet2.ps2st.qwen2_scorer import Qwen2HFScorer  # noqa: E402


class ScorerCache(DynamicCache):
    """A ``DynamicCache`` that ``Qwen2HFScorer`` can read: ``cache[i]`` is layer ``i``'s ``(keys, values)``.

    The scorer takes the decoding positions from ``cache[0][0].size(-2)``: layer 0's cache
    length, the whole prompt also when later layers hold fewer entries.
    """

    def __getitem__(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        layer = self.layers[layer_idx]
        return layer.keys, layer.values

    def branch(self) -> ScorerCache:
        """A new cache object whose layers start from this one's tensors (shared, not copied).

        Appending concatenates into new tensors and rebinds them on the layer object, so a
        step on the branch leaves this cache (another hypothesis' state) as it was. Layer
        subclasses keep their own fields (a reduced layer's valid prompt entries) on the copy.
        """
        clone = copy.copy(self)
        clone.layers = [copy.copy(layer) for layer in self.layers]
        return clone


@contextlib.contextmanager
def per_hypothesis_caches(model: nn.Module) -> Iterator[None]:
    """While the block runs, each call of ``model`` works on a cache object of its own.

    A call without a cache (the scorer's prefill) gets a fresh :class:`ScorerCache`; a call with
    one (a hypothesis' step) gets :meth:`ScorerCache.branch` of it, so the hypotheses a state
    was shared by never see each other's tokens. A forward pre-hook on the HF model, removed
    at the end of the block.
    """

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        cache = cache_from_kwargs(kwargs)
        kwargs = without_cache_kwargs(kwargs)
        if cache is None:
            if kwargs.get("use_cache"):
                kwargs[CACHE_KWARG] = ScorerCache(config=model.config.text_config)
        elif isinstance(cache, ScorerCache):
            kwargs[CACHE_KWARG] = cache.branch()
        else:
            raise TypeError(f"expected the scorer's own ScorerCache, got {type(cache).__name__}")
        return args, kwargs

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


class FastAdaSPQwen2AudioModel(ESPnetQwen2AudioModel):
    """ESPnet's ``ESPnetQwen2AudioModel`` (same loading, processor and decode config) whose
    decoding runs on transformers 5: ESPnet's ``BeamSearch`` over ESPnet's ``Qwen2HFScorer``,
    as ``ESPnetQwen2AudioModel.inference`` builds them, with sos/eos from the text config and
    each hypothesis on its own cache (:func:`per_hypothesis_caches`).
    """

    @torch.no_grad()
    def nbest(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        input_features: torch.Tensor,
        feature_attention_mask: torch.Tensor,
    ) -> list[Hypothesis]:
        """ESPnet's n-best list for one utterance (``yseq`` starts with sos, ends with eos)."""
        text_config = self.qwen2audio_model.config.text_config
        if text_config.bos_token_id is None or text_config.eos_token_id is None:
            raise ValueError(
                "the checkpoint's text_config needs bos_token_id and eos_token_id: ESPnet's BeamSearch starts "
                f"every hypothesis with sos and ends it with eos (got {text_config.bos_token_id}, "
                f"{text_config.eos_token_id})"
            )
        scorer = Qwen2HFScorer(self.qwen2audio_model, input_ids, attention_mask, input_features, feature_attention_mask)
        beam_search = BeamSearch(
            beam_size=self.decode_config["beam_size"],
            vocab_size=self.vocab_size,
            sos=text_config.bos_token_id,
            eos=text_config.eos_token_id,
            scorers={"decoder": scorer},
            weights={"decoder": 1.0},
            normalize_length=False,
        )
        # BeamSearch takes its maximum length from this input's length (maxlenratio), as ESPnet's
        dummy_input = torch.zeros(input_ids.shape[1], dtype=torch.float, device=input_ids.device)
        with per_hypothesis_caches(self.qwen2audio_model):
            return beam_search(
                dummy_input,
                maxlenratio=self.decode_config["maxlenratio"],
                minlenratio=self.decode_config["minlenratio"],
            )

    def inference(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        input_features: torch.Tensor,
        feature_attention_mask: torch.Tensor,
        **kwargs: Any,
    ) -> str:
        """The best hypothesis' text, decoded as ESPnet's ``inference`` does."""
        nbest = self.nbest(input_ids, attention_mask, input_features, feature_attention_mask)
        if not nbest:
            raise RuntimeError("ESPnet's beam search ended no hypothesis (see its log; try a larger maxlenratio)")
        return self.processor.decode(nbest[0].yseq, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def apply_reduction(
    espnet_model: nn.Module, config: ReductionConfig | None = None, **overrides: Any
) -> ReductionHandle:
    """Apply a reduction to the Qwen2-Audio inside an ESPnet ps2st model (``apply`` on its HF model).

    Returns the handle (``handle.stats`` after each utterance's prefill, ``handle.remove()``).
    """
    if not isinstance(espnet_model, ESPnetQwen2AudioModel):
        raise TypeError(
            f"expected ESPnet's ESPnetQwen2AudioModel (espnet2/ps2st), got {type(espnet_model).__name__}; "
            "for a transformers model use espnet_fastadasp.apply"
        )
    if type(espnet_model) is ESPnetQwen2AudioModel:
        logger.warning(
            "ESPnetQwen2AudioModel's own inference does not run on transformers 5; decode with "
            "FastAdaSPQwen2AudioModel (espnet_fastadasp.integrations.espnet_ps2st)"
        )
    return apply_to_hf_model(espnet_model.qwen2audio_model, config, **overrides)
