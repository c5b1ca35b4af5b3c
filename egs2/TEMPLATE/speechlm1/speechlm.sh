#!/usr/bin/env bash
# Decode Speech LM test sets under token-reduction settings, score them, report the trade-off.
# The stages, as in ESPnet's egs2 task scripts:
#   1. data prep    local/data.sh -> data/<set>/{wav.scp,text,utt2spk,prompt[,segments]}
#   2. data check   every utterance has audio, a reference and a prompt
#   3. select layer (optional) the sparse layer by Transfer Entropy on --select_layer_set
#   4. decode       one decode dir per (reduction setting, test set), split into nj jobs; the merged
#                   hypotheses in <decode dir>/text, as ESPnet's asr.sh leaves them
#   5. score        WER/CER (asr: score_wer/, score_cer/ with ref.trn, hyp.trn and sclite's result.txt),
#                   BLEU (st), accuracy/UAR (cls); every task: score/score.json
#   6. report       RESULTS.md (with the WER/CER tables ESPnet's show_asr_result.sh makes) and a plot of
#                   metric vs achieved FLOPs reduction
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*" >&2
}
min() { if [ "$1" -lt "$2" ]; then echo "$1"; else echo "$2"; fi; }

# General options
stage=1
stop_stage=10000
nj=4                  # decoding jobs per (setting, test set)
settings_per_job=1    # reduction settings one decoding job runs in turn, loading the model once
                      # (raise it for small models, where start-up costs more than decoding)
gpu_inference=false   # run decoding on GPUs (uses cuda_cmd, one GPU per job)
python=python3
expdir=exp
# Task
task=asr              # asr, st or cls: how the output is scored (data/<set>/task overrides it per set)
test_sets=            # names of the data dirs under data/
local_data_opts=      # passed to local/data.sh
# Model and decoding
model_name_or_path=   # hub id or local checkpoint dir (from_pretrained)
model_tag=            # name of the exp subdir (default: from model_name_or_path)
decode_config=conf/decode.yaml
inference_args=       # more options for espnet_fastadasp.bin.inference
# Reduction settings: none, METHOD[_SCHEDULE]@FLOPS_TARGET, METHOD[_SCHEDULE]%RATIO or a .yaml
reductions="none fastadasp_constant@0.3"
start_layer=2         # first reducing layer of the dense settings
sparse_layer=         # layer of the *_once settings (default: start_layer, or stage 3's choice)
select_layer_set=     # data dir (under data/) on which stage 3 chooses sparse_layer by Transfer Entropy
select_layer_opts="--flops_reduction 0.5 --num_utts 64"  # options of espnet_fastadasp.bin.select_layer
# Scoring and report
score_opts=
results=RESULTS.md

# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message=$(cat << EOF
Usage: $0 --task <asr|st|cls> --test_sets "<sets>" --model_name_or_path <model> [options]

Options:
    --stage, --stop_stage   # stages (1 data, 2 check, 3 select layer, 4 decode, 5 score, 6 report) (${stage}, ${stop_stage})
    --nj                    # decoding jobs per setting and test set (${nj})
    --settings_per_job      # reduction settings decoded in turn by one job, model loaded once (${settings_per_job})
    --gpu_inference         # decode on GPUs (${gpu_inference})
    --task                  # asr, st or cls (${task})
    --test_sets             # data dirs to decode (${test_sets})
    --local_data_opts       # options for local/data.sh (${local_data_opts})
    --model_name_or_path    # hub id or checkpoint dir (${model_name_or_path})
    --model_tag             # exp subdir name (${model_tag})
    --decode_config         # YAML of inference options (${decode_config})
    --inference_args        # extra inference options (${inference_args})
    --reductions            # reduction settings, space separated (${reductions})
    --start_layer           # first reducing layer, dense settings (${start_layer})
    --sparse_layer          # layer of *_once settings (${sparse_layer})
    --select_layer_set      # data dir for Transfer Entropy layer selection (${select_layer_set})
    --select_layer_opts     # options of the layer selection (${select_layer_opts})
    --score_opts            # extra scoring options (${score_opts})
    --results               # report file (${results})
Backends: cmd.sh (cmd_backend=local|slurm). Finished decodes are skipped on a rerun.
EOF
)

log "$0 $*"
run_args=$(printf '%q ' "$@")
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./path.sh
# shellcheck disable=SC1091
. ./cmd.sh

