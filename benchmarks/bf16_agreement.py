"""Do the decoding paths give plain ``generate``'s tokens in bfloat16? (issue 28, item 2)

    python benchmarks/bf16_agreement.py --output benchmarks/results/bf16_agreement_cpu   # .json + .md

The mini benchmark's trained tiny Qwen2-Audio (``egs2/mini_synth/speechlm1/model``, committed) on
its five test sets (``data/{asr,lang,gender,rate,nspk}_test``, unpacked by the recipe's stage 1
from ``local/testset.tar.gz``), decoded as the recipe decodes them (``conf/decode.yaml``: batches of
32, at most 96 new tokens, the prompt files' templates; ``--num_utts`` evenly spaced utterances of
each set, 16 by default: one batch), at beam 1 and (on ``--multi_beam_sets``, default ``asr_test``
and ``lang_test``: beam search on a one-word answer runs to the token limit, so a classification
set costs as much as ASR there) at beam 5, without reduction and with
``fastadasp_constant@0.5`` (start layer 1, as ``run.sh``), along every path:

* ``hf``: plain ``model.generate`` as ``Speech2Text`` runs it (only the last prompt position through
  the LM head) -- the reference;
* ``shared``: :func:`espnet_fastadasp.generation.shared_prompt.generate_with_shared_prompt`;
* ``static_eager`` / ``static_compile``: :func:`espnet_fastadasp.generation.static_decoding.generate_static`
  with eager steps, and with ``torch.compile``'d steps (backend ``--compile_backend``, inductor by
  default: the fused C++ kernels a CPU user gets). The step compiles anew for every batch (its
  shapes), tens of seconds each on a small CPU, so ``static_compile`` runs on ``--compile_sets``
  only (default ``asr_test``: the long answers, the most steps for a difference to arise).

Per (dtype, set, beams, reduction, path), against ``hf`` in the same dtype with the same reduction
on the same batches: the fraction of utterances with identical new tokens (up to EOS), the largest
|difference| of the final beam scores (``sequences_scores``, beam 5), and for each utterance that
differs the first new-token step where it does. In float32 every path must give ``hf``'s tokens
(the script exits 1 otherwise); in bfloat16 it reports. Every path in bfloat16 is also compared
with ``hf`` in float32 (``PATH vs float32``): how much bfloat16 itself moves the outputs, and
whether a path is nearer float32 than plain generate is.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "mini_synth" / "speechlm1"
TEST_SETS = ("asr_test", "lang_test", "gender_test", "rate_test", "nspk_test")
PATHS = ("hf", "shared", "static_eager", "static_compile")

logger = logging.getLogger("bf16_agreement")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=RECIPE / "model")
    p.add_argument("--data_dir", type=Path, default=RECIPE / "data", help="holds <test set>/{wav.scp,prompt}")
    p.add_argument("--test_sets", nargs="+", default=list(TEST_SETS))
    p.add_argument("--compile_sets", nargs="*", default=["asr_test"], help="sets also decoded with static_compile")
    p.add_argument(
        "--multi_beam_sets",
        nargs="*",
        default=["asr_test", "lang_test"],
        help="sets also decoded at the beams > 1 (beam search runs to max_new_tokens on one-word answers: "
        "slow, and the classification sets are alike)",
    )
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    p.add_argument("--beams", type=int, nargs="+", default=[1, 5])
    p.add_argument("--reductions", nargs="+", default=["none", "fastadasp_constant@0.5"])
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    p.add_argument("--start_layer", type=int, default=1, help="as the recipe's run.sh")
    p.add_argument("--batch_size", type=int, default=32, help="as conf/decode.yaml")
    p.add_argument(
        "--num_utts", type=int, default=16, help="evenly spaced utterances of each set (one batch at the default "
        "batch size); 0: all")
    p.add_argument("--max_new_tokens", type=int, default=96, help="as conf/decode.yaml")
    p.add_argument(
        "--compile_dtypes", nargs="+", default=["float32", "bfloat16"], help="dtypes also decoded with "
        "static_compile (in float32 its tokens must be plain generate's, as every path's)")
    p.add_argument("--compile_backend", default="inductor")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--output", type=Path, required=True, help="writes OUTPUT.json and OUTPUT.md")
    return p


def new_tokens(sequences: torch.Tensor, prompt_len: int, eos: int, pad: int | None) -> list[list[int]]:
    """Each row's new tokens up to and including its first EOS (padding after it dropped)."""
    rows = []
    for row in sequences[:, prompt_len:].tolist():
        out = []
        for t in row:
            out.append(t)
            if t == eos:
                break
        while out and pad is not None and pad != eos and out[-1] == pad:
            out.pop()
        rows.append(out)
    return rows


