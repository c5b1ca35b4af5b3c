#!/usr/bin/env bash
# Train the mini benchmark's model on one GPU inside a fixed wall-clock budget, data included:
# generate the training sets with espeak-ng on every core, train conf/train.yaml until the budget
# is spent (the cosine decay follows the time left: cosine_over budget), save the model.
# Made for a lent GPU machine that gives one 10-minute call at a time and has no espeak-ng:
# put a portable espeak-ng first on PATH (tools/installers/make_portable_espeak.sh).
#   local/train_gpu.sh --budget_minutes 9.3 --out exp/train_gpu/model
#   local/train_gpu.sh --init_from exp/train_gpu/model --out exp/train_gpu2/model --lr 0.0005
# The training sets are kept in data/ and reused when they exist (a second call on the same
# machine), so only the first call pays for them.
set -euo pipefail
budget_minutes=9.3   # for everything this script does, data generation included
num_train_asr=24000  # ASR has the most to learn (every word); the sparse tasks need fewer
num_train_lang=16000
num_train_other=8000 # gender, rate, nspk
nj=$(nproc)
train_config=conf/train.yaml
init_from=
lr=
out=exp/train_gpu/model
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/train_gpu.sh [--budget_minutes 9.3] [--num_train_asr 24000] [--num_train_lang 16000] [--num_train_other 8000] [--train_config conf/train.yaml] [--init_from DIR] [--lr LR] [--out DIR]"
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./path.sh
start=$(date +%s)

gen() {  # gen <tasks> <num_train>: training sets only (the test and dev sets are committed)
    local tasks=$1 n=$2 t
    for t in ${tasks//,/ }; do
        if [ ! -f "data/${t}_train/text" ] || [ "$(wc -l < "data/${t}_train/text")" -ne "${n}" ]; then
            python3 -m espnet_fastadasp.bin.make_synth_data --out_dir data --tasks "${tasks}" --num_train "${n}" \
                --num_dev 0 --num_test 0 --nj "${nj}" --wordlist local/wordlist.txt
            return
        fi
    done
    echo "data: ${tasks} training sets of ${n} already there"
}
gen asr "${num_train_asr}"
gen lang "${num_train_lang}"
gen gender,rate,nspk "${num_train_other}"
for t in asr lang gender rate nspk; do
    case "${t}" in asr) echo asr > "data/${t}_train/task" ;; *) echo cls > "data/${t}_train/task" ;; esac
done
elapsed=$(( $(date +%s) - start ))
# what is left, less ~1.2 min to read the audio, build the model and save it
minutes=$(python3 -c "print(round(${budget_minutes} - ${elapsed} / 60 - 1.2, 2))")
if python3 -c "import sys; sys.exit(${minutes} >= 0.05)"; then
    echo "local/train_gpu.sh: --budget_minutes ${budget_minutes} leaves ${minutes} min to train after ${elapsed} s of data" >&2
    exit 1
fi
echo "data ready after ${elapsed} s; training for ${minutes} min"
opts=()
[ -n "${init_from}" ] && opts+=(--init_from "${init_from}")
[ -n "${lr}" ] && opts+=(--lr "${lr}")
python3 -m espnet_fastadasp.bin.train_tiny --config "${train_config}" \
    --train_dirs data/asr_train data/lang_train data/gender_train data/rate_train data/nspk_train \
    --output_dir "${out}" --max_minutes "${minutes}" --cosine_over budget "${opts[@]}"
echo "done in $(( $(date +%s) - start )) s"
