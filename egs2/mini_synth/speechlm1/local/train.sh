#!/usr/bin/env bash
# Train the mini benchmark's tiny Qwen2-Audio on one GPU (<= 20 min on an H100), then commit-ready
# outputs: model/ (checkpoint + processor, loadable with from_pretrained), model/train_log.jsonl,
# model/loss.png, model/command.txt, and local/testset.tar.gz (the test and dev sets, 16-bit wav).
set -euo pipefail
stage=1        # 1 generate the data, 2 train, 3 pack the test set (each fits one 10-minute GPU call)
stop_stage=3
num_train=20000
nj=$(nproc)
train_config=conf/train.yaml
out=model
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/train.sh [--stage 1] [--stop_stage 3] [--num_train 20000] [--nj N] [--train_config conf/train.yaml] [--out model]"
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
# the test and dev sets travel with the model, paths relative to data/
staging=$(mktemp -d)
for d in data/*_test data/*_dev; do
    name=$(basename "${d}")
    mkdir -p "${staging}/${name}" "${staging}/wav/${name}"
    cp "${d}"/{text,utt2spk,spk2utt,prompt,task} "${staging}/${name}/"
    while read -r key path; do
        cp "${path}" "${staging}/wav/${name}/${key}.wav"
        echo "${key} wav/${name}/${key}.wav"
    done < "${d}/wav.scp" > "${staging}/${name}/wav.scp"
done
tar -czf local/testset.tar.gz -C "${staging}" .
rm -rf "${staging}"
du -sh "${out}" local/testset.tar.gz
