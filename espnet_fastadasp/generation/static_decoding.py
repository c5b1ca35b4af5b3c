"""Decoding after a (reduced) prefill with fixed-shape steps: per-layer static caches, CUDA graphs.

    out = generate_static(model, inputs, num_beams=5, max_new_tokens=64)   # any reduction applied or none

Why our own loop and not ``generate`` with a cache object of ours: ``generate`` runs Python
between its forwards (logits processors, stopping criteria, beam bookkeeping, a host sync for
its stop check each step), and on a GPU that work, not the bytes a step reads, is what bounds a
decoding step. Here one step is one function of fixed shapes that does everything (the
decoder's forward over one token per row, the LM head, the search's choice, the beam reorder of
the generated part, the write index), so it can be captured once as a ``torch.cuda.CUDAGraph``
and replayed, or compiled with ``torch.compile`` (the beam reorder then runs between the
compiled parts, see :func:`_reorder_generated`); the host only checks every ``check_every``
steps whether the search has ended.

What a call does:

1. the prefill: one forward of the model over the prompts, one row per prompt even at beam > 1
   (the reduction applied, if any; only the last position reaches the LM head), exactly the
   forward plain ``generate`` starts with, so its last logits choose the first token;
2. the prefill's cache becomes a :class:`~espnet_fastadasp.generation.static_cache.StaticStepCache`:
   every layer keeps its own (reduced) prompt length, shared by the beams of its prompt, plus a
   buffer for the new tokens; the masks are built here, once per prompt;
3. the steps, each choosing as ``generate`` does (:mod:`.static_search`).

Same tokens as plain ``generate`` with the same reduction (greedy and beam search, left-padded
batches, every method; beam scores within float tolerance; tested). Limits: no sampling, and of
the logits processors only ``min_new_tokens`` and ``repetition_penalty`` (other settings are
refused, naming them); left padding; one token per step.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from espnet_fastadasp.generation.logits import prefill_last_logits
from espnet_fastadasp.generation.shared_prompt import prefill_positions
from espnet_fastadasp.generation.static_cache import (
    StaticStepCache,
    attending_to_static_cache,
    static_cache_from_prefill,
)
from espnet_fastadasp.generation.static_search import Search, make_search, search_settings
from espnet_fastadasp.models.compat import (
    GenerateBeamDecoderOnlyOutput,
    GenerateDecoderOnlyOutput,
    cache_kwargs,
    cache_of_output,
    caller_passed_cache,
    prepared_mask,
)
from espnet_fastadasp.models.parts import UnsupportedModelError, require_full_attention, speech_lm_parts

logger = logging.getLogger(__name__)

#: How the steps run: ``eager`` (each step's Python runs), ``compile`` (``torch.compile`` of the
#: step, backend ``compile_backend``), ``cuda_graph`` (one step captured, then replayed),
#: ``compile_cuda_graph`` (the compiled step, its fused kernels, captured and replayed; each new set
#: of shapes compiles anew), ``auto`` (``cuda_graph`` on CUDA, else ``eager``).
STEP_MODES = ("auto", "eager", "compile", "cuda_graph", "compile_cuda_graph")


class StepClock:
    """Times the steps without synchronising each one: CUDA events on a GPU, the host clock on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def seconds(self) -> list[float]:
        """Each interval between consecutive marks (synchronises once, on a GPU)."""
        if len(self.marks) < 2:
            return []
        if self.cuda:
            self.marks[-1].synchronize()
            return [a.elapsed_time(b) / 1000 for a, b in zip(self.marks, self.marks[1:])]
        return [b - a for a, b in zip(self.marks, self.marks[1:])]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class DecodeStep:
    """One decoding step of fixed shapes over a static cache (what is compiled or captured).

    Reads the search's ``next_input`` and the positions, runs the decoder and the LM head,
    lets the search choose, reorders the generated part of the cache by the chosen beams,
    advances the write index and the positions: device tensors changed in place, nothing
    returned, no host synchronisation.
    """

    def __init__(self, model: nn.Module, cache: StaticStepCache, search: Search, positions: torch.Tensor) -> None:
        parts = speech_lm_parts(model)
        require_full_attention(parts, "static decoding")
        self.decoder = parts.decoder
        self.head = model.get_output_embeddings()
        if self.head is None:
            raise UnsupportedModelError(f"{type(model).__name__} has no output embeddings (LM head)")
        # the decoder builds no mask (it takes this one as prepared): the cache layers hold the masks
        self.mask = prepared_mask(positions.device)
        self.cache, self.search, self.positions = cache, search, positions
        self.reorder = search.settings.beams > 1

    def __call__(self) -> None:
        self.cache.begin_step()
        out = self.decoder(
            input_ids=self.search.next_input,
            attention_mask=self.mask,
            position_ids=self.positions,
            use_cache=True,
            **cache_kwargs(self.cache),
        )
        logits = self.head(out.last_hidden_state[:, -1]).float()
        self.search.select(logits)
        if self.reorder:
            _reorder_generated(self.cache, self.search.beam_idx)
        self.cache.end_step()
        self.positions.add_(1)


