"""Only the last prompt position goes through the LM head during ``generate``'s prefill.

Why: ``generate`` reads the logits of the last position only, but models whose forward has no
``logits_to_keep`` (Qwen2-Audio's does not) project every prompt position through the LM head
first: at Qwen2-Audio-7B's shape and 240 s of audio that is 6,056 x 156,032 float32 logits
(3.8 GB) and 7.7 TFLOPs of matmul (6,056 x 4,096 x 156,032 x 2) thrown away. The LM head is
position-wise, so the last position's logits are the same whether or not the others are computed.

Switched on per call by the context manager (Speech2Text, the shared prompt and the benchmark
use it around ``generate``); outside it the model is untouched, so a user's own forward call
still gets every position's logits. Inside it, any forward over more than one position gets
logits for its last position only, shape (B, 1, V).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def prefill_last_logits(model: nn.Module) -> Iterator[None]:
    """Within the block, a multi-position forward of ``model`` computes only the last position's logits."""
    head = model.get_output_embeddings()
    if head is None:
        yield
        return

    def last_position(module: nn.Module, args: tuple) -> tuple | None:
        hidden = args[0]
        if hidden.dim() != 3 or hidden.shape[1] == 1:
            return None
        return (hidden[:, -1:], *args[1:])

    hook = head.register_forward_pre_hook(last_position)
    try:
        yield
    finally:
        hook.remove()
