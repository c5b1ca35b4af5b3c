"""What a prefill did: token counts per layer and the FLOPs they imply, per batch row."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from statistics import mean
from typing import Any


@dataclass(frozen=True)
class RowStats:
    """One batch row (beam copies count as rows). Lists have one entry per decoder layer."""

    audio_tokens: list[int]  # audio tokens entering each layer
    total_tokens: list[int]  # non-padding tokens entering each layer
    kv_tokens: list[int]  # prompt entries each layer's KV cache holds after the prefill
    audio_tokens_out: int  # audio tokens leaving the last layer
    ratio: float  # the per-layer ratio used (solved from the target, or given)
    flops_full: int  # analytic prefill FLOPs of the decoder without reduction
    flops_reduced: int  # the same, counted from the real per-layer token counts
    decode_step_flops_full: int  # one decoding step right after the prompt, without reduction
    decode_step_flops_reduced: int

    @property
    def flops_reduction(self) -> float:
        return 1.0 - self.flops_reduced / self.flops_full if self.flops_full else 0.0

    @property
    def kv_reduction(self) -> float:
        full = self.total_tokens[0] * len(self.kv_tokens)
        return 1.0 - sum(self.kv_tokens) / full if full else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["flops_reduction"] = self.flops_reduction
        out["kv_reduction"] = self.kv_reduction
        return out


@dataclass(frozen=True)
class PrefillStats:
    method: str
    schedule: str
    target: float | None
    rows: list[RowStats]

    @property
    def flops_reduction(self) -> float:
        """Mean achieved prefill FLOPs reduction over rows."""
        return mean(r.flops_reduction for r in self.rows) if self.rows else 0.0

    @property
    def kv_reduction(self) -> float:
        return mean(r.kv_reduction for r in self.rows) if self.rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "schedule": self.schedule,
            "target": self.target,
            "flops_reduction": self.flops_reduction,
            "kv_reduction": self.kv_reduction,
            "rows": [r.to_dict() for r in self.rows],
        }
