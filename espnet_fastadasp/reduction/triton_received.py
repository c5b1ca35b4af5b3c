"""The attention each key received, on CUDA, by two small Triton kernels that never hold the scores.

Why: on a GPU the model's attention runs in a fused kernel (flash / memory-efficient SDPA) that
never writes the softmax to memory; the blocked torch path of :mod:`.attention` writes and rereads
every block of float32 scores several times, which costs more than the attention itself at long
lengths. Here the model's own kernel computes the attention output, and two passes over tiles
(the scheme of ``flash-colreduce`` and of flash attention's backward) give the exact column sums
with O(length) extra memory:

1. per query row, the log-sum-exp of its allowed scores (an online max / sum over key tiles);
2. per key tile, the sum over heads and valid query rows of ``exp(score - lse)``: the softmax
   probabilities, rebuilt tile by tile in registers and reduced at once.

Each pass is one ``Q K^T`` over the causal half of the tiles, so the sums cost about one
attention pass. The mask is :func:`~espnet_fastadasp.reduction.masks.allowed_keys`' rule (causal in
index order, valid keys, a query always sees itself); GQA heads read their shared key head.
Triton is imported on first use: CPU-only installs never need it. Under Triton's interpreter
(``TRITON_INTERPRET=1`` set before Triton is imported) the same kernels run on CPU tensors: that
is how the tests check them against the float64 softmax.
"""

from __future__ import annotations

import functools
import os

import torch

MIN_HEAD_DIM = 16  # tl.dot needs tiles of at least 16


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except Exception:  # an install without Triton (any import failure) uses the torch path
        return False
    return True


#: the tests set this (with TRITON_INTERPRET=1 from the start of the process: Triton decorates its
#: own library functions when imported) to run the kernels on CPU tensors
INTERPRET_ON_CPU = False


def usable(query: torch.Tensor) -> bool:
    """Whether the kernels can run on ``query``'s device and shape."""
    if query.shape[-1] < MIN_HEAD_DIM or not _triton_importable():
        return False
    if query.is_cuda:
        return True
    return INTERPRET_ON_CPU and interpreting() and query.device.type == "cpu"


def attention_received(
    query: torch.Tensor,
    key: torch.Tensor,
    key_valid: torch.Tensor,
    query_valid: torch.Tensor | None,
    scaling: float,
    block_m: int = 64,
    block_n: int = 64,
    lse: torch.Tensor | None = None,
) -> torch.Tensor:
    """As :func:`espnet_fastadasp.reduction.attention.attention_received`: (B, K) float32 sums, by the kernels.

    ``lse``: each query row's log-sum-exp of its scaled scores (B, Hq, Q) float32, where a fused
    attention kernel already returned it (:func:`flash_attention_with_lse`); then only the column
    pass runs, one ``Q K^T`` instead of two."""
    import triton

    from espnet_fastadasp.reduction.triton_kernels import column_sums, row_lse

    B, Hq, Q, D = query.shape
    Hkv, K = key.shape[1], key.shape[2]
    groups = Hq // Hkv
    kv = key_valid.to(torch.int8).contiguous()
    qv = (
        (query_valid if query_valid is not None else torch.ones(B, Q, dtype=torch.bool, device=query.device))
        .to(torch.int8)
        .contiguous()
    )
    per_head = torch.empty(B, Hkv, K, dtype=torch.float32, device=query.device)
    block_d = max(16, triton.next_power_of_2(D))
    sq, sk = query.stride(), key.stride()
    if lse is None:
        lse = torch.empty(B, Hq, Q, dtype=torch.float32, device=query.device)
        row_lse[(triton.cdiv(Q, block_m), B * Hq)](
            query, key, kv, lse, *sq, *sk, kv.stride(0), lse.stride(0), lse.stride(1),
            Q, K, K - Q, float(scaling), Hq, groups, D,
            BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
        )  # fmt: skip
    else:
        lse = lse.float().contiguous()  # the kernel steps rows with stride 1
    column_sums[(triton.cdiv(K, block_n), B * Hkv)](
        query, key, kv, qv, lse, per_head, *sq, *sk, kv.stride(0), qv.stride(0), lse.stride(0), lse.stride(1),
        per_head.stride(0), per_head.stride(1), Q, K, K - Q, float(scaling), Hkv, groups, D,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
    )  # fmt: skip
    return per_head.sum(1)


def _flash_op():
    """PyTorch's CUDA flash attention op, which returns each row's log-sum-exp (None if absent)."""
    return getattr(torch.ops.aten, "_scaled_dot_product_flash_attention", None)


def flash_lse_usable(query: torch.Tensor, key: torch.Tensor) -> bool:
    """Whether :func:`flash_attention_with_lse` can run: a CUDA prefill (as many queries as keys) in
    float16 / bfloat16 with a head size flash attention takes (a multiple of 8, at most 256)."""
    D = query.shape[-1]
    return (
        query.is_cuda
        and query.dtype in (torch.float16, torch.bfloat16)
        and query.shape[2] == key.shape[2]
        and D % 8 == 0
        and D <= 256
        and _flash_op() is not None
    )


def flash_attention_with_lse(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention (B, Hq, T, D) and each row's log-sum-exp (B, Hq, T) float32, from PyTorch's
    flash kernel: the layer's own attention, whose log-sum-exp makes the column pass the only extra
    one. GQA keys are expanded for the kernel."""
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    out, lse = _flash_op()(query, key, value, 0.0, True, False, scale=scaling)[:2]
    return out, lse
