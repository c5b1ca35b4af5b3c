#!/usr/bin/env bash
# LibriSpeech test sets -> data/test_clean, data/test_other (reads $LIBRISPEECH from db.sh).
set -euo pipefail
subsets="test-clean test-other"
prompt_file=conf/prompt.txt
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/data.sh [--subsets \"test-clean test-other\"] [--prompt_file conf/prompt.txt]"
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./db.sh
# shellcheck disable=SC1091
. ./path.sh
for subset in ${subsets}; do
    python3 -m espnet_fastadasp.bin.prepare_data librispeech --root "${LIBRISPEECH}" --subset "${subset}" \
        --prompt_file "${prompt_file}" --output "data/${subset//-/_}"
done
