"""The mini model's training losses: per-sample cross-entropy and the auxiliary CTC head.

* the loss is averaged per *sample* (over its answer tokens), then over the batch: short
  classification answers would otherwise be drowned by the long ASR transcripts;
* an optional CTC loss (``ctc_weight``, the hybrid CTC/attention recipe of ESPnet) reads the
  transcript straight off the audio tokens of ASR utterances, through a linear head that exists
  only during training (it is not saved: the checkpoint is a plain Qwen2-Audio). It gives the
  encoder a per-frame signal from the first step; without it a prototype spent its first 60-70k
  samples on a plateau where the LLM ignored the audio, which a CPU cannot afford. The CTC head
  reads the clips of an utterance one after another.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over each sample's answer tokens, then over the batch."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    tok_loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=-100, reduction="none"
    ).view(shift_labels.shape)
    valid = (shift_labels != -100).float()
    return ((tok_loss * valid).sum(-1) / valid.sum(-1).clamp(min=1)).mean()


def submodule(model: Any, name: str) -> torch.nn.Module:
    """``model.<name>`` on transformers 4.x, ``model.model.<name>`` on 5.x (where it moved)."""
    for owner in (model, getattr(model, "model", None)):
        module = getattr(owner, name, None) if owner is not None else None
        if isinstance(module, torch.nn.Module):
            return module
    raise AttributeError(f"{type(model).__name__} has no {name} (nor model.{name})")


class AudioCTC(torch.nn.Module):
    """Training-only CTC head on the audio tokens the LLM receives (the projector's output).

    A forward hook on ``multi_modal_projector`` keeps its output of the model's own forward pass,
    so the audio is encoded once; :meth:`loss` then scores the ASR rows of the batch. Blank is the
    extra class ``vocab_size``.
    """

    def __init__(self, model: Any, vocab_size: int) -> None:
        super().__init__()
        self.head = torch.nn.Linear(model.config.text_config.hidden_size, vocab_size + 1)
        self.blank = vocab_size
        self._audio: torch.Tensor | None = None
        self._hook = submodule(model, "multi_modal_projector").register_forward_hook(self._keep)

    def _keep(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
        self._audio = output

    def loss(
        self, targets: list[torch.Tensor], audio_lengths: torch.Tensor, clip_counts: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        """Mean CTC loss per ASR row (normalised by target length); None if the batch has none.

        ``audio_lengths`` are per clip (the projector's rows); ``clip_counts`` says how many clips each
        utterance has (default one each): an utterance's clips are read one after another.
        """
        rows = [i for i, t in enumerate(targets) if len(t)]
        audio, self._audio = self._audio, None
        if not rows or audio is None:
            return None
        counts = [1] * len(targets) if clip_counts is None else clip_counts.tolist()
        starts = np.cumsum([0] + counts[:-1]).tolist()
        if all(counts[i] == 1 for i in rows):
            seq = audio[[starts[i] for i in rows]]
            lengths = audio_lengths[[starts[i] for i in rows]].clamp(max=seq.shape[1])
        else:
            pieces = [
                torch.cat([audio[c, : int(audio_lengths[c])] for c in range(starts[i], starts[i] + counts[i])])
                for i in rows
            ]
            seq = torch.nn.utils.rnn.pad_sequence(pieces, batch_first=True)
            lengths = torch.tensor([len(p) for p in pieces], dtype=torch.long)
        logp = self.head(seq.float()).log_softmax(-1).transpose(0, 1)  # (T, N, C)
        tgt = [targets[i] for i in rows]
        return torch.nn.functional.ctc_loss(
            logp,
            torch.cat(tgt).to(logp.device),
            lengths,
            torch.tensor([len(t) for t in tgt]),
            blank=self.blank,
            reduction="mean",
            zero_infinity=True,
        )

    def remove(self) -> None:
        self._hook.remove()
