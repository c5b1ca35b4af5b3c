"""Check Kaldi-style data dirs before decoding: Kaldi's ``utils/validate_data_dir.sh --no-feats``
rules and ours (see :mod:`espnet_fastadasp.decoding.data_checks`).

    python -m espnet_fastadasp.bin.validate_data_dir data/test [data/dev ...]
    python -m espnet_fastadasp.bin.validate_data_dir --no-spk-sort data/test   # as Kaldi's option

Every problem is listed, each with its file and line; exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from espnet_fastadasp.decoding.data import DataError
from espnet_fastadasp.decoding.data_checks import check_data_dir

logger = logging.getLogger("espnet_fastadasp.validate_data_dir")


def validate(data_dir: str | Path, spk_sort: bool = True) -> int:
    """Raises DataError listing every problem; returns the number of utterances."""
    report = check_data_dir(data_dir, spk_sort=spk_sort)
    for w in report.warnings:
        logger.warning("%s", w)
    if not report.ok:
        raise DataError(f"{data_dir}: {len(report.problems)} problem(s):\n" + "\n".join(map(str, report.problems)))
    return report.num_utts


def main(cmd: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", nargs="+")
    parser.add_argument(
        "--no-spk-sort",
        dest="spk_sort",
        action="store_false",
        help="do not require utt2spk to be sorted by speaker too (Kaldi's --no-spk-sort)",
    )
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    failed = False
    for d in args.data_dir:
        try:
            n = validate(d, spk_sort=args.spk_sort)
        except DataError as exc:
            logger.error("%s", exc)
            failed = True
            continue
        logger.info("%s: %d utterances OK", d, n)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
