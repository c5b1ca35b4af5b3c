"""Host-side cost of the patch in a decoding step: time 100 single-token forwards after a prefill,
unpatched vs patched (same inputs), interleaved, medians over 7 rounds. CPU, tiny 8-layer model, 1 thread."""

import statistics
import time

import torch

import espnet_fastadasp as fa
from espnet_fastadasp.models.tiny import build_tiny_qwen2_audio, synthetic_audio

torch.set_num_threads(1)
model, proc = build_tiny_qwen2_audio()
x = proc(
    text=["<|im_start|><|audio_bos|><|AUDIO|><|audio_eos|>ASR:<|im_end|>"] * 2,
    audio=[synthetic_audio(1.9, 1), synthetic_audio(1.3, 2)],
    return_tensors="pt",
    padding=True,
    sampling_rate=16000,
)


def steps(n=100):
    from espnet_fastadasp.models.compat import DynamicCache, cache_kwargs

    with torch.no_grad():
        cache = DynamicCache()
        out = model(**x, **cache_kwargs(cache), use_cache=True)
        ids = out.logits[:, -1:].argmax(-1)
        mask = x["attention_mask"]
        t0 = time.perf_counter()
        for _ in range(n):
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
            out = model(input_ids=ids, attention_mask=mask, **cache_kwargs(cache), use_cache=True)
            ids = out.logits[:, -1:].argmax(-1)
        return (time.perf_counter() - t0) / n * 1e6


res = {"unpatched": [], "fastadasp@0.3": [], "h2o@0.3": []}
for _ in range(7):
    res["unpatched"].append(steps())
    with fa.apply(model, fa.ReductionConfig(method="fastadasp", flops_reduction=0.3)):
        res["fastadasp@0.3"].append(steps())
    with fa.apply(model, fa.ReductionConfig(method="h2o", flops_reduction=0.3)):
        res["h2o@0.3"].append(steps())
for k, v in res.items():
    print(f"{k:14s} median {statistics.median(v):7.0f} us/step  (min {min(v):.0f}, max {max(v):.0f})")
