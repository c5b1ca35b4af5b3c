#!/usr/bin/env bash
# The mini synthetic multitask benchmark: a tiny Qwen2-Audio trained on espeak-ng speech, decoded
# without reduction, with FastAdaSP dense (constant, decay) and sparse (once, at the layer chosen
# by Transfer Entropy on the dev sets) and with every baseline, at 10-50 % FLOPs reduction.
#   ./run.sh                      # the whole benchmark on CPU with the committed model
#   local/train.sh                # (GPU) train the model and write model/ and local/testset.tar.gz
set -euo pipefail

model=model
if [ ! -f "${model}/config.json" ]; then
    echo "run.sh: no trained model in ${model}/ - train it on a GPU first: local/train.sh (see README.md here)" >&2
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
    "$@"
