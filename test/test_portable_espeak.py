"""The portable espeak-ng bundle (for GPU hosts without package access) runs on its own files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def test_bundle_synthesises_with_a_bare_environment(tmp_path):
    out = tmp_path / "espeak-ng-portable"
    make = subprocess.run(
        ["bash", str(REPO / "tools/installers/make_portable_espeak.sh"), str(out)], capture_output=True, text=True
    )
    assert make.returncode == 0, make.stderr
    wav = tmp_path / "x.wav"
    run = subprocess.run(
        [str(out / "bin" / "espeak-ng"), "-v", "de", "-w", str(wav), "guten tag"],
        env={"PATH": "/bin"},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    data, rate = sf.read(wav)
    assert rate == 22050 and len(data) > 0.3 * rate
    # it carries its own loader, libraries and voice data
    assert (out / "lib" / "libespeak-ng.so.1").is_file() and (out / "espeak-ng-data" / "phontab").is_file()
    assert any(p.name.startswith("ld-linux") for p in (out / "lib").iterdir())
    assert os.access(out / "bin" / "espeak-ng", os.X_OK)
