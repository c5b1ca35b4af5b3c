#!/usr/bin/env bash
# Train the mini benchmark's tiny Qwen2-Audio and write the commit-ready outputs: model/ (checkpoint
# + processor, loadable with from_pretrained), model/train_log.jsonl, model/loss.png,
# model/command.txt, and local/testset.tar.gz (the test and dev sets, Ogg Vorbis).
# This is the CPU path: 5 x 8000 utterances, conf/train_cpu.yaml (100 minutes on a 2-core CPU),
# the first stage of an earlier model (README.md, Train). The committed model was trained on a
# GPU by local/train_gpu.sh (more data, a wall-clock budget); this script's stage 3 packed the
# committed test and dev sets.
set -euo pipefail
stage=1        # 1 generate the data, 2 train, 3 pack the test set
stop_stage=3
num_train=8000
nj=$(nproc)
train_config=conf/train_cpu.yaml
out=model
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/train.sh [--stage 1] [--stop_stage 3] [--num_train 8000] [--nj N] [--train_config conf/train_cpu.yaml] [--out model]"
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./path.sh

if [ "${stage}" -le 1 ] && [ "${stop_stage}" -ge 1 ]; then
    local/data.sh --train true --num_train "${num_train}" --nj "${nj}"
fi
if [ "${stage}" -le 2 ] && [ "${stop_stage}" -ge 2 ]; then
    train_dirs=()
    for t in asr lang gender rate nspk; do
        train_dirs+=("data/${t}_train")
    done
    python3 -m espnet_fastadasp.bin.train_tiny --config "${train_config}" --train_dirs "${train_dirs[@]}" \
        --output_dir "${out}"
fi
[ "${stage}" -le 3 ] && [ "${stop_stage}" -ge 3 ] || exit 0
# the test and dev sets travel with the model (Ogg Vorbis, paths relative to data/)
python3 local/pack_testset.py --output local/testset.tar.gz data/*_test data/*_dev
du -sh "${out}" local/testset.tar.gz