trap 'log "failed (stage ${current_stage:-?}); fix the cause and resume with: $0 ${run_args}--stage ${current_stage:-1}"' ERR

[ -n "${test_sets}" ] || { log "--test_sets is required"; exit 2; }
case "${task}" in asr|st|cls) ;; *) log "--task must be asr, st or cls (got '${task}')"; exit 2 ;; esac
if [ -z "${model_tag}" ] && [ -n "${model_name_or_path}" ]; then
    model_tag=$(basename "${model_name_or_path%/}")
fi
model_dir=${expdir}/${model_tag:-model}
# shellcheck disable=SC2154  # cuda_cmd and decode_cmd come from cmd.sh
if "${gpu_inference}"; then
    _cmd=${cuda_cmd}
    ngpu=1
else
    _cmd=${decode_cmd}
    ngpu=0
fi

current_stage=1
if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    log "Stage 1: data preparation (local/data.sh ${local_data_opts})"
    # shellcheck disable=SC2086
    local/data.sh ${local_data_opts}
fi

current_stage=2
if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    log "Stage 2: checking data dirs: ${test_sets}"
    for dset in ${test_sets}; do
        ${python} -m espnet_fastadasp.bin.validate_data_dir "data/${dset}"
    done
fi

te_dir=${model_dir}/select_layer/${select_layer_set}
current_stage=3
if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ] && [ -n "${select_layer_set}" ]; then
    [ -n "${model_name_or_path}" ] || { log "--model_name_or_path is required for layer selection"; exit 2; }
    log "Stage 3: Transfer Entropy layer selection on data/${select_layer_set} -> ${te_dir}"
    mkdir -p "${te_dir}"
    # shellcheck disable=SC2086
    ${_cmd} --gpu "${ngpu}" "${te_dir}/select_layer.log" \
        ${python} -m espnet_fastadasp.bin.select_layer --model_name_or_path "${model_name_or_path}" \
            --data_dir "data/${select_layer_set}" --output_dir "${te_dir}" --ngpu "${ngpu}" \
            --write_config "${te_dir}/reduction_sparse.yaml" ${select_layer_opts}
fi
if [ -z "${sparse_layer}" ] && [ -n "${select_layer_set}" ] && [ -f "${te_dir}/te.json" ]; then
    sparse_layer=$(${python} -c 'import json, sys; print(json.load(open(sys.argv[1]))["chosen_layer"])' \
                   "${te_dir}/te.json")
    log "sparse layer ${sparse_layer} (Transfer Entropy, ${te_dir}/te.md)"
fi

