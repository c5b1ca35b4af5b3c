"""A workaround for transformers' beam search over prompts with several audio clips.

``generate(num_beams=k)`` copies every model input ``k`` times with ``repeat_interleave`` along
dim 0. For Qwen2-Audio-style models the rows of ``input_features`` are *clips*, not prompts, so
a prompt with clips ``[c1, c2]`` becomes ``[c1, c1, c2, c2]`` while its beam copies expect
``[c1, c2, c1, c2]``: the audio embeddings are scattered into the wrong beam rows, and beam 0
hears ``c1`` twice (seen with transformers 5.17 and 5.23). Long audio is exactly this case
(one clip per 30 s window), so our decoding tools install this fix.

The fix is a forward pre-hook on the model: in the prefill call, when consecutive prompt rows
come in groups of ``k`` identical ``input_ids`` and the feature rows come in runs of ``k``
identical clips (the signature of that expansion), the feature rows (and their mask) are put
back in beam order. Anything else passes through untouched, so greedy decoding, one clip per
prompt, and batches of identical prompts with different audio are never altered.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from espnet_fastadasp.models.parts import audio_runs, audio_token_id_of


def _group_size(input_ids: torch.Tensor) -> int:
    """The k of rows that repeat in blocks of k identical rows (1 if they do not)."""
    B = input_ids.shape[0]
    for k in range(B, 1, -1):
        if B % k:
            continue
        blocks = input_ids.view(B // k, k, -1)
        if bool((blocks == blocks[:, :1]).all()):
            return k
    return 1


def reorder_beam_clips(input_ids: torch.Tensor, features: torch.Tensor, audio_token_id: int) -> torch.Tensor | None:
    """The permutation of feature rows that undoes the interleaved expansion, or None."""
    k = _group_size(input_ids)
    if k == 1:
        return None
    clips = audio_runs(input_ids == audio_token_id).tolist()
    if sum(clips) != features.shape[0] or max(clips) < 2:
        return None
    order, start = [], 0
    for group in range(input_ids.shape[0] // k):
        m = clips[group * k]  # clips per prompt of this group
        block = list(range(start, start + m * k))  # [c1 x k, c2 x k, ...]
        feats = features[block].view(m, k, *features.shape[1:])
        if not bool((feats == feats[:, :1]).all()):
            return None  # not the expansion's signature: leave the inputs alone
        order += [start + j * k + i for i in range(k) for j in range(m)]
        start += m * k
    return torch.tensor(order, device=features.device)


class BeamClipOrderFix:
    """Install on a model to make multi-clip prompts correct under beam search; ``remove()`` undoes."""

    def __init__(self, model: nn.Module) -> None:
        self.audio_token_id = audio_token_id_of(model)
        self._hook = model.register_forward_pre_hook(self._fix, with_kwargs=True)

    def _fix(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict] | None:
        ids, feats = kwargs.get("input_ids"), kwargs.get("input_features")
        if ids is None or feats is None or ids.shape[1] == 1:
            return None
        order = reorder_beam_clips(ids, feats, self.audio_token_id)
        if order is None:
            return None
        kwargs["input_features"] = feats[order]
        if kwargs.get("feature_attention_mask") is not None:
            kwargs["feature_attention_mask"] = kwargs["feature_attention_mask"][order]
        return args, kwargs

    def remove(self) -> None:
        self._hook.remove()
