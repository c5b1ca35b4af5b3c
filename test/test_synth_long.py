"""The long-speech testbed (egs2/mini_synth_long/speechlm1) at toy scale: the espeak-ng data of
synth_long (determinism, Kaldi-valid dirs, durations, labels, hold-out), the trainer's 30 s
windows / multi-window prompts / token batches on a 32-layer model saved and loaded back, the
recipe's helper scripts, and ./run.sh end to end on a few utterances.

Needs espeak-ng (as test_synth.py): when it is missing these tests fail with the install hint.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from espnet_fastadasp.bin import make_synth_long_data
from espnet_fastadasp.bin.validate_data_dir import validate
from espnet_fastadasp.models.tiny import synthetic_audio
from espnet_fastadasp.recipes import synth, synth_long
from espnet_fastadasp.recipes.train import (
    AudioCTC,
    Batcher,
    Example,
    TrainConfig,
    build_model_and_processor,
    example_length,
    per_sample_loss,
    token_batches,
)

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "mini_synth_long" / "speechlm1"
COUNTS = {"asr": 2, "lasr": 1, "spkid": 2, "samespk": 4, "prosody": 4, "keyword": 4}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    synth.check_espeak()
    out = tmp_path_factory.mktemp("synth_long")
    synth_long.generate(out, list(COUNTS), {"test": COUNTS}, seed=1, nj=2)
    return out


def _table(path: Path) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in path.read_text().splitlines())


def test_data_dirs_are_kaldi_valid_and_speaker_prefixed(data):
    for task, n in COUNTS.items():
        d = data / f"{task}_test"
        validate(d)
        keys = list(_table(d / "text"))
        assert len(keys) == n
        utt2spk = _table(d / "utt2spk")
        assert all(k.startswith(utt2spk[k] + "-") and f"{task}_test_" in k for k in keys)
        assert (d / "task").read_text().strip() == ("asr" if task in ("asr", "lasr") else "cls")
        assert set(_table(d / "prompt").values()) == {synth_long.prompt_template(task)}


def test_durations_labels_and_contents(data):
    for task, n in COUNTS.items():
        meta = [json.loads(line) for line in (data / f"{task}_test" / "meta.jsonl").read_text().splitlines()]
        lo, hi = synth_long.TASKS[task]["seconds"]
        for m in meta:
            assert lo <= m["duration"] <= hi + 1e-6, (task, m["duration"])
            text = " ".join(m["sentences"])
            if task in ("asr", "lasr"):
                assert m["text"] == text
            elif task == "keyword":
                assert (synth_long.KEYWORD in text.split()) == (m["label"] == "yes")
            elif task == "samespk":
                assert m["n_sentences"] == 2
                assert (m["voices"][0] == m["voices"][1]) == (m["label"] == "same")
                if m["label"] == "different":
                    assert {v.split("+")[1][0] for v in m["voices"]} == {v.split("+")[1][0] for v in m["voices"][:1]}
            elif task == "spkid":
                assert m["speaker"] == m["label"] and m["voices"][0] == synth_long.spkid_speakers()[m["index"]]["voice"]
            elif task == "prosody":
                p_cls, r_cls = m["label"].split()
                assert all(
                    synth_long.PROSODY_PITCH[p_cls][0] <= p <= synth_long.PROSODY_PITCH[p_cls][1] for p in m["pitches"]
                )
                assert all(
                    synth_long.PROSODY_RATE[r_cls][0] <= r <= synth_long.PROSODY_RATE[r_cls][1] for r in m["rates"]
                )
        labels = synth_long.TASKS[task]["labels"]
        if labels:  # balanced: utterance i has label i mod len(labels)
            assert [m["label"] for m in sorted(meta, key=lambda m: m["index"])] == [
                labels[i % len(labels)] for i in range(n)
            ]
        if task == "asr":
            assert any(m["n_sentences"] > 1 for m in meta)
        if task == "lasr":  # several 30 s windows
            assert all(m["duration"] > 2 * synth_long.WINDOW_SECONDS for m in meta)
    # every sentence of a test utterance belongs to the test split (never in training)
    for d in data.glob("*_test"):
        for line in (d / "meta.jsonl").read_text().splitlines():
            assert all(synth.sentence_split(s.split()) == "test" for s in json.loads(line)["sentences"])


def test_output_does_not_depend_on_nj_or_the_set_size(data, tmp_path):
    """One worker and fewer utterances give byte-identical files for the utterances in common."""
    make_synth_long_data.main(
        ["--out_dir", str(tmp_path), "--split", "test", "--num", "keyword=2,samespk=1", "--nj", "1"]
    )
    for task, n in (("keyword", 2), ("samespk", 1)):
        small = _table(tmp_path / f"{task}_test" / "wav.sha1")
        full = _table(data / f"{task}_test" / "wav.sha1")
        assert len(small) == n and all(full[k] == v for k, v in small.items())
        for k, v in small.items():
            wav = next((tmp_path / "wav" / f"{task}_test").glob(f"{k}.wav"))
            assert hashlib.sha1(wav.read_bytes()).hexdigest() == v


def test_bad_counts_are_refused():
    with pytest.raises(ValueError, match="TASK=COUNT"):
        make_synth_long_data.parse_counts("asr=2,nope=3")


def test_token_batches_respect_the_budget_and_cover_every_example():
    lengths = [random.Random(i).randint(100, 4000) for i in range(200)]
    batches = token_batches(lengths, 8000, 16, random.Random(0))
    assert sorted(i for b in batches for i in b) == list(range(200))
    for b in batches:
        assert len(b) <= 16 and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 8000)
    assert batches != token_batches(lengths, 8000, 16, random.Random(1))  # shuffled per epoch


def _toy_config(tmp_path: Path, **overrides) -> TrainConfig:
    values = yaml.safe_load((RECIPE / "conf" / "train_toy.yaml").read_text())
    values.update(overrides)
    return TrainConfig(train_dirs=[], output_dir=str(tmp_path / "model"), **values)


def test_batcher_puts_long_audio_in_consecutive_windows_and_ctc_reads_them_in_order(tmp_path):
    cfg = _toy_config(tmp_path)
    model, processor = build_model_and_processor(cfg)
    assert model.config.audio_config.max_source_positions == 1500 and model.config.text_config.num_hidden_layers == 32
    to16 = lambda x: (x * 20000).astype(np.int16)  # noqa: E731
    examples = [
        Example(to16(synthetic_audio(35.0, 1)), "<|im_start|>", "transcribe<|im_end|>", "a b c", True),
        Example(to16(synthetic_audio(7.0, 2)), "<|im_start|>", "which speaker<|im_end|>", "spk01", False),
    ]
    batcher = Batcher(processor, "cpu")
    batch = batcher(examples)
    assert batch["clip_counts"].tolist() == [2, 1]
    assert batch["input_features"].shape[0] == 3 and batch["input_features"].shape[-1] == 3000
    bos = processor.tokenizer.convert_tokens_to_ids("<|audio_bos|>")
    assert (batch["input_ids"] == bos).sum(-1).tolist() == [2, 1]
    assert batch["audio_lengths"].tolist() == [750, 125, 175]  # 30 + 5 s, then 7 s
    ctc = AudioCTC(model, len(processor.tokenizer))
    labels = batch.pop("labels")
    targets, lengths, counts = batch.pop("ctc_targets"), batch.pop("audio_lengths"), batch.pop("clip_counts")
    loss = per_sample_loss(model(**batch).logits, labels) + ctc.loss(targets, lengths, counts)
    loss.backward()
    assert torch.isfinite(loss)
    # 35 s = 875 audio tokens (+ clip markers and text); 7 s = 175
    assert 875 < example_length(examples[0]) < 950 and 175 < example_length(examples[1]) < 220


def test_train_gpu_sh_on_cpu_trains_a_32_layer_toy_model_that_loads_back(tmp_path):
    """local/train_gpu.sh (the device call's script) end to end at toy scale on the CPU: training
    data, dev sets, train_tiny (3 steps), the dev check; the model loads with from_pretrained and
    decodes 40 s of audio as two 30 s windows under a reduction."""
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    from espnet_fastadasp.core.config import ReductionConfig
    from espnet_fastadasp.decoding.speech2text import Speech2Text

    recipe = _recipe_copy(tmp_path)
    out = tmp_path / "model"
    cmd = [
        "local/train_gpu.sh",
        "--budget_minutes",
        "3",
        "--reserve_minutes",
        "1",
        "--train_counts",
        "asr=2,lasr=0,spkid=2,samespk=0,prosody=0,keyword=0",
        "--dev_counts",
        "asr=1,spkid=1",
        "--train_config",
        "conf/train_toy.yaml",
        "--dev_check_opts",
        "--max_new_tokens_asr 4",
        "--device",
        "cpu",
        "--nj",
        "2",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, cwd=recipe, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3 and all(np.isfinite(r["loss"]) for r in log) and "ctc_loss" in log[0]
    assert set(json.loads((out / "dev_scores.json").read_text())) == {"asr_dev", "spkid_dev"}
    for name in ("versions.txt", "timing.txt", "command.txt", "train_gpu_command.txt", "train_config.yaml"):
        assert (out / name).is_file(), name
    model = Qwen2AudioForConditionalGeneration.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    assert model.config.text_config.num_hidden_layers == 32
    assert model.config.text_config.max_position_embeddings == 8192
    assert processor.feature_extractor.n_samples == 30 * 16000
    s2t = Speech2Text(model=model.eval(), processor=processor, max_new_tokens=3)
    batch = s2t.encode(["u"], [synthetic_audio(40.0, 3)], ["<|im_start|>{audio}transcribe<|im_end|>"])
    assert batch.clips == [2]
    assert len(s2t(batch, ReductionConfig(method="fastadasp", flops_reduction=0.3, start_layer=1))) == 1


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{REPO / 'tools' / 'venv' / 'bin'}:{os.environ['PATH']}"}


def test_testset_manifest_checks_audio_and_text(data, tmp_path):
    script = RECIPE / "local" / "testset_manifest.py"
    manifest = tmp_path / "m.tsv.gz"
    sets = [str(data / "keyword_test"), str(data / "samespk_test")]
    run = lambda *a: subprocess.run([sys.executable, str(script), *a], capture_output=True, text=True)  # noqa: E731
    assert run("write", "--manifest", str(manifest), *sets).returncode == 0
    assert run("check", "--manifest", str(manifest), *sets).returncode == 0
    lines = gzip.open(manifest, "rt").read().splitlines()
    name, key, sha, dur, text = lines[0].split("\t")
    lines[0] = "\t".join([name, key, "0" * 40, dur, text])
    with gzip.open(manifest, "wt") as f:
        f.write("\n".join(lines) + "\n")
    proc = run("check", "--manifest", str(manifest), *sets)
    assert proc.returncode != 0 and "audio differs" in proc.stderr


def _recipe_copy(tmp: Path) -> Path:
    dst = tmp / "egs2" / "mini_synth_long" / "speechlm1"
    dst.mkdir(parents=True)
    for item in RECIPE.iterdir():
        if item.name in ("data", "exp", "model", "RESULTS.md", "RESULTS_tradeoff.png"):
            continue
        if item.is_symlink():
            (dst / item.name).symlink_to(item.resolve())
        elif item.is_dir():
            shutil.copytree(item, dst / item.name, symlinks=False)
        else:
            shutil.copy2(item, dst / item.name)
    return dst


def test_run_sh_end_to_end_on_a_toy_model(tmp_path):
    """Data, TE layer selection, decoding with FastAdaSP and a baseline, scoring, RESULTS.md with the
    bootstrap tables and verdict, and the TE validation: an untrained 32-layer model, 3 answer tokens."""
    recipe = _recipe_copy(tmp_path)
    model, processor = build_model_and_processor(_toy_config(tmp_path))
    model.save_pretrained(recipe / "model")
    processor.save_pretrained(recipe / "model")
    (recipe / "conf" / "decode_toy.yaml").write_text("batch_size: 4\nbeam_size: 1\nmax_new_tokens: 3\ndtype: float32\n")
    args = [
        "--test_counts",
        "asr=2,lasr=1,spkid=2,samespk=0,prosody=0,keyword=2",
        "--dev_counts",
        "spkid=8,samespk=0,prosody=0,keyword=8",
        "--targets",
        "0.3",
        "--methods",
        "fastadasp_constant fastadasp_once fastv",
        "--te_layers",
        "1 9",
        "--te_tasks",
        "spkid keyword",
        "--decode_config",
        "conf/decode_toy.yaml",
        "--short_sets",
        "asr_test spkid_test keyword_test",
    ]
    proc = subprocess.run(["./run.sh", *args], cwd=recipe, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = (recipe / "RESULTS.md").read_text()
    assert "## Bootstrap intervals" in results and "## Verdict (local/summarize.py)" in results
    assert "| fastadasp_once@0.3 |" in results and "fastadasp_constant - fastv" in results
    exp = recipe / "exp" / "tiny_qwen2_audio_long"
    # long-form: no reduction, FastAdaSP constant and the dense baselines, never the sparse schedule
    assert (exp / "decode_fastadasp_constant@0.3" / "lasr_test" / "score" / "score.json").is_file()
    assert (exp / "decode_fastv_constant@0.3" / "lasr_test" / ".done").is_file()
    assert not (exp / "decode_fastadasp_once@0.3" / "lasr_test").exists()
    assert "lasr" in results.split("## Verdict")[0]
    assert "## Transfer Entropy layer selection, validated at 50 % FLOPs reduction" in results
    assert (recipe / "RESULTS_tradeoff.png").is_file()

    # the per-set cost measurement that sized the CPU default, on the data the run made
    sets = "asr_test=2:auto keyword_test=2:3"
    cost = [
        "local/measure_cpu_cost.sh",
        "--train_config",
        "conf/train_toy.yaml",
        "--sets",
        sets,
        "--specs",
        "none fastv@0.3",
    ]
    proc = subprocess.run(cost, cwd=recipe, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line.split("\t") for line in (recipe / "exp" / "cpu_cost" / "cost.tsv").read_text().splitlines()]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("asr_test", "none", "2"),
        ("asr_test", "fastv@0.3", "2"),
        ("keyword_test", "none", "2"),
        ("keyword_test", "fastv@0.3", "2"),
    ]
    longest = max(len(line.split(maxsplit=1)[1]) for line in (recipe / "data/asr_test/text").read_text().splitlines())
    assert int(rows[0][3]) == longest + 1 and rows[2][3] == "3" and all(float(r[4]) > 0 for r in rows)
