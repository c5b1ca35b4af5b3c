#!/usr/bin/env python3
"""The committed form of the test and dev sets: one line per utterance (set, key, SHA-1 of the
WAV file, duration, reference) instead of the audio, which data.sh regenerates with espeak-ng.

    python3 local/testset_manifest.py write --manifest local/testset_manifest.tsv.gz data/*_test data/*_dev
    python3 local/testset_manifest.py check --manifest local/testset_manifest.tsv.gz data/asr_test ...

``check`` fails if an utterance of a set is not in the manifest, or its audio or reference differs
(another espeak-ng version synthesises other audio: then the scores are not comparable with the
committed RESULTS.md). A set may be a prefix of the manifest's (run.sh decodes subsets on a CPU).
"""

from __future__ import annotations

import argparse
import gzip
import logging
import sys
from pathlib import Path

logger = logging.getLogger("testset_manifest")


def read_table(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    return out


def rows_of(d: Path) -> list[tuple[str, str, str, str, str]]:
    sha, dur, text = (read_table(d / name) for name in ("wav.sha1", "utt2dur", "text"))
    return [(d.name, key, sha[key], dur[key], text[key]) for key in sorted(sha)]


def write(manifest: Path, dirs: list[Path]) -> None:
    with gzip.open(manifest, "wt", encoding="utf-8", compresslevel=9) as f:
        for d in dirs:
            for row in rows_of(d):
                f.write("\t".join(row) + "\n")
    logger.info("wrote %s (%d sets)", manifest, len(dirs))


def check(manifest: Path, dirs: list[Path]) -> list[str]:
    known: dict[tuple[str, str], tuple[str, str]] = {}
    with gzip.open(manifest, "rt", encoding="utf-8") as f:
        for line in f:
            name, key, sha, _dur, text = line.rstrip("\n").split("\t")
            known[(name, key)] = (sha, text)
    problems = []
    for d in dirs:
        for name, key, sha, _dur, text in rows_of(d):
            want = known.get((name, key))
            if want is None:
                problems.append(f"{name}/{key}: not in {manifest}")
            elif want != (sha, text):
                problems.append(f"{name}/{key}: {'audio' if want[0] != sha else 'reference'} differs from {manifest}")
    return problems


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("write", "check"))
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("dirs", type=Path, nargs="+")
    args = p.parse_args()
    if args.action == "write":
        write(args.manifest, args.dirs)
        return
    problems = check(args.manifest, args.dirs)
    if problems:
        sys.exit(f"testset_manifest: {len(problems)} utterance(s) differ, e.g. " + "; ".join(problems[:3]))
    logger.info("all utterances of %d set(s) match %s", len(args.dirs), args.manifest)


if __name__ == "__main__":
    main()
