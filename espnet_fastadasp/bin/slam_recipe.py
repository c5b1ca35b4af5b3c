"""Helpers of the real-weights recipe (egs2/mini_synth_long/slam1):

    python -m espnet_fastadasp.bin.slam_recipe librivox --out_dir data/librivox     # the 5 real clips
    python -m espnet_fastadasp.bin.slam_recipe prompts data/asr_test data/lasr_test  # chat ASR prompts
    python -m espnet_fastadasp.bin.slam_recipe whisper --data_dir data/asr_test --out_dir exp/whisper_tiny_en/asr_test
    python -m espnet_fastadasp.bin.slam_recipe ctc --model_dir exp/slam_init --checkpoint exp/projector/checkpoint.pt \
        --train_dirs data/asr_train --data_dir data/asr_test --out_dir exp/projector/ctc_greedy/asr_test
    python -m espnet_fastadasp.bin.slam_recipe report --exp_dir exp/slam_whisper_smollm2 --peer_dir ... >> RESULTS.md
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from espnet_fastadasp.pretrained.sources import PretrainedSourceError


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    sub = parser.add_subparsers(dest="cmd", required=True)
    lv = sub.add_parser("librivox", help="a data dir of pocketsphinx-testdata's LibriVox utterances")
    lv.add_argument("--out_dir", required=True)
    pr = sub.add_parser("prompts", help="rewrite data dirs' prompt files with the chat ASR prompt")
    pr.add_argument("data_dirs", nargs="+")
    wh = sub.add_parser("whisper", help="Whisper tiny.en's own transcripts of a data dir")
    wh.add_argument("--data_dir", required=True)
    wh.add_argument("--out_dir", required=True)
    wh.add_argument("--batch_size", type=int, default=8)
    ct = sub.add_parser("ctc", help="greedy CTC transcripts of a data dir from a training checkpoint (a diagnostic)")
    ct.add_argument("--model_dir", required=True)
    ct.add_argument("--checkpoint", required=True)
    ct.add_argument("--train_dirs", nargs="+", required=True)
    ct.add_argument("--data_dir", required=True)
    ct.add_argument("--out_dir", required=True)
    rp = sub.add_parser("report", help="RESULTS.md's section (markdown on stdout)")
    rp.add_argument("--exp_dir", required=True)
    rp.add_argument("--peer_dir", required=True)
    rp.add_argument("--data_dir", default="data")
    rp.add_argument("--sets", required=True, help="space separated")
    rp.add_argument("--model", required=True)
    rp.add_argument("--projector", required=True)
    return parser


def main(cmd: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s: %(message)s")
    from espnet_fastadasp.pretrained import recipe_data, whisper_peer

    try:
        if args.cmd == "librivox":
            recipe_data.write_librivox_dir(args.out_dir)
        elif args.cmd == "report":
            from pathlib import Path

            from espnet_fastadasp.pretrained.report import results_markdown

            sys.stdout.write(
                results_markdown(
                    Path(args.exp_dir), Path(args.peer_dir), Path(args.data_dir), args.sets.split(),
                    Path(args.model), Path(args.projector),
                )
            )
        elif args.cmd == "ctc":
            from pathlib import Path

            from espnet_fastadasp.pretrained.train_projector import ctc_greedy_transcripts

            hyps = ctc_greedy_transcripts(args.model_dir, args.checkpoint, args.train_dirs, args.data_dir)
            Path(args.out_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.out_dir) / "text").write_text("".join(f"{k} {v}\n" for k, v in hyps.items()))
        elif args.cmd == "prompts":
            for d in args.data_dirs:
                recipe_data.set_chat_prompts(d)
        else:
            whisper_peer.decode_dir(args.data_dir, args.out_dir, args.batch_size)
    except PretrainedSourceError as exc:
        sys.exit(f"slam_recipe: {exc}")


if __name__ == "__main__":
    main()
