"""The Triton kernels of :mod:`.triton_received` (imported only where Triton is; see there).

Kept apart because Triton decides when a kernel is decorated whether it is interpreted
(``TRITON_INTERPRET=1``), so this module is imported on first use, never at package import.
"""

# ruff: noqa: N803 (Triton's convention: pointer arguments in capitals)
import triton
import triton.language as tl


@triton.jit
def allowed_tile(offs_m, offs_n, n_q, n_k, offset, kv_ok):
    pos = offs_m[:, None] + offset
    keys = offs_n[None, :]
    ok = ((keys <= pos) & kv_ok[None, :]) | (keys == pos)
    return ok & (offs_m[:, None] < n_q) & (keys < n_k)


@triton.jit
def row_lse(
    Q, K, KV_VALID, LSE,
    sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, slb, slh,
    n_q, n_k, offset, scale, heads, groups, head_dim,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // heads
    h = bh % heads
    hk = h // groups
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    q = tl.load(
        Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
        mask=(offs_m[:, None] < n_q) & (offs_d[None, :] < head_dim),
        other=0.0,
    )
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    hi = tl.minimum(n_k, (pid_m + 1) * BLOCK_M + offset)  # keys after the tile's last row are masked
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        k = tl.load(
            K + b * skb + hk * skh + offs_n[None, :] * skn + offs_d[:, None] * skd,
            mask=(offs_n[None, :] < n_k) & (offs_d[:, None] < head_dim),
            other=0.0,
        )
        kv_ok = tl.load(KV_VALID + b * svb + offs_n, mask=offs_n < n_k, other=0) != 0
        s = tl.dot(q, k, input_precision="ieee") * scale
        s = tl.where(allowed_tile(offs_m, offs_n, n_q, n_k, offset, kv_ok), s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        l_i = l_i * tl.exp(m_i - m_safe) + tl.sum(tl.exp(s - m_safe[:, None]), 1)
        m_i = m_new
    tl.store(LSE + b * slb + h * slh + offs_m, m_i + tl.log(tl.where(l_i > 0, l_i, 1.0)), mask=offs_m < n_q)


@triton.jit
def column_sums(
    Q, K, KV_VALID, Q_VALID, LSE, OUT,
    sqb, sqh, sqm, sqd, skb, skh, skn, skd, svb, sub, slb, slh, sob, soh,
    n_q, n_k, offset, scale, kv_heads, groups, head_dim,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // kv_heads
    hk = bh % kv_heads
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    k = tl.load(
        K + b * skb + hk * skh + offs_n[None, :] * skn + offs_d[:, None] * skd,
        mask=(offs_n[None, :] < n_k) & (offs_d[:, None] < head_dim),
        other=0.0,
    )
    kv_ok = tl.load(KV_VALID + b * svb + offs_n, mask=offs_n < n_k, other=0) != 0
    acc = tl.zeros([BLOCK_N], tl.float32)
    # query i (at key position i + offset) sees key j <= i + offset: rows before lo see none of the tile
    lo = tl.maximum(pid_n * BLOCK_N - offset, 0) // BLOCK_M * BLOCK_M
    for g in range(groups):
        h = hk * groups + g
        for start_m in range(lo, n_q, BLOCK_M):
            offs_m = start_m + tl.arange(0, BLOCK_M)
            q = tl.load(
                Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
                mask=(offs_m[:, None] < n_q) & (offs_d[None, :] < head_dim),
                other=0.0,
            )
            lse = tl.load(LSE + b * slb + h * slh + offs_m, mask=offs_m < n_q, other=0.0)
            q_ok = tl.load(Q_VALID + b * sub + offs_m, mask=offs_m < n_q, other=0) != 0
            s = tl.dot(q, k, input_precision="ieee") * scale
            ok = allowed_tile(offs_m, offs_n, n_q, n_k, offset, kv_ok) & q_ok[:, None]
            acc += tl.sum(tl.where(ok, tl.exp(s - lse[:, None]), 0.0), 0)
    tl.store(OUT + b * sob + hk * soh + offs_n, acc, mask=offs_n < n_k)
