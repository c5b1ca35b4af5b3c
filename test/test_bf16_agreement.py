"""benchmarks/bf16_agreement.py: its comparison of decoding paths, and a tiny end-to-end run."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bf16_agreement.py"


@pytest.fixture(scope="module")
def agreement():
    spec = importlib.util.spec_from_file_location("bf16_agreement", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_new_tokens_stop_at_eos_and_drop_padding(agreement):
    seq = torch.tensor([[7, 7, 3, 4, 2, 0, 0], [7, 7, 5, 0, 0, 0, 0], [7, 7, 2, 6, 6, 6, 6]])
    assert agreement.new_tokens(seq, prompt_len=2, eos=2, pad=0) == [[3, 4, 2], [5], [2]]


def test_first_difference(agreement):
    assert agreement.first_difference([1, 2, 3], [1, 2, 3]) is None
    assert agreement.first_difference([1, 2, 3], [1, 5, 3]) == 1
    assert agreement.first_difference([1, 2], [1, 2, 3]) == 2  # one ended (EOS) where the other went on


def test_summary_compares_each_path_with_generate_in_its_dtype(agreement):
    keys = ["a", "b"]
    ref, other = [[1, 2], [3, 4]], [[1, 2], [3, 5]]
    tokens = {
        ("float32", "s", 5, "none", "hf"): ref,
        ("float32", "s", 5, "none", "shared"): ref,
        ("bfloat16", "s", 5, "none", "hf"): ref,
        ("bfloat16", "s", 5, "none", "static_eager"): other,
        ("bfloat16", "s", 5, "none", "static_compile"): [[1, 2]],  # still under way: no row yet
    }
    scores = {k: [-1.0, -2.0] for k in tokens}
    scores[("bfloat16", "s", 5, "none", "static_eager")] = [-1.25, -2.5]
    args = argparse.Namespace(dtypes=["float32", "bfloat16"], model=Path("m"))
    data = agreement.summarize(args, tokens, scores, {"s": keys}, {}, {}, 1.0)
    rows = {(r["dtype"], r["path"]): r for r in data["rows"]}
    assert set(rows) == {
        ("float32", "shared"),
        ("bfloat16", "static_eager"),
        ("bfloat16", "hf vs float32"),
        ("bfloat16", "static_eager vs float32"),
    }
    assert data["float32_identical"] and data["args"]["model"] == "m"
    eager = rows["bfloat16", "static_eager"]
    assert (eager["identical"], eager["first_differing_steps"]) == (1, [1])
    assert eager["max_abs_score_diff"] == 0.5 and eager["max_abs_score_diff_identical_tokens"] == 0.25
    assert eager["differences"] == [{"key": "b", "first_differing_step": 1, "ref_len": 2, "len": 2}]
    assert rows["bfloat16", "hf vs float32"]["identical"] == 2
    assert rows["bfloat16", "static_eager vs float32"]["first_differing_steps"] == [1]


@pytest.fixture(scope="module")
def mini_test_sets():
    """The mini benchmark's committed test sets, unpacked as its recipe's stage 1 does (a tar
    extraction; kept for later runs, as the recipe keeps them)."""
    recipe = SCRIPT.parents[1] / "egs2/mini_synth/speechlm1"
    if not (recipe / "data/lang_test/wav.scp").is_file():
        subprocess.run(["bash", "local/data.sh"], cwd=recipe, check=True, capture_output=True)
    return recipe / "data"


def test_runs_on_the_mini_benchmark(agreement, mini_test_sets, tmp_path):
    """Two utterances, a few tokens, float32 and bfloat16: the report and its JSON are written and
    float32 agrees exactly."""
    out = tmp_path / "agree"
    argv = ["--output", str(out), "--test_sets", "lang_test", "--num_utts", "2", "--beams", "1", "2"]
    argv += ["--max_new_tokens", "3", "--paths", "hf", "shared", "static_eager", "--compile_sets"]
    assert agreement.main(argv) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["complete"] and data["float32_identical"]
    paths = {"shared", "static_eager"}
    assert {r["path"] for r in data["rows"]} == paths | {f"{p} vs float32" for p in paths | {"hf"}}
    assert all(r["utts"] == 2 for r in data["rows"])
    assert "(shared, static_eager) gives plain generate's tokens: **yes**" in out.with_suffix(".md").read_text()


def test_compiled_static_step_gives_generates_tokens_at_beam_5(agreement, mini_test_sets, tmp_path):
    """The inductor-compiled static step, beam 5 with a reduction, in float32: plain generate's
    tokens (with the beam reorder inside the compiled graph, inductor's fused step decided
    otherwise on these utterances; the script exits 1 when float32 differs)."""
    out = tmp_path / "agree"
    argv = ["--output", str(out), "--test_sets", "asr_test", "--num_utts", "4", "--beams", "5"]
    argv += ["--reductions", "fastadasp_constant@0.5", "--paths", "hf", "static_compile"]
    argv += ["--dtypes", "float32", "--compile_dtypes", "float32"]
    assert agreement.main(argv) == 0
    assert json.loads(out.with_suffix(".json").read_text())["float32_identical"]
