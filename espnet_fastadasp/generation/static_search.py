"""Greedy and beam search as fixed-shape device state, choosing as transformers' ``generate`` does.

Why not ``generate`` itself: its loop runs Python between forwards (logits processors, stopping
criteria, the beam bookkeeping, a host sync for the stop check every step), so a step cannot
be one CUDA graph, and that per-step work, not the bytes read, is what bounds its decoding
steps on a GPU. Here a search is a few tensors of fixed shape and one :meth:`select` that
updates them in place from a step's logits, with no host synchronisation: the step index is a
device tensor too. The choices are those of transformers' ``_sample`` (greedy) and its
vectorised ``_beam_search`` (top ``max(2, 1 + n_eos) * beams`` continuations, finished
hypotheses kept by length-penalised score, the early-stopping heuristic), step for step;
``test/test_static_decoding.py`` compares the tokens and scores with ``generate``.

A search only ever stops at a host check the caller makes (:attr:`stopped`, every few steps):
once ``generate`` would have stopped, every later :meth:`select` leaves the result unchanged,
so running a few steps further gives the same output.

Only what ``generate`` does without sampling is reproduced, with two of its logits processors:
``min_new_tokens`` and ``repetition_penalty`` (which instruction-tuned checkpoints' generation
configs often set, so a real model's defaults work unchanged); :func:`search_settings` refuses any
other generation setting, naming it.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Any

import torch

from espnet_fastadasp.models.compat import REPETITION_PENALTY_SKIPS_LEFT_PADDING

logger = logging.getLogger(__name__)

#: Generation settings that would add a logits processor, a stopping criterion or an output the
#: static path does not reproduce; each must be unset (None), off (False, 0) or neutral (see
#: :data:`NEUTRAL_ONE`).
UNSUPPORTED_SETTINGS = (
    "do_sample",
    "encoder_repetition_penalty",
    "no_repeat_ngram_size",
    "encoder_no_repeat_ngram_size",
    "bad_words_ids",
    "force_words_ids",
    "constraints",
    "min_length",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "suppress_tokens",
    "begin_suppress_tokens",
    "sequence_bias",
    "exponential_decay_length_penalty",
    "renormalize_logits",
    "num_beam_groups",
    "diversity_penalty",
    "guidance_scale",
    "watermarking_config",
    "stop_strings",
    "max_time",
    "low_memory",
    "output_attentions",
    "output_hidden_states",
    "output_logits",
    "prompt_lookup_num_tokens",
    "assistant_model",
)

#: Settings whose neutral value is 1 (a penalty or scale of 1 changes nothing).
NEUTRAL_ONE = ("encoder_repetition_penalty", "num_beam_groups", "guidance_scale")

NEG = -1.0e9  # transformers' beam search's "impossible" score


@dataclass(frozen=True)
class SearchSettings:
    """What a search needs from a generation config, checked."""

    beams: int
    max_new_tokens: int
    min_new_tokens: int
    eos_ids: tuple[int, ...]
    pad_id: int
    length_penalty: float
    early_stopping: bool | str
    return_sequences: int
    return_dict: bool
    output_scores: bool
    repetition_penalty: float = 1.0


def search_settings(generation_config: Any, prompt_length: int, **kwargs: Any) -> SearchSettings:
    """The settings of a ``generate`` call (its generation config updated by ``kwargs``).

    Raises ``ValueError`` naming every setting the static path cannot reproduce.
    """
    config = copy.deepcopy(generation_config)
    unused = config.update(**kwargs)
    if unused:
        raise ValueError(f"static decoding: unknown generate arguments {sorted(unused)}")
    changed = [name for name in UNSUPPORTED_SETTINGS if _active(name, getattr(config, name, None))]
    if changed:
        raise ValueError(
            "static decoding reproduces greedy and beam search without extra logits processors; "
            "these settings are not supported: " + ", ".join(f"{name}={getattr(config, name)!r}" for name in changed)
        )
    if getattr(config, "use_cache", True) is False:
        raise ValueError("static decoding needs use_cache=True")
    max_new = config.max_new_tokens
    if max_new is None:  # transformers' default total length is 20
        max_new = (config.max_length or 20) - prompt_length
    if max_new < 1:
        raise ValueError(f"static decoding: max_new_tokens must be >= 1 (got {max_new})")
    eos = config.eos_token_id
    eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else (() if eos is None else (int(eos),))
    pad = config.pad_token_id
    if pad is None:
        if not eos_ids:
            raise ValueError("static decoding needs a pad_token_id or an eos_token_id")
        pad = eos_ids[0]
    beams = int(config.num_beams or 1)
    returns = int(config.num_return_sequences or 1)
    if returns > beams:
        raise ValueError(f"num_return_sequences={returns} needs at least as many beams (num_beams={beams})")
    min_new = int(config.min_new_tokens or 0)
    penalty = 1.0 if config.repetition_penalty is None else float(config.repetition_penalty)
    if not penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0 (got {config.repetition_penalty!r})")
    return SearchSettings(
        beams=beams,
        max_new_tokens=int(max_new),
        min_new_tokens=min_new,
        eos_ids=eos_ids,
        pad_id=int(pad),
        # unset fields (None) mean transformers' defaults
        length_penalty=float(1.0 if config.length_penalty is None else config.length_penalty),
        early_stopping=False if config.early_stopping is None else config.early_stopping,
        return_sequences=returns,
        return_dict=bool(config.return_dict_in_generate),
        output_scores=bool(config.output_scores),
        repetition_penalty=penalty,
    )


def _active(name: str, value: Any) -> bool:
    if value is None or value is False or (isinstance(value, (int, float)) and value == 0):
        return False
    if isinstance(value, (list, tuple, dict)) and not value:
        return False
    return not (name in NEUTRAL_ONE and value == 1)


class RepetitionPenalty:
    """transformers' ``RepetitionPenaltyLogitsProcessor`` as fixed-shape state.

    The processor divides (or, for negative scores, multiplies) the score of every token already in
    a row's sequence, prompt included, by the penalty. Here the sequence is kept as a (rows, V)
    bool mask of the tokens it holds, updated in place: unlike the ids it does not grow, so a
    captured step replays it, and since the processor penalises each distinct token once, the
    mask gives the same scores.
    """

    def __init__(
        self, penalty: float, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor | None, beams: int, vocab: int
    ) -> None:
        self.penalty = penalty
        ids = prompt_ids.clamp(max=vocab)  # ids past the LM head's vocabulary are never scored
        if REPETITION_PENALTY_SKIPS_LEFT_PADDING and prompt_mask is not None:
            first_real = (prompt_mask != 0).int().argmax(dim=1)
            position = torch.arange(ids.shape[1], device=ids.device)
            ids = ids.masked_fill(position[None, :] < first_real[:, None], vocab)
        seen = torch.zeros(ids.shape[0], vocab + 1, dtype=torch.bool, device=ids.device)
        seen.scatter_(1, ids, True)
        self.seen = seen[:, :vocab].repeat_interleave(beams, dim=0).contiguous()

    def apply(self, scores: torch.Tensor) -> torch.Tensor:
        penalised = torch.where(scores < 0, scores * self.penalty, scores / self.penalty)
        return torch.where(self.seen, penalised, scores)

    def append(self, tokens: torch.Tensor, parents: torch.Tensor | None = None) -> None:
        """Each row's sequence grows by ``tokens`` (rows,), after taking its parent row's (beams)."""
        if parents is not None:
            self.seen.copy_(self.seen.index_select(0, parents))
        self.seen.scatter_(1, tokens.view(-1, 1), True)


class Search:
    """Fixed-shape search state on one device; :meth:`select` takes a step's float32 logits.

    ``prompt_ids`` and ``prompt_mask`` (the prompts' ids and attention mask, one row per prompt) are
    what a repetition penalty counts as already seen; needed only with one.
    """

    def __init__(
        self,
        settings: SearchSettings,
        batch: int,
        device: torch.device,
        prompt_ids: torch.Tensor | None = None,
        prompt_mask: torch.Tensor | None = None,
    ) -> None:
        if settings.repetition_penalty != 1.0 and prompt_ids is None:
            raise ValueError("a repetition penalty needs the prompt ids (prompt_ids)")
        self.settings = settings
        self.batch = batch
        self._prompt = (prompt_ids, prompt_mask)
        self.penalty: RepetitionPenalty | None = None  # made at the first choice, before any capture
        self.step = torch.zeros((), dtype=torch.long, device=device)  # index of the token being chosen
        self.stopped = torch.zeros((), dtype=torch.bool, device=device)
        self.eos = torch.tensor(settings.eos_ids or [-1], dtype=torch.long, device=device)
        self._eos_vocab: torch.Tensor | None = None  # (V,) bool: which vocabulary entries are EOS
        self.rows = batch * settings.beams
        #: the tokens the next step feeds (rows, 1) and the rows' beam origin (rows,)
        self.next_input = torch.full((self.rows, 1), settings.pad_id, dtype=torch.long, device=device)
        self.beam_idx = torch.arange(self.rows, device=device)

    def processed(self, scores: torch.Tensor) -> torch.Tensor:
        """The logits processors ``generate`` would apply here, in its order: the repetition
        penalty, then ``min_new_tokens``."""
        if self.settings.repetition_penalty != 1.0:
            if self.penalty is None:
                ids, mask = self._prompt
                self.penalty = RepetitionPenalty(
                    self.settings.repetition_penalty, ids, mask, self.settings.beams, scores.shape[-1]
                )
            scores = self.penalty.apply(scores)
        if self.settings.min_new_tokens <= 0 or not self.settings.eos_ids:
            return scores
        if self._eos_vocab is None:  # made at the first choice, before any step is captured
            self._eos_vocab = torch.isin(torch.arange(scores.shape[-1], device=scores.device), self.eos)
        blocked = self._eos_vocab & (self.step < self.settings.min_new_tokens)
        return torch.where(blocked, float("-inf"), scores)

    def hits_eos(self, tokens: torch.Tensor) -> torch.Tensor:
        if not self.settings.eos_ids:
            return torch.zeros_like(tokens, dtype=torch.bool)
        return torch.isin(tokens, self.eos)

    def select(self, logits: torch.Tensor) -> None:
        raise NotImplementedError

    def result(self, prompt_ids: torch.Tensor) -> dict[str, torch.Tensor | None]:
        raise NotImplementedError


class GreedySearch(Search):
    """transformers' greedy search (``_sample`` without sampling)."""

    def __init__(self, settings: SearchSettings, batch: int, device: torch.device, **prompt: Any) -> None:
        super().__init__(settings, batch, device, **prompt)
        M = settings.max_new_tokens
        self.tokens = torch.full((batch, M), settings.pad_id, dtype=torch.long, device=device)
        self.unfinished = torch.ones(batch, dtype=torch.bool, device=device)
        self.steps_run = torch.zeros((), dtype=torch.long, device=device)

    def select(self, logits: torch.Tensor) -> None:
        s = self.settings
        running = ~self.stopped
        self.steps_run.add_(running.long())
        chosen = torch.argmax(self.processed(logits), dim=-1)
        if s.eos_ids:
            chosen = torch.where(self.unfinished, chosen, s.pad_id)
        self.tokens.index_copy_(1, self.step.view(1), chosen[:, None])
        last = self.step + 1 >= s.max_new_tokens
        self.unfinished &= ~(self.hits_eos(chosen) | last)
        self.stopped |= ~self.unfinished.any()
        self.next_input.copy_(chosen[:, None])
        if self.penalty is not None:
            self.penalty.append(chosen)
        self.step.add_(1)

    def result(self, prompt_ids: torch.Tensor) -> dict[str, torch.Tensor | None]:
        n = int(self.steps_run)
        return {"sequences": torch.cat([prompt_ids, self.tokens[:, :n]], dim=1), "sequences_scores": None}


class BeamSearch(Search):
    """transformers' vectorised beam search (``_beam_search`` without sampling), new tokens only."""

    def __init__(self, settings: SearchSettings, batch: int, device: torch.device, **prompt: Any) -> None:
        super().__init__(settings, batch, device, **prompt)
        k, M = settings.beams, settings.max_new_tokens
        self.keep = max(2, 1 + len(settings.eos_ids)) * k
        # what transformers fills unused positions with (``pad or eos[0]`` if there is an eos, else -1)
        fill = (settings.pad_id or settings.eos_ids[0]) if settings.eos_ids else -1
        self.running_tokens = torch.full((batch, k, M), fill, dtype=torch.long, device=device)
        self.running_scores = torch.zeros(batch, k, dtype=torch.float32, device=device)
        self.running_scores[:, 1:] = NEG
        self.running_origin = torch.full((batch, k, M), -1, dtype=torch.int32, device=device)
        self.tokens = self.running_tokens.clone()
        self.scores = torch.full((batch, k), NEG, dtype=torch.float32, device=device)
        self.origin = self.running_origin.clone()
        self.finished = torch.zeros(batch, k, dtype=torch.bool, device=device)
        self.improvable = torch.ones(batch, 1, dtype=torch.bool, device=device)
        self.top_mask = torch.arange(self.keep, device=device) < k
        self.batch_offset = torch.arange(batch, device=device).view(-1, 1) * k

    @staticmethod
    def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        while index.dim() < tensor.dim():
            index = index.unsqueeze(-1)
        return torch.take_along_dim(tensor, index, dim=1)

    def _put(self, tensor: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``tensor[:, :, step] = values`` with the step on the device (a copy; shapes fixed)."""
        return tensor.index_copy(2, self.step.view(1), values[:, :, None].to(tensor.dtype))

    def select(self, logits: torch.Tensor) -> None:
        s, B, k = self.settings, self.batch, self.settings.beams
        V = logits.shape[-1]
        log_probs = self.processed(torch.log_softmax(logits, dim=-1))
        log_probs = (log_probs.view(B, k, V) + self.running_scores[:, :, None]).view(B, k * V)
        top_scores, top_index = torch.topk(log_probs, k=self.keep)
        from_beam = top_index // V
        top_ids = top_index % V
        top_tokens = self._put(self._gather(self.running_tokens, from_beam), top_ids)
        top_origin = self._put(self._gather(self.running_origin, from_beam), from_beam + self.batch_offset)
        hits = self.hits_eos(top_ids) | (self.step + 1 >= s.max_new_tokens)

        # the beams that go on: the best `beams` continuations that did not finish
        going_on = top_scores + hits.float() * NEG
        next_index = torch.topk(going_on, k=k)[1]
        running_tokens = self._gather(top_tokens, next_index)
        running_scores = self._gather(going_on, next_index)
        running_origin = self._gather(top_origin, next_index)

        # the finished hypotheses: merge the best just-finished ones by length-penalised score
        just_finished = hits & self.top_mask[None, :]
        length = (self.step + 1).float()
        finals = top_scores / length**s.length_penalty
        if s.early_stopping is True:
            finals = finals + self.finished.all(dim=-1, keepdim=True).float() * NEG
        finals = finals + (~self.improvable).float() * NEG
        finals = finals + (~just_finished).float() * NEG
        merged_scores = torch.cat([self.scores, finals], dim=1)
        best = torch.topk(merged_scores, k=k)[1]
        tokens = self._gather(torch.cat([self.tokens, top_tokens], dim=1), best)
        scores = self._gather(merged_scores, best)
        origin = self._gather(torch.cat([self.origin, top_origin], dim=1), best)
        finished = self._gather(torch.cat([self.finished, just_finished], dim=1), best)

        # the early-stopping heuristic and the stop condition (transformers: at the new length, t + 1)
        if s.early_stopping == "never" and s.length_penalty > 0.0:
            best_length = torch.full_like(length, float(s.max_new_tokens))
        else:
            best_length = length
        best_running = running_scores[:, :1] / best_length**s.length_penalty
        worst_final = torch.where(finished, scores.min(dim=1, keepdim=True)[0], NEG)
        improvable = self.improvable & (best_running > worst_final).any(dim=-1, keepdim=True)
        go_on = improvable.any() & ~hits.all()
        if s.early_stopping is True:
            go_on &= ~finished.all()

        # a search that has stopped keeps its result: nothing below changes it any more
        keep = self.stopped
        self.tokens.copy_(torch.where(keep, self.tokens, tokens))
        self.scores.copy_(torch.where(keep, self.scores, scores))
        self.origin.copy_(torch.where(keep, self.origin, origin))
        self.finished.copy_(torch.where(keep, self.finished, finished))
        self.improvable.copy_(torch.where(keep, self.improvable, improvable))
        self.running_tokens.copy_(running_tokens)
        self.running_scores.copy_(running_scores)
        self.running_origin.copy_(running_origin)
        self.stopped |= ~go_on
        step = self.step.view(1)
        self.beam_idx.copy_(running_origin.index_select(2, step).view(-1).long())
        self.next_input.copy_(running_tokens.index_select(2, step).view(-1, 1))
        if self.penalty is not None:
            self.penalty.append(self.next_input, self.beam_idx)
        self.step.add_(1)

    def result(self, prompt_ids: torch.Tensor) -> dict[str, torch.Tensor | None]:
        n = self.settings.return_sequences
        tokens = self.tokens[:, :n].reshape(self.batch * n, -1)
        origin = self.origin[:, :n].reshape(self.batch * n, -1)
        generated = int((origin + 1).bool().sum(dim=1).max())
        prompt = prompt_ids.repeat_interleave(n, dim=0)
        return {
            "sequences": torch.cat([prompt, tokens[:, :generated]], dim=1),
            "sequences_scores": self.scores[:, :n].reshape(-1),
        }


def make_search(
    settings: SearchSettings,
    batch: int,
    device: torch.device,
    prompt_ids: torch.Tensor | None = None,
    prompt_mask: torch.Tensor | None = None,
) -> Search:
    """The search for ``settings``; ``prompt_ids`` / ``prompt_mask``: see :class:`Search`."""
    search = BeamSearch if settings.beams > 1 else GreedySearch
    return search(settings, batch, device, prompt_ids=prompt_ids, prompt_mask=prompt_mask)