current_stage=4
if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    [ -n "${model_name_or_path}" ] || { log "--model_name_or_path is required for decoding"; exit 2; }
    [ "${settings_per_job}" -ge 1 ] || { log "--settings_per_job must be >= 1"; exit 2; }
    # the model's id (weights + configs of a local dir, or the hub id): a decode dir is reused only
    # with the model it was decoded with, so retraining under the same path cannot keep old outputs
    fingerprint=$(${python} -m espnet_fastadasp.bin.model_fingerprint "${model_name_or_path}")
    # every setting's tag and reduction YAML, resolved once
    spec_dir=$(mktemp -d)
    tags=()
    for spec in ${reductions}; do
        tags+=("$(${python} -m espnet_fastadasp.bin.reduction_spec "${spec}" --output "${spec_dir}/${#tags[@]}.yaml" \
                  --start_layer "${start_layer}" ${sparse_layer:+--sparse_layer "${sparse_layer}"})")
    done
    for dset in ${test_sets}; do
        pending=()
        for i in "${!tags[@]}"; do
            dir=${model_dir}/decode_${tags[i]}/${dset}
            if [ -f "${dir}/model_fingerprint" ] && [ "$(cat "${dir}/model_fingerprint")" != "${fingerprint}" ]; then
                log "Error: ${dir} was decoded with another model than ${model_name_or_path} (its" \
                    "model_fingerprint differs: retrained or re-assembled?); remove ${model_dir}/decode_*" \
                    "to decode again, or give this model another --model_tag"
                exit 1
            fi
            if [ -f "${dir}/.done" ]; then
                log "Stage 4: ${dir} is done, skipping"
                continue
            fi
            if [ -f "${dir}/reduction.yaml" ] && ! cmp -s "${spec_dir}/${i}.yaml" "${dir}/reduction.yaml"; then
                log "Error: ${dir} was started with other reduction settings (its reduction.yaml differs);" \
                    "remove it to start over"
                exit 1
            fi
            mkdir -p "${dir}/logdir"
            cp "${spec_dir}/${i}.yaml" "${dir}/reduction.yaml"
            echo "${fingerprint}" > "${dir}/model_fingerprint"
            pending+=("${dir}")
        done
        key_file=data/${dset}/wav.scp
        [ -f "data/${dset}/segments" ] && key_file=data/${dset}/segments
        # a dir resumes with the job split it started with (its output.N hold keys.N of that
        # split), whatever --nj says now; dirs with the same split are decoded together
        for dir in "${pending[@]}"; do
            [ -f "${dir}/logdir/nj" ] || min "${nj}" "$(wc -l < "${key_file}")" > "${dir}/logdir/nj"
        done
        for _nj in $(for dir in "${pending[@]}"; do cat "${dir}/logdir/nj"; done | sort -un); do
            same_split=()
            for dir in "${pending[@]}"; do
                [ "$(cat "${dir}/logdir/nj")" = "${_nj}" ] && same_split+=("${dir}")
            done
            [ "${_nj}" = "$(min "${nj}" "$(wc -l < "${key_file}")")" ] \
                || log "Stage 4: resuming ${#same_split[@]} dir(s) of ${dset} with the ${_nj} jobs they started with"
            for ((g = 0; g < ${#same_split[@]}; g += settings_per_job)); do
                group=("${same_split[@]:g:settings_per_job}")
                # the jobs' keys and logs live in the group's first decode dir
                logdir=${group[0]}/logdir
                split_scps=()
                for n in $(seq "${_nj}"); do
                    split_scps+=("${logdir}/keys.${n}.scp")
                done
                split_scp.py "${key_file}" "${split_scps[@]}"
                setting_args=()
                for dir in "${group[@]}"; do
                    log "Stage 4: decoding ${dset} with $(basename "$(dirname "${dir}")" | sed 's/^decode_//') -> ${dir}"
                    setting_args+=(--setting "${dir}/logdir/output.JOB=${dir}/reduction.yaml")
                done
                # shellcheck disable=SC2086
                ${_cmd} --gpu "${ngpu}" JOB=1:"${_nj}" "${logdir}"/decode.JOB.log \
                    ${python} -m espnet_fastadasp.bin.inference \
                        --config "${decode_config}" \
                        --ngpu "${ngpu}" \
                        --data_path_and_name_and_type "data/${dset}/wav.scp,speech,sound" \
                        --data_path_and_name_and_type "data/${dset}/prompt,prompt,text" \
                        --key_file "${logdir}"/keys.JOB.scp \
                        --model_name_or_path "${model_name_or_path}" \
                        "${setting_args[@]}" \
                        ${inference_args}
                for dir in "${group[@]}"; do
                    parts=()
                    for n in $(seq "${_nj}"); do
                        parts+=("${dir}/logdir/output.${n}/1best_recog")
                    done
                    # every key exactly once, or no merged output and no .done
                    # into the decode dir itself, where ESPnet's scripts read <decode dir>/text
                    ${python} -m espnet_fastadasp.bin.merge_outputs --key_file "${key_file}" \
                        --output_dir "${dir}" "${parts[@]}"
                    touch "${dir}/.done"
                done
            done
        done
    done
    rm -rf "${spec_dir}"
fi

current_stage=5
if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    for dir in "${model_dir}"/decode_*/*/; do
        dir=${dir%/}
        dset=$(basename "${dir}")
        [ -f "${dir}/.done" ] || continue
        case " ${test_sets} " in *" ${dset} "*) ;; *) continue ;; esac
        _task=${task}
        [ -f "data/${dset}/task" ] && _task=$(cat "data/${dset}/task")
        log "Stage 5: scoring ${dir} (${_task})"
        # shellcheck disable=SC2086
        # -> score/score.json, and for asr ESPnet's score_wer/ and score_cer/ (sclite where installed)
        ${python} -m espnet_fastadasp.bin.score --task "${_task}" --ref "data/${dset}/text" \
            --utt2spk "data/${dset}/utt2spk" --hyp "${dir}/text" --output_dir "${dir}" ${score_opts}
    done
fi

current_stage=6
if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    log "Stage 6: report -> ${results}"
    ${python} -m espnet_fastadasp.bin.report --exp_dir "${model_dir}" --task "${task}" \
        --test_sets "${test_sets}" --output "${results}" --plot "${model_dir}/tradeoff.png" \
        --model "${model_name_or_path}"
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
