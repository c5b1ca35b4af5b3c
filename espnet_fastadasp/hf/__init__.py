"""The import paths of the package before it was split by job: ``espnet_fastadasp.hf.X``.

The flat ``hf/`` folder held three jobs, which now have a package each:
- :mod:`espnet_fastadasp.reduction`: the reduction inside the decoder (the patch, the prefill
  layout, the reducing layer's forward, the attention received and its kernels, masks, the
  reduced cache layers, per-layer costs);
- :mod:`espnet_fastadasp.generation`: decoding around it (shared-prompt beam search, the
  fixed-shape static path, last-position logits, the beam fix);
- :mod:`espnet_fastadasp.models`: access to transformers models (the version adapter, finding a
  model's parts, tiny test models).

An old path still imports the module at its new place (the same module object, so a patch made
through either name is seen by both), with a ``DeprecationWarning`` naming the new path. A name
that never existed fails as usual.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: old module name (under ``espnet_fastadasp.hf``) -> the package that holds it now
MOVED = {
    **dict.fromkeys(
        (
            "patch",
            "prefill",
            "layer_forward",
            "anatomy",
            "attention",
            "triton_received",
            "triton_kernels",
            "masks",
            "cache_layers",
            "step_timer",
            "layer_costs",
        ),
        "reduction",
    ),
    **dict.fromkeys(
        ("shared_prompt", "static_decoding", "static_cache", "static_search", "logits", "fixes"), "generation"
    ),
    **dict.fromkeys(("compat", "parts", "tiny"), "models"),
}


def new_name(old: str) -> str:
    """``espnet_fastadasp.hf.X`` -> where ``X`` lives now."""
    return f"espnet_fastadasp.{MOVED[old]}.{old}"


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``espnet_fastadasp.hf.X`` for a moved ``X`` and hands out the module at its new path."""

    def find_spec(self, fullname: str, path=None, target=None):  # noqa: ANN001 (importlib's protocol)
        prefix, _, leaf = fullname.rpartition(".")
        if prefix != __name__ or leaf not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        leaf = spec.name.rpartition(".")[2]
        warnings.warn(f"{spec.name} moved to {new_name(leaf)}; import it from there", DeprecationWarning, stacklevel=2)
        return importlib.import_module(new_name(leaf))

    def exec_module(self, module: ModuleType) -> None:  # the module is already executed at its new path
        return None


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())


def __getattr__(name: str) -> ModuleType:
    """``from espnet_fastadasp.hf import compat`` (a submodule as an attribute)."""
    if name in MOVED:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
