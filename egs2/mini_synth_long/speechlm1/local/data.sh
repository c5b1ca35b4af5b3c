#!/usr/bin/env bash
# The long-speech testbed's data: espeak-ng speech, deterministic from --seed
# (espnet_fastadasp.recipes.synth_long). The test sets are not committed as audio (500 clips per
# task, 60-120 s long-form ones among them, would be hundreds of MB even as Ogg Vorbis): they are
# generated here and, where local/testset_manifest.tsv.gz is committed, checked against it
# (text and SHA-1 of every WAV), so every checkout scores the same audio.
#   local/data.sh                                       # the test and dev sets (run.sh's counts)
#   local/data.sh --test_counts asr=500,lasr=500,...    # the full test sets
#   local/data.sh --train_counts asr=4000,...           # training sets (local/train_gpu.sh)
# A set that already has the asked number of utterances is kept. The first N utterances of a set
# are the same whatever N, so a smaller test set is a prefix of the full one.
set -euo pipefail
test_counts=asr=500,lasr=500,spkid=500,samespk=500,prosody=500,keyword=500
dev_counts=spkid=32,samespk=32,prosody=32,keyword=32   # Transfer Entropy calibration
train_counts=
seed=1
nj=$(nproc)
manifest_check=fail   # fail, or warn (local/train_gpu.sh: its dev check must not cost the device call)
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/data.sh [--test_counts asr=500,...] [--dev_counts spkid=32,...] [--train_counts asr=4000,...] [--seed 1] [--nj N] [--manifest_check fail|warn]"
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./path.sh

gen() {  # gen <split> <counts>: the sets of that split that are missing or have another size
    local split=$1 counts=$2 item task n todo=()
    for item in ${counts//,/ }; do
        task=${item%%=*} n=${item#*=}
        [ "${n}" -gt 0 ] || continue
        if [ -f "data/${task}_${split}/text" ] && [ "$(wc -l < "data/${task}_${split}/text")" -eq "${n}" ]; then
            echo "data.sh: data/${task}_${split} has its ${n} utterances"
        else
            rm -rf "data/${task}_${split}" "data/wav/${task}_${split}"
            todo+=("${item}")
        fi
    done
    [ "${#todo[@]}" -gt 0 ] || return 0
    python3 -m espnet_fastadasp.bin.make_synth_long_data --out_dir data --split "${split}" \
        --num "$(IFS=,; echo "${todo[*]}")" --seed "${seed}" --nj "${nj}" --wordlist local/wordlist.txt
}
[ -n "${test_counts}" ] && gen test "${test_counts}"
[ -n "${dev_counts}" ] && gen dev "${dev_counts}"
[ -n "${train_counts}" ] && gen train "${train_counts}"
if [ -f local/testset_manifest.tsv.gz ] && [ -n "${test_counts}${dev_counts}" ]; then
    sets=()
    for item in ${test_counts//,/ }; do
        if [ "${item#*=}" -gt 0 ]; then sets+=("data/${item%%=*}_test"); fi
    done
    for item in ${dev_counts//,/ }; do
        if [ "${item#*=}" -gt 0 ]; then sets+=("data/${item%%=*}_dev"); fi
    done
    if ! python3 local/testset_manifest.py check --manifest local/testset_manifest.tsv.gz "${sets[@]}"; then
        [ "${manifest_check}" = warn ] || exit 1
        echo "data.sh: WARNING: the generated audio differs from the committed manifest (another espeak-ng?)" >&2
    fi
elif [ -n "${test_counts}" ]; then
    echo "data.sh: no local/testset_manifest.tsv.gz: the generated audio is not checked against a committed one" >&2
fi
