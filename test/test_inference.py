"""bin/inference.py: outputs, resume, and a clear error for every kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from espnet_fastadasp.bin import inference as inf
from espnet_fastadasp.decoding.data import AudioError, AudioReader, DataError
from espnet_fastadasp.decoding.encoder_memo import AudioEncoderMemo
from espnet_fastadasp.decoding.outputs import SettingsMismatch
from espnet_fastadasp.decoding.speech2text import load_model
from espnet_fastadasp.models.parts import UnsupportedModelError
from espnet_fastadasp.models.tiny import synthetic_audio

PROMPT = "<|im_start|>{audio}ASR:<|im_end|>"


def audio_tokens(seconds: float) -> int:
    """Qwen2-Audio's count: L mel frames (100 per second) -> (((L - 1) // 2 + 1) - 2) // 2 + 1."""
    frames = round(seconds * 100)
    return (((frames - 1) // 2 + 1) - 2) // 2 + 1


def write_data(root, seconds, rates=None, prompt=PROMPT):
    """A data dir with one wav per entry of ``seconds``."""
    d = root / "data"
    d.mkdir(parents=True, exist_ok=True)
    rates = rates or [16000] * len(seconds)
    with (d / "wav.scp").open("w") as scp, (d / "prompt").open("w") as pr:
        for i, (s, r) in enumerate(zip(seconds, rates)):
            path = root / f"utt{i}.wav"
            n = int(s * r)
            sf.write(path, synthetic_audio(n / 16000, i)[:n] if n else np.zeros(0, "float32"), r)
            scp.write(f"utt{i} {path}\n")
            pr.write(f"utt{i} {prompt}\n")
    return d


def run(checkpoint, d, out, *extra, reduction=("method=fastadasp", "flops_reduction=0.2")):
    """bin/inference.py on data dir ``d`` (``out=None``: the output dirs come in ``extra``)."""
    args = [] if out is None else ["--output_dir", str(out)]
    args += [
        "--model_name_or_path",
        str(checkpoint),
        "--data_path_and_name_and_type",
        f"{d}/wav.scp,speech,sound",
        "--data_path_and_name_and_type",
        f"{d}/prompt,prompt,text",
        "--max_new_tokens",
        "4",
        "--batch_size",
        "2",
    ]
    for r in reduction:
        args += ["--reduction", r]
    inf.main(args + list(extra))


def read(path):
    return {k: v for k, _, v in (line.partition(" ") for line in path.read_text().splitlines())}


def test_decodes_and_writes_text_and_cost(checkpoint, tmp_path):
    d = write_data(tmp_path, [1.0, 1.5, 0.6])
    run(checkpoint, d, tmp_path / "out")
    text = read(tmp_path / "out" / "1best_recog" / "text")
    cost = {k: json.loads(v) for k, v in read(tmp_path / "out" / "1best_recog" / "cost").items()}
    assert set(text) == set(cost) == {"utt0", "utt1", "utt2"}
    assert cost["utt1"]["audio_tokens"] == audio_tokens(1.5) == 37 and cost["utt1"]["clips"] == 1
    assert 0.1 < cost["utt1"]["flops_reduction"] < 0.3
    assert cost["utt1"]["prefill_s"] > 0 and cost["utt1"]["new_tokens"] <= 4
    assert (tmp_path / "out" / "reduction.yaml").is_file()


def test_shared_prompt_beam_search_gives_the_same_hypotheses(checkpoint, tmp_path):
    """--share_prompt true: same text as plain beam search (no reduction), stats per utterance."""
    d = write_data(tmp_path, [1.0, 4.5, 0.6])  # utt1 has 3 clips (the tiny window is 2 s)
    beams = ("--beam_size", "3", "--max_new_tokens", "6")
    run(checkpoint, d, tmp_path / "plain", *beams, reduction=("method=none",))
    run(checkpoint, d, tmp_path / "shared", *beams, "--share_prompt", "true", reduction=("method=none",))
    assert read(tmp_path / "shared" / "1best_recog" / "text") == read(tmp_path / "plain" / "1best_recog" / "text")
    run(checkpoint, d, tmp_path / "reduced", *beams, "--share_prompt", "true")
    cost = {k: json.loads(v) for k, v in read(tmp_path / "reduced" / "1best_recog" / "cost").items()}
    assert cost["utt1"]["clips"] == 3
    assert cost["utt1"]["audio_tokens"] == 2 * audio_tokens(2.0) + audio_tokens(0.5)  # utt1's own row
    assert cost["utt0"]["audio_tokens"] == audio_tokens(1.0) and 0.1 < cost["utt0"]["flops_reduction"] < 0.3
    with pytest.raises(SystemExit):
        run(checkpoint, d, tmp_path / "bad", "--share_prompt", "maybe")


def test_static_decoding_gives_the_same_hypotheses(checkpoint, tmp_path):
    """--static_decoding true (eager steps, and compiled with a reduction): the same text as plain
    generate in float32, with and without a reduction; settings.yaml records it, so a resume with it switched refuses."""
    d = write_data(tmp_path, [1.0, 4.5, 0.6])
    beams = ("--beam_size", "3", "--max_new_tokens", "6")
    for reduction in (("method=none",), ("method=fastadasp", "flops_reduction=0.2")):
        tag = reduction[0].split("=")[1]
        run(checkpoint, d, tmp_path / f"plain_{tag}", *beams, reduction=reduction)
        plain = read(tmp_path / f"plain_{tag}" / "1best_recog" / "text")
        # compiled steps once (an inductor compile is most of this test's time): with the reduction,
        # the harder graph; test_static_decoding compares compiled (aot_eager) and plain steps too
        for mode in ("eager", "compile") if tag != "none" else ("eager",):
            out = tmp_path / f"static_{tag}_{mode}"
            run(checkpoint, d, out, *beams, "--static_decoding", "true", "--static_step_mode", mode, reduction=reduction)
            assert read(out / "1best_recog" / "text") == plain, f"{tag}, {mode} steps"
            assert "static_step_mode: " + mode in (out / "settings.yaml").read_text()
    assert "static_decoding:" not in (tmp_path / "plain_none" / "settings.yaml").read_text()
    with pytest.raises(SettingsMismatch, match="decode.static_decoding"):
        run(checkpoint, d, tmp_path / "plain_none", *beams, "--static_decoding", "true", reduction=("method=none",))
    with pytest.raises(SystemExit):
        run(checkpoint, d, tmp_path / "bad", "--static_step_mode", "fast")


def test_resume_skips_finished_and_repairs_a_torn_line(checkpoint, tmp_path):
    d = write_data(tmp_path, [1.0, 1.2, 0.8, 0.9])
    out = tmp_path / "out"
    run(checkpoint, d, out)
    text_path = out / "1best_recog" / "text"
    full = text_path.read_text()
    lines = full.splitlines()
    # as if the job had been killed while writing the third line
    text_path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:4])
    before = read(text_path)
    run(checkpoint, d, out)
    after = read(text_path)
    assert set(after) == {f"utt{i}" for i in range(4)}
    assert {k: after[k] for k in before if k in ("utt0", "utt1")} == {k: before[k] for k in ("utt0", "utt1")}
    assert len(text_path.read_text().splitlines()) == 4
    assert set(read(out / "1best_recog" / "cost")) == set(after)


