#!/usr/bin/env bash
# Issue 28, item 3: decoding at Qwen2-Audio-7B's layer shape on this CPU in bfloat16 (random weights:
# hidden 4096, 32 heads, FFN 11008, vocab 156,032), with 2 of its 32 decoder layers (see "Size" below):
# 240 s of audio at beam 5 and beam 1, 120 s at beam 1; settings none / fastadasp_constant@0.5 /
# fastadasp_once@0.5 / h2o@0.5; paths plain generate (hf) / shared prompt (+shared) / the static path
# (+static, eager steps on CPU); 24 forced new tokens; one warm-up pass on 4 s of audio, one recorded
# repeat; one decoding step of every row profiled (the two steps it overlaps left out of the timings).
# Per row: prefill s, step ms, floor ms (weights + KV read per step / the 1-row product's read rate
# measured in the same run), x floor, tok/s and its ratio to hf none and to the same path's none,
# peak GiB (process peak RSS during generate) and what the call added, KV MiB.
#   local/decode_cpu_bf16.sh [expdir] [extra benchmark options]     # default exp/decode_cpu_bf16
# Resumable: results.json is rewritten after every run; run the same command again and the rows
# already measured are kept and skipped (--resume). When it ends, the report RESULTS_cpu_bf16.md
# (targets, the reduction's share on each path, profiles where a target is missed) is written
# here, and results.json / results.md / the profiles are copied to results_cpu_bf16/.
# Extra options go last to the benchmark (the last value wins), e.g. the smoke test of the script:
#   local/decode_cpu_bf16.sh exp/smoke_cpu_bf16 --model_config tiny --num_layers 2 --groups 4:2 4:1 \
#       --new_tokens 6 --warmup_audio_seconds 2
#
# Size (2-core Ice Lake VM, no AMX): the prefill dominates. Its FLOPs, counted by
# espnet_fastadasp.core.flops for 2 layers: 5.50 TFLOP per row at 240 s (6,056 tokens), 2.62 at 120 s;
# plain generate at beam 5 prefills 5 rows (the prompt per beam), shared and static one; the 50 %
# settings ~0.55 of none with their scoring passes, h2o ~1.1. Over the grid that is ~210 TFLOP:
# ~58 min at the 0.06 TFLOP/s of a bf16 matmul here (~50 min at the ~40 s per 240-s layer-row
# measured before). The steps: 2.09 GB of weights (LM head 1.28 GB) + KV; measured on this VM (quiet
# probes of a smoke run, 2026-12-07): a 1-row 11008x4096 bf16 product reads 13.0 GB/s, a 5-row one
# 4.2 GB/s (arithmetic-bound: no bf16 units), a copy 22 GB/s: ~0.17 s a step at beam 1, ~0.5-0.8 s at
# beam 5, x 24 tokens x 36 rows: ~6 min. Warm-up (4 s of audio, 4 tokens) ~3 min; model build ~1 min.
# In all ~60-68 min on a quiet machine; each more layer adds ~29 min (N=3: ~95 min). Beside other
# work it is much slower: at nice 19 beside processes at nice 0-5 this one gets a few percent of a
# core (the smoke runs measured 3-4x slower prefills at load 3-6, and steps up to 5x their floor).
# start_layer 0: with 2 layers, layer 0 scores and reduces after its attention, and its MLP and
# layer 1 (its cache too) run on the reduced sequence; at start_layer 1 only layer 1's MLP would, and
# a 50 % FLOPs target is out of reach. (In the 32-layer model at start layer 2, 29 of 32 layers hold
# reduced caches; here 1 of 2: the KV saving of a row is about half the full model's.)
set -euo pipefail
expdir=${1:-exp/decode_cpu_bf16}
shift $(($# > 0 ? 1 : 0))
python=${python:-python3}
nice=${nice:-19}                       # the etiquette of this shared VM; the run wants the CPU to itself
results=${results:-results_cpu_bf16}   # the measured files are copied here when the run ends
report=${report:-RESULTS_cpu_bf16.md}
threads=${threads:-$(nproc)}
# shellcheck disable=SC1091
. ./path.sh
export PYTHONPATH="${MAIN_ROOT}${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=${threads}     # path.sh sets 1 for the recipes' parallel jobs; this is one process
mkdir -p "${expdir}"
start=$(date +%s)
{
    echo "date: $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
    echo "commit: $(git -C "${MAIN_ROOT}" rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, ${threads} threads, nice ${nice}"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    "${python}" -c "import platform, torch, transformers; print('python', platform.python_version(), '| torch', torch.__version__, '| transformers', transformers.__version__)"
} | tee -a "${expdir}/environment.txt"
load=$(cut -d' ' -f1 /proc/loadavg)
if awk -v l="${load}" 'BEGIN { exit !(l > 1.5) }'; then
    # at nice 19 beside work at nice 0 this process gets a few percent of a core: every figure is off
    echo "WARNING: load average ${load} at the start: the timings need a quiet machine (they are not comparable" \
        "with a quiet run; the ratios of one run still are only if the load stays steady)" | tee -a "${expdir}/environment.txt"
fi

cmd=(nice -n "${nice}" "${python}" -m espnet_fastadasp.bin.benchmark --model_config qwen2_audio_7b
    --num_layers 2 --audio_layers 0 --dtype bfloat16 --device cpu
    --groups 240:5 240:1 120:1 --new_tokens 24 --warmup 1 --warmup_audio_seconds 4 --warmup_new_tokens 4
    --repeats 1
    --start_layer 0 --reductions none fastadasp_constant@0.5 fastadasp_once@0.5 h2o@0.5
    --prompt_modes hf shared static --profile_step --resume
    "$@" --output_dir "${expdir}")
echo "${cmd[*]}" | tee -a "${expdir}/environment.txt"
set +e
"${cmd[@]}" 2>&1 | tee -a "${expdir}/benchmark.log"
status=${PIPESTATUS[0]}
set -e
echo "benchmark: exit ${status} after $(($(date +%s) - start)) s; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" \
    | tee -a "${expdir}/environment.txt"
[ -f "${expdir}/results.json" ] || exit "${status}"
mkdir -p "${results}"
cp "${expdir}/results.json" "${expdir}/results.md" "${expdir}/environment.txt" "${results}/"
if [ -d "${expdir}/profiles" ]; then
    rm -rf "${results}/profiles"
    cp -r "${expdir}/profiles" "${results}/"
fi
"${python}" -m espnet_fastadasp.benchmark.targets "${expdir}/results.json" --output "${report}" \
    --title "Decoding at Qwen2-Audio-7B's layer shape on the CPU in bfloat16 (issue 28)" \
    --command "cd egs2/cost_benchmark/bench1 && local/decode_cpu_bf16.sh ${expdir}${*:+ $*}"
echo "report: ${report}; results: ${results}/"
exit "${status}"
