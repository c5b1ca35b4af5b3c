"""Say what is installed and what is missing, like ESPnet's check_install."""

from __future__ import annotations

import importlib
import shutil
import sys

REQUIRED = [
    "torch",
    "transformers",
    "numpy",
    "yaml",
    "tqdm",
    "kaldiio",
    "soundfile",
    "sacrebleu",
    "whisper_normalizer",
    "sentencepiece",
    "matplotlib",
    "espnet_fastadasp",
]
OPTIONAL = {"espnet": "ESPnet itself (optional: pip install espnet, see README)", "pytest": "tests"}
PROGRAMS = {
    "shellcheck": "shell lint (tests)",
    "sox": "audio conversion in wav.scp pipes",
    "espeak-ng": "mini benchmark speech synthesis",
    "sbatch": "Slurm backend",
}


def version(name: str) -> str | None:
    try:
        mod = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return None
    return getattr(mod, "__version__", "installed")


def main() -> int:
    print(f"python {sys.version.split()[0]} at {sys.executable}")
    missing = []
    for name in REQUIRED:
        v = version(name)
        print(f"  [{'x' if v else ' '}] {name} {v or 'MISSING'}")
        if v is None:
            missing.append(name)
    for name, why in OPTIONAL.items():
        v = version(name)
        print(f"  [{'x' if v else ' '}] {name} {v or '-'} (optional: {why})")
    for prog, why in PROGRAMS.items():
        path = shutil.which(prog)
        print(f"  [{'x' if path else ' '}] {prog} {path or '-'} (optional: {why})")
    try:
        from espnet_fastadasp.evaluation.sclite import find_sclite

        path = find_sclite()
        print(f"  [{'x' if path else ' '}] sclite {path or '-'} (optional: the WER/CER scorer of record; Debian: sctk)")
    except Exception:  # noqa: BLE001 - reported as missing above
        pass
    try:
        import torch

        print(f"torch device: {'cuda ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu only'}")
    except Exception:  # noqa: BLE001
        pass
    try:
        from espnet_fastadasp.models.compat import TESTED_RANGE, check_version

        warning = check_version()
        print(warning or f"transformers is within the tested range ({TESTED_RANGE[0]} to {TESTED_RANGE[1]}.x)")
    except Exception:  # noqa: BLE001 - reported as missing above
        pass
    if missing:
        print(f"MISSING required packages: {', '.join(missing)}", file=sys.stderr)
        return 1
    print("all required packages are installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
