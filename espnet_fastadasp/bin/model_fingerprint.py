"""Print the id of a model: the SHA-256 of a local checkpoint dir's weights and configs, or a hub id.

    python -m espnet_fastadasp.bin.model_fingerprint exp/slam_model   # sha256:3f0c...

``speechlm.sh`` writes it into every decode dir and refuses to reuse a dir decoded with another
model (see :func:`espnet_fastadasp.evaluation.environment.model_fingerprint`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from espnet_fastadasp.evaluation.environment import model_fingerprint


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_name_or_path", help="a local checkpoint dir or a hub id")
    return parser


def main(cmd: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    try:
        print(model_fingerprint(args.model_name_or_path))
    except OSError as exc:
        sys.exit(f"model_fingerprint: {exc}")


if __name__ == "__main__":
    main()
