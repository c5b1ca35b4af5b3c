#!/usr/bin/env bash
# The cuDNN-attention probe of 2026-11-23 (one H100, torch 2.11.0+cu130, transformers 5.17.0),
# as it ran on the lent machine from the repository root, before the patch switched cuDNN SDPA off
# inside reduced decoders: one quick benchmark with cuDNN attention disabled (90 s of audio), one
# with PyTorch's default (60 s), each a new length for its process. Compare the warm-up lines.
set -euo pipefail
export PYTHONPATH=${PWD}${PYTHONPATH:+:${PYTHONPATH}}
args=(--model_config qwen2_audio_7b --dtype bfloat16 --beams 1 --reductions none fastadasp_constant@0.5
      --start_layer 2 --new_tokens 16 --warmup 1 --repeats 1)
python3 -c "import sys, runpy, torch
torch.backends.cuda.enable_cudnn_sdp(False)
print('cudnn sdp', torch.backends.cuda.cudnn_sdp_enabled())
sys.argv = ['benchmark'] + sys.argv[1:]
runpy.run_module('espnet_fastadasp.bin.benchmark', run_name='__main__')" \
    "${args[@]}" --audio_seconds 90 --output_dir /tmp/cudnn_off 2>&1 | grep -E "warm-up|run |cudnn"
echo "=== default (cuDNN attention allowed)"
python3 -m espnet_fastadasp.bin.benchmark "${args[@]}" --audio_seconds 60 --output_dir /tmp/cudnn_default 2>&1 \
    | grep -E "warm-up|run "
