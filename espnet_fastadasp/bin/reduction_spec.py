"""Turn a recipe's reduction setting into a config file and a directory tag.

    python -m espnet_fastadasp.bin.reduction_spec fastadasp_constant@0.3 --output r.yaml --start_layer 2
    # prints the tag (fastadasp_constant@0.3) and writes the ReductionConfig YAML

Settings: ``none``; ``METHOD[_SCHEDULE]@TARGET`` (prefill FLOPs reduction target);
``METHOD[_SCHEDULE]%RATIO`` (fixed per-layer ratio); or a path to a YAML config. ``*_once``
settings (the sparse strategy) reduce at ``--sparse_layer`` when it is given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from espnet_fastadasp.core.config import ConfigError, parse_reduction_spec


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec")
    parser.add_argument("--output", required=True, help="where to write the YAML config")
    parser.add_argument("--start_layer", type=int, default=2, help="first reducing layer (dense schedules)")
    parser.add_argument("--sparse_layer", type=int, default=None, help="the layer of once-schedule settings")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(cmd: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    try:
        tag, cfg = parse_reduction_spec(args.spec, start_layer=args.start_layer, seed=args.seed)
        if cfg.schedule == "once" and args.sparse_layer is not None and not args.spec.endswith((".yaml", ".yml")):
            cfg = cfg.replace(start_layer=args.sparse_layer)
    except ConfigError as exc:
        sys.exit(f"reduction_spec: {exc}")
    cfg.save_yaml(args.output)
    print(tag)


if __name__ == "__main__":
    main()
