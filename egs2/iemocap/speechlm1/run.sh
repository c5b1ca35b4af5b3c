#!/usr/bin/env bash
# IEMOCAP 4-class emotion recognition (Session 5) with a Speech LM under token reduction.
# A sparse task: FastAdaSP reduces once, at one layer (--sparse_layer, chosen by Transfer Entropy).
set -euo pipefail

test_sets="session5"
reductions="none fastadasp_once@0.3 fastadasp_once@0.5 fastv_once@0.5 random_evict_once@0.5"

./speechlm.sh \
    --task cls \
    --test_sets "${test_sets}" \
    --reductions "${reductions}" \
    --sparse_layer 3 \
    --decode_config conf/decode.yaml \
    --score_opts "--labels neutral,happy,angry,sad" \
    "$@"