def test_key_file_restricts_and_unknown_keys_fail(checkpoint, tmp_path):
    d = write_data(tmp_path, [1.0, 1.0])
    keys = tmp_path / "keys.scp"
    keys.write_text("utt1 x\n")
    run(checkpoint, d, tmp_path / "out", "--key_file", str(keys))
    assert set(read(tmp_path / "out" / "1best_recog" / "text")) == {"utt1"}
    keys.write_text("utt1 x\nnope y\n")
    with pytest.raises(DataError, match="nope"):
        run(checkpoint, d, tmp_path / "out2", "--key_file", str(keys))


def test_missing_prompt_names_the_utterance(checkpoint, tmp_path):
    d = write_data(tmp_path, [1.0, 1.0])
    (d / "prompt").write_text(f"utt0 {PROMPT}\n")
    with pytest.raises(DataError, match="utterance 'utt1' has no prompt"):
        run(checkpoint, d, tmp_path / "out")


def test_missing_audio_file_names_the_utterance(checkpoint, tmp_path):
    d = write_data(tmp_path, [1.0, 1.0])
    (tmp_path / "utt1.wav").unlink()
    with pytest.raises(DataError, match="utt1.*no such file"):
        run(checkpoint, d, tmp_path / "out")
    # found by the check of every entry, before anything is decoded
    text = tmp_path / "out" / "1best_recog" / "text"
    assert not text.exists() or not read(text)


