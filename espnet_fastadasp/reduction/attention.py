"""How much attention each token received, at about the cost of the attention itself.

FastAdaSP weights a merged cluster by the attention its members received in that layer, and
FastV / H2O evict the tokens that received the least: the column sums of the softmax over all
query rows and heads. Fused kernels (SDPA, flash) never expose the softmax, and materialising
it for the whole sequence costs heads x length^2 floats per layer. So at a *reducing* layer the
attention module is pointed at our own attention function (registered with transformers' public
``AttentionInterface``), which computes the attention output and the column sums in one pass
over blocks of query rows (:func:`attention_with_received`): memory is bounded by a block,
whatever the length, and each score is computed once. On CPU a prefill gets the sums from a
second pass of PyTorch's fused CPU attention over the transposed problem
(:func:`attention_with_received_lse`), cheaper still, in float32, bfloat16 and float16 alike. On
CUDA with Triton the sums come from tiled kernels (:mod:`.triton_received`) that never write the
scores to memory: for an unpadded float16 / bfloat16 prefill PyTorch's flash kernel gives the
output and each row's log-sum-exp, and one column pass the sums; otherwise the model's own fused
kernel gives the output and two passes the sums. All other layers keep the model's kernel.

With ``ReductionConfig(scores_from="window")`` only the last query rows' scores are summed (a
small block after the model's own kernel), a cheaper approximation of the same weights.

The queries and keys are those the model hands to its attention function (after RoPE, exactly
what the kernel sees). Where the fused pass does not apply (dropout, sliding windows, soft-capping,
a cache that already held entries), the model's own function runs and the sums are computed
after it from the same queries and keys (:func:`attention_received`).

:class:`AttentionSwap` is the one mechanism for pointing attention modules at one of our
registered functions and back; the per-module state such a function needs (a ``ReducingAttention``, a
shared-prompt cache layer) is kept here, keyed by module, not as attributes on the modules.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from espnet_fastadasp.models.compat import (
    AttentionInterface,
    eager_attention_function,
    registered_attention_function,
    with_attn_implementation,
)
from espnet_fastadasp.models.parts import UnsupportedModelError
from espnet_fastadasp.reduction import triton_received
from espnet_fastadasp.reduction.masks import KeyWindow, allowed_keys
from espnet_fastadasp.reduction.step_timer import StepTimer

RECORDING_IMPLEMENTATION = "fastadasp_record"
SUPPORTED_IMPLEMENTATIONS = ("sdpa", "eager")
#: the float32 scores of one block of query rows stay under this (a few temporaries of that size
#: live at once); small enough for the CPU's caches to matter, large enough for big matmuls
BLOCK_BYTES = 64 * 2**20


def block_rows(batch: int, heads: int, keys: int, max_rows: int, budget: int = BLOCK_BYTES) -> int:
    """Query rows per block so that a block's ``batch x heads x rows x keys`` float32 scores fit ``budget``."""
    return max(1, min(max_rows, budget // max(1, batch * heads * keys * 4)))


def _grouped(query: torch.Tensor, key: torch.Tensor, scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, Hkv, G, Q, D) scaled queries and (B, Hkv, 1, K, D) keys: GQA without copying the keys."""
    B, Hq, Q, D = query.shape
    Hkv = key.shape[1]
    return (query * scaling).reshape(B, Hkv, Hq // Hkv, Q, D), key.unsqueeze(2)


def _block_probabilities(
    q: torch.Tensor,
    k: torch.Tensor,
    key_valid: torch.Tensor,
    start: int,
    stop: int,
    offset: int,
    window: KeyWindow | None = None,
) -> torch.Tensor:
    """float32 softmax of query rows ``start:stop`` over the keys they may see: (B, Hkv, G, rows, stop + offset).

    Keys after the block's last row are causally masked for every row of the block, so they are
    not computed at all (that halves the work of a causal prefill)."""
    end = stop + offset
    logits = torch.matmul(q[:, :, :, start:stop], k[:, :, :, :end].transpose(-1, -2)).float()
    if window is not None:
        window = KeyWindow(window.size, window.origin[:, :end])
    allowed = allowed_keys(key_valid[:, :end], torch.arange(start, stop, device=q.device) + offset, window)
    # masked_fill, not an additive bias: a masked key holding NaN must not reach the softmax
    logits.masked_fill_(~allowed[:, None, None], float("-inf"))
    return torch.softmax(logits, dim=-1)


def _add_column_sums(out: torch.Tensor, probs: torch.Tensor, query_valid: torch.Tensor | None, start: int) -> None:
    """``out[:, :keys] += probs`` summed over heads and the (valid) query rows of the block."""
    per_row = probs.sum(dim=(1, 2))  # (B, rows, keys): heads first, the tensor shrinks H-fold
    if query_valid is not None:  # where, not a product: a padding row may hold NaN
        rows = per_row.shape[1]
        per_row = torch.where(query_valid[:, start : start + rows, None], per_row, torch.zeros((), device=out.device))
    out[:, : per_row.shape[-1]] += per_row.sum(1)


def attention_received(
    query: torch.Tensor,
    key: torch.Tensor,
    key_valid: torch.Tensor,
    query_valid: torch.Tensor | None,
    scaling: float,
    chunk_size: int = 1024,
    window: KeyWindow | None = None,
) -> torch.Tensor:
    """Attention probabilities each key received, summed over all heads and query rows.

    query: (B, Hq, Q, D); key: (B, Hkv, K, D) with Hq a multiple of Hkv (GQA); the queries are
    the last Q of the K positions and attention is causal in index order. key_valid: (B, K)
    bool (False = padding, never attended); query_valid: (B, Q) bool, padding query rows are
    left out of the sums; window: a sliding-window layer's window over the keys' original
    positions (:class:`~espnet_fastadasp.reduction.masks.KeyWindow`). Returns (B, K) float32.

    The softmax is computed in float32 per block of at most ``chunk_size`` query rows (fewer
    when a block's scores would pass :data:`BLOCK_BYTES`), as eager attention does, so the result
    equals eager attention's column sums within float tolerance, with memory bounded whatever
    the length. Use it where the layer's attention ran elsewhere;
    :func:`attention_with_received` gets the same sums from the attention pass itself.
    """
    B, Hq, Q, _ = query.shape
    K = key.shape[2]
    q, k = _grouped(query, key, scaling)
    out = torch.zeros(B, K, dtype=torch.float32, device=query.device)
    rows = block_rows(B, Hq, K, chunk_size)
    for start in range(0, Q, rows):
        stop = min(Q, start + rows)
        _add_column_sums(out, _block_probabilities(q, k, key_valid, start, stop, K - Q, window), query_valid, start)
    return out


def attention_with_received(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_valid: torch.Tensor,
    query_valid: torch.Tensor | None,
    scaling: float,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention and the attention each key received, from one blocked pass.

    Why: a reducing layer needs the column sums of its softmax, which fused kernels never
    expose; recomputing them costs a second pass over the scores. Here each block of query rows
    computes its probabilities once, multiplies them into the values and adds them to the sums.

    Shapes as :func:`attention_received`, plus value (B, Hkv, K, D). The mask is the one rule of
    :func:`~espnet_fastadasp.reduction.masks.allowed_keys` (causal, valid keys, a query always sees
    itself). Returns the attention output (B, Q, Hq, D) in the query's dtype, laid out as
    transformers' attention functions return it (a padding query row gets zeros: masked values
    are zeroed, and nothing reads a padding row), and the (B, K) float32 sums.
    """
    B, Hq, Q, D = query.shape
    Hkv, K = key.shape[1], key.shape[2]
    q, k = _grouped(query, key, scaling)
    # a masked value holding NaN would turn its zero probability into NaN in the product
    v = value.masked_fill(~key_valid[:, None, :, None], 0).unsqueeze(2)
    out = torch.empty(B, Hkv, Hq // Hkv, Q, D, dtype=query.dtype, device=query.device)
    received = torch.zeros(B, K, dtype=torch.float32, device=query.device)
    rows = block_rows(B, Hq, K, chunk_size)
    for start in range(0, Q, rows):
        stop = min(Q, start + rows)
        probs = _block_probabilities(q, k, key_valid, start, stop, K - Q)
        out[:, :, :, start:stop] = torch.matmul(probs.to(v.dtype), v[:, :, :, : probs.shape[-1]])
        _add_column_sums(received, probs, query_valid, start)
    return out.reshape(B, Hq, Q, D).transpose(1, 2), received


def _cpu_flash_with_lse() -> Callable[..., Any] | None:
    """PyTorch's CPU flash attention, which also returns each row's log-sum-exp (None if absent)."""
    return getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


@functools.cache
def _cpu_flash_takes_mask() -> bool:
    """Whether the installed torch's CPU flash kernel takes an ``attn_mask`` (padded batches need it)."""
    flash = _cpu_flash_with_lse()
    return flash is not None and "attn_mask" in str(flash.default._schema)


#: the dtypes PyTorch's CPU flash kernel takes (it computes the scores and the softmax in float32)
LSE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: the additive masks of a padded two-pass prefill (two of batch x length^2 in the model's dtype)
#: stay under this; a longer padded batch takes the blocked pass, whose memory is bounded by a block
LSE_MASK_BYTES = 1 << 30


def lse_path_usable(query: torch.Tensor, key: torch.Tensor, padded: bool = False) -> bool:
    """Whether :func:`attention_with_received_lse` can run: CPU, a prefill (as many queries as
    keys), a dtype of :data:`LSE_DTYPES`, and for a ``padded`` batch masks that fit :data:`LSE_MASK_BYTES`."""
    B, _, T, _ = query.shape
    return (
        query.device.type == "cpu"
        and query.dtype in LSE_DTYPES
        and T == key.shape[2]
        and _cpu_flash_with_lse() is not None
        and (not padded or (_cpu_flash_takes_mask() and 2 * B * T * T * query.element_size() <= LSE_MASK_BYTES))
    )


def lse_offset_columns(lse: torch.Tensor, scaling: float, dtype: torch.dtype) -> torch.Tensor:
    """``-lse / scaling`` as two columns of ``dtype`` (a high and a low part), (..., T, 2).

    Why two: the transposed pass appends them to the queries (and two ones to the keys), so the
    kernel's float32 dot product adds ``hi + lo``; one bfloat16 column would round ``lse``
    (about 5-50) to 8 bits, an error of up to a few percent in every weight. High and low
    together hold it to about 16 bits; in float32 the low part is zero."""
    offset = lse.float().neg().div_(scaling)
    hi = offset.to(dtype)
    lo = (offset - hi.float()).to(dtype)
    return torch.stack([hi, lo], dim=-1)


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A (B, 1, Q, K) additive mask in ``dtype`` (the CPU flash kernel's form): 0 or -inf."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


def attention_with_received_lse(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scaling: float,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention and the attention each key received, for a prefill, from two passes of
    PyTorch's fused CPU attention (each score is recomputed once, never stored).

    Why: the sum for key j is ``sum_i exp(s_ij - lse_i)`` over the rows i >= j. The first pass
    is the layer's own attention, which also returns every row's log-sum-exp ``lse_i`` (float32,
    in any input dtype). Append ``-lse_i / scaling`` to each query and ``1`` to each key: their
    scaled dot product is ``s_ij - lse_i``, so an attention of the keys over the queries has,
    as its own log-sum-exp, ``log sum_i exp(s_ij - lse_i)``: the log of the sum we want,
    computed by the kernel's stable online max in float32 (no weight can overflow). The offset
    goes in as a high and a low column (:func:`lse_offset_columns`) so that bfloat16 and
    float16 inputs lose nothing to its rounding. Reversing both sequences turns "rows after j"
    into the kernel's causal "keys before"; the second pass's output is not needed.

    Shapes as :func:`attention_with_received` with Q == K; GQA keys are expanded for the kernel.
    ``valid`` (B, T) bool: the valid tokens of a padded batch (None: all valid); then both
    passes take :func:`~espnet_fastadasp.reduction.masks.allowed_keys`' rule as an additive mask
    besides their causal one, and padding rows are left out of the sums. Returns the output
    (B, Q, Hq, D) in the query's dtype and (B, K) float32.
    """
    flash = _cpu_flash_with_lse()
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    mask = mask_t = None
    if valid is not None:
        T = valid.shape[1]
        allowed = allowed_keys(valid, torch.arange(T, device=valid.device))  # (B, Q, K)
        mask = _additive(allowed[:, None], query.dtype)
        # transposed (keys over queries), padding queries left out, both sequences reversed
        mask_t = _additive((allowed & valid[:, :, None]).transpose(1, 2).flip(1, 2)[:, None], query.dtype)
        # padding holding NaN would reach the kernel's float32 scores (a mask adds -inf to NaN)
        # and its products; zeroed, it only meets masks
        pad = ~valid[:, None, :, None]
        query, key, value = query.masked_fill(pad, 0), key.masked_fill(pad, 0), value.masked_fill(pad, 0)
    out, lse = flash(query, key, value, 0.0, True, attn_mask=mask, scale=scaling)
    queries = torch.cat([query, lse_offset_columns(lse, scaling, query.dtype)], dim=-1).flip(2)
    keys = torch.cat([key, torch.ones_like(key[..., :2])], dim=-1).flip(2)
    _, lse_t = flash(keys, queries, keys, 0.0, True, attn_mask=mask_t, scale=scaling)
    per_head = torch.exp(lse_t.float())  # a key no valid row sees: -inf, or NaN where fully masked
    if valid is not None:
        per_head = torch.where(valid.flip(-1)[:, None], per_head, torch.zeros((), device=per_head.device))
    return out.transpose(1, 2), per_head.sum(1).flip(-1)


@dataclass
class ReducingAttention:
    """The state of a reducing layer's attention function, for one layer.

    The layer arms it around its attention call (:meth:`armed_for`); armed, the function keeps
    the layer's keys (merging compares them) and, when ``key_valid`` is given (the method reads
    attention), the attention each key received: on CUDA with Triton from the tiled kernels after
    the model's own function; on CPU from two passes of the fused CPU kernel
    (:func:`attention_with_received_lse`); elsewhere from one blocked pass that also gives the
    output (:func:`attention_with_received`), or after the model's own function where that pass
    does not apply. With a ``window``, only the last rows' scores are computed, after the model's
    own function. What each path costs is measured by ``benchmarks/received_paths.py``.
    """

    base: Callable[..., Any]
    chunk_size: int = 1024
    #: score from the last ``window`` query rows only (``ReductionConfig.scores_from="window"``)
    window: int | None = None
    #: times the attention with its sums as the step "scoring" (the handle's timer)
    timer: StepTimer = field(default_factory=StepTimer)
    armed: bool = False
    key_valid: torch.Tensor | None = None
    #: a sliding-window layer's window over the original positions (the mask the layer is given says the same)
    key_window: KeyWindow | None = None
    padded: bool = True
    key: torch.Tensor | None = None
    received: torch.Tensor | None = None

    @contextlib.contextmanager
    def armed_for(
        self, key_valid: torch.Tensor | None, padded: bool = True, key_window: KeyWindow | None = None
    ) -> Iterator[None]:
        """Record the next call; ``key_valid`` (B, T): the layer's valid tokens, or None if no
        scores are needed; ``padded``: whether any of them is False (known to the caller's plan,
        so it is not read from the device); ``key_window``: the layer's sliding window, if any."""
        self.armed, self.key_valid, self.padded, self.key, self.received = True, key_valid, padded, None, None
        self.key_window = key_window
        try:
            yield
        finally:
            self.armed, self.key_valid, self.key_window = False, None, None

    def take(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The recorded keys (B, Hkv, K, D) and attention received (B, T) or None; forgets them."""
        if self.key is None:
            raise RuntimeError("the attention function of a reducing layer was not called; unsupported model")
        out = (self.key, self.received)
        self.key = self.received = None
        return out

    def __call__(self, module: nn.Module, query, key, value, attention_mask, **kwargs: Any) -> Any:
        if not self.armed:
            return self.base(module, query, key, value, attention_mask, **kwargs)
        self.key = key
        if self.key_valid is None:
            return self.base(module, query, key, value, attention_mask, **kwargs)
        with self.timer.step("scoring"):
            return self._attention_and_received(module, query, key, value, attention_mask, **kwargs)

    def _attention_and_received(self, module: nn.Module, query, key, value, attention_mask, **kwargs: Any) -> Any:
        """The layer's attention output; the attention each key received left in ``self.received``."""
        valid = self.key_valid
        scaling = kwargs.get("scaling") or getattr(module, "scaling", query.shape[-1] ** -0.5)
        if kwargs.get("softcap"):
            raise UnsupportedModelError(
                f"{type(module).__name__} caps its attention logits (softcap); the attention each token received "
                "is computed without the cap: use a method that does not read attention (random, a-tome)"
            )
        plain = not kwargs.get("dropout") and kwargs.get("sliding_window") is None
        T = valid.shape[1]
        q, k = query[:, :, -T:], key[:, :, -T:]
        if self.key_window is not None:
            # the model's kernel with the layer's windowed mask for the output, the sums over the same window
            out = self.base(module, query, key, value, attention_mask, **kwargs)
            rows = T if self.window is None else min(self.window, T)
            self.received = attention_received(
                q[:, :, -rows:], k, valid, valid[:, -rows:], scaling, self.chunk_size, self.key_window
            )
            return out
        if self.window is not None:
            # the model's own kernel for the output; the last rows' scores are a small block
            out = self.base(module, query, key, value, attention_mask, **kwargs)
            rows = min(self.window, q.shape[2])
            self.received = attention_received(q[:, :, -rows:], k, valid, valid[:, -rows:], scaling, self.chunk_size)
            return out
        if triton_received.usable(query):
            if plain and not self.padded and triton_received.flash_lse_usable(query, key):
                # flash attention gives the output and each row's log-sum-exp: one tiled pass for the sums
                out, lse = triton_received.flash_attention_with_lse(query, key, value, scaling)
                self.received = triton_received.attention_received(q, k, valid, valid, scaling, lse=lse)
                return out.transpose(1, 2), None
            # the model's fused kernel for the output, two tiled passes for the sums (scores never stored)
            out = self.base(module, query, key, value, attention_mask, **kwargs)
            self.received = triton_received.attention_received(q, k, valid, valid, scaling)
            return out
        if plain and key.shape[2] == T == query.shape[2]:
            if lse_path_usable(query, key, self.padded):
                out, self.received = attention_with_received_lse(
                    query, key, value, scaling, valid if self.padded else None
                )
            else:
                out, self.received = attention_with_received(query, key, value, valid, valid, scaling, self.chunk_size)
            return out, None
        out = self.base(module, query, key, value, attention_mask, **kwargs)
        self.received = attention_received(q, k, valid, valid, scaling, self.chunk_size)
        return out


def _recording_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    **kwargs: Any,
) -> Any:
    state: ReducingAttention = AttentionSwap.state_of(RECORDING_IMPLEMENTATION, module)
    return state(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register(RECORDING_IMPLEMENTATION, _recording_attention)


def base_attention_function(attn_module: torch.nn.Module, implementation: str) -> Callable[..., Any]:
    """The function the module would call for ``implementation`` (sdpa or eager)."""
    if implementation == "eager":
        fn = eager_attention_function(attn_module)
        if fn is None:
            raise NotImplementedError(f"{type(attn_module).__name__}: no eager_attention_forward in its module")
        return fn
    if implementation not in SUPPORTED_IMPLEMENTATIONS:
        raise NotImplementedError(
            f"attention implementation {implementation!r} is not supported at reducing layers; "
            f"load the model with attn_implementation in {SUPPORTED_IMPLEMENTATIONS}"
        )
    return registered_attention_function(implementation)


class AttentionSwap:
    """Point attention modules at the registered attention function ``implementation``; undo.

    ``states`` maps each module to the state the function reads for it (through
    :meth:`state_of`). Each module's ``config`` is replaced by a shallow copy that names the
    function (attention modules look their function up from their config at every call), so
    the rest of the model is untouched. :meth:`restore` (or leaving the ``with`` block) puts
    the original configs back and forgets the states; swaps nest.
    """

    _states: dict[str, weakref.WeakKeyDictionary] = {}

    def __init__(self, implementation: str, states: Mapping[nn.Module, Any]) -> None:
        self.implementation = implementation
        self._saved: list[tuple[nn.Module, Any]] = []
        table = self._states.setdefault(implementation, weakref.WeakKeyDictionary())
        for module, state in states.items():
            self._saved.append((module, module.config))
            module.config = with_attn_implementation(module.config, implementation)
            table[module] = state

    @classmethod
    def state_of(cls, implementation: str, module: nn.Module) -> Any:
        try:
            return cls._states[implementation][module]
        except KeyError:
            raise RuntimeError(f"{type(module).__name__} runs {implementation!r} attention without its state") from None

    @classmethod
    def has_state(cls, module: nn.Module) -> bool:
        """Whether any swap currently holds state for ``module`` (for tests of ``remove``)."""
        return any(module in table for table in cls._states.values())

    def restore(self) -> None:
        table = self._states.get(self.implementation, {})
        for module, config in reversed(self._saved):
            module.config = config
            table.pop(module, None)
        self._saved.clear()

    def __enter__(self) -> AttentionSwap:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.restore()


@contextlib.contextmanager
def cudnn_attention_disabled() -> Iterator[None]:
    """PyTorch's cuDNN SDPA backend off inside the block, restored after (also on error).

    Why: with the per-layer lengths and masks a reduction creates, SDPA picks cuDNN on Hopper
    GPUs, and cuDNN builds an execution plan for every new shape; real data has a new length per
    utterance, so each one paid seconds of planning (measured in
    ``egs2/cost_benchmark/bench1/RESULTS.md``). The flash and memory-efficient kernels need no plan.
    A no-op where torch has no cuDNN switch.
    """
    switch = getattr(torch.backends.cuda, "enable_cudnn_sdp", None)
    if switch is None:
        yield
        return
    before = torch.backends.cuda.cudnn_sdp_enabled()
    switch(False)
    try:
        yield
    finally:
        switch(before)