@torch.compiler.disable
def _reorder_generated(cache: StaticStepCache, beam_idx: torch.Tensor) -> None:
    """The beam reorder of the generated buffers, kept out of a compiled step (one graph break).

    Why: with the reorder inside, inductor's fused step (torch 2.13, CPU) decoded otherwise than
    the same step run eagerly, in float32, at beam 5 with a reduction (the mini benchmark's
    asr_test); ``aot_eager``, ``max_fusion_size=1``, or the reorder or the search run eagerly all
    gave eager's tokens, a scratch buffer for the reorder did not (``benchmarks/bf16_agreement.py``
    checks it). Eager and captured steps are unaffected."""
    cache.reorder_generated(beam_idx)


def step_runner(
    step: Callable[[], None], mode: str, device: torch.device, compile_backend: str | None, report: dict[str, Any]
) -> Iterator[None]:
    """Yields once per step after running it; ``cuda_graph`` runs the first step eagerly on a side
    stream (the warm-up capture needs), captures the second without running it, then replays.

    A capture that fails (an operation that synchronises, or one graphs do not support) runs
    nothing, so the steps go on eagerly; ``report["step_mode"]`` then says so and why.
    """
    report["step_mode"] = mode
    if mode == "eager":
        while True:
            step()
            yield
    if mode in ("compile", "compile_cuda_graph"):
        step = torch.compile(step, backend=compile_backend or "inductor", dynamic=False)
    if mode == "compile":
        while True:
            step()
            yield
    if mode not in ("cuda_graph", "compile_cuda_graph"):
        raise ValueError(f"step mode {mode!r} is not one of {STEP_MODES}")
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream(device).wait_stream(side)
    yield
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(graph):
            step()
    except RuntimeError as exc:
        logger.warning("CUDA graph capture of the decoding step failed (%s); stepping eagerly", exc)
        report["step_mode"] = f"eager (CUDA graph capture failed: {str(exc).splitlines()[0][:200]})"
        del graph
        while True:
            step()
            yield
    while True:
        graph.replay()
        yield


def _check_inputs(inputs: Mapping[str, torch.Tensor], generate_kwargs: Mapping[str, Any]) -> torch.Tensor:
    if caller_passed_cache(generate_kwargs):
        raise ValueError("generate_static makes its own cache; do not pass past_key_values (or cache)")
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(ids)
    if bool((mask[:, -1] == 0).any()):
        raise ValueError("generate_static needs left padding (the last column must be real tokens)")
    return mask


