"""Check a Kaldi-style data dir before decoding (in the spirit of Kaldi's validate_data_dir.sh).

    python -m espnet_fastadasp.bin.validate_data_dir data/test

Checks: wav.scp, text, utt2spk and prompt exist and parse (no duplicate keys); every utterance
(the keys of segments if present, else of wav.scp) has a reference, a speaker and a prompt; every
prompt carries the ``{audio}`` placeholder exactly once; plain-file audio sources exist. Exits non-zero with
a message naming the file and the first offending keys.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from espnet_fastadasp.decoding.data import DataError, read_key_value, read_segments

logger = logging.getLogger("espnet_fastadasp.validate_data_dir")


def validate(data_dir: str | Path) -> int:
    """Raises DataError on the first problem; returns the number of utterances."""
    d = Path(data_dir)
    wav = read_key_value(d / "wav.scp", allow_empty_value=False)
    utts = list(read_segments(d / "segments")) if (d / "segments").is_file() else list(wav)
    if not utts:
        raise DataError(f"{d}: no utterances")
    if (d / "segments").is_file():
        segs = read_segments(d / "segments")
        missing_rec = sorted({s.recording for s in segs.values()} - set(wav))
        if missing_rec:
            raise DataError(f"{d / 'segments'}: recordings not in wav.scp: {', '.join(missing_rec[:5])}")
    for name in ("text", "utt2spk", "prompt"):
        table = read_key_value(d / name, allow_empty_value=(name == "text"))
        missing = [u for u in utts if u not in table]
        if missing:
            raise DataError(f"{d / name}: {len(missing)} utterance(s) missing, e.g. {', '.join(missing[:5])}")
        extra = sorted(set(table) - set(utts))
        if extra:
            raise DataError(f"{d / name}: {len(extra)} key(s) not in the utterance list, e.g. {', '.join(extra[:5])}")
        if name == "prompt":
            bad = [u for u in utts if "{audio}" not in table[u]]
            if bad:
                raise DataError(f"{d / 'prompt'}: no {{audio}} placeholder for {', '.join(bad[:5])}")
            twice = [u for u in utts if table[u].count("{audio}") > 1]
            if twice:
                raise DataError(f"{d / 'prompt'}: {{audio}} more than once for {', '.join(twice[:5])} (want one)")
    absent = [k for k, v in wav.items() if not v.endswith("|") and ":" not in v and not Path(v).is_file()]
    if absent:
        raise DataError(
            f"{d / 'wav.scp'}: {len(absent)} audio file(s) do not exist, e.g. {absent[0]}: {wav[absent[0]]}"
        )
    return len(utts)


def main(cmd: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dir", nargs="+")
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    for d in args.data_dir:
        try:
            n = validate(d)
        except DataError as exc:
            sys.exit(f"validate_data_dir: {exc}")
        logger.info("%s: %d utterances OK", d, n)


if __name__ == "__main__":
    main()
