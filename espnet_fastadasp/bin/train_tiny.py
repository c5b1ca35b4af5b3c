"""Train the mini benchmark's tiny Qwen2-Audio (see espnet_fastadasp.recipes.train for the design).

    python -m espnet_fastadasp.bin.train_tiny --train_dirs data/asr_train data/lang_train ... \\
        --output_dir exp/tiny_qwen2_audio --device cuda --max_minutes 18

Every field of TrainConfig is an option (``--batch_size 64``, ``--layers 8`` ...); ``--config``
takes a YAML of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from espnet_fastadasp.recipes.train import TrainConfig, train


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML of TrainConfig fields")
    for f in dataclasses.fields(TrainConfig):
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        if f.name == "train_dirs":
            parser.add_argument("--train_dirs", nargs="+", default=None)
        elif "bool" in kind:
            parser.add_argument(f"--{f.name}", type=lambda s: s.lower() in ("1", "true", "yes"), default=None)
        elif "int" in kind and "None" in kind:
            parser.add_argument(f"--{f.name}", type=int, default=None)
        elif kind.startswith("int"):
            parser.add_argument(f"--{f.name}", type=int, default=None)
        elif kind.startswith("float"):
            parser.add_argument(f"--{f.name}", type=float, default=None)
        else:
            parser.add_argument(f"--{f.name}", default=None)
    return parser


def main(cmd: Sequence[str] | None = None) -> Path:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    values = yaml.safe_load(Path(args.config).read_text()) if args.config else {}
    values.update({k: v for k, v in vars(args).items() if v is not None and k != "config"})
    missing = [k for k in ("train_dirs", "output_dir") if k not in values]
    if missing:
        sys.exit(f"train_tiny: --{' --'.join(missing)} required")
    try:
        cfg = TrainConfig(**values)
    except (TypeError, ValueError) as exc:  # an unknown field in the YAML, or a bad value
        sys.exit(f"train_tiny: {exc}")
    Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.output_dir) / "command.txt").write_text(
        "python -m espnet_fastadasp.bin.train_tiny " + " ".join(shlex.quote(a) for a in (cmd or sys.argv[1:])) + "\n"
    )
    return train(cfg)


if __name__ == "__main__":
    main()
