"""Low-rank adapters (LoRA) on the assembled model's decoder, for training, merged for use.

Why LoRA here, and why this shape:

* A linear projector alone must make a frozen 135M LLM read Whisper features as if they were
  text; SLAM-ASR reports that works with a 7B LLM and hundreds of hours. With a small LLM, a few
  hours of CPU training and random word sequences (no language prior to lean on), the decoder
  has to adapt too. A rank-``r`` update ``W + (alpha / r) B A`` of the decoder's linear layers is
  the cheapest way to let it (``B`` starts at zero, so step 0 is the assembled model exactly).
* **Hooks, not new modules**: a forward hook adds ``x A^T B^T (alpha / r)`` to a frozen
  ``nn.Linear``'s output. The model keeps its transformers class and module tree while training,
  and the adapters live in our own :class:`LoRAAdapters` (no state on transformers' objects).
* **Merged for use**: :func:`merge_lora` adds the updates into the weights once, so the trained
  model is a plain ``Qwen2AudioForConditionalGeneration`` that ``from_pretrained``, the reductions
  and every decoding path load unchanged; only ``A`` and ``B`` (a few MB) are committed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

logger = logging.getLogger(__name__)

PREFIX = "lora."  # key prefix of the adapters in a trained-parameters file (beside the projector's keys)


class LoRAAdapters(torch.nn.Module):
    """Rank-``rank`` adapters on the decoder's linear layers whose names end with one of ``targets``.

    ``attach(model)`` registers the forward hooks that apply them; ``detach()`` removes the hooks.
    """

    def __init__(self, model: Any, rank: int, alpha: float, targets: Sequence[str], seed: int = 0) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"lora rank={rank!r}: must be at least 1")
        self.rank, self.alpha, self.scale = rank, float(alpha), float(alpha) / rank
        self.names = [n for n, m in decoder_linears(model) if n.rsplit(".", 1)[-1] in set(targets)]
        if not self.names:
            raise ValueError(f"lora targets {list(targets)}: no linear layer of the decoder has one of these names")
        gen = torch.Generator().manual_seed(seed)
        modules = dict(decoder_linears(model))
        self.a = torch.nn.ParameterDict()
        self.b = torch.nn.ParameterDict()
        for name in self.names:
            lin = modules[name]
            key = _key(name)
            # A: Kaiming-uniform like nn.Linear; B: zeros, so the adapted model starts as the assembled one
            bound = 1.0 / lin.in_features**0.5
            self.a[key] = torch.nn.Parameter((torch.rand(rank, lin.in_features, generator=gen) * 2 - 1) * bound)
            self.b[key] = torch.nn.Parameter(torch.zeros(lin.out_features, rank))
        self._handles: list[Any] = []

    def attach(self, model: Any) -> None:
        modules = dict(decoder_linears(model))
        self.detach()
        for name in self.names:
            a, b = self.a[_key(name)], self.b[_key(name)]
            self._handles.append(modules[name].register_forward_hook(_hook(a, b, self.scale)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Set the adapters from a trained-parameters file's ``lora.*`` tensors (:meth:`state`'s keys):
        a warm start. Every adapter must be there, with its shape: a file trained with another rank
        or other target layers is an error, not a partial start."""
        want = {f"{PREFIX}{name}.{half}" for name in self.names for half in "AB"}
        have = {k for k in state if k.startswith(PREFIX)}
        if have != want:
            missing, extra = sorted(want - have), sorted(have - want)
            raise ValueError(f"LoRA state does not fit these adapters: missing {missing[:3]}, unexpected {extra[:3]}")
        with torch.no_grad():
            for name in self.names:
                for half, params in (("A", self.a), ("B", self.b)):
                    value = state[f"{PREFIX}{name}.{half}"]
                    if value.shape != params[_key(name)].shape:
                        raise ValueError(f"LoRA {name}.{half}: {tuple(value.shape)} in the file, "
                                         f"{tuple(params[_key(name)].shape)} here (rank {self.rank})")
                    params[_key(name)].copy_(value)

    def state(self) -> dict[str, torch.Tensor]:
        """The adapters as a trained-parameters file holds them: ``lora.<module>.A`` / ``.B``."""
        out = {}
        for name in self.names:
            out[f"{PREFIX}{name}.A"] = self.a[_key(name)].detach().clone().contiguous()
            out[f"{PREFIX}{name}.B"] = self.b[_key(name)].detach().clone().contiguous()
        return out


def decoder_linears(model: Any) -> list[tuple[str, torch.nn.Linear]]:
    """The decoder's ``nn.Linear`` layers, named from the language model (``layers.3.self_attn.q_proj``)."""
    lm = model.model.language_model
    return [(n, m) for n, m in lm.named_modules() if isinstance(m, torch.nn.Linear)]


def _key(name: str) -> str:
    return name.replace(".", "__")


def _hook(a: torch.nn.Parameter, b: torch.nn.Parameter, scale: float) -> Any:
    def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        return output + (x.to(a.dtype) @ a.t() @ b.t() * scale).to(output.dtype)

    return hook


def merge_lora(model: Any, state: dict[str, torch.Tensor], scale: float) -> int:
    """Add ``scale * B @ A`` into each adapted decoder weight (``state``: :meth:`LoRAAdapters.state` keys).

    Returns the number of layers changed. Unknown module names, a missing half or a shape that
    does not fit are errors: a trained file must match the model it was trained on.
    """
    modules = dict(decoder_linears(model))
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if not key.startswith(PREFIX) or key[-2:] not in (".A", ".B"):
            raise ValueError(f"{key!r} is not a LoRA key ({PREFIX}<module>.A or .B)")
        pairs.setdefault(key[len(PREFIX) : -2], {})[key[-1]] = value
    with torch.no_grad():
        for name, ab in pairs.items():
            if name not in modules:
                raise ValueError(f"LoRA for {name!r}: the decoder has no such linear layer")
            if set(ab) != {"A", "B"}:
                raise ValueError(f"LoRA for {name!r}: needs both A and B, got {sorted(ab)}")
            weight = modules[name].weight
            delta = ab["B"].float() @ ab["A"].float() * scale
            if delta.shape != weight.shape:
                raise ValueError(f"LoRA for {name!r}: B @ A is {tuple(delta.shape)}, the weight {tuple(weight.shape)}")
            weight.add_(delta.to(weight.dtype))
    logger.info("merged LoRA (scale %.3g) into %d decoder layers", scale, len(pairs))
    return len(pairs)
