"""Choose the layer of the sparse reduction by Transfer Entropy (estimator: evaluation.transfer_entropy).

    python -m espnet_fastadasp.bin.select_layer --model_name_or_path M --data_dir data/lang_dev \\
        --flops_reduction 0.5 --output_dir exp/select_layer/lang --write_config conf/reduction_sparse.yaml \\
        [--validate_dir data/lang_test]

For every candidate layer it applies the sparse reduction (``schedule: once``) there, runs the
prefill of ``--num_utts`` calibration utterances and keeps the final features; the reference is
the same reduction at the last layer. It ranks the layers by TE (lowest first), writes
``te.json`` / ``te.md`` and a reduction config with the chosen ``start_layer`` for the sparse
decode. With ``--validate_dir`` it also decodes that data dir with the reduction at every
candidate layer and reports accuracy per layer, the Spearman correlation between TE and accuracy,
and whether the chosen layer is within 1 point of the best one.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

import espnet_fastadasp as fa
from espnet_fastadasp.core.config import ConfigError, ReductionConfig
from espnet_fastadasp.decoding.data import batched, read_key_value, resolve_inputs
from espnet_fastadasp.decoding.speech2text import Speech2Text
from espnet_fastadasp.evaluation.transfer_entropy import spearman, transfer_entropy

logger = logging.getLogger("espnet_fastadasp.select_layer")


class Calibration:
    """Utterances of a data dir, encoded once per batch on demand by the decoder's ``encode``."""

    def __init__(self, data_dir: Path, s2t: Speech2Text, num_utts: int | None) -> None:
        self.inputs = resolve_inputs(
            [f"{data_dir}/wav.scp,speech,sound", f"{data_dir}/prompt,prompt,text"], s2t.sampling_rate, 3600.0
        )
        self.keys = sorted(self.inputs.audio.keys())[: num_utts or None]
        self.s2t = s2t

    def encode(self, keys: list[str]) -> dict[str, torch.Tensor]:
        waves = [self.inputs.audio(k) for k in keys]
        return self.s2t.encode(keys, waves, [self.inputs.prompts[k] for k in keys]).enc


def final_features(calib: Calibration, cfg: ReductionConfig, batch_size: int) -> tuple[np.ndarray, float]:
    """(N, d) final hidden states at the last prompt position under ``cfg``, and the mean FLOPs reduction."""
    model = calib.s2t.model
    handle = fa.apply(model, cfg)
    captured: list[torch.Tensor] = []
    hook = handle.parts.decoder.register_forward_hook(
        lambda m, a, out: captured.append(out.last_hidden_state[:, -1].float().cpu())
    )
    reductions = []
    try:
        with torch.no_grad():
            for keys in batched(calib.keys, batch_size):
                model(**calib.encode(keys), use_cache=True)
                reductions.append(handle.stats.flops_reduction)
    finally:
        hook.remove()
        handle.remove()
    return torch.cat(captured).numpy(), float(np.mean(reductions))


def decode_accuracy(
    s2t: Speech2Text, data_dir: Path, cfg: ReductionConfig, batch_size: int, labels: list[str] | None
) -> float:
    """Accuracy of greedy decoding of ``data_dir`` under ``cfg`` (the sparse tasks are classification)."""
    from espnet_fastadasp.evaluation.scoring import score_classification

    calib = Calibration(data_dir, s2t, None)
    refs = read_key_value(data_dir / "text")
    hyps = {}
    for keys in batched(calib.keys, batch_size):
        waves = [calib.inputs.audio(k) for k in keys]
        new, _ = s2t.generate(s2t.encode(keys, waves, [calib.inputs.prompts[k] for k in keys]), cfg)
        texts = s2t.processor.batch_decode(new, skip_special_tokens=True)
        hyps.update({k: " ".join(t.split()) for k, t in zip(keys, texts)})
    return float(score_classification({k: refs[k] for k in hyps}, hyps, labels=labels)["accuracy"])


