"""Synthesise the mini benchmark's multitask speech data with espeak-ng (see espnet_fastadasp.recipes.synth).

    python -m espnet_fastadasp.bin.make_synth_data --out_dir data --tasks asr,lang,gender,rate,nspk \\
        --num_train 20000 --num_test 200 --seed 1 --nj 16 --wordlist egs2/mini_synth/speechlm1/local/wordlist.txt

Writes one Kaldi-style data dir per task and split, ``<out_dir>/<task>_<split>/`` (wav.scp, text,
utt2spk, spk2utt, prompt, utt2dur, meta.jsonl), and the 16 kHz 16-bit WAV files under
``<out_dir>/wav/<task>_<split>/``. The output depends only on the tasks, the counts, the seed and
the word list, not on --nj. Needs espeak-ng: ``bash tools/installers/install_debian.sh data``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from espnet_fastadasp.recipes import synth

logger = logging.getLogger("espnet_fastadasp.make_synth_data")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", required=True, help="where the data dirs and wav/ go")
    parser.add_argument("--tasks", default=",".join(synth.TASKS), help="comma-separated, from: %(default)s")
    parser.add_argument("--num_train", type=int, default=20000, help="utterances per task in <task>_train")
    parser.add_argument("--num_dev", type=int, default=0, help="utterances per task in <task>_dev (0: none)")
    parser.add_argument("--num_test", type=int, default=200, help="utterances per task in <task>_test")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nj", type=int, default=1, help="worker processes (the output does not depend on it)")
    parser.add_argument("--wordlist", default=str(synth.DEFAULT_WORDLIST), help="one lowercase word per line")
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(cmd: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s: %(message)s")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    splits = {"train": args.num_train, "dev": args.num_dev, "test": args.num_test}
    splits = {k: v for k, v in splits.items() if v}
    t0 = time.perf_counter()
    try:
        dirs = synth.generate(args.out_dir, tasks, splits, seed=args.seed, nj=args.nj, wordlist=args.wordlist)
    except synth.SynthError as exc:
        sys.exit(f"make_synth_data: {exc}")
    dt = time.perf_counter() - t0
    total = len(tasks) * sum(splits.values())
    logger.info(
        "throughput: %d utterances in %.1f s = %.1f utt/s (nj=%d); data dirs: %s",
        total,
        dt,
        total / max(dt, 1e-9),
        args.nj,
        " ".join(sorted(dirs)),
    )


if __name__ == "__main__":
    main()
