#!/usr/bin/env bash
# The mini benchmark's data: synthetic speech from espeak-ng (deterministic from --seed).
#   test sets (always): <task>_test for asr, lang, gender, rate, nspk; plus <task>_dev for layer selection
#   training sets (--train true): <task>_train
# If local/testset.tar.gz exists (committed with the trained model), the test and dev sets are
# unpacked from it instead, so the main job needs no espeak-ng.
set -euo pipefail
tasks=asr,lang,gender,rate,nspk
num_test=100
num_dev=32
num_train=20000
train=false
seed=1
nj=$(nproc)
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/data.sh [--train true] [--num_train 20000] [--num_test 100] [--num_dev 32] [--seed 1] [--nj N]"
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./path.sh

if [ -f local/testset.tar.gz ] && ! "${train}"; then
    echo "unpacking the committed test set (local/testset.tar.gz)"
    mkdir -p data
    tar -xzf local/testset.tar.gz -C data
    # the tarball's wav.scp paths are relative to data/: make them absolute for this checkout.
    # Only relative paths are touched, so a rerun (or the training sets beside them) stays intact.
    for scp in data/*/wav.scp; do
        awk -v root="${PWD}/data" '{ if ($2 ~ /^\//) print; else print $1" "root"/"$2 }' "${scp}" > "${scp}.abs"
        mv "${scp}.abs" "${scp}"
    done
else
    python3 -m espnet_fastadasp.bin.make_synth_data --out_dir data --tasks "${tasks}" --num_test "${num_test}" \
        --num_dev "${num_dev}" --num_train "$(if "${train}"; then echo "${num_train}"; else echo 0; fi)" \
        --seed "${seed}" --nj "${nj}" --wordlist local/wordlist.txt
fi
# how each set is scored
for d in data/*_test data/*_dev data/*_train; do
    [ -d "${d}" ] || continue
    case "$(basename "${d}")" in asr_*) echo asr > "${d}/task" ;; *) echo cls > "${d}/task" ;; esac
done
