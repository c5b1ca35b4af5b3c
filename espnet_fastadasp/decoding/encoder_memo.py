"""Reuse of the audio encoder's output across reduction settings of one batch."""

from __future__ import annotations

from typing import Any

import torch


class AudioEncoderMemo:
    """Reuse the audio encoder's last output when it is called again with equal inputs.

    Several reduction settings decode the same batch in turn, and no reduction touches the audio
    encoder, so its output is the same for all of them: on small models the encoder is a third
    of the decoding time. Inputs are compared by value (``torch.equal``), so a different batch, a
    beam-expanded one or changed features always run the encoder. Only the last call is kept.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.encoder = next((m.audio_tower for m in model.modules() if hasattr(m, "audio_tower")), None)
        self.hits = 0
        self._last: tuple[tuple, dict, Any] | None = None
        if self.encoder is None:
            return
        original = self.encoder.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            if self._last is not None and _same(self._last[0], args) and _same(self._last[1], kwargs):
                self.hits += 1
                return self._last[2]
            out = original(*args, **kwargs)
            self._last = (args, kwargs, out)
            return out

        self.encoder.forward = forward

    def remove(self) -> None:
        if self.encoder is not None:
            self.encoder.__dict__.pop("forward", None)
        self._last = None


def _same(a: Any, b: Any) -> bool:
    """Equal structure and values; tensors by dtype, shape and content."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return (
            torch.is_tensor(a)
            and torch.is_tensor(b)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.device == b.device
            and bool(torch.equal(a, b))
        )
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b
