"""RESULTS.md of the real-weights testbed: WER with bootstrap intervals, the Whisper peer, the bars.

Every WER is recomputed per utterance from ``<decode dir>/text`` and ``data/<set>/text`` (whisper_en
normalisation, as the scorer of stage 5) with a 95 % percentile bootstrap interval over
utterances (:func:`espnet_fastadasp.evaluation.bootstrap.bootstrap_ratio`, 1,000 resamples, seed 0).
The bar is the issue's, fixed before any model was decoded: ASR WER <= 10 without reduction on
asr_test. The LibriVox row is reported, never a bar.
"""

from __future__ import annotations

import json
from pathlib import Path

from espnet_fastadasp.evaluation.bootstrap import Interval, bootstrap_ratio
from espnet_fastadasp.evaluation.scoring import align_asr, read_text

ASR_BAR = 10.0


def wer_interval(ref_file: Path, hyp_file: Path) -> Interval:
    """WER (%) of a decode and its bootstrap interval over utterances."""
    utts = align_asr(read_text(ref_file), read_text(hyp_file), units=("word",)).word
    return bootstrap_ratio([u.num_errors for u in utts], [u.num_ref for u in utts])


def mean_seconds(data_dir: Path) -> float | None:
    """Mean utterance duration from ``utt2dur`` (None where the set has none)."""
    f = data_dir / "utt2dur"
    if not f.is_file():
        return None
    durs = [float(line.split()[1]) for line in f.read_text().splitlines() if line.strip()]
    return sum(durs) / len(durs) if durs else None


def results_markdown(exp_dir: Path, peer_dir: Path, data_dir: Path, sets: list[str], model: Path, projector: Path) -> str:
    """The RESULTS.md section: one row per (setting, set), the peer's rows, the verdict on the bar."""
    cfg = json.loads((model / "config.json").read_text())
    info = json.loads((model / "assembly.json").read_text()) if (model / "assembly.json").is_file() else {}
    lines = [
        "# Whisper tiny.en + SmolLM2-135M as a Qwen2-Audio (projector + LoRA trained on CPU)",
        "",
        f"- decoder layers: {cfg['text_config']['num_hidden_layers']}",
        f"- model: {model} (re-assembled from {info.get('smollm2', {}).get('package')} and "
        f"{info.get('whisper', {}).get('package')}); trained parameters: {projector}",
        "- WER in %, whisper_en normalisation, [95 % bootstrap interval over utterances]",
        "",
        "| system | setting | set | utts | mean s | WER |",
        "|---|---|---|---|---|---|",
    ]
    verdict = []
    for dset in sets:
        secs = mean_seconds(data_dir / dset)
        sec = "-" if secs is None else f"{secs:.1f}"
        for dec in sorted(exp_dir.glob(f"decode_*/{dset}/text")):
            setting = dec.parent.parent.name.removeprefix("decode_")
            iv = wer_interval(data_dir / dset / "text", dec)
            lines.append(f"| Speech LM | {setting} | {dset} | {iv.num_utts} | {sec} | {iv.format()} |")
            if dset == "asr_test" and setting == "none":
                ok = iv.value <= ASR_BAR
                verdict.append(
                    f"- bar ASR WER <= {ASR_BAR:g} on asr_test without reduction: {iv.value:.1f} -> "
                    + ("met" if ok else f"**missed** by {iv.value - ASR_BAR:.1f}")
                )
        peer = peer_dir / dset / "text"
        if peer.is_file():
            iv = wer_interval(data_dir / dset / "text", peer)
            lines.append(f"| Whisper tiny.en (peer) | none | {dset} | {iv.num_utts} | {sec} | {iv.format()} |")
    return "\n".join(lines + [""] + verdict) + "\n"