def generate_static(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    *,
    step_mode: str = "auto",
    compile_backend: str | None = None,
    check_every: int = 8,
    timings: dict[str, Any] | None = None,
    **generate_kwargs: Any,
) -> Any:
    """``model.generate(**inputs, **generate_kwargs)`` (greedy or beam search) with fixed-shape steps.

    Works with or without a reduction applied (``espnet_fastadasp.apply``); with one,
    ``handle.stats`` has one row per prompt. ``step_mode``: see :data:`STEP_MODES`;
    ``compile_backend`` for ``compile`` (``inductor``, ``aot_eager``, ``eager``). ``check_every``:
    steps between the host's checks whether the search has ended (the result does not depend on
    it). ``timings``, if given, is filled with ``prefill_s``, ``decode_s`` (everything after the
    prefill), ``step_s`` (each step; with graphs the first is the eager warm-up and the second
    holds the capture), and ``setup_s``: ``decode_s`` less ``steps`` steady-state (median) steps,
    i.e. what building the cache, the first choice, the warm-up and the capture cost beyond them.

    Returns what ``generate`` returns: a tensor of sequences, or with ``return_dict_in_generate``
    an output with ``sequences``, beam search's ``sequences_scores`` and the cache.
    """
    if step_mode not in STEP_MODES:
        raise ValueError(f"step_mode={step_mode!r} is not one of {STEP_MODES}")
    if check_every < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every}")
    config = generate_kwargs.pop("generation_config", None) or model.generation_config
    ids = inputs["input_ids"]
    settings = search_settings(config, ids.shape[1], **generate_kwargs)
    mask = _check_inputs(inputs, generate_kwargs)
    device = ids.device
    if step_mode == "auto":
        step_mode = "cuda_graph" if device.type == "cuda" else "eager"
    if step_mode.endswith("cuda_graph") and device.type != "cuda":
        raise ValueError(f"step_mode={step_mode!r} needs the inputs on a CUDA device")
    B, k, M = ids.shape[0], settings.beams, settings.max_new_tokens

    t0 = time.perf_counter()
    prefill = dict(inputs)
    prefill.update(attention_mask=mask, position_ids=prefill_positions(mask))
    with torch.no_grad(), prefill_last_logits(model):
        out = model(**prefill, use_cache=True, return_dict=True)
    logits = out.logits[:, -1].float()
    prefill_cache = cache_of_output(out)
    del out
    _sync(device)
    t1 = time.perf_counter()

    cache = static_cache_from_prefill(prefill_cache, mask, k, max(1, M - 1))
    del prefill_cache
    search = make_search(settings, B, device, prompt_ids=ids, prompt_mask=mask)
    with torch.no_grad():
        search.select(logits.repeat_interleave(k, dim=0) if k > 1 else logits)
    del logits
    positions = mask.long().sum(-1, keepdim=True).repeat_interleave(k, dim=0)
    clock = StepClock(device)
    steps_done = 0
    report: dict[str, Any] = {}
    with torch.no_grad(), attending_to_static_cache(model, cache):
        runner = step_runner(DecodeStep(model, cache, search, positions), step_mode, device, compile_backend, report)
        clock.mark()
        for i in range(1, M):
            if i % check_every == 0 and bool(search.stopped):
                break
            next(runner)
            clock.mark()
            steps_done += 1
        runner.close()
    result = search.result(ids)
    _sync(device)
    t2 = time.perf_counter()
    if timings is not None:
        step_s = clock.seconds()
        steady = statistics.median(step_s) if step_s else 0.0
        timings.update(
            prefill_s=t1 - t0,
            decode_s=t2 - t1,
            setup_s=(t2 - t1) - steady * len(step_s),
            step_s=step_s,
            steps=steps_done,
            step_mode=report.get("step_mode", step_mode),
        )
    logger.debug("static decoding: %d rows, %d steps (%s)", B * k, steps_done, report.get("step_mode", step_mode))
    if not settings.return_dict:
        return result["sequences"]
    if k > 1:
        scores = result["sequences_scores"] if settings.output_scores else None
        return GenerateBeamDecoderOnlyOutput(
            sequences=result["sequences"], sequences_scores=scores, **cache_kwargs(cache)
        )
    return GenerateDecoderOnlyOutput(sequences=result["sequences"], **cache_kwargs(cache))


__all__ = ["STEP_MODES", "DecodeStep", "StepClock", "generate_static", "step_runner"]
