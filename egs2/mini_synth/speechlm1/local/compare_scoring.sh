#!/usr/bin/env bash
# Attention scores from the last W query rows (ReductionConfig(scores_from="window")) against all
# rows (the paper's): decodes every method that reads attention with -wW at 10-50 % into run.sh's
# exp dir, scores it, and writes the paired comparison to RESULTS_scoring_window.md.
#   ./run.sh && local/compare_scoring.sh [--window 8]
set -euo pipefail
# shellcheck disable=SC1091
. ./path.sh

window=8
if [ "${1:-}" = "--window" ]; then
    window=$2
fi
if [ ! -f exp/tiny_qwen2_audio/select_layer/lang_dev/te.json ]; then
    echo "compare_scoring.sh: run ./run.sh first (it decodes the all-rows settings and chooses the sparse layer)" >&2
    exit 1
fi

reductions=""
for target in 0.1 0.2 0.3 0.4 0.5; do
    for method in fastadasp_constant fastadasp_decay fastadasp_once fastv h2o; do
        reductions+=" ${method}-w${window}@${target}"
    done
done

# the options of run.sh's call, from stage 4 on: the sparse layer is the one stage 3 chose
./speechlm.sh \
    --task asr \
    --test_sets "asr_test lang_test gender_test rate_test nspk_test" \
    --model_name_or_path model \
    --model_tag tiny_qwen2_audio \
    --reductions "${reductions}" \
    --start_layer 1 \
    --select_layer_set lang_dev \
    --nj 2 \
    --settings_per_job 100 \
    --decode_config conf/decode.yaml \
    --stage 4 --stop_stage 5

python3 local/compare_scoring.py --exp_dir exp/tiny_qwen2_audio --data_dir data --window "${window}" \
    > RESULTS_scoring_window.md
echo "compare_scoring.sh: wrote RESULTS_scoring_window.md"
