#!/usr/bin/env bash
# Train the projector of the Whisper tiny.en + SmolLM2-135M Qwen2-Audio on this CPU (README.md here):
# the training data (espeak-ng, the long testbed's asr task, 5-30 s), the untrained assembled model,
# then espnet_fastadasp.bin.train_projector. Every step resumes: rerun the same command after an
# interruption. Pause-safe (SIGSTOP/SIGCONT): no wall-clock timeouts inside.
#   local/train.sh                          # 1,200 asr + 400 keyword + 400 prosody utterances, conf/train_projector.yaml
#   local/train.sh --max_steps 100          # stop after 100 joint steps (run again with more to go on)
#   local/train.sh --data_dir data_seed2 --seed 2 --train_counts asr=1000,keyword=200,prosody=400 \
#       --train_config conf/train_continue.yaml --output_dir exp/projector_continued   # train on, on new data (README.md)
set -euo pipefail
train_counts=asr=1200,keyword=400,prosody=400
seed=1
data_dir=data   # where the training sets go (<data_dir>/<task>_train): another seed needs another dir
nj=$(nproc)
train_config=conf/train_projector.yaml   # not --config: parse_options.sh sources a --config file as shell
init=exp/slam_init
output_dir=exp/projector
max_steps=
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/train.sh [--train_counts asr=1200,keyword=400,prosody=400] [--seed 1] [--data_dir data] [--nj N] [--train_config conf/train_projector.yaml] [--output_dir exp/projector] [--max_steps N]"
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./path.sh

# the data dirs of every task in train_counts (asr=1200,keyword=400,...); a dir with another count is regenerated
train_dirs=()
missing=false
for item in ${train_counts//,/ }; do
    task=${item%%=*}
    n=${item#*=}
    train_dirs+=("${data_dir}/${task}_train")
    if [ ! -f "${data_dir}/${task}_train/text" ] || [ "$(wc -l < "${data_dir}/${task}_train/text")" -ne "${n}" ]; then
        missing=true
    fi
done
if ! "${missing}"; then
    echo "train.sh: ${train_dirs[*]} have their utterances (${train_counts})"
else
    for d in "${train_dirs[@]}"; do rm -rf "${d}" "${data_dir}/wav/${d#"${data_dir}"/}"; done
    # no wall-clock limit on espeak-ng calls: a job paused (SIGSTOP) while a benchmark is timed must resume
    FASTADASP_ESPEAK_TIMEOUT=0 python3 -m espnet_fastadasp.bin.make_synth_long_data --out_dir "${data_dir}" --split train \
        --num "${train_counts}" \
        --seed "${seed}" --nj "${nj}" --wordlist local/wordlist.txt
fi
[ -f "${init}/config.json" ] || python3 -m espnet_fastadasp.bin.assemble_slam --out_dir "${init}" --seed 0
python3 -m espnet_fastadasp.bin.train_projector --config "${train_config}" --model_dir "${init}" \
    --output_dir "${output_dir}" --train_dirs "${train_dirs[@]}" ${max_steps:+--max_steps "${max_steps}"}
