#!/usr/bin/env bash
# Validate the Transfer Entropy layer choice on every sparse task of the mini benchmark: TE per
# candidate layer on <task>_dev (calibration), accuracy on <task>_test with the sparse reduction
# (FastAdaSP, schedule once) at 50 % FLOPs reduction at that layer; Spearman(TE, accuracy) and
# whether the TE-chosen layer is within 1 point of the best one. Writes ${output} (markdown).
# The long-speech testbed (egs2/mini_synth_long) runs this same script with its own tasks, labels
# module, candidate layers and select_layer options.
set -euo pipefail
model=model
tasks="lang gender rate nspk"
expdir=exp/tiny_qwen2_audio/te_validation
flops_reduction=0.5
num_utts=32          # calibration utterances per task (all of <task>_dev)
nj=2                 # tasks validated at once (one CPU thread each)
output=              # default: <expdir>/te_validation.md
tasks_module=espnet_fastadasp.recipes.synth   # where TASKS (with each task's labels) is defined
candidate_layers=    # layers to try (default: every layer select_layer can reach)
select_layer_opts="--batch_size 32"  # more options of espnet_fastadasp.bin.select_layer
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/validate_te.sh [--model model] [--tasks \"lang gender rate nspk\"] [--flops_reduction 0.5] [--num_utts 32] [--nj 2] [--output F] [--tasks_module M] [--candidate_layers \"1 5 ...\"] [--select_layer_opts \"...\"]"
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
    labels=$(python3 -c "from ${tasks_module} import TASKS; print(','.join(TASKS['${t}']['labels']))")
    # shellcheck disable=SC2086
    python3 -m espnet_fastadasp.bin.select_layer --model_name_or_path "${model}" --data_dir "data/${t}_dev" \
        --validate_dir "data/${t}_test" --labels "${labels}" --output_dir "${expdir}/${t}" \
        --flops_reduction "${flops_reduction}" --num_utts "${num_utts}" ${select_layer_opts} \
        ${candidate_layers:+--candidate_layers ${candidate_layers}} > "${expdir}/${t}.log" 2>&1 &
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
