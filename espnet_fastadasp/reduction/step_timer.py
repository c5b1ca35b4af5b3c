"""Time spent in the reduction's own steps during a prefill, measured without stalling it.

The benchmark reports, next to each prefill time, how long the reduction steps themselves took
(choosing and merging tokens, and the attention of the reducing layers that also sums what each
token received). Timing them with host clocks would need a device synchronisation around every
step, which is exactly the stall the prefill must not have; so on CUDA each step is bracketed by
CUDA events and the times are read once, after the prefill. Each step is also a
``torch.profiler.record_function`` range (``fastadasp::<step>``), visible in profiler traces.
Disabled (the default), a step costs one branch.
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch


class StepTimer:
    """Accumulates the time of named steps; ``enable(device)`` to start, :meth:`seconds` to read."""

    def __init__(self) -> None:
        self.device: torch.device | None = None
        self._marks: dict[str, list[tuple[Any, Any]]] = defaultdict(list)

    @property
    def enabled(self) -> bool:
        return self.device is not None

    def enable(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.reset()

    def disable(self) -> None:
        self.device = None
        self.reset()

    def reset(self) -> None:
        self._marks = defaultdict(list)

    def _mark(self) -> Any:
        if self.device is not None and self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time the block as step ``name`` (nested steps are each timed in full)."""
        if self.device is None:
            yield
            return
        with torch.profiler.record_function(f"fastadasp::{name}"):
            start = self._mark()
            try:
                yield
            finally:
                self._marks[name].append((start, self._mark()))

    def seconds(self) -> dict[str, float]:
        """Total seconds per step since the last reset (waits for the device once)."""
        out = {}
        for name, marks in self._marks.items():
            if marks and isinstance(marks[0][0], float):
                out[name] = sum(end - start for start, end in marks)
            else:
                if marks:
                    marks[-1][1].synchronize()
                out[name] = sum(start.elapsed_time(end) for start, end in marks) / 1000.0
        return out
