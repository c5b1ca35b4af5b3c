"""espnet_fastadasp: FastAdaSP token reduction for Speech LMs, with ESPnet-style recipes.

import espnet_fastadasp as fa
handle = fa.apply(model, fa.ReductionConfig(method="fastadasp", schedule="constant", flops_reduction=0.3))
model.generate(**inputs)
handle.stats      # what the last prefill did
handle.remove()   # the model is the original again
"""

from .config import METHODS, SCHEDULES, ConfigError, ReductionConfig
from .models import UnsupportedModelError
from .patcher import ReductionHandle, apply
from .stats import PrefillStats, RowStats

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
]
