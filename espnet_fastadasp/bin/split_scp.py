"""Split a Kaldi-style ``key value`` file (wav.scp, text, ...) into N contiguous parts.

    python -m espnet_fastadasp.bin.split_scp [--utt2spk UTT2SPK] IN OUT.1 OUT.2 ... OUT.N

As Kaldi's ``split_scp.pl``: the lines keep their order, part k holds a contiguous chunk, and the
part sizes differ by at most one (the first parts get the extra lines). With ``--utt2spk`` all
utterances of a speaker go to the same part (a speaker's lines must be contiguous in IN) and the
parts are balanced by number of lines as well as the speaker boundaries allow. Blank lines are
dropped. It is an error to ask for more parts than there are lines (or speakers).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)


def split_scp(lines: Sequence[str], n: int) -> list[list[str]]:
    """Split ``lines`` into ``n`` contiguous chunks whose sizes differ by at most one."""
    if n < 1:
        raise ValueError(f"cannot split into {n} parts")
    if n > len(lines):
        raise ValueError(f"cannot split {len(lines)} lines into {n} parts")
    size, extra = divmod(len(lines), n)
    parts: list[list[str]] = []
    pos = 0
    for k in range(n):
        end = pos + size + (1 if k < extra else 0)
        parts.append(list(lines[pos:end]))
        pos = end
    return parts


def split_scp_by_speaker(lines: Sequence[str], n: int, utt2spk: Mapping[str, str]) -> list[list[str]]:
    """Split ``lines`` into ``n`` contiguous chunks, never splitting a speaker; balance the line counts."""
    groups: list[list[str]] = []
    seen: set[str] = set()
    current: str | None = None
    for line in lines:
        key = line.split(maxsplit=1)[0]
        if key not in utt2spk:
            raise ValueError(f"utterance {key} has no speaker in utt2spk")
        spk = utt2spk[key]
        if spk != current:
            if spk in seen:
                raise ValueError(f"the lines of speaker {spk} are not contiguous (sort the file by speaker)")
            seen.add(spk)
            groups.append([])
            current = spk
        groups[-1].append(line)
    if n < 1:
        raise ValueError(f"cannot split into {n} parts")
    if n > len(groups):
        raise ValueError(f"cannot split {len(groups)} speakers into {n} parts")
    cum = [0]
    for g in groups:
        cum.append(cum[-1] + len(g))
    total = cum[-1]
    bounds = [0]
    for k in range(1, n):
        target = k * total / n
        lo, hi = bounds[-1] + 1, len(groups) - (n - k)
        bounds.append(min(range(lo, hi + 1), key=lambda i: (abs(cum[i] - target), i)))
    bounds.append(len(groups))
    return [[line for g in groups[a:b] for line in g] for a, b in zip(bounds[:-1], bounds[1:])]


def read_lines(path: str | Path) -> list[str]:
    """The non-blank lines of a text file, without line ends."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\r\n") for line in f if line.strip()]


def read_utt2spk(path: str | Path) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for lineno, line in enumerate(read_lines(path), 1):
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}:{lineno}: expected 'utterance speaker', got {line!r}")
        mapping[fields[0]] = fields[1]
    return mapping


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="split_scp.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--utt2spk", type=Path, default=None, help="keep each speaker's utterances in one part")
    parser.add_argument("scp", type=Path, help="input file, one 'key value' per line")
    parser.add_argument("outputs", type=Path, nargs="+", help="output files, one per part")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    try:
        lines = read_lines(args.scp)
        if args.utt2spk is not None:
            parts = split_scp_by_speaker(lines, len(args.outputs), read_utt2spk(args.utt2spk))
        else:
            parts = split_scp(lines, len(args.outputs))
    except (OSError, ValueError) as e:
        print(f"split_scp.py: {args.scp}: {e}", file=sys.stderr)
        return 1
    for out, part in zip(args.outputs, parts):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(line + "\n" for line in part), encoding="utf-8")
    logger.debug("split %d lines of %s into %d parts", len(lines), args.scp, len(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
