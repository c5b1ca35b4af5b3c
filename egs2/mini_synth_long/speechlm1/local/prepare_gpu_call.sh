#!/usr/bin/env bash
# Prepare, on this (CPU) machine, what the lent GPU machine lacks for local/gpu_call.sh: a portable
# espeak-ng (tools/espeak-ng-portable, ~27 MB) and soundfile's wheels with cffi's and pycparser's
# (exp/wheels, for the Python versions a GPU image may have). Both are git-ignored paths, so
# the device call must carry them:
#   carry: ["tools/espeak-ng-portable", "egs2/mini_synth_long/speechlm1/exp/wheels"]
set -euo pipefail
root=$(cd ../../.. && pwd)
if [ ! -x "${root}/tools/espeak-ng-portable/bin/espeak-ng" ]; then
    bash "${root}/tools/installers/make_portable_espeak.sh" "${root}/tools/espeak-ng-portable"
fi
"${root}/tools/espeak-ng-portable/bin/espeak-ng" --version
mkdir -p exp/wheels
pip=("${root}/tools/venv/bin/python" -m pip download --no-deps --only-binary=:all: --platform manylinux2014_x86_64
     --platform manylinux_2_28_x86_64 -d exp/wheels)
"${pip[@]}" --python-version 3.12 soundfile pycparser
for py in 3.10 3.11 3.12 3.13; do
    "${pip[@]}" --python-version "${py}" cffi
done
du -sh "${root}/tools/espeak-ng-portable" exp/wheels