def first_difference(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The first step (0 = the first new token) where ``a`` and ``b`` differ; None if equal."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def decode(model: Any, enc: dict[str, torch.Tensor], path: str, beams: int, max_new: int, backend: str) -> Any:
    """One batch along ``path`` (the reduction, if any, is already applied)."""
    from espnet_fastadasp.generation.shared_prompt import generate_with_shared_prompt
    from espnet_fastadasp.generation.static_decoding import generate_static

    gen = dict(
        num_beams=beams, max_new_tokens=max_new, do_sample=False, return_dict_in_generate=True, output_scores=True
    )
    if path == "hf":
        return model.generate(**enc, **gen)
    if path == "shared":
        return generate_with_shared_prompt(model, enc, **gen)
    if path == "static_eager":
        return generate_static(model, enc, step_mode="eager", **gen)
    timings: dict[str, Any] = {}
    out = generate_static(model, enc, step_mode="compile", compile_backend=backend, timings=timings, **gen)
    if timings.get("step_mode") != "compile":
        raise RuntimeError(f"static_compile ran as {timings.get('step_mode')}")
    return out


def load_set(s2t: Any, data_dir: Path, name: str, num_utts: int | None) -> tuple[list[str], list[Any], list[str]]:
    from espnet_fastadasp.decoding.data import resolve_inputs

    d = data_dir / name
    if not (d / "wav.scp").is_file():
        raise FileNotFoundError(
            f"{d}/wav.scp: no test set there; unpack it with the recipe's stage 1 "
            f"(cd {RECIPE} && ./speechlm.sh --stage 1 --stop_stage 1 ..., or local/data.sh)"
        )
    inputs = resolve_inputs([f"{d}/wav.scp,speech,sound", f"{d}/prompt,prompt,text"])
    inputs.audio.sampling_rate = s2t.sampling_rate
    keys = inputs.audio.keys()
    if num_utts is not None and num_utts < len(keys):  # evenly spaced: every speaker / class, not the first few
        keys = [keys[i * len(keys) // num_utts] for i in range(num_utts)]
    return keys, [inputs.audio(k) for k in keys], [inputs.prompts[k] for k in keys]


def planned(args: argparse.Namespace, reductions: list, dtype: str, name: str) -> Iterator[tuple[int, tuple, str]]:
    """(beams, (tag, config), path) of every decoding of set ``name`` in ``dtype``."""
    for beams in args.beams:
        if beams > 1 and name not in args.multi_beam_sets:
            continue
        for reduction in reductions:
            for path in args.paths:
                if path != "static_compile" or (name in args.compile_sets and dtype in args.compile_dtypes):
                    yield beams, reduction, path


def decode_batches(
    model: Any, batches: list[Any], cfg: Any, path: str, beams: int, args: argparse.Namespace, eos: int, pad: int
) -> tuple[list[list[int]], list[float]]:
    """Every batch along ``path`` under ``cfg``: each utterance's new tokens, and its beam score."""
    import espnet_fastadasp as fa

    toks: list[list[int]] = []
    scores: list[float] = []
    for enc in batches:
        with torch.no_grad(), fa.apply(model, cfg), fa.prefill_last_logits(model):
            out = decode(model, enc.enc, path, beams, args.max_new_tokens, args.compile_backend)
        toks += new_tokens(out.sequences, enc.enc["input_ids"].shape[1], eos, pad)
        if beams > 1:
            scores += out.sequences_scores.float().tolist()
        if path == "static_compile":
            torch._dynamo.reset()  # this batch's compiled step is not needed again
    return toks, scores


def run(args: argparse.Namespace, write: Any = lambda data: None) -> dict[str, Any]:
    """Decode everything; ``write`` gets the summary so far after each (dtype, set, beams, reduction, path)."""
    from espnet_fastadasp.core.config import parse_reduction_spec
    from espnet_fastadasp.decoding.data import batched
    from espnet_fastadasp.decoding.speech2text import Speech2Text, load_model
    from espnet_fastadasp.evaluation.environment import environment

    if args.threads:
        torch.set_num_threads(args.threads)
    # each generate_static call compiles its own step (new shapes, new cache objects): no fallback
    # to eager after dynamo's default of 8 recompiles
    torch._dynamo.config.recompile_limit = 1 << 20
    torch._dynamo.config.accumulated_recompile_limit = 1 << 20
    reductions = [parse_reduction_spec(spec, start_layer=args.start_layer) for spec in args.reductions]
    tokens: dict[tuple, list[list[int]]] = {}  # (dtype, set, beams, tag, path) -> per utterance
    scores: dict[tuple, list[float]] = {}
    keys_of: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    t_start = time.perf_counter()
    env = environment(torch.device("cpu"), torch.bfloat16)
    for dtype in args.dtypes:
        model, processor = load_model(str(args.model), dtype, "cpu", None)
        s2t = Speech2Text(model=model, processor=processor, max_new_tokens=args.max_new_tokens)
        eos = model.generation_config.eos_token_id
        eos = eos[0] if isinstance(eos, list) else eos
        pad = processor.tokenizer.pad_token_id
        try:
            for name in args.test_sets:
                keys, waves, templates = load_set(s2t, args.data_dir, name, args.num_utts or None)
                keys_of[name] = keys
                batches = [
                    s2t.encode([keys[i] for i in b], [waves[i] for i in b], [templates[i] for i in b])
                    for b in batched(list(range(len(keys))), args.batch_size)
                ]
                for beams, (tag, cfg), path in planned(args, reductions, dtype, name):
                    key = (dtype, name, beams, tag, path)
                    t0 = time.perf_counter()
                    tokens[key], scores[key] = decode_batches(model, batches, cfg, path, beams, args, eos, pad)
                    label = "/".join(map(str, key))
                    seconds[label] = time.perf_counter() - t0
                    so_far = time.perf_counter() - t_start
                    logger.info("%s: %.1f s (%.0f s so far)", label, seconds[label], so_far)
                    write(summarize(args, tokens, scores, keys_of, seconds, env, so_far))
        finally:
            s2t.close()
        del model, s2t
    data = summarize(args, tokens, scores, keys_of, seconds, env, time.perf_counter() - t_start)
    data["complete"] = True
    return data


def compare(
    keys: list[str], ref_toks: list[list[int]], ref_scores: list[float], toks: list[list[int]], scores: list[float]
) -> dict[str, Any]:
    """One decoding against its reference: identical utterances, beam score differences, where they part."""
    diffs = []
    for key, a, b in zip(keys, ref_toks, toks):
        step = first_difference(a, b)
        if step is not None:
            diffs.append({"key": key, "first_differing_step": step, "ref_len": len(a), "len": len(b)})
    pairs = list(zip(ref_scores, scores, ref_toks, toks))
    return {
        "utts": len(keys),
        "identical": len(keys) - len(diffs),
        "identical_fraction": (len(keys) - len(diffs)) / len(keys) if keys else None,
        "max_abs_score_diff": max((abs(x - y) for x, y, _, _ in pairs), default=None),
        "max_abs_score_diff_identical_tokens": max((abs(x - y) for x, y, a, b in pairs if a == b), default=None),
        "first_differing_steps": sorted(d["first_differing_step"] for d in diffs),
        "differences": diffs,
    }


def summarize(
    args: argparse.Namespace,
    tokens: dict[tuple, list[list[int]]],
    scores: dict[tuple, list[float]],
    keys_of: dict[str, list[str]],
    seconds: dict[str, float],
    env: dict[str, Any],
    total_s: float,
) -> dict[str, Any]:
    """Every finished decoding against plain generate in its dtype (and bf16 generate against float32's)."""
    pairs = []  # (row label, its key, its reference's key)
    for key in tokens:
        dtype, name, beams, tag, path = key
        if path != "hf":
            pairs.append((path, key, (dtype, name, beams, tag, "hf")))
        if dtype == "bfloat16":  # how far bfloat16 moves each path from float32's plain generate
            pairs.append((f"{path} vs float32", key, ("float32", name, beams, tag, "hf")))
    rows = []
    for label, key, ref in pairs:
        dtype, name, beams, tag, _ = key
        if ref not in tokens or any(len(tokens[k]) != len(keys_of[name]) for k in (key, ref)):
            continue  # a decoding still under way, or float32 not run
        row = {"dtype": dtype, "set": name, "beams": beams, "reduction": tag, "path": label}
        rows.append({**row, **compare(keys_of[name], tokens[ref], scores[ref], tokens[key], scores[key])})
    rows.sort(key=lambda r: r["path"].endswith(" vs float32"))  # the dtype's own rows first
    return {
        "complete": False,
        "environment": env,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "float32_identical": all(r["identical"] == r["utts"] for r in rows if r["dtype"] == "float32"),
        "total_s": total_s,
        "seconds": seconds,
        "rows": rows,
    }


def _shown(path: str) -> str:
    """A path inside the repository as a relative one."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return path


def _f(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def render(data: dict[str, Any]) -> str:
    env, a = data["environment"], data["args"]
    lines = [
        "# bfloat16 decoding paths against plain generate (mini benchmark test sets)",
        "",
        *([] if data.get("complete") else ["**Partial: the run is still going or was stopped.**", ""]),
        f"{env['date']} | {env['device_name']} | torch {env['torch']} | transformers {env['transformers']} | "
        f"model {_shown(a['model'])} | batches of {a['batch_size']}, at most {a['max_new_tokens']} new tokens | "
        f"{a['num_utts'] or 'all'} utterances per set (beam > 1 on {', '.join(a['multi_beam_sets'])}) | "
        f"start layer {a['start_layer']} | static_compile: "
        f"{a['compile_backend']}, {', '.join(a['compile_dtypes'])} on {', '.join(a['compile_sets']) or 'no set'} | "
        f"{data['total_s'] / 60:.1f} min in all",
        "",
        f"`python benchmarks/bf16_agreement.py --output {a['output']}` with these settings (see its --help).",
        "",
        f"float32: every path run in it ({', '.join(_float32_paths(data)) or 'none'}) gives plain generate's "
        f"tokens: **{'yes' if data['float32_identical'] else 'NO'}**.",
        "",
        "identical: utterances whose new tokens (up to EOS) equal plain generate's in the same dtype with the "
        "same reduction (`PATH vs float32`: that path in bf16 against plain generate in float32); "
        "max |score diff|: the largest difference of the final beam scores (all utterances; in brackets, "
        "those with identical tokens); first differing steps: the new-token index where each differing "
        "utterance departs (0 = the first token, chosen by the prefill).",
        "",
        "## Over all sets",
        "",
        "| dtype | beams | reduction | path | identical | max abs score diff | first differing steps |",
        "|---|---|---|---|---|---|---|",
    ]
    totals: dict[tuple, dict[str, Any]] = {}
    for r in data["rows"]:
        t = totals.setdefault(
            (r["dtype"], r["beams"], r["reduction"], r["path"]), {"utts": 0, "identical": 0, "score": [], "steps": []}
        )
        t["utts"] += r["utts"]
        t["identical"] += r["identical"]
        t["score"].append((r["max_abs_score_diff"], r["max_abs_score_diff_identical_tokens"]))
        t["steps"] += r["first_differing_steps"]
    for (dtype, beams, red, path), t in totals.items():
        share = f"{t['identical']}/{t['utts']} ({100 * t['identical'] / t['utts']:.1f} %)"
        lines.append(f"| {dtype} | {beams} | {red} | {path} | {share} | {_score(t['score'])} | {_steps(t['steps'])} |")
    lines += [
        "",
        "## Why the paths differ in bfloat16",
        "",
        *WHY,
        "",
        "## Per set",
        "",
        "| dtype | set | beams | reduction | path | identical | max abs score diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['dtype']} | {r['set']} | {r['beams']} | {r['reduction']} | {r['path']} | "
            f"{r['identical']}/{r['utts']} | {_f(r['max_abs_score_diff'], '.2e')} |"
        )
    lines.append("")
    return "\n".join(lines)


#: what each path computes differently (from the code; the tables say how often it shows)
WHY = [
    "In float32 plain generate, `shared` and `static` with eager steps give the same tokens (beam scores "
    "within 1e-6); in bfloat16 each path rounds at other places, and a token flips where two candidates "
    "were within that rounding:",
    "",
    "- the steps' attention: plain generate runs SDPA over the whole cache (the CPU flash kernel keeps "
    "Q K^T in float32 up to the softmax); `shared` and `static` read the prompt once per prompt "
    "(`shared_prompt_attention`, `static_step_attention`): Q K^T as a bf16 `torch.matmul`, so the scores "
    "are rounded to bf16 (8 bits of mantissa) before their float32 softmax, and the output is two bf16 "
    "products (prompt part, generated part) added in bf16;",
    "- `shared` drops the last prompt token from the prefill's cache and feeds it again as generate's "
    "first forward: its keys, values and the first token's logits come from a one-row forward, not from "
    "the prefill (`static` takes the first token from the prefill, as plain generate does);",
    "- `static_compile`: inductor fuses each step's elementwise work (RMSNorm, rotary, SiLU x up, the "
    "softmax) and keeps the intermediates of a fused kernel in float32 where eager rounds every "
    "operator's output to bf16. An earlier run (2026-12-07) found inductor's step with the beam "
    "reorder inside deciding otherwise than eager in float32 too (4 of 16 on asr_test at beam 5 with "
    "`fastadasp_constant@0.5`; `aot_eager` and unfused inductor agreed): the reorder of the generated "
    "buffers now runs between the compiled parts (`generation/static_decoding.py: _reorder_generated`), "
    "and the float32 rows above check it;",
    "- plain generate at beam 5 prefills each prompt once per beam (5 identical rows); the other paths "
    "once. At beam 5 the first differing step is that of the final best hypothesis: beam search may "
    "re-rank, so a difference at step 0 need not be a different first choice;",
    "- a reduction makes flips likelier: at 50 % the tiny model is a poor model (87 % WER on asr_test in "
    "RESULTS.md), its next-token distributions are flat and near-ties common. Without a reduction every "
    "path gives plain generate's tokens in bf16 too; with it, bf16 itself (`hf vs float32`) moves more "
    "utterances than the eager paths differ from each other.",
]


def _float32_paths(data: dict[str, Any]) -> list[str]:
    return sorted({r["path"] for r in data["rows"] if r["dtype"] == "float32"})


def _score(pairs: list[tuple[float | None, float | None]]) -> str:
    """The largest beam score difference over all utterances (and over those with identical tokens)."""
    every = [a for a, _ in pairs if a is not None]
    same = [b for _, b in pairs if b is not None]
    if not every:
        return "-"
    return f"{max(every):.2e}" + (f" ({max(same):.2e})" if same else "")


def _steps(steps: list[int]) -> str:
    """First differing steps as ``step (xN)``, the 12 earliest."""
    counts = Counter(steps)
    shown = ", ".join(f"{s}" + (f" (x{n})" if n > 1 else "") for s, n in sorted(counts.items())[:12])
    return (shown + (" ..." if len(counts) > 12 else "")) or "-"


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.output.parent.mkdir(parents=True, exist_ok=True)

    def write(data: dict[str, Any]) -> None:
        args.output.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
        args.output.with_suffix(".md").write_text(render(data))

    data = run(args, write)
    write(data)
    print(render(data))
    return 0 if data["float32_identical"] or "float32" not in args.dtypes else 1


if __name__ == "__main__":
    sys.exit(main())
