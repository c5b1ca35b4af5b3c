#!/usr/bin/env bash
# The long-speech testbed: a tiny Qwen2-Audio with 32 decoder layers and a 30 s encoder window,
# trained on 5-120 s espeak-ng speech (local/train_gpu.sh), decoded without reduction, with
# FastAdaSP dense (constant, decay) and sparse (once, at the layer chosen by Transfer Entropy on
# spkid_dev) and with the baselines, on ASR (5-30 s), long-form ASR (60-120 s, several 30 s windows
# in one prompt) and four sparse tasks. Then local/summarize.py appends to RESULTS.md every figure
# with a bootstrap interval and the verdict, and local/validate_te.sh the TE choice against the
# best layer.
#   ./run.sh                   # the CPU default: the first utterances of each test set (below)
#   ./run.sh --full true       # all 500 per task, every target 10-50 % (a long CPU run, or a GPU)
#   ./run.sh --validate_te false
# Other options go to every speechlm.sh call (e.g. --nj).
set -euo pipefail

full=false
validate_te=true
model=model
# overrides of the defaults below (the tests run a toy model on a few utterances with them)
test_counts_opt=''
dev_counts=spkid=32,samespk=32,prosody=32,keyword=32
targets_opt=''
methods_opt=''
te_layers_opt=''
te_tasks="spkid samespk prosody keyword"   # the sparse tasks whose TE layer choice is validated
short_sets="asr_test spkid_test samespk_test prosody_test keyword_test"
long_sets="lasr_test"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --full) full=$2; shift 2 ;;
        --validate_te) validate_te=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --test_counts) test_counts_opt=$2; shift 2 ;;
        --dev_counts) dev_counts=$2; shift 2 ;;
        --targets) targets_opt=$2; shift 2 ;;
        --methods) methods_opt=$2; shift 2 ;;
        --te_layers) te_layers_opt=$2; shift 2 ;;
        --te_tasks) te_tasks=$2; shift 2 ;;
        --short_sets) short_sets=$2; shift 2 ;;
        --long_sets) long_sets=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

if [ ! -f "${model}/config.json" ]; then
    echo "run.sh: no trained model in ${model}/ - train it first on a GPU: local/train_gpu.sh (see README.md here)" >&2
    exit 1
fi

if "${full}"; then
    test_counts=asr=500,lasr=500,spkid=500,samespk=500,prosody=500,keyword=500
    targets="0.1 0.2 0.3 0.4 0.5"
    methods="fastadasp_constant fastadasp_decay fastadasp_once merge_avg random_merge atome fastv random_evict h2o"
    te_targets="0.5 0.3"
    te_layers="1 5 9 13 17 21 25"
else
    # sized for 30 minutes on 2 CPU cores from the cost of each set per setting, measured before any
    # model exists (local/measure_cpu_cost.sh; README.md here): 48 per set took about 41 minutes
    test_counts=asr=24,lasr=2,spkid=24,samespk=24,prosody=24,keyword=24
    targets="0.1 0.3 0.5"
    methods="fastadasp_constant fastadasp_decay fastadasp_once fastv random_evict"
    te_targets="0.5"
    te_layers="1 5 9 13"
fi
test_counts=${test_counts_opt:-${test_counts}}
targets=${targets_opt:-${targets}}
methods=${methods_opt:-${methods}}
te_layers=${te_layers_opt:-${te_layers}}
num_dev=$(echo "${dev_counts}" | tr ',' '\n' | sed -n 's/^spkid=//p')
reductions="none"
for target in ${targets}; do
    for method in ${methods}; do
        reductions+=" ${method}@${target}"
    done
done

# long-form decoding costs one step per character of a ~1,600-character transcript: on a CPU
# only no reduction, FastAdaSP constant at every target and the other dense settings at 30 %
if "${full}"; then
    long_reductions=${reductions}
else
    long_reductions="none"
    for spec in ${reductions}; do
        case "${spec}" in
            none | fastadasp_once@*) ;;
            fastadasp_constant@*) long_reductions+=" ${spec}" ;;
            *@0.3) long_reductions+=" ${spec}" ;;
        esac
    done
fi
common=(--task asr --model_name_or_path "${model}" --model_tag tiny_qwen2_audio_long --start_layer 1 --nj 2
        --settings_per_job 100 --decode_config conf/decode.yaml)
# 1-5: data (every set), layer selection, the short sets with every setting
./speechlm.sh "${common[@]}" --stop_stage 5 \
    --local_data_opts "--test_counts ${test_counts} --dev_counts ${dev_counts}" \
    --test_sets "${short_sets}" \
    --reductions "${reductions}" \
    --select_layer_set spkid_dev \
    --select_layer_opts "--flops_reduction 0.5 --num_utts ${num_dev:-32} --max_new_tokens 12" \
    ${args[@]+"${args[@]}"}
# 2-5: long-form
if [ -n "${long_sets}" ]; then
    ./speechlm.sh "${common[@]}" --stage 2 --stop_stage 5 --test_sets "${long_sets}" \
        --reductions "${long_reductions}" ${args[@]+"${args[@]}"}
fi
# 6: one report of every set
./speechlm.sh "${common[@]}" --stage 6 --test_sets "${short_sets} ${long_sets}" --reductions none \
    ${args[@]+"${args[@]}"}

exp=exp/tiny_qwen2_audio_long
if [ -f "${exp}/tradeoff.png" ] && grep -q "(${exp}/tradeoff.png)" RESULTS.md; then
    cp "${exp}/tradeoff.png" RESULTS_tradeoff.png
    sed -i "s#(${exp}/tradeoff.png)#(RESULTS_tradeoff.png)#" RESULTS.md
fi
if [ -f RESULTS.md ] && ! grep -q "^## Bootstrap intervals" RESULTS.md; then
    { echo; python3 local/summarize.py --exp_dir "${exp}" --data_dir data --targets "${targets}" \
        --methods "${methods}"; } >> RESULTS.md
fi
if "${validate_te}"; then
    for target in ${te_targets}; do
        # mini_synth's script, with this testbed's sparse tasks
        local/validate_te.sh --model "${model}" --flops_reduction "${target}" --candidate_layers "${te_layers}" \
            --num_utts "${num_dev:-32}" --expdir "${exp}/te_validation_${target}" \
            --tasks "${te_tasks}" --tasks_module espnet_fastadasp.recipes.synth_long \
            --select_layer_opts "--batch_size 8 --max_new_tokens 12"
    done
    if ! grep -q "^## Transfer Entropy layer selection, validated" RESULTS.md; then
        for target in ${te_targets}; do
            { echo; cat "${exp}/te_validation_${target}/te_validation.md"; } >> RESULTS.md
        done
    fi
fi
