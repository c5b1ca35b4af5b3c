#!/usr/bin/env bash
# Validate the Transfer Entropy layer choice on every sparse task of the long-speech testbed: TE
# per candidate layer on <task>_dev (calibration), accuracy on <task>_test with the sparse
# reduction (FastAdaSP, schedule once) at that layer; Spearman(TE, accuracy) and whether the
# TE-chosen layer is within 1 point of the best one (local/te_summary.py, shared with mini_synth).
# With 32 layers, every layer would be 32 decodes of each test set: --candidate_layers takes every
# fourth layer by default (those out of reach of the target are skipped by select_layer).
set -euo pipefail
model=model
tasks="spkid samespk prosody keyword"
expdir=exp/tiny_qwen2_audio_long/te_validation
flops_reduction=0.5
num_utts=32
candidate_layers="1 5 9 13 17 21 25"
nj=2
output=
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/validate_te.sh [--model model] [--tasks \"spkid samespk prosody keyword\"] [--flops_reduction 0.5] [--num_utts 32] [--candidate_layers \"1 5 ...\"] [--nj 2] [--output F]"
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./path.sh
output=${output:-${expdir}/te_validation.md}

fail() {
    tail -n 5 "${expdir}"/*.log >&2
    echo "validate_te: a task failed, see ${expdir}/*.log" >&2
    exit 1
}
mkdir -p "${expdir}"
pids=()
for t in ${tasks}; do
    if [ -f "${expdir}/${t}/te.json" ] && grep -q '"validation"' "${expdir}/${t}/te.json"; then
        echo "validate_te: ${t} done before (${expdir}/${t}/te.json)"
        continue
    fi
    labels=$(python3 -c "from espnet_fastadasp.recipes.synth_long import TASKS; print(','.join(TASKS['${t}']['labels']))")
    # shellcheck disable=SC2086
    python3 -m espnet_fastadasp.bin.select_layer --model_name_or_path "${model}" --data_dir "data/${t}_dev" \
        --validate_dir "data/${t}_test" --labels "${labels}" --output_dir "${expdir}/${t}" \
        --flops_reduction "${flops_reduction}" --num_utts "${num_utts}" --batch_size 8 --max_new_tokens 12 \
        --candidate_layers ${candidate_layers} > "${expdir}/${t}.log" 2>&1 &
    pids+=($!)
    if [ "${#pids[@]}" -ge "${nj}" ]; then
        wait "${pids[0]}" || fail
        pids=("${pids[@]:1}")
    fi
done
for pid in "${pids[@]}"; do
    wait "${pid}" || fail
done
jsons=()
for t in ${tasks}; do jsons+=("${expdir}/${t}/te.json"); done
python3 local/te_summary.py "${jsons[@]}" > "${output}"
echo "validate_te: ${output}"
