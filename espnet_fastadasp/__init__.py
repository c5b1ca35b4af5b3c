"""espnet_fastadasp: FastAdaSP token reduction for Speech LMs, with ESPnet-style recipes.

import espnet_fastadasp as fa
handle = fa.apply(model, fa.ReductionConfig(method="fastadasp", schedule="constant", flops_reduction=0.3))
with fa.prefill_last_logits(model):  # optional: the prefill computes the last position's logits only
    model.generate(**inputs)
handle.stats      # what the last prefill did
handle.remove()   # the model is the original again
"""

from typing import Any

from espnet_fastadasp.core.config import METHODS, SCHEDULES, ConfigError, ReductionConfig

# torch/transformers load only when the model side is used, so data tools start fast
_LAZY = {
    "apply": "reduction.patch",
    "ReductionHandle": "reduction.patch",
    "reducible_layers": "reduction.kv_sharing",
    "UnsupportedModelError": "models.parts",
    "generate_with_shared_prompt": "generation.shared_prompt",
    "generate_static": "generation.static_decoding",
    "prefill_last_logits": "generation.logits",
    "PrefillStats": "core.stats",
    "RowStats": "core.stats",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "SCHEDULES",
    "ConfigError",
    "PrefillStats",
    "ReductionConfig",
    "ReductionHandle",
    "RowStats",
    "UnsupportedModelError",
    "apply",
    "generate_static",
    "generate_with_shared_prompt",
    "prefill_last_logits",
    "reducible_layers",
]
