#!/usr/bin/env python3
"""Split a key-value file into parts (Kaldi split_scp.pl interface): split_scp.py IN OUT.1 ... OUT.N

See espnet_fastadasp.bin.split_scp."""

import sys
from pathlib import Path

try:
    from espnet_fastadasp.bin.split_scp import main
except ImportError:  # not installed: use the checkout this recipe lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[4]))
    from espnet_fastadasp.bin.split_scp import main

if __name__ == "__main__":
    sys.exit(main())
