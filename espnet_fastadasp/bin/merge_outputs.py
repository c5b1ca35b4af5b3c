"""Merge the per-job outputs of a decode dir, checking that every key appears exactly once.

    python -m espnet_fastadasp.bin.merge_outputs --key_file data/test/wav.scp \\
        --output_dir exp/decode/test exp/decode/test/logdir/output.*/1best_recog

Exits non-zero, naming the missing, duplicated or unknown keys, and writes nothing when the
parts do not cover the data exactly once (a recipe then never marks the dir done). The merged
``text`` lands where ESPnet's scripts read a decode dir's hypotheses (``<decode dir>/text``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from espnet_fastadasp.decoding.data import DataError, read_keys
from espnet_fastadasp.decoding.outputs import merge_outputs

logger = logging.getLogger("espnet_fastadasp.merge_outputs")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--key_file", required=True, help="the data's keys (first column: wav.scp or segments)")
    parser.add_argument("--output_dir", required=True, help="where the merged files go")
    parser.add_argument("--names", nargs="+", default=["text", "cost"], help="files to merge in each part")
    parser.add_argument("parts", nargs="+", help="the jobs' output dirs")
    return parser


def main(cmd: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level="INFO", format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    try:
        merge_outputs([Path(p) for p in args.parts], read_keys(args.key_file), Path(args.output_dir), args.names)
    except (DataError, ValueError) as exc:
        logger.error("%s", exc)
        return 1
    logger.info("merged %d parts into %s", len(args.parts), args.output_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
