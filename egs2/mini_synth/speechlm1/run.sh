#!/usr/bin/env bash
# The mini synthetic multitask benchmark: a tiny Qwen2-Audio trained on espeak-ng speech, decoded
# without reduction, with FastAdaSP dense (constant, decay) and sparse (once, at the layer chosen
# by Transfer Entropy on the dev sets) and with every baseline, at 10-50 % FLOPs reduction.
# Then it appends to RESULTS.md the verdict on the benchmark's questions (local/check_bars.py) and
# the validation of the Transfer Entropy layer choice on every sparse task (local/validate_te.sh).
#   ./run.sh                      # the whole benchmark on CPU with the committed model
#   ./run.sh --validate_te false  # without the TE validation (other options go to speechlm.sh)
#   local/train.sh                # train the model and write model/ and local/testset.tar.gz
set -euo pipefail

validate_te=true
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --validate_te) validate_te=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

model=model
if [ ! -f "${model}/config.json" ]; then
    echo "run.sh: no trained model in ${model}/ - train it first: local/train.sh (see README.md here)" >&2
    exit 1
fi

reductions="none"
for target in 0.1 0.2 0.3 0.4 0.5; do
    for method in fastadasp_constant fastadasp_decay fastadasp_once merge_avg random_merge atome fastv \
                  random_evict h2o; do
        reductions+=" ${method}@${target}"
    done
done

./speechlm.sh \
    --task asr \
    --test_sets "asr_test lang_test gender_test rate_test nspk_test" \
    --model_name_or_path "${model}" \
    --model_tag tiny_qwen2_audio \
    --reductions "${reductions}" \
    --start_layer 1 \
    --select_layer_set lang_dev \
    --select_layer_opts "--flops_reduction 0.5 --num_utts 32" \
    --nj 2 \
    --settings_per_job 100 \
    --decode_config conf/decode.yaml \
    ${args[@]+"${args[@]}"}

# stage 6 writes RESULTS.md anew: the plot beside it (exp/ is not committed), then append the
# verdict and the TE validation once
if [ -f exp/tiny_qwen2_audio/tradeoff.png ] && grep -q "(exp/tiny_qwen2_audio/tradeoff.png)" RESULTS.md; then
    cp exp/tiny_qwen2_audio/tradeoff.png RESULTS_tradeoff.png
    sed -i 's#(exp/tiny_qwen2_audio/tradeoff.png)#(RESULTS_tradeoff.png)#' RESULTS.md
fi
if [ -f RESULTS.md ] && ! grep -q "^## Verdict" RESULTS.md; then
    { echo; python3 local/check_bars.py --exp_dir exp/tiny_qwen2_audio; } >> RESULTS.md
fi
if "${validate_te}"; then
    # at the benchmark's 50 %, and at 30 %, where more layers can reach the target on short clips
    for target in 0.5 0.3; do
        local/validate_te.sh --model "${model}" --flops_reduction "${target}" \
            --expdir "exp/tiny_qwen2_audio/te_validation_${target}"
    done
    if ! grep -q "^## Transfer Entropy layer selection, validated" RESULTS.md; then
        for target in 0.5 0.3; do
            { echo; cat "exp/tiny_qwen2_audio/te_validation_${target}/te_validation.md"; } >> RESULTS.md
        done
    fi
fi