def validate(
    rows: list[dict[str, Any]],
    chosen: int,
    s2t: Speech2Text,
    data_dir: Path,
    base: ReductionConfig,
    batch_size: int,
    labels: list[str] | None,
) -> dict[str, Any]:
    """Decode ``data_dir`` with the reduction at every ranked layer; compare accuracy with TE.

    Adds ``accuracy`` to each row. A layer where some utterance of ``data_dir`` cannot reach the
    target (a short clip, a deep layer) gets ``accuracy: None`` and the reason, and is left out
    of the comparison: decoding it with a weaker reduction would not be the same FLOPs.
    """
    for row in rows:
        try:
            row["accuracy"] = decode_accuracy(s2t, data_dir, base.replace(start_layer=row["layer"]), batch_size, labels)
        except ConfigError as exc:
            logger.warning("layer %d not validated: %s", row["layer"], exc)
            row["accuracy"], row["validation_skipped"] = None, str(exc)
    scored = [r for r in rows if r["accuracy"] is not None]
    if not scored:
        return {"data_dir": str(data_dir), "error": "the target is unreachable on the validation set at every layer"}
    accs = {r["layer"]: r["accuracy"] for r in scored}
    best = max(accs.values())
    chosen_acc = accs.get(chosen)
    return {
        "data_dir": str(data_dir),
        "spearman_te_vs_accuracy": spearman([r["te"] for r in scored], [r["accuracy"] for r in scored]),
        "layers_validated": sorted(accs),
        "best_layer": max(accs, key=lambda k: (accs[k], -k)),
        "best_accuracy": best,
        "chosen_accuracy": chosen_acc,
        "chosen_within_1_point": None if chosen_acc is None else best - chosen_acc <= 1.0,
    }


def select_layer(
    model_name_or_path: str,
    data_dir: str,
    output_dir: str,
    method: str = "fastadasp",
    flops_reduction: float | None = 0.5,
    ratio: float | None = None,
    candidate_layers: Sequence[int] | None = None,
    num_utts: int = 64,
    batch_size: int = 8,
    ngpu: int = 0,
    dtype: str = "float32",
    validate_dir: str | None = None,
    max_new_tokens: int = 8,
    labels: list[str] | None = None,
    write_config: str | None = None,
) -> dict[str, Any]:
    t_start = time.perf_counter()
    device = "cuda" if ngpu > 0 else "cpu"
    s2t = Speech2Text(model_name_or_path, device=device, dtype=dtype, max_new_tokens=max_new_tokens)
    # the layers that may reduce: all, or those before the first whose keys later layers reuse
    num_layers = len(fa.reducible_layers(s2t.model))
    layers = list(candidate_layers) if candidate_layers else list(range(1, num_layers - 1))
    bad = [layer for layer in layers if not 0 <= layer < num_layers - 1]
    if bad:
        raise ConfigError(
            f"candidate layers {bad} outside 0..{num_layers - 2} (layer {num_layers - 1}, the last that may reduce, "
            "is the reference)"
        )
    amount = {"flops_reduction": flops_reduction} if ratio is None else {"ratio": ratio}
    base = ReductionConfig(method=method, schedule="once", start_layer=0, **amount)
    calib = Calibration(Path(data_dir), s2t, num_utts)
    if len(calib.keys) < 8:
        raise ConfigError(f"{data_dir}: {len(calib.keys)} calibration utterances; want at least 8")

    ref_ratio = ratio if ratio is not None else flops_reduction
    reference, _ = final_features(
        calib,
        ReductionConfig(method=method, schedule="once", start_layer=num_layers - 1, ratio=ref_ratio),
        batch_size,
    )
    per_layer, info = {}, {}
    for layer in tqdm(layers, desc="layers", unit="layer", disable=None):
        t0 = time.perf_counter()
        try:
            feats, achieved = final_features(calib, base.replace(start_layer=layer), batch_size)
        except ConfigError as exc:
            logger.warning("layer %d skipped: %s", layer, exc)
            info[layer] = {"skipped": str(exc)}
            continue
        per_layer[layer] = feats
        info[layer] = {"flops_reduction": achieved, "seconds": time.perf_counter() - t0}
    if not per_layer:
        raise ConfigError("no candidate layer can reach the target; lower --flops_reduction")
    ranked = transfer_entropy(reference, per_layer)
    chosen = ranked[0].layer
    result: dict[str, Any] = {
        "model": model_name_or_path,
        "data_dir": data_dir,
        "num_utts": len(calib.keys),
        "method": method,
        **amount,
        "estimator": "gaussian entropy of final-layer features at the last prompt position (see transfer_entropy.py)",
        "chosen_layer": chosen,
        "layers": [
            {"layer": s.layer, "te": s.te, "entropy": s.entropy, "rank": i + 1, **info[s.layer]}
            for i, s in enumerate(ranked)
        ],
    }
    if validate_dir:
        result["validation"] = validate(result["layers"], chosen, s2t, Path(validate_dir), base, batch_size, labels)
    result["seconds"] = time.perf_counter() - t_start
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "te.json").write_text(json.dumps(result, indent=2))
    (out / "te.md").write_text(markdown(result))
    if write_config:
        base.replace(start_layer=chosen).save_yaml(write_config)
    logger.info("chosen layer %d (TE %.4f); %.1f s", chosen, ranked[0].te, result["seconds"])
    return result


