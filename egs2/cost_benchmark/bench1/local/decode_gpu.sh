#!/usr/bin/env bash
# Issue 16's GPU check, prepared as one call of the lent machine (about 6 minutes on one H200; the
# limits below end it within 7.5 minutes, keeping whatever was measured):
#   1. the static decoding path with CUDA graphs against plain generate (tiny model, float32, every
#      method, greedy and beam 3, a left-padded batch): same tokens and beam scores, and every step
#      captured as a graph (a capture fails on a host sync) -> static_exactness.json
#   2. decoding at the Qwen2-Audio-7B shape (random bf16 weights built on the GPU): 240 s and 120 s of
#      audio, beam 5 and 1, settings none / fastadasp_constant@0.5 / fastadasp_once@0.5 / h2o@0.5, paths
#      plain generate (hf) / shared prompt (+shared) / the static path (+static); 64 forced new tokens,
#      1 warm-up + 2 interleaved repeats -> results.json / results.md, rewritten after every run (prefill s,
#      step ms, floor ms, x floor, tok/s and its ratio to plain generate without reduction, peak GiB, KV MiB)
# environment.txt records the device, driver, torch, transformers and the date.
# Run from egs2/cost_benchmark/bench1 (the repository root goes on PYTHONPATH; nothing to install):
#   local/decode_gpu.sh [expdir] [extra benchmark options]      # default exp/decode_gpu
# Extra options go last to the benchmark (the last value wins), e.g. a CPU smoke test of the script:
#   device=cpu local/decode_gpu.sh exp/smoke --model_config tiny --dtype float32 --device cpu \
#       --audio_seconds 4 --new_tokens 3 --warmup 0 --repeats 1
set -euo pipefail
expdir=${1:-exp/decode_gpu}
shift $(($# > 0 ? 1 : 0))
python=${python:-python3}
device=${device:-cuda}           # where part 1 runs
budget_s=${budget_s:-440}        # both parts together; the device allows 8 minutes a call
exactness_s=${exactness_s:-90}   # part 1's own limit
# shellcheck disable=SC1091
. ./path.sh
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONUNBUFFERED=1
mkdir -p "${expdir}"
start=$(date +%s)
{
    echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    echo "commit: $(git -C "${MAIN_ROOT}" rev-parse HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "nvidia-smi: none"
    "${python}" -c "import platform, torch, transformers; print('python', platform.python_version(), '| torch', torch.__version__, '| CUDA', torch.version.cuda, '| transformers', transformers.__version__)"
} | tee "${expdir}/environment.txt"

set +e
timeout "${exactness_s}" "${python}" "${MAIN_ROOT}/benchmarks/static_exactness.py" --device "${device}" \
    --output "${expdir}/static_exactness.json" 2>&1 | tee "${expdir}/static_exactness.log"
echo "static exactness: exit ${PIPESTATUS[0]}" | tee -a "${expdir}/environment.txt"

left=$((budget_s - ($(date +%s) - start)))
# not ./run.sh: that one replaces RESULTS.md, the record of the full run
timeout "${left}" "${python}" -m espnet_fastadasp.bin.benchmark --model_config qwen2_audio_7b --dtype bfloat16 \
    --audio_seconds 240 120 --beams 5 1 --new_tokens 64 --warmup 1 --repeats 2 --start_layer 2 \
    --reductions none fastadasp_constant@0.5 fastadasp_once@0.5 h2o@0.5 --prompt_modes hf shared static \
    "$@" --output_dir "${expdir}" 2>&1 | tee "${expdir}/benchmark.log"
status=${PIPESTATUS[0]}
set -e
echo "benchmark: exit ${status} after $(($(date +%s) - start)) s (124: stopped at the time limit; results.json holds the runs so far)" \
    | tee -a "${expdir}/environment.txt"
