"""The mini benchmark's training script: a few steps on CPU (a smoke test), then load it back."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet_fastadasp.bin import train_tiny
from espnet_fastadasp.hf.tiny import synthetic_audio
from espnet_fastadasp.recipes import corpora
from espnet_fastadasp.recipes.train import (
    AudioCTC,
    Batcher,
    Example,
    TrainConfig,
    build_model_and_processor,
    learning_rate,
    load_examples,
    per_sample_loss,
    submodule,
)


def test_per_sample_loss_weights_samples_equally():
    logits = torch.zeros(2, 5, 3)
    labels = torch.tensor([[-100, 0, 0, 0, 0], [-100, -100, -100, -100, 1]])
    logits[0, :, 0] = 10.0  # sample 0 (4 tokens) is right, sample 1 (1 token) is wrong
    loss = per_sample_loss(logits, labels)
    wrong = torch.nn.functional.cross_entropy(torch.zeros(1, 3), torch.tensor([1]))
    assert torch.allclose(loss, (0 + wrong) / 2, atol=1e-3)


def test_cosine_follows_the_nearer_limit_when_asked():
    steps = TrainConfig(train_dirs=[], output_dir="x", lr=1.0, warmup_steps=10, max_steps=110, max_minutes=10)
    assert learning_rate(steps, 0, 0.0) == pytest.approx(0.1)  # warm-up
    assert learning_rate(steps, 60, 9.9) == pytest.approx(0.5)  # by steps only: halfway
    budget = TrainConfig(**{**steps.__dict__, "cosine_over": "budget"})
    assert learning_rate(budget, 60, 2.0) == pytest.approx(0.5)  # steps are nearer
    assert learning_rate(budget, 20, 5.0) == pytest.approx(0.5)  # half the minutes: halfway
    assert learning_rate(budget, 20, 10.0) == pytest.approx(0.0, abs=1e-12)  # the budget's end: lr 0
    assert learning_rate(budget, 20, 2.5) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("cosine_over", "time", "cosine_over='time'"),
        ("batch_size", 0, "batch_size=0"),
        ("max_minutes", 0, "max_minutes"),
    ],
)
def test_bad_training_config_values_are_named(field, value, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(train_dirs=[], output_dir="x", **{field: value})


def test_threaded_loading_equals_one_thread_and_names_a_missing_file(tmp_path):
    utts = []
    for i in range(5):
        wav = tmp_path / f"u{i}.wav"
        sf.write(wav, synthetic_audio(0.3 + 0.1 * i, i), 16000)
        utts.append(corpora.Utterance(f"u{i}", str(wav), f"answer {i}", "s"))
    d = str(corpora.write_data_dir(utts, tmp_path / "asr_train", "<|im_start|>{audio}asr<|im_end|>"))
    one, many = load_examples([d], None, 16000, threads=1), load_examples([d], None, 16000, threads=3)
    assert [e.answer for e in one] == [e.answer for e in many] == [f"answer {i}" for i in range(5)]
    assert all(np.array_equal(a.wave, b.wave) and a.wave.dtype == np.int16 for a, b in zip(one, many))
    assert one[0].is_asr and one[0].prefix == "<|im_start|>" and one[0].suffix == "asr<|im_end|>"
    (tmp_path / "u3.wav").unlink()
    with pytest.raises(Exception, match="u3"):
        load_examples([d], None, 16000, threads=3)


def test_trains_a_few_steps_on_cpu_and_saves_a_loadable_checkpoint(tmp_path):
    dirs = []
    for task, answers in (("asr", ["hello world", "good day"]), ("gender", ["male", "female"])):
        utts = []
        for i, ans in enumerate(answers * 2):
            wav = tmp_path / f"{task}{i}.wav"
            sf.write(wav, synthetic_audio(0.6 + 0.2 * i, i), 16000)
            utts.append(corpora.Utterance(f"{task}_{i}", str(wav), ans, "s"))
        dirs.append(str(corpora.write_data_dir(utts, tmp_path / task, "<|im_start|>{audio}" + task + "<|im_end|>")))
    out = tmp_path / "model"
    train_tiny.main(
        [
            "--train_dirs",
            *dirs,
            "--output_dir",
            str(out),
            "--device",
            "cpu",
            "--max_steps",
            "4",
            "--batch_size",
            "4",
            "--log_every",
            "2",
            "--hidden",
            "32",
            "--ffn",
            "64",
            "--heads",
            "2",
            "--kv_heads",
            "1",
            "--encoder_dim",
            "32",
            "--encoder_layers",
            "1",
            "--encoder_heads",
            "2",
            "--encoder_ffn",
            "64",
            "--n_mels",
            "16",
            "--window_seconds",
            "2",
            "--warmup_steps",
            "2",
            "--ctc_weight",
            "0.5",
            "--threads",
            "1",
        ]
    )
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4] and all(r["loss"] > 0 for r in log)
    # every logged pair of batches held ASR rows; loss = ce + 0.5 * ctc
    assert all(abs(r["loss"] - r["ce_loss"] - 0.5 * r["ctc_loss"]) < 1e-4 for r in log)
    saved = json.loads((out / "config.json").read_text())
    assert saved["architectures"] == ["Qwen2AudioForConditionalGeneration"]
    assert (out / "loss.png").is_file() and (out / "train_config.yaml").is_file() and (out / "command.txt").is_file()
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    model = Qwen2AudioForConditionalGeneration.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert model.config.text_config.num_hidden_layers == 8
    assert model.config.text_config.num_key_value_heads < model.config.text_config.num_attention_heads
    inputs = processor(
        text=["<|im_start|><|audio_bos|><|AUDIO|><|audio_eos|>asr<|im_end|>"],
        audio=[synthetic_audio(1.0, 0)],
        return_tensors="pt",
        sampling_rate=16000,
    )
    assert model.generate(**inputs, max_new_tokens=2).shape[1] >= inputs["input_ids"].shape[1] + 1

    # go on training the checkpoint: its weights are the starting point, its shape wins
    more = tmp_path / "more"
    train_tiny.main(
        ["--train_dirs", *dirs, "--output_dir", str(more), "--device", "cpu", "--max_steps", "1"]
        + ["--batch_size", "2", "--init_from", str(out), "--hidden", "64", "--lr", "0"]
    )
    again = Qwen2AudioForConditionalGeneration.from_pretrained(more)
    assert again.config.text_config.hidden_size == 32
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name  # lr 0: the weights came through unchanged


def _tiny_cfg(tmp_path) -> TrainConfig:
    return TrainConfig(
        train_dirs=[],
        output_dir=str(tmp_path),
        n_mels=16,
        window_seconds=2,
        encoder_dim=32,
        encoder_layers=1,
        encoder_heads=2,
        encoder_ffn=64,
        hidden=32,
        heads=2,
        kv_heads=1,
        ffn=64,
        device="cpu",
    )


def test_ctc_loss_reads_the_asr_rows_and_trains_the_encoder(tmp_path):
    import numpy as np

    model, processor = build_model_and_processor(_tiny_cfg(tmp_path))
    ctc = AudioCTC(model, len(processor.tokenizer))
    wave = (synthetic_audio(1.2, 0) * 20000).astype(np.int16)
    examples = [
        Example(wave, "<|im_start|>", "asr<|im_end|>", "hello world", is_asr=True),
        Example(wave[:8000], "<|im_start|>", "gender<|im_end|>", "male", is_asr=False),
    ]
    batch = Batcher(processor, "cpu")(examples)
    assert [len(t) for t in batch["ctc_targets"]] == [len("hello world"), 0]
    assert batch["audio_lengths"].tolist() == [30, 12]  # Qwen2-Audio's count for 120 and 50 mel frames
    targets, lengths = batch.pop("ctc_targets"), batch.pop("audio_lengths")
    batch.pop("labels")
    model(**batch)
    loss = ctc.loss(targets, lengths)
    assert loss is not None and torch.isfinite(loss) and loss > 0
    loss.backward()
    assert submodule(model, "audio_tower").conv1.weight.grad.abs().sum() > 0  # the signal reaches the encoder
    assert (
        submodule(model, "language_model").layers[0].self_attn.q_proj.weight.grad is None
    )  # and only the encoder side
    model(**batch)
    assert ctc.loss([torch.tensor([]), torch.tensor([])], lengths) is None  # no ASR row: no CTC term
    ctc.remove()
    model(**batch)
    assert ctc._audio is None  # the hook is gone
