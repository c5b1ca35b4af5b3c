"""Write Kaldi-style data dirs for a corpus in its published layout (called by local/data.sh).

    python -m espnet_fastadasp.bin.prepare_data librispeech --root $LIBRISPEECH --subset test-clean \\
        --prompt_file conf/prompt.txt --output data/test_clean
    python -m espnet_fastadasp.bin.prepare_data covost2 --tsv $COVOST2/covost_v2.en_de.tsv \\
        --clips $COMMONVOICE/clips --split test --prompt_file conf/prompt.txt --output data/test
    python -m espnet_fastadasp.bin.prepare_data iemocap --root $IEMOCAP --sessions 5 \\
        --prompt_file conf/prompt.txt --output data/session5

The prompt file holds one line: the task prompt with ``{audio}`` where the audio goes (line
breaks written as ``\\n``); it is copied to every utterance of the data dir's ``prompt`` file.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from espnet_fastadasp.decoding.data import DataError
from espnet_fastadasp.recipes import corpora

logger = logging.getLogger("espnet_fastadasp.prepare_data")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", choices=("librispeech", "covost2", "iemocap"))
    parser.add_argument("--output", required=True, help="the data dir to write")
    parser.add_argument("--prompt_file", required=True)
    parser.add_argument("--root", help="librispeech / iemocap: corpus root")
    parser.add_argument("--subset", help="librispeech: e.g. test-clean")
    parser.add_argument("--tsv", help="covost2: covost_v2.en_de.tsv")
    parser.add_argument("--clips", help="covost2: Common Voice clips dir")
    parser.add_argument("--split", default="test", help="covost2: split column value")
    parser.add_argument("--sessions", default="5", help="iemocap: comma-separated session numbers")
    return parser


def main(cmd: Sequence[str] | None = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    try:
        prompt_lines = [ln for ln in Path(args.prompt_file).read_text().splitlines() if ln.strip()]
        if len(prompt_lines) != 1:
            raise DataError(f"{args.prompt_file}: want exactly one prompt line, found {len(prompt_lines)}")
        if args.corpus == "librispeech":
            utts = corpora.librispeech(_need(args.root, "--root"), _need(args.subset, "--subset"))
        elif args.corpus == "covost2":
            utts = corpora.covost2(_need(args.tsv, "--tsv"), _need(args.clips, "--clips"), args.split)
        else:
            sessions = [int(s) for s in args.sessions.split(",")]
            utts = corpora.iemocap(_need(args.root, "--root"), sessions)
        out = corpora.write_data_dir(utts, args.output, prompt_lines[0])
    except (DataError, FileNotFoundError) as exc:
        sys.exit(f"prepare_data: {exc}")
    logger.info("%s: %d utterances -> %s", args.corpus, len(utts), out)


def _need(value: str | None, flag: str) -> str:
    if not value:
        raise DataError(f"{flag} is required for this corpus")
    return value


if __name__ == "__main__":
    main()
