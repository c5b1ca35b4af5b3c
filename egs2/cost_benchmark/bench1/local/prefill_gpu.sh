#!/usr/bin/env bash
# Issue 15's GPU check, prepared as one call of the lent machine (about 7 minutes on one H100/H200):
#   1. which way to get the attention received is fastest at Qwen2-Audio-7B's attention shape
#      (SDPA alone, SDPA + the Triton kernels, the blocked torch pass), and a reduced prefill under
#      torch.cuda.set_sync_debug_mode("error") inside the layer loop;
#   2. the prefill at the 7B shape, 120 s and 240 s, beam 1, every default setting at 50 %, and
#      none with the LM head on every prompt position (what plain generate did before).
# Run from egs2/cost_benchmark/bench1 (the repository's root on PYTHONPATH via path.sh):
#   local/prefill_gpu.sh [expdir]        # default exp/prefill_gpu
set -euo pipefail
expdir=${1:-exp/prefill_gpu}
python=${python:-python3}
# shellcheck disable=SC1091
. ./path.sh
mkdir -p "${expdir}"
"${python}" "${MAIN_ROOT}/benchmarks/received_paths.py" --output "${expdir}/received_paths.json" 2>&1 \
    | tee "${expdir}/received_paths.log"
# not ./run.sh: that one replaces RESULTS.md, the record of the full run
"${python}" -m espnet_fastadasp.bin.benchmark --model_config qwen2_audio_7b --dtype bfloat16 \
    --audio_seconds 120 240 --beams 1 --new_tokens 8 --warmup 1 --repeats 2 --start_layer 2 \
    --reductions none none+hf_all_logits fastadasp_constant@0.5 fastadasp_decay@0.5 fastadasp_once@0.5 \
    fastv@0.5 h2o@0.5 --output_dir "${expdir}" 2>&1 | tee "${expdir}/benchmark.log"