def test_corrupt_and_empty_audio_fail_clearly(tmp_path):
    d = write_data(tmp_path, [1.0, 0.0])
    (tmp_path / "utt0.wav").write_bytes(b"RIFF....not a wav at all")
    reader = AudioReader(d / "wav.scp")
    with pytest.raises(AudioError, match="utt0.*cannot read audio"):
        reader("utt0")
    with pytest.raises(AudioError, match="utt1.*empty or too short"):
        reader("utt1")


def test_overlong_audio_is_an_error_above_the_limit(tmp_path):
    d = write_data(tmp_path, [3.0])
    with pytest.raises(AudioError, match="utt0.*longer than max_seconds=2"):
        AudioReader(d / "wav.scp", max_seconds=2)("utt0")


def test_wrong_sample_rate_is_resampled(tmp_path):
    d = write_data(tmp_path, [1.0, 1.0], rates=[16000, 48000])
    reader = AudioReader(d / "wav.scp")
    assert len(reader("utt0")) == 16000
    assert len(reader("utt1")) == 16000  # 1 s at 48 kHz -> 16000 samples at 16 kHz


def test_audio_longer_than_a_window_is_split_into_clips(checkpoint, tmp_path):
    d = write_data(tmp_path, [4.5])  # the tiny encoder's window is 2 s -> clips of 2 + 2 + 0.5 s
    run(checkpoint, d, tmp_path / "out")
    cost = json.loads(read(tmp_path / "out" / "1best_recog" / "cost")["utt0"])
    assert cost["clips"] == 3
    assert cost["audio_tokens"] == 2 * audio_tokens(2.0) + audio_tokens(0.5)


def test_pipe_and_segments(tmp_path):
    d = write_data(tmp_path, [2.0])
    wav = (d / "wav.scp").read_text().split()[1]
    (d / "wav.scp").write_text(f"rec1 cat {wav} |\n")
    (d / "segments").write_text("a rec1 0.0 0.5\nb rec1 0.5 -1\n")
    reader = AudioReader(d / "wav.scp", d / "segments")
    assert reader.keys() == ["a", "b"]
    assert len(reader("a")) == 8000 and len(reader("b")) == 24000
    (d / "wav.scp").write_text("rec1 false |\n")
    with pytest.raises(AudioError, match="a.*pipe exited 1"):
        AudioReader(d / "wav.scp", d / "segments")("a")


def test_kaldi_ark_audio(tmp_path):
    import kaldiio

    wave = (synthetic_audio(1.0, 3) * 32767).astype(np.int16)
    kaldiio.save_ark(str(tmp_path / "a.ark"), {"u1": (16000, wave)}, scp=str(tmp_path / "wav.scp"))
    got = AudioReader(tmp_path / "wav.scp")("u1")
    assert np.allclose(got, wave / 32768.0, atol=1e-6)


def test_text_only_model_is_rejected(tmp_path):
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from espnet_fastadasp.models.tiny import char_tokenizer

    lm = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=120,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )
    lm.save_pretrained(tmp_path / "lm")
    char_tokenizer().save_pretrained(tmp_path / "lm")
    assert AutoTokenizer.from_pretrained(tmp_path / "lm")
    with pytest.raises(UnsupportedModelError, match="audio placeholder"):
        load_model(str(tmp_path / "lm"), "float32", "cpu", None)