def markdown(result: dict[str, Any]) -> str:
    val = "accuracy" in result["layers"][0]
    head = "| layer | TE | rank | entropy | FLOPs red. % |" + (" accuracy |" if val else "")
    lines = [
        f"Transfer Entropy on {result['data_dir']} ({result['num_utts']} utts), chosen layer "
        f"**{result['chosen_layer']}**",
        "",
        head,
        "|---" * (5 + val) + "|",
    ]
    for r in sorted(result["layers"], key=lambda r: r["layer"]):
        red = r.get("flops_reduction")
        acc = (" - |" if r["accuracy"] is None else f" {r['accuracy']:.2f} |") if val else ""
        lines.append(
            f"| {r['layer']} | {r['te']:.4f} | {r['rank']} | {r['entropy']:.3f} | "
            f"{'-' if red is None else f'{100 * red:.1f}'} |{acc}"
        )
    if "validation" in result and "error" in result["validation"]:
        lines += ["", f"Validation: {result['validation']['error']}"]
    elif "validation" in result:
        v = result["validation"]
        rho = v["spearman_te_vs_accuracy"]
        rho_text = "undefined (constant)" if rho is None else f"{rho:.3f}"
        lines += [
            "",
            f"Spearman(TE, accuracy) = {rho_text}; best layer {v['best_layer']} "
            f"({v['best_accuracy']:.2f}); chosen {result['chosen_layer']} ("
            f"{'not validated' if v['chosen_accuracy'] is None else format(v['chosen_accuracy'], '.2f')}); "
            f"within 1 point: {v['chosen_within_1_point']}",
        ]
    return "\n".join(lines) + "\n"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model_name_or_path", required=True)
    p.add_argument("--data_dir", required=True, help="calibration data dir (wav.scp, prompt)")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--method", default="fastadasp")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--flops_reduction", type=float, default=None)
    g.add_argument("--ratio", type=float, default=None)
    p.add_argument("--candidate_layers", type=int, nargs="+", default=None)
    p.add_argument("--num_utts", type=int, default=64)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--validate_dir", default=None, help="data dir decoded at every layer for accuracy")
    p.add_argument("--max_new_tokens", type=int, default=8)
    p.add_argument("--labels", default=None, help="comma-separated label set for scoring")
    p.add_argument("--write_config", default=None, help="write the reduction YAML with the chosen layer here")
    return p


def main(cmd: Sequence[str] | None = None) -> dict[str, Any]:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    kwargs = vars(args)
    if kwargs["flops_reduction"] is None and kwargs["ratio"] is None:
        kwargs["flops_reduction"] = 0.5
    kwargs["labels"] = args.labels.split(",") if args.labels else None
    return select_layer(**kwargs)


if __name__ == "__main__":
    main()
