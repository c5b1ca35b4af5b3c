"""Assemble the Whisper tiny.en + SmolLM2-135M Qwen2-Audio and write a standard checkpoint dir.

    python -m espnet_fastadasp.bin.assemble_slam --out_dir exp/slam_model                  # offline, pinned packages
    python -m espnet_fastadasp.bin.assemble_slam --out_dir exp/slam_model --projector p.safetensors
    python -m espnet_fastadasp.bin.assemble_slam --out_dir exp/slam_model --source hub     # from the hub instead

The dir loads with ``Qwen2AudioForConditionalGeneration.from_pretrained`` / ``AutoProcessor`` and
with ``Speech2Text``, like a downloaded checkpoint (see espnet_fastadasp.pretrained.assemble).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from espnet_fastadasp.pretrained import assemble
from espnet_fastadasp.pretrained.sources import PretrainedSourceError, sha256_of


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", required=True)
    parser.add_argument("--source", default="packages", choices=assemble.SOURCES)
    parser.add_argument("--projector", default=None, help="a trained projector (safetensors); default: untrained (seed)")
    parser.add_argument("--seed", type=int, default=0, help="the untrained projector's initialisation")
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser


def main(cmd: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s: %(message)s")
    try:
        model, processor = assemble.assemble(args.source, seed=args.seed)
    except PretrainedSourceError as exc:
        sys.exit(f"assemble_slam: {exc}")
    provenance = {"source": args.source, "projector": None}
    if args.projector:
        assemble.load_projector(model, args.projector)
        provenance["projector"] = {"file": args.projector, "sha256": sha256_of(__import__("pathlib").Path(args.projector))}
    else:
        provenance["projector_seed"] = args.seed
    assemble.write_checkpoint(model, processor, args.out_dir, provenance)


if __name__ == "__main__":
    main()
