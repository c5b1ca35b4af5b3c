#!/usr/bin/env bash
# LibriSpeech ASR (test-clean, test-other) with a Speech LM under token reduction.
#   ./run.sh --model_name_or_path Qwen/Qwen2-Audio-7B-Instruct --reductions "none fastadasp_constant@0.3 fastv@0.3"
set -euo pipefail

test_sets="test_clean test_other"
reductions="none fastadasp_constant@0.1 fastadasp_constant@0.3 fastadasp_constant@0.5 fastadasp_decay@0.3 fastv@0.3 h2o@0.3"

./speechlm.sh \
    --task asr \
    --test_sets "${test_sets}" \
    --reductions "${reductions}" \
    --decode_config conf/decode.yaml \
    "$@"
