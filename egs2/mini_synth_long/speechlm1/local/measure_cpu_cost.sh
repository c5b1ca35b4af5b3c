#!/usr/bin/env bash
# What one reduction setting costs ./run.sh's CPU decoding, per test set, measured before any model
# is trained: an untrained model of conf/train.yaml's shape (the cost does not depend on the weights),
# the sets' first N utterances, decoded as stage 4 does (2 jobs of one thread, conf/decode.yaml's
# batches) with the number of new tokens forced to the longest reference of the set, i.e. what a
# trained model's batch costs when its longest answer is as long as the longest reference
# (an untrained model seldom emits its end token).
#   local/measure_cpu_cost.sh [--sets "asr_test=24:auto keyword_test=24:4 lasr_test=2:auto"] \
#       [--specs "none fastadasp_constant@0.5"] [--workdir exp/cpu_cost] [--train_config conf/train.yaml]
# Each item of --sets is <set>=<utterances>:<new tokens> ("auto": the set's longest reference, in
# characters, +1 for the end token). The data dirs must exist (local/data.sh). Prints one line per
# (set, spec) and writes them to <workdir>/cost.tsv: set, spec, utterances, new tokens, wall seconds
# (model loading included: about 5 s per job).
set -euo pipefail
sets="asr_test=24:auto keyword_test=24:4 lasr_test=2:auto"
specs="none fastadasp_constant@0.5"
workdir=exp/cpu_cost
train_config=conf/train.yaml   # the model's shape (the tests use conf/train_toy.yaml)
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/measure_cpu_cost.sh [--sets \"asr_test=24:auto ...\"] [--specs \"none ...\"] [--workdir DIR] [--train_config YAML]"
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./path.sh
export OMP_NUM_THREADS=1
python=${python:-python3}

mkdir -p "${workdir}"
if [ ! -f "${workdir}/model/config.json" ]; then
    "${python}" - "${train_config}" "${workdir}/model" << 'EOF'
import sys
from pathlib import Path

import yaml

from espnet_fastadasp.recipes.train import TrainConfig, build_model_and_processor

values = yaml.safe_load(Path(sys.argv[1]).read_text())
values.update(device="cpu", bf16=False)
model, processor = build_model_and_processor(TrainConfig(train_dirs=[], output_dir=sys.argv[2], **values))
model.save_pretrained(sys.argv[2])
processor.save_pretrained(sys.argv[2])
EOF
fi
: > "${workdir}/cost.tsv"
for item in ${sets}; do
    dset=${item%%=*} rest=${item#*=}
    n=${rest%%:*} new=${rest#*:}
    [ -f "data/${dset}/wav.scp" ] || { echo "measure_cpu_cost.sh: no data/${dset} (run local/data.sh)" >&2; exit 1; }
    sub=${workdir}/data/${dset}_${n}
    rm -rf "${sub}"
    mkdir -p "${sub}"
    # the set's first n utterances (ids end in their index, as local/data.sh numbers them)
    for f in wav.scp text prompt utt2spk; do
        awk -v n="${n}" '{ k = $1; sub(/.*_/, "", k); if (k + 0 < n) print }' "data/${dset}/${f}" > "${sub}/${f}"
    done
    [ "${new}" != auto ] || new=$(awk '{ l = length($0) - length($1) - 1; if (l > m) m = l } END { print m + 1 }' "${sub}/text")
    count=$(wc -l < "${sub}/wav.scp")
    half=$(((count + 1) / 2))
    head -n "${half}" "${sub}/wav.scp" > "${sub}/keys.1"
    tail -n +"$((half + 1))" "${sub}/wav.scp" > "${sub}/keys.2"
    for spec in ${specs}; do
        out=${workdir}/decode/${dset}_${n}/${spec}
        rm -rf "${out}"
        mkdir -p "${out}"
        "${python}" -m espnet_fastadasp.bin.reduction_spec "${spec}" --output "${out}/reduction.yaml" \
            --start_layer 1 > /dev/null
        start=$(date +%s.%N)
        pids=()
        for j in 1 2; do
            [ -s "${sub}/keys.${j}" ] || continue
            "${python}" -m espnet_fastadasp.bin.inference --config conf/decode.yaml --ngpu 0 \
                --data_path_and_name_and_type "${sub}/wav.scp,speech,sound" \
                --data_path_and_name_and_type "${sub}/prompt,prompt,text" \
                --key_file "${sub}/keys.${j}" --model_name_or_path "${workdir}/model" \
                --setting "${out}/output.${j}=${out}/reduction.yaml" --max_new_tokens "${new}" \
                > "${out}/decode.${j}.log" 2>&1 &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do
            wait "${pid}" || { echo "measure_cpu_cost.sh: a job failed, see ${out}/decode.*.log" >&2; exit 1; }
        done
        secs=$(awk -v a="${start}" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        printf '%s\t%s\t%s\t%s\t%s\n' "${dset}" "${spec}" "${count}" "${new}" "${secs}" | tee -a "${workdir}/cost.tsv"
    done
done
