#!/usr/bin/env bash
# Train the long-speech testbed's model on one GPU in ONE call of a lent machine (10 minutes a call,
# 15 in all): generate the training and dev sets with espeak-ng on every core, train
# conf/train.yaml until the budget is spent (the cosine follows the time left: cosine_over budget),
# save the model, then decode the dev sets without reduction (local/dev_check.py) so the model's
# quality is known before the call ends. Everything lands in --out as it goes:
#   model (config.json, model.safetensors, processor), train_log.jsonl, loss.png, command.txt,
#   train_gpu_command.txt, versions.txt, timing.txt, dev_scores.json
# The machine has no espeak-ng: put a portable one first on PATH (tools/installers/make_portable_espeak.sh).
#   local/train_gpu.sh --budget_minutes 9.3 --out exp/train_gpu/model
set -euo pipefail
budget_minutes=9.3   # for everything below, data generation and the dev check included
train_counts=asr=4000,lasr=300,spkid=2400,samespk=2000,prosody=2000,keyword=2000
dev_counts=asr=32,lasr=8,spkid=32,samespk=32,prosody=32,keyword=32
reserve_minutes=1.8  # reading the audio into RAM, building and saving the model, the dev check
nj=$(nproc)
train_config=conf/train.yaml
dev_check=true
dev_check_opts=     # more options of local/dev_check.py
device=cuda
out=exp/train_gpu/model
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/train_gpu.sh [--budget_minutes 9.3] [--train_counts asr=4000,...] [--dev_counts asr=32,...] [--reserve_minutes 1.8] [--train_config conf/train.yaml] [--dev_check true] [--dev_check_opts ""] [--device cuda] [--out DIR]"
run_args="$*"
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./path.sh
start=$(date +%s)
mkdir -p "${out}"
echo "local/train_gpu.sh ${run_args}" > "${out}/train_gpu_command.txt"
python3 - > "${out}/versions.txt" <<'PY'
import platform, torch, transformers, numpy, subprocess
print("python", platform.python_version())
print("torch", torch.__version__, "cuda", torch.version.cuda)
print("transformers", transformers.__version__)
print("numpy", numpy.__version__)
print("gpu", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
print(subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip())
PY

local/data.sh --test_counts "" --dev_counts "${dev_counts}" --train_counts "${train_counts}" --nj "${nj}" \
    --manifest_check warn
data_s=$(( $(date +%s) - start ))
minutes=$(python3 -c "print(round(${budget_minutes} - ${data_s} / 60 - ${reserve_minutes}, 2))")
if python3 -c "import sys; sys.exit(${minutes} >= 0.05)"; then
    echo "local/train_gpu.sh: --budget_minutes ${budget_minutes} leaves ${minutes} min to train after ${data_s} s of data" >&2
    exit 1
fi
echo "data ready after ${data_s} s; training for ${minutes} min"
train_dirs=()
for item in ${train_counts//,/ }; do
    if [ "${item#*=}" -gt 0 ]; then train_dirs+=("data/${item%%=*}_train"); fi
done
python3 -m espnet_fastadasp.bin.train_tiny --config "${train_config}" --train_dirs "${train_dirs[@]}" \
    --output_dir "${out}" --max_minutes "${minutes}" --cosine_over budget --device "${device}"
train_s=$(( $(date +%s) - start - data_s ))
dev_s=0
if "${dev_check}"; then
    dev_dirs=()
    for item in ${dev_counts//,/ }; do
        if [ "${item#*=}" -gt 0 ]; then dev_dirs+=("data/${item%%=*}_dev"); fi
    done
    # shellcheck disable=SC2086
    python3 local/dev_check.py --model "${out}" --device "${device}" ${dev_check_opts} "${dev_dirs[@]}" \
        > "${out}/dev_scores.json"
    dev_s=$(( $(date +%s) - start - data_s - train_s ))
fi
printf 'data %s s\ntrain (load, train, save) %s s\ndev check %s s\ntotal %s s\n' "${data_s}" "${train_s}" "${dev_s}" \
    "$(( $(date +%s) - start ))" | tee "${out}/timing.txt"
