"""Timing a ``generate`` call: its prefill and its decoding steps, from forward hooks."""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn


def synchronize(device: torch.device | str | None = None) -> None:
    """Wait for the device (CUDA) to finish its queued work; nothing on the CPU."""
    device = torch.device(device) if device is not None else None
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device is None and torch.cuda.is_available():
        torch.cuda.synchronize()


class GenerationTimer:
    """Prefill and decoding times of ``generate`` from hooks on the top-level model.

    ``generate`` runs the prefill as its first forward call and one call per later token, so the
    first call's pre/post hooks bound the prefill and each post hook ends a decoding step. With
    ``per_step`` every step's end synchronises the device (per-step times; ``generate`` syncs each
    step anyway for its stopping criteria); without it only the prefill's two ends do, and
    :meth:`finish` after ``generate`` closes the decoding interval with one sync.
    """

    def __init__(self, model: nn.Module, device: torch.device | str | None = None, per_step: bool = False) -> None:
        self.device = device
        self.per_step = per_step
        self.start: float | None = None
        self.ends: list[float] = []
        self.end: float | None = None
        self._hooks = [
            model.register_forward_pre_hook(self._pre, prepend=True),
            model.register_forward_hook(self._post),
        ]

    def _now(self) -> float:
        synchronize(self.device)
        return time.perf_counter()

    def _pre(self, module: nn.Module, args: Any) -> None:
        if self.start is None:
            self.start = self._now()

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.per_step or not self.ends:
            self.ends.append(self._now())

    def reset(self) -> None:
        self.start, self.ends, self.end = None, [], None

    def finish(self) -> None:
        self.end = self._now()

    @property
    def prefill_seconds(self) -> float:
        return self.ends[0] - self.start if self.ends and self.start is not None else 0.0

    @property
    def decode_seconds(self) -> float:
        last = self.end if self.end is not None else (self.ends[-1] if self.ends else None)
        return last - self.ends[0] if self.ends and last is not None else 0.0

    @property
    def step_seconds(self) -> list[float]:
        """Each decoding step's duration (with ``per_step``)."""
        return [b - a for a, b in zip(self.ends, self.ends[1:])]

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
