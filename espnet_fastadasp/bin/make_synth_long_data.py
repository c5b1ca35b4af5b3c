"""Synthesise the long-speech testbed's data with espeak-ng (see espnet_fastadasp.recipes.synth_long).

    python -m espnet_fastadasp.bin.make_synth_long_data --out_dir data --split test \\
        --num asr=500,lasr=500,spkid=500,samespk=500,prosody=500,keyword=500 --seed 1 --nj 16

Writes ``<out_dir>/<task>_<split>/`` (wav.scp, text, utt2spk, spk2utt, prompt, utt2dur, meta.jsonl,
wav.sha1, task) and the 16 kHz 16-bit WAV files under ``<out_dir>/wav/<task>_<split>/``. The first
N utterances of a set are the same whatever N, and the output does not depend on --nj.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from espnet_fastadasp.recipes import synth_long


def parse_counts(text: str) -> dict[str, int]:
    """``asr=500,lasr=50`` -> ``{"asr": 500, "lasr": 50}``; a task of synth_long.TASKS each."""
    out: dict[str, int] = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        task, sep, n = item.partition("=")
        if not sep or task not in synth_long.TASKS or not n.isdigit():
            raise ValueError(f"--num: {item!r} is not TASK=COUNT with TASK in {', '.join(synth_long.TASKS)}")
        out[task] = int(n)
    return out


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", required=True, help="where the data dirs and wav/ go")
    parser.add_argument("--split", required=True, choices=("train", "dev", "test"))
    parser.add_argument("--num", required=True, help="utterances per task: asr=500,lasr=100,...")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nj", type=int, default=1, help="worker processes (the output does not depend on it)")
    parser.add_argument("--wordlist", default=str(synth_long.DEFAULT_WORDLIST), help="one lowercase word per line")
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(cmd: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s: %(message)s")
    try:
        counts = parse_counts(args.num)
        synth_long.generate(
            args.out_dir, list(counts), {args.split: counts}, seed=args.seed, nj=args.nj, wordlist=args.wordlist
        )
    except (ValueError, synth_long.SynthError) as exc:
        sys.exit(f"make_synth_long_data: {exc}")


if __name__ == "__main__":
    main()
