#!/usr/bin/env bash
# CoVoST 2 En->De test split -> data/test (reads $COVOST2 and $COMMONVOICE from db.sh).
# data/test/text holds the German reference, data/test/text.src the English transcript.
set -euo pipefail
split="test"
prompt_file=conf/prompt.txt
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: local/data.sh [--split test] [--prompt_file conf/prompt.txt]"
# shellcheck disable=SC1091
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./db.sh
# shellcheck disable=SC1091
. ./path.sh
python3 -m espnet_fastadasp.bin.prepare_data covost2 --tsv "${COVOST2}/covost_v2.en_de.tsv" \
    --clips "${COMMONVOICE}/clips" --split "${split}" --prompt_file "${prompt_file}" --output "data/${split}"
