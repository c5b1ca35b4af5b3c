#!/usr/bin/env bash
# CoVoST 2 English -> German speech translation with a Speech LM under token reduction.
set -euo pipefail

test_sets="test"
reductions="none fastadasp_constant@0.1 fastadasp_constant@0.3 fastadasp_constant@0.5 fastv@0.3"

./speechlm.sh \
    --task st \
    --test_sets "${test_sets}" \
    --reductions "${reductions}" \
    --decode_config conf/decode.yaml \
    "$@"
