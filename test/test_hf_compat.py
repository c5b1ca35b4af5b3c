"""The transformers version adapter: its names are the ones the installed release really uses.

These tests read the installed release's own signatures and output classes, so the next rename
(like 5.24's ``past_key_values`` -> ``cache``) fails here, by name, instead of silently turning
the reduction into a no-op.
"""

from __future__ import annotations

import inspect
import logging

import pytest
import torch

import espnet_fastadasp as fa
from espnet_fastadasp.models import compat as hf_compat
from espnet_fastadasp.models.compat import (
    CACHE_KWARG,
    TESTED_RANGE,
    cache_from_kwargs,
    cache_of_output,
    check_version,
    is_tested_version,
)

from .conftest import make_inputs


def _parameters(fn):
    return inspect.signature(inspect.unwrap(fn)).parameters


@pytest.mark.parametrize(
    "module_name, classes",
    [
        ("transformers.models.qwen2.modeling_qwen2", ["Qwen2Model", "Qwen2DecoderLayer", "Qwen2Attention"]),
        ("transformers.models.llama.modeling_llama", ["LlamaModel", "LlamaDecoderLayer", "LlamaAttention"]),
    ],
)
def test_cache_keyword_is_the_one_the_installed_decoders_take(module_name, classes):
    import importlib

    module = importlib.import_module(module_name)
    for name in classes:
        params = _parameters(getattr(module, name).forward)
        assert CACHE_KWARG in params, f"{name}.forward takes no {CACHE_KWARG!r}: {list(params)}"
    assert callable(getattr(module, "eager_attention_forward", None))  # what eager_attention_function finds


def test_cache_field_of_outputs_and_generate():
    from transformers.generation.utils import GenerateDecoderOnlyOutput
    from transformers.modeling_outputs import BaseModelOutputWithPast

    for cls in (BaseModelOutputWithPast, GenerateDecoderOnlyOutput):
        assert CACHE_KWARG in cls.__dataclass_fields__, f"{cls.__name__} has no field {CACHE_KWARG!r}"


def test_attention_functions_are_where_the_adapter_looks():
    assert callable(hf_compat.registered_attention_function("sdpa"))
    with pytest.raises(KeyError):
        hf_compat.registered_attention_function("no_such_attention")


def test_cache_from_kwargs_reads_either_spelling():
    cache = object()
    assert cache_from_kwargs({CACHE_KWARG: cache}) is cache
    assert cache_from_kwargs({}) is None
    if CACHE_KWARG == "cache":  # the deprecated alias still reaches us when a caller uses it
        assert cache_from_kwargs({"past_key_values": cache}) is cache


def test_cache_of_a_real_forward(model, processor):
    inputs = make_inputs(processor, [1.0])
    with torch.no_grad():
        out = model(**inputs, use_cache=True)
    cache = cache_of_output(out)
    assert cache is not None and cache.get_seq_length() == inputs["input_ids"].shape[1]


def test_with_attn_implementation_copies():
    from transformers import Qwen2Config

    cfg = Qwen2Config()
    cfg._attn_implementation = "sdpa"
    patched = hf_compat.with_attn_implementation(cfg, "eager")
    assert hf_compat.attn_implementation(patched) == "eager"
    assert hf_compat.attn_implementation(cfg) == "sdpa"


@pytest.mark.parametrize(
    "version, tested",
    [
        (TESTED_RANGE[0], True),
        (f"{TESTED_RANGE[1]}.0", True),
        (f"{TESTED_RANGE[1]}.9", True),  # a patch release of the newest tested minor
        ("5.16.1", False),
        ("5.99.0", False),
        ("6.0.0", False),
        ("4.57.6", False),
    ],
)
def test_tested_range(version, tested):
    assert is_tested_version(version) is tested
    message = check_version(version)
    assert (message is None) is tested
    if message:
        assert version in message and TESTED_RANGE[0] in message


def test_the_installed_release_is_tested():
    assert is_tested_version(), f"transformers {hf_compat.VERSION} is outside TESTED_RANGE {TESTED_RANGE}"


def test_apply_warns_outside_the_tested_range(model, caplog, monkeypatch):
    with caplog.at_level(logging.WARNING, logger="espnet_fastadasp.models.compat"):
        fa.apply(model, fa.ReductionConfig(method="none")).remove()
    assert not caplog.records
    monkeypatch.setattr(hf_compat, "VERSION", hf_compat.Version("5.99.0"))
    with caplog.at_level(logging.WARNING, logger="espnet_fastadasp.models.compat"):
        fa.apply(model, fa.ReductionConfig(method="none")).remove()
    assert any("5.99.0" in r.getMessage() and "outside" in r.getMessage() for r in caplog.records)


def test_setup_py_declares_the_tested_range():
    from pathlib import Path

    setup = (Path(__file__).parents[1] / "setup.py").read_text()
    low, high = TESTED_RANGE
    major, minor = (int(x) for x in high.split(".")[:2])
    assert f'"transformers>={low},<{major}.{minor + 1}"' in setup
    constraints = (Path(__file__).parents[1] / "tools" / "constraints.txt").read_text().splitlines()
    pinned = next(line.split("==")[1] for line in constraints if line.startswith("transformers=="))
    assert is_tested_version(pinned)


def test_setup_py_torch_range_holds_every_pinned_torch():
    """The core venv's and the ESPnet venv's torch pins lie in the torch range setup.py declares."""
    import re
    from pathlib import Path

    from packaging.specifiers import SpecifierSet

    root = Path(__file__).parents[1]
    spec = SpecifierSet(re.search(r'"torch([^"]+)"', (root / "setup.py").read_text()).group(1))
    for name in ("constraints.txt", "constraints-espnet.txt"):
        lines = (root / "tools" / name).read_text().splitlines()
        pinned = next(line.split("==")[1] for line in lines if line.startswith("torch=="))
        assert pinned in spec, f"tools/{name} pins torch {pinned}, outside setup.py's torch{spec}"