def test_config_file_and_cli_overrides(checkpoint, tmp_path):
    d = write_data(tmp_path, [1.0])
    cfg = tmp_path / "decode.yaml"
    cfg.write_text("batch_size: 3\nmax_new_tokens: 2\n")
    run(checkpoint, d, tmp_path / "out", "--config", str(cfg), reduction=())
    cost = json.loads(read(tmp_path / "out" / "1best_recog" / "cost")["utt0"])
    assert cost["new_tokens"] <= 4  # the CLI's --max_new_tokens 4 wins over the file
    cfg.write_text("batch_sise: 3\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "espnet_fastadasp.bin.inference",
            "--config",
            str(cfg),
            "--output_dir",
            "x",
            "--model_name_or_path",
            "m",
            "--data_path_and_name_and_type",
            "a,speech,sound",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "batch_sise" in proc.stderr


def test_several_settings_in_one_process_equal_separate_runs(checkpoint, tmp_path):
    """--setting OUT=YAML (repeated): one model load, each setting's outputs as if run alone."""
    d = write_data(tmp_path, [1.0, 1.5, 0.6])
    cfgs = {}
    for name, body in {"none": "method: none\n", "fv": "method: fastv\nflops_reduction: 0.3\n"}.items():
        cfgs[name] = tmp_path / f"{name}.yaml"
        cfgs[name].write_text(body)
    for name, path in cfgs.items():
        run(checkpoint, d, tmp_path / "alone" / name, "--reduction_config", str(path), reduction=())
    settings = [a for name, path in cfgs.items() for a in ("--setting", f"{tmp_path / 'together' / name}={path}")]
    run(checkpoint, d, None, *settings, reduction=())
    for name in cfgs:
        alone, together = tmp_path / "alone" / name / "1best_recog", tmp_path / "together" / name / "1best_recog"
        assert read(together / "text") == read(alone / "text")
        strip = ("prefill_s", "decode_s")
        for key, value in read(together / "cost").items():
            a, b = json.loads(value), json.loads(read(alone / "cost")[key])
            assert {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}
    assert json.loads(read(tmp_path / "together" / "fv" / "1best_recog" / "cost")["utt1"])["flops_reduction"] > 0.2
    # a rerun with the same settings finds both done (other decode options would be refused)
    assert inf.inference(
        None,
        [f"{d}/wav.scp,speech,sound", f"{d}/prompt,prompt,text"],
        str(checkpoint),
        setting=[f"{tmp_path / 'together' / n}={p}" for n, p in cfgs.items()],
        batch_size=2,
        max_new_tokens=4,
    ) == {"total": 6, "skipped": 6, "decoded": 0}
    with pytest.raises(ValueError, match="either --setting"):
        inf.inference(str(tmp_path / "x"), [f"{d}/wav.scp,speech,sound"], str(checkpoint), setting=["a=b"])
    with pytest.raises(ValueError, match="OUTPUT_DIR=REDUCTION_YAML"):
        inf.inference(None, [f"{d}/wav.scp,speech,sound"], str(checkpoint), setting=["nothing"])
    with pytest.raises(SystemExit):
        run(checkpoint, d, None)  # neither --output_dir nor --setting


def test_audio_encoder_memo_reuses_only_equal_inputs(checkpoint):
    import torch

    model, processor = load_model(str(checkpoint), "float32", "cpu", None)
    enc = processor(
        text=["<|im_start|><|audio_bos|><|AUDIO|><|audio_eos|>x<|im_end|>"] * 2,
        audio=[synthetic_audio(1.0, 0), synthetic_audio(1.3, 1)],
        return_tensors="pt",
        padding=True,
        sampling_rate=16000,
    )
    with torch.no_grad():
        plain = model(**enc).logits
        memo = AudioEncoderMemo(model)
        first = model(**enc).logits
        again = model(**{k: v.clone() for k, v in enc.items()}).logits  # equal values, new tensors
        assert memo.hits == 1
        other = dict(enc, input_features=enc["input_features"] + 0.1)
        changed = model(**other).logits
        assert memo.hits == 1  # different features: the encoder ran
        memo.remove()
        assert "forward" not in memo.encoder.__dict__
        assert torch.equal(model(**other).logits, changed)
    assert torch.equal(first, plain) and torch.equal(again, plain) and not torch.equal(changed, plain)
