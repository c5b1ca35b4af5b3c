"""Train the assembled model's projector (SLAM-ASR style) on data dirs; resumable.

    python -m espnet_fastadasp.bin.train_projector --config conf/train_projector.yaml \\
        --model_dir exp/slam_model_init --output_dir exp/projector --train_dirs data/asr_train

Run it again with the same --output_dir to resume (see espnet_fastadasp.pretrained.train_projector).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from espnet_fastadasp.pretrained.train_projector import Trainer, load_config


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML with ProjectorTrainConfig fields")
    parser.add_argument("--model_dir", default=None)
    parser.add_argument("--output_dir", default=None)
    parser.add_argument("--train_dirs", nargs="+", default=None)
    parser.add_argument("--max_steps", type=int, default=None)
    parser.add_argument("--ctc_warmup_steps", type=int, default=None)
    parser.add_argument("--max_utts_per_dir", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(cmd: Sequence[str] | None = None) -> None:
    args = vars(get_parser().parse_args(cmd))
    config, log_level = args.pop("config"), args.pop("log_level")
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s: %(message)s")
    Trainer(load_config(config, **args)).run()


if __name__ == "__main__":
    main()
