"""Split a Kaldi-style ``key value`` file (wav.scp, text, ...) into N contiguous parts.

    python -m espnet_fastadasp.bin.split_scp [--utt2spk UTT2SPK] IN OUT.1 OUT.2 ... OUT.N

    python -m espnet_fastadasp.bin.split_scp -j N K [--one-based] [--utt2spk=UTT2SPK] IN [OUT]

As Kaldi's ``split_scp.pl``: the lines keep their order, part k holds a contiguous chunk, and the
part sizes differ by at most one (the first parts get the extra lines). With ``--utt2spk`` all
utterances of a speaker go to the same part, gathered from wherever they are in IN, and the parts
are balanced as Kaldi balances them (:func:`split_scp_by_speaker`). ``-j N K`` writes only part K
(0-based, or 1-based with ``--one-based``) to OUT or standard output. It is an error to ask for
more parts than there are lines (or speakers). One deviation: blank lines are dropped (Kaldi keeps
them without ``--utt2spk`` and refuses them with it).
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
    """Split ``lines`` into ``n`` parts by whole speakers, exactly as Kaldi's ``split_scp.pl
    --utt2spk`` does: a speaker's lines are gathered wherever they are (in the order they come),
    speakers in the order of their first line; speaker k of S starts in part ``k * n // S``, then a
    part's first or last speaker moves to its neighbour while that narrows the two parts'
    difference in lines."""
    speakers: list[str] = []
    data: dict[str, list[str]] = {}
    for line in lines:
        key = line.split(maxsplit=1)[0]
        if key not in utt2spk:
            raise ValueError(f"no utterance {key} in utt2spk")
        spk = utt2spk[key]
        if spk not in data:
            speakers.append(spk)
            data[spk] = []
        data[spk].append(line)
    if n < 1:
        raise ValueError(f"cannot split into {n} parts")
    if len(speakers) < n:
        raise ValueError(f"refusing to split {len(speakers)} speakers into {n} parts (fewer speakers than parts)")
    parts: list[list[str]] = [[] for _ in range(n)]
    count = [0] * n
    for k, spk in enumerate(speakers):
        parts[k * n // len(speakers)].append(spk)
        count[k * n // len(speakers)] += len(data[spk])
    changed = True
    while changed:
        changed = False
        for i in range(n):
            if i < n - 1 and parts[i]:
                c = len(data[parts[i][-1]])
                if abs((count[i + 1] + c) - (count[i] - c)) < abs(count[i + 1] - count[i]):
                    count[i + 1] += c
                    count[i] -= c
                    parts[i + 1].insert(0, parts[i].pop())
                    changed = True
            if i > 0 and parts[i]:
                c = len(data[parts[i][0]])
                if abs((count[i] - c) - (count[i - 1] + c)) < abs(count[i] - count[i - 1]):
                    count[i - 1] += c
                    count[i] -= c
                    parts[i - 1].append(parts[i].pop(0))
                    changed = True
    empty = [i + 1 for i, p in enumerate(parts) if not p]
    if empty:
        raise ValueError(f"part(s) {empty} would be empty (too many splits and too few speakers?)")
    return [[line for spk in p for line in data[spk]] for p in parts]


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
    parser.add_argument(
        "-j",
        nargs=2,
        type=int,
        metavar=("NUM_JOBS", "JOB_ID"),
        default=None,
        help="write only part JOB_ID of NUM_JOBS (to the one output, or standard output)",
    )
    parser.add_argument("--one-based", dest="one_based", action="store_true", help="-j's JOB_ID counts from 1")
    parser.add_argument("scp", type=Path, help="input file, one 'key value' per line")
    parser.add_argument("outputs", type=Path, nargs="*", help="output files, one per part")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(levelname)s: %(message)s")
    if args.j is not None:
        num_jobs, job = args.j[0], args.j[1] - (1 if args.one_based else 0)
        if num_jobs < 1 or not 0 <= job < num_jobs:
            parser.error(f"invalid job number/index values for '-j {args.j[0]} {args.j[1]}'")
        if len(args.outputs) > 1:
            parser.error("-j takes at most one output")
    elif len(args.outputs) < 1:
        parser.error("give the output files, one per part")
    n = args.j[0] if args.j is not None else len(args.outputs)
    try:
        lines = read_lines(args.scp)
        if args.utt2spk is not None:
            parts = split_scp_by_speaker(lines, n, read_utt2spk(args.utt2spk))
        else:
            parts = split_scp(lines, n)
    except (OSError, ValueError) as e:
        print(f"split_scp.py: {args.scp}: {e}", file=sys.stderr)
        return 1
    if args.j is not None:
        text = "".join(line + "\n" for line in parts[job])
        if args.outputs:
            args.outputs[0].parent.mkdir(parents=True, exist_ok=True)
            args.outputs[0].write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    for out, part in zip(args.outputs, parts):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(line + "\n" for line in part), encoding="utf-8")
    logger.debug("split %d lines of %s into %d parts", len(lines), args.scp, len(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
