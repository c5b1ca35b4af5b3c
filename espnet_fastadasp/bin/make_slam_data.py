"""The long testbed's data (``make_synth_long_data``), for background jobs that may be paused.

Same arguments and output as :mod:`espnet_fastadasp.bin.make_synth_long_data`; the only difference
is that espeak-ng calls have no wall-clock timeout (see :mod:`espnet_fastadasp.pretrained.pausable`),
so a job paused with SIGSTOP while someone times a benchmark resumes instead of failing.

    python -m espnet_fastadasp.bin.make_slam_data --out_dir data --split train --num asr=3000 --seed 1
"""

from __future__ import annotations

from collections.abc import Sequence

from espnet_fastadasp.bin import make_synth_long_data
from espnet_fastadasp.pretrained.pausable import no_subprocess_timeouts
from espnet_fastadasp.recipes import synth


def main(cmd: Sequence[str] | None = None) -> None:
    with no_subprocess_timeouts(synth):
        make_synth_long_data.main(cmd)


if __name__ == "__main__":
    main()
