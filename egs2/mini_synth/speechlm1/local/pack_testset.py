#!/usr/bin/env python3
"""Pack the mini benchmark's test and dev sets into one tarball that travels with the model.

    python3 local/pack_testset.py --output local/testset.tar.gz data/*_test data/*_dev

Audio is stored as Ogg Vorbis (libsndfile, ``compression_level`` 0.3: ~27 % of 16-bit PCM, ~-28 dB
error relative to the signal) because 16-bit PCM of the 660 clips, even gzipped, is ~52 MB and the
budget for the committed test set is 20 MB (FLAC, lossless, still ~40 MB). Every method is scored on
these same files; the model was trained on lossless audio. ``wav.scp`` paths are relative to
``data/``; ``local/data.sh`` makes them absolute when it unpacks.
"""

from __future__ import annotations

import argparse
import shutil
import tarfile
import tempfile
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from espnet_fastadasp.decoding.data import AudioReader

KEEP = ("text", "utt2spk", "spk2utt", "prompt", "task")


def pack(data_dirs: list[Path], output: Path, compression_level: float = 0.3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        for d in data_dirs:
            name = d.name
            (staging / name).mkdir()
            (staging / "audio" / name).mkdir(parents=True)
            for f in KEEP:
                if (d / f).is_file():
                    shutil.copy2(d / f, staging / name / f)
            reader = AudioReader(d / "wav.scp", sampling_rate=16000)
            lines = []
            for key in tqdm(reader.keys(), desc=name, unit="utt", disable=None):
                rel = f"audio/{name}/{key}.ogg"
                sf.write(
                    staging / rel,
                    reader(key),
                    16000,
                    format="OGG",
                    subtype="VORBIS",
                    compression_level=compression_level,
                )
                lines.append(f"{key} {rel}\n")
            (staging / name / "wav.scp").write_text("".join(lines))
        output.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(output, "w:gz") as tar:
            for item in sorted(staging.iterdir()):
                tar.add(item, arcname=item.name)
    print(f"{output}: {output.stat().st_size / 2**20:.1f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_dirs", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--compression_level", type=float, default=0.3, help="Vorbis: 0 best quality .. 1 smallest")
    args = parser.parse_args()
    pack(args.data_dirs, args.output, args.compression_level)


if __name__ == "__main__":
    main()
