#!/usr/bin/env bash
# The cost benchmark on one GPU (FASTADASP.md, "Cost"): Qwen2-Audio-7B's shape with random bf16
# weights built on the GPU, 120 s and 240 s of audio, beam 1 and 5, 64 forced new tokens, every
# default reduction setting at a 50 % prefill-FLOPs target; median of 3 interleaved repeats.
#   ./run.sh                                   # the full H100 run (about 10 minutes)
#   ./run.sh --expdir exp/quick --beams 1 --repeats 1 --warmup 0
# Options other than --expdir go to python -m espnet_fastadasp.bin.benchmark (the last one wins),
# e.g. --model_name_or_path Qwen/Qwen2-Audio-7B-Instruct, --audio_seconds 60, --dtype float16.
set -euo pipefail

log() {
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[0]##*/}) $*" >&2
}

python=${python:-python3}
expdir=exp/qwen2_audio_7b_bf16   # the benchmark writes results.json, results.md and the log here
results=RESULTS.md               # results.md is copied here when the run ends

args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --expdir)
            [ $# -ge 2 ] || { log "--expdir needs a value"; exit 2; }
            expdir=$2
            shift 2
            ;;
        --output_dir|--output_dir=*)
            log "use --expdir instead of --output_dir"
            exit 2
            ;;
        *)
            args+=("$1")
            shift
            ;;
    esac
done

# shellcheck disable=SC1091
. ./path.sh

mkdir -p "${expdir}"
log "$0 $*: writing to ${expdir} (log: ${expdir}/benchmark.log)"
"${python}" -m espnet_fastadasp.bin.benchmark \
    --model_config qwen2_audio_7b \
    --dtype bfloat16 \
    --audio_seconds 120 240 \
    --beams 1 5 \
    --reductions none fastadasp_constant@0.5 fastadasp_decay@0.5 fastadasp_once@0.5 fastv@0.5 h2o@0.5 \
    --start_layer 2 \
    --new_tokens 64 \
    --warmup 1 \
    --repeats 3 \
    "${args[@]+"${args[@]}"}" \
    --output_dir "${expdir}" 2>&1 | tee "${expdir}/benchmark.log"

cp "${expdir}/results.md" "${results}"
log "done: ${results} (from ${expdir}/results.md; every run in ${expdir}/results.json)"
