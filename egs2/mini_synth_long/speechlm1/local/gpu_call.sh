#!/usr/bin/env bash
# The ONE device call that trains the long-speech testbed's model (run from the repository root by
# the device tool, after local/prepare_gpu_call.sh here):
#   bash egs2/mini_synth_long/speechlm1/local/gpu_call.sh [budget_minutes]   # default 9.3, timeout_s 590
# Everything train_gpu.sh writes goes straight to $OUT/model (it comes back even if the call is cut
# short), its log to $OUT/train_gpu.log.
set -euo pipefail
budget=${1:-9.3}
out=${OUT:?gpu_call.sh: OUT must name the folder whose files come back}
root=$(pwd)
cd egs2/mini_synth_long/speechlm1
export PATH="${root}/tools/espeak-ng-portable/bin:${PATH}"
if ! python3 -c "import soundfile" 2> /dev/null; then
    for whl in exp/wheels/*.whl; do  # pip takes the wheels that fit this Python and skips the rest
        python3 -m pip install --quiet --no-index --no-deps --target /tmp/site "${whl}" 2> /dev/null || true
    done
fi
export PYTHONPATH="/tmp/site:${root}${PYTHONPATH:+:${PYTHONPATH}}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
local/train_gpu.sh --budget_minutes "${budget}" --nj "$(nproc)" --out "${out}/model" 2>&1 | tee "${out}/train_gpu.log"
