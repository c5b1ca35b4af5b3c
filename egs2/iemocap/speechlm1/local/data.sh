#!/usr/bin/env bash
# IEMOCAP sessions -> data/session<N> (reads $IEMOCAP from db.sh); 4 classes: neutral, happy
# (happy + excited), angry, sad.
set -euo pipefail
sessions=5
prompt_file=conf/prompt.txt
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/data.sh [--sessions 5] [--prompt_file conf/prompt.txt]"
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./db.sh
# shellcheck disable=SC1091
. ./path.sh
for s in ${sessions//,/ }; do
    python3 -m espnet_fastadasp.bin.prepare_data iemocap --root "${IEMOCAP}" --sessions "${s}" \
        --prompt_file "${prompt_file}" --output "data/session${s}"
done
