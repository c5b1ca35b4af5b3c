#!/usr/bin/env bash
# Train the projector of the Whisper tiny.en + SmolLM2-135M Qwen2-Audio on this CPU (README.md here):
# the training data (espeak-ng, the long testbed's asr task, 5-30 s), the untrained assembled model,
# then espnet_fastadasp.bin.train_projector. Every step resumes: rerun the same command after an
# interruption. Pause-safe (SIGSTOP/SIGCONT): no wall-clock timeouts inside.
#   local/train.sh                          # 1,200 training utterances, conf/train_projector.yaml
#   local/train.sh --max_steps 100          # stop after 100 joint steps (run again with more to go on)
set -euo pipefail
train_counts=asr=1200
seed=1
nj=$(nproc)
config=conf/train_projector.yaml
init=exp/slam_init
output_dir=exp/projector
max_steps=
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/train.sh [--train_counts asr=1200] [--seed 1] [--nj N] [--config conf/train_projector.yaml] [--output_dir exp/projector] [--max_steps N]"
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./path.sh

n=${train_counts#*=}
if [ -f data/asr_train/text ] && [ "$(wc -l < data/asr_train/text)" -eq "${n}" ]; then
    echo "train.sh: data/asr_train has its ${n} utterances"
else
    rm -rf data/asr_train data/wav/asr_train
    # no wall-clock limit on espeak-ng calls: a job paused (SIGSTOP) while a benchmark is timed must resume
    FASTADASP_ESPEAK_TIMEOUT=0 python3 -m espnet_fastadasp.bin.make_synth_long_data --out_dir data --split train \
        --num "${train_counts}" \
        --seed "${seed}" --nj "${nj}" --wordlist local/wordlist.txt
fi
[ -f "${init}/config.json" ] || python3 -m espnet_fastadasp.bin.assemble_slam --out_dir "${init}" --seed 0
python3 -m espnet_fastadasp.bin.train_projector --config "${config}" --model_dir "${init}" \
    --output_dir "${output_dir}" --train_dirs data/asr_train ${max_steps:+--max_steps "${max_steps}"}
