"""Every transformers name that differs between the releases we support, in one place.

transformers renames things between minor releases: 5.24 renamed the cache keyword of every
decoder, decoder layer and attention forward from ``past_key_values`` to ``cache`` (and the
field of the model outputs with it), keeping the old keyword as a deprecated alias until 5.40.
A hook that reads the old keyword silently sees no cache. So the rest of the package never
spells such a name itself: it asks this module, and a rename is a change here only.

What lives here: the cache keyword and output field, the attention-implementation field of a
config, where the attention functions are registered, the rotary ``cache_position`` keyword,
the cache classes we build on, the generate output classes, a mask decoders take as prepared,
and the range of releases the test suite passed with (``apply``
warns outside it).
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch
import transformers
from packaging.version import Version
from transformers import AttentionInterface, DynamicCache
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicLayer
from transformers.generation import GenerateBeamDecoderOnlyOutput, GenerateDecoderOnlyOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

logger = logging.getLogger(__name__)

__all__ = [
    "ALL_ATTENTION_FUNCTIONS",
    "AttentionInterface",
    "CACHE_KWARG",
    "Cache",
    "CacheLayerMixin",
    "DynamicCache",
    "DynamicLayer",
    "GenerateBeamDecoderOnlyOutput",
    "GenerateDecoderOnlyOutput",
    "REPETITION_PENALTY_SKIPS_LEFT_PADDING",
    "TESTED_RANGE",
    "attn_implementation",
    "cache_from_kwargs",
    "cache_of_output",
    "check_version",
    "eager_attention_function",
    "prepared_mask",
    "registered_attention_function",
    "with_attn_implementation",
    "without_cache_kwargs",
]

#: The oldest release and the newest *minor* release the whole suite passed with (any patch
#: release of that minor counts as tested). Keep in step with setup.py and tools/constraints.txt;
#: ``tools/test_versions.sh`` is how it is checked.
TESTED_RANGE = ("5.17.0", "5.25")

#: The release that renamed the cache keyword ``past_key_values`` -> ``cache``.
CACHE_RENAMED_IN = Version("5.24.0.dev0")
VERSION = Version(transformers.__version__)

#: The keyword under which decoders, decoder layers, attention modules, ``generate`` and model
#: calls take the KV cache in the installed release, and the other spelling.
CACHE_KWARG = "cache" if VERSION >= CACHE_RENAMED_IN else "past_key_values"
_OTHER_CACHE_KWARG = "past_key_values" if CACHE_KWARG == "cache" else "cache"

#: From 5.23 ``generate``'s repetition penalty skips each row's left padding (the prompt positions
#: before its attention mask's first 1); before, the pad tokens counted as seen.
REPETITION_PENALTY_SKIPS_LEFT_PADDING = VERSION >= Version("5.23.0.dev0")

#: The keyword of the absolute cache positions some decoders still pass their layers.
CACHE_POSITION_KWARG = "cache_position"

#: The config attribute that names the attention implementation (``sdpa``, ``eager``, ...).
_ATTN_IMPLEMENTATION_FIELD = "_attn_implementation"


def cache_from_kwargs(kwargs: Mapping[str, Any]) -> Any | None:
    """The KV cache a forward was called with (the current keyword, else the deprecated one)."""
    cache = kwargs.get(CACHE_KWARG)
    if cache is None and CACHE_KWARG == "cache":
        cache = kwargs.get(_OTHER_CACHE_KWARG)
    return cache


def without_cache_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` without any cache keyword (the current one and the deprecated one)."""
    return {k: v for k, v in kwargs.items() if k not in (CACHE_KWARG, _OTHER_CACHE_KWARG)}


def cache_kwargs(cache: Any) -> dict[str, Any]:
    """``{keyword: cache}`` for a model or ``generate`` call in the installed release."""
    return {CACHE_KWARG: cache}


def caller_passed_cache(kwargs: Mapping[str, Any]) -> bool:
    """Whether ``kwargs`` (of a ``generate`` call) already carry a cache under either spelling."""
    return kwargs.get("past_key_values") is not None or kwargs.get("cache") is not None


def cache_of_output(output: Any) -> Any | None:
    """The cache a model output or a ``generate`` output carries (``.cache`` or ``.past_key_values``)."""
    for name in (CACHE_KWARG, _OTHER_CACHE_KWARG):
        value = getattr(output, name, None)
        if value is not None:
            return value
    return None


def prepared_mask(device: torch.device) -> torch.Tensor:
    """An ``attention_mask`` a decoder takes as already prepared: transformers' mask builders
    (``create_causal_mask`` and its kin) return a 4-D mask as it is, so a forward given this one
    builds none. For attention functions that hold their own masks (the mask's values are unused)."""
    return torch.ones(1, 1, 1, 1, dtype=torch.bool, device=device)


def attn_implementation(config: Any) -> str:
    """The attention implementation a (text) config selects; transformers' default is eager."""
    return getattr(config, _ATTN_IMPLEMENTATION_FIELD, None) or "eager"


def with_attn_implementation(config: Any, name: str) -> Any:
    """A shallow copy of ``config`` that selects the registered attention function ``name``.

    Attention modules look their function up from their config at every call, so pointing one
    module's ``config`` at this copy swaps its kernel without touching the model's other layers.
    """
    patched = copy.copy(config)
    if getattr(patched, "sub_configs", None):
        # the field's setter also sets every sub-config, which the shallow copy shares with the
        # model (Phi-4-multimodal's text config holds its audio encoder's): a dict names this level only
        setattr(patched, _ATTN_IMPLEMENTATION_FIELD, {"": name})
    else:
        setattr(patched, _ATTN_IMPLEMENTATION_FIELD, name)
    return patched


def registered_attention_function(name: str) -> Callable[..., Any]:
    """The attention function registered under ``name`` (``sdpa``, ``flash_attention_2``, ours)."""
    return ALL_ATTENTION_FUNCTIONS[name]


def eager_attention_function(attn_module: Any) -> Callable[..., Any] | None:
    """The module's own eager attention (each modeling file defines ``eager_attention_forward``)."""
    return getattr(sys.modules[type(attn_module).__module__], "eager_attention_forward", None)


def is_tested_version(version: str | Version | None = None) -> bool:
    """Whether ``version`` (default: the installed one) lies in :data:`TESTED_RANGE` (any patch of
    the newest tested minor counts)."""
    v = Version(str(VERSION if version is None else version))
    low, high = Version(TESTED_RANGE[0]), Version(TESTED_RANGE[1])
    return low <= Version(v.base_version) and (v.major, v.minor) <= (high.major, high.minor)


def check_version(version: str | Version | None = None) -> str | None:
    """A warning text when ``version`` (default: the installed one) is outside the tested range."""
    version = VERSION if version is None else version
    if is_tested_version(version):
        return None
    return (
        f"transformers {version} is outside the range espnet_fastadasp was tested with "
        f"({TESTED_RANGE[0]} to {TESTED_RANGE[1]}.x); token reduction hooks into names transformers renames "
        f"between releases, so check the results, or install the pinned set: pip install -c tools/constraints.txt"
    )


def warn_if_untested() -> None:
    message = check_version()
    if message:
        logger.warning(message)
