#!/usr/bin/env python3
"""Run jobs through Slurm (Kaldi slurm.pl interface): slurm.py [options] [JOB=1:N] LOGFILE COMMAND...

See espnet_fastadasp.runners.slurm."""

import sys
from pathlib import Path

try:
    from espnet_fastadasp.runners.slurm import main
except ImportError:  # not installed: use the checkout this recipe lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from espnet_fastadasp.runners.slurm import main

if __name__ == "__main__":
    sys.exit(main())
