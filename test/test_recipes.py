"""Each recipe end to end (./run.sh: data prep, check, decode, score, report) on a small fake
corpus written in the real corpus layout, with a tiny saved Qwen2-Audio, through the local backend."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from espnet_fastadasp.evaluation.environment import model_fingerprint
from espnet_fastadasp.models.tiny import synthetic_audio

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "egs2" / "TEMPLATE" / "speechlm1"
FAST = "--dtype float32 --max_new_tokens 3 --batch_size 2"


def recipe_copy(name: str, tmp: Path) -> Path:
    """The recipe dir copied into tmp, its links pointing at this repo's template."""
    src = REPO / "egs2" / name / "speechlm1"
    dst = tmp / "egs2" / name / "speechlm1"
    dst.mkdir(parents=True)
    for item in src.iterdir():
        if item.name in ("data", "exp", "RESULTS.md", "RESULTS_tradeoff.png"):
            continue
        if item.is_symlink():
            (dst / item.name).symlink_to(item.resolve())
        elif item.is_dir():
            shutil.copytree(item, dst / item.name)
        else:
            shutil.copy2(item, dst / item.name)
    # the tiny model's clips are short: keep the text part of the prompt short too, as it is
    # relative to 30 s windows for the real model (otherwise high targets are unreachable)
    (dst / "conf" / "prompt.txt").write_text("<|im_start|>{audio}" + name[:3] + ":<|im_end|>\n")
    return dst


def run_recipe(recipe: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env, "PATH": f"{REPO / 'tools' / 'venv' / 'bin'}:{os.environ['PATH']}"}
    return subprocess.run(["./run.sh", *args], cwd=recipe, env=full_env, capture_output=True, text=True, timeout=600)


def check_outputs(recipe: Path, model_tag: str, tags: list[str], sets: list[str], metric: str) -> str:
    exp = recipe / "exp" / model_tag
    for tag in tags:
        for dset in sets:
            dec = exp / f"decode_{tag}" / dset
            assert (dec / ".done").is_file(), f"{dec} not finished"
            ref = (recipe / "data" / dset / "text").read_text().splitlines()
            hyp = (dec / "text").read_text().splitlines()  # where ESPnet's scripts read it
            assert [r.split()[0] for r in ref] == [h.split(" ", 1)[0] for h in hyp]
            assert (dec / "score" / "score.json").is_file()
    results = (recipe / "RESULTS.md").read_text()
    for tag in tags:
        assert f"| {tag} |" in results
    assert metric in results
    assert (exp / "tradeoff.png").stat().st_size > 1000
    return results


def write_librispeech(root: Path) -> None:
    words = ["HELLO", "WORLD", "SPEECH", "MODELS", "MERGE", "TOKENS"]
    for s, subset in enumerate(["test-clean", "test-other"]):
        for spk in (1089, 2300):
            chap = root / subset / str(spk) / "134686"
            chap.mkdir(parents=True)
            lines = []
            for n in range(2):
                key = f"{spk}-134686-{n:04d}"
                sf.write(chap / f"{key}.flac", synthetic_audio(1.2 + 0.5 * n + 0.3 * s, spk + n), 16000)
                lines.append(f"{key} {' '.join(words[n : n + 3 + s])}")
            (chap / f"{spk}-134686.trans.txt").write_text("\n".join(lines) + "\n")


def test_librispeech_recipe(checkpoint, tmp_path):
    write_librispeech(tmp_path / "LibriSpeech")
    recipe = recipe_copy("librispeech", tmp_path)
    env = {"LIBRISPEECH": str(tmp_path / "LibriSpeech")}
    tags = ["none", "fastadasp_constant@0.2", "fastv_constant@0.2"]
    args = [
        "--model_name_or_path",
        str(checkpoint),
        "--reductions",
        "none fastadasp_constant@0.2 fastv@0.2",
        "--nj",
        "2",
        "--inference_args",
        FAST,
    ]
    proc = run_recipe(recipe, env, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = check_outputs(recipe, checkpoint.name, tags, ["test_clean", "test_other"], "wer")
    assert "FLOPs red." in results
    for unit in ("score_wer", "score_cer"):
        d = recipe / "exp" / checkpoint.name / "decode_none" / "test_clean" / unit
        assert {p.name for p in d.iterdir()} == {"ref.trn", "hyp.trn", "result.txt"}
    assert "|decode_none/test_clean|4|" in results  # the show_asr_result.sh table
    # a rerun skips the finished decodes and only redoes scoring and the report
    again = run_recipe(recipe, env, *args, "--stage", "4")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("is done, skipping") == 6
    # a dir decoded with another model (retrained under the same path) is not reused: a clear error
    stale = recipe / "exp" / checkpoint.name / "decode_none" / "test_other" / "model_fingerprint"
    assert stale.read_text().startswith("sha256:")
    stale.write_text("sha256:0123\n")
    refused = run_recipe(recipe, env, *args, "--stage", "4", "--stop_stage", "4")
    assert refused.returncode != 0 and "decode_none/test_other was decoded with another model" in refused.stderr
    stale.write_text(again_fp := (recipe / "exp" / checkpoint.name / "decode_none" / "test_clean" / "model_fingerprint").read_text())
    assert again_fp.strip() == model_fingerprint(checkpoint)
    # the same settings decoded two per job (model loaded once per job): the same outputs
    grouped = run_recipe(
        recipe, env, *args, "--stage", "4", "--stop_stage", "4", "--settings_per_job", "2", "--expdir", "exp_grouped"
    )
    assert grouped.returncode == 0, grouped.stderr[-3000:]
    for tag in tags:
        for dset in ("test_clean", "test_other"):
            one = recipe / "exp" / checkpoint.name / f"decode_{tag}" / dset / "text"
            two = recipe / "exp_grouped" / checkpoint.name / f"decode_{tag}" / dset / "text"
            assert two.read_text() == one.read_text()
    # a dir killed in the middle resumes with the split it started with, whatever --nj says now,
    # and gives the output of an uninterrupted run
    dec = recipe / "exp" / checkpoint.name / "decode_fastv_constant@0.2" / "test_clean"
    full = (dec / "text").read_text()
    (dec / ".done").unlink()
    (dec / "text").unlink()
    (dec / "cost").unlink()
    for name in ("text", "cost"):
        part = dec / "logdir" / "output.2" / "1best_recog" / name
        part.write_text(part.read_text().splitlines(keepends=True)[0])  # job 2 was killed after one utterance
    resumed = run_recipe(
        recipe, env, *args[:-4], "--nj", "3", "--inference_args", FAST, "--stage", "4", "--stop_stage", "4"
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "with the 2 jobs they started with" in resumed.stderr
    assert (dec / "text").read_text() == full and (dec / ".done").is_file()
    # a part with a key twice (or one missing) fails the merge: no output, no .done
    (dec / ".done").unlink()
    part = dec / "logdir" / "output.1" / "1best_recog" / "text"
    part.write_text(part.read_text() + part.read_text().splitlines(keepends=True)[0])
    broken = run_recipe(recipe, env, *args, "--stage", "4", "--stop_stage", "4")
    assert broken.returncode != 0 and "1 key(s) duplicated" in broken.stderr
    assert not (dec / ".done").exists()
    # two jobs per test set for the first two settings, then one for the third
    logs = sorted(p.relative_to(recipe / "exp_grouped") for p in (recipe / "exp_grouped").rglob("decode.*.log"))
    assert [str(p.parent.parent.parent.name) for p in logs].count("decode_none") == 4
    assert [str(p.parent.parent.parent.name) for p in logs].count("decode_fastv_constant@0.2") == 4


def test_covost2_recipe(checkpoint, tmp_path):
    clips = tmp_path / "cv" / "clips"
    clips.mkdir(parents=True)
    rows = []
    for i in range(3):
        name = f"common_voice_en_{i}.mp3"
        sf.write(clips / name, np.repeat(synthetic_audio(1.1 + 0.4 * i, i), 3), 48000, format="MP3")
        rows.append(
            {
                "path": name,
                "sentence": f"hello number {i}",
                "translation": f"hallo nummer {i}",
                "client_id": f"{i:064x}",
                "split": "test",
            }
        )
    rows.append({"path": "other.mp3", "sentence": "x", "translation": "y", "client_id": "0" * 64, "split": "train"})
    (tmp_path / "covost2").mkdir()
    with (tmp_path / "covost2" / "covost_v2.en_de.tsv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    recipe = recipe_copy("covost2", tmp_path)
    env = {"COVOST2": str(tmp_path / "covost2"), "COMMONVOICE": str(tmp_path / "cv")}
    proc = run_recipe(
        recipe,
        env,
        "--model_name_or_path",
        str(checkpoint),
        "--reductions",
        "none fastadasp_constant@0.3",
        "--nj",
        "2",
        "--inference_args",
        FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_outputs(recipe, checkpoint.name, ["none", "fastadasp_constant@0.3"], ["test"], "bleu")
    assert len((recipe / "data" / "test" / "text.src").read_text().splitlines()) == 3


def write_iemocap(root: Path) -> None:
    sess = root / "Session5"
    emos = ["neu", "hap", "ang", "sad", "exc", "fru"]  # fru is outside the 4 classes
    for d, dialog in enumerate(["Ses05F_impro01", "Ses05M_script02"]):
        (sess / "sentences" / "wav" / dialog).mkdir(parents=True)
        (sess / "dialog" / "EmoEvaluation").mkdir(parents=True, exist_ok=True)
        lines = ["% header", ""]
        for n, emo in enumerate(emos):
            utt = f"{dialog}_{'FM'[n % 2]}{n:03d}"
            wave = synthetic_audio(1.0 + 0.15 * n, n + 7 * d)
            sf.write(sess / "sentences" / "wav" / dialog / f"{utt}.wav", wave, 16000)
            lines.append(f"[{n}.0 - {n + 1}.5]\t{utt}\t{emo}\t[2.5, 2.5, 2.5]")
        (sess / "dialog" / "EmoEvaluation" / f"{dialog}.txt").write_text("\n".join(lines) + "\n")


def test_iemocap_recipe_with_transfer_entropy_layer_selection(checkpoint, tmp_path):
    write_iemocap(tmp_path / "IEMOCAP")
    recipe = recipe_copy("iemocap", tmp_path)
    proc = run_recipe(
        recipe,
        {"IEMOCAP": str(tmp_path / "IEMOCAP")},
        "--model_name_or_path",
        str(checkpoint),
        "--reductions",
        "none fastadasp_once@0.3",
        "--nj",
        "2",
        "--inference_args",
        FAST,
        "--sparse_layer",
        "",
        "--select_layer_set",
        "session5",
        "--select_layer_opts",
        "--ratio 0.5 --num_utts 10 --candidate_layers 1 4 --batch_size 5",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_outputs(recipe, checkpoint.name, ["none", "fastadasp_once@0.3"], ["session5"], "accuracy")
    labels = (recipe / "data" / "session5" / "text").read_text().split()
    assert set(labels[1::2]) == {"neutral", "happy", "angry", "sad"}
    te = json.loads((recipe / "exp" / checkpoint.name / "select_layer" / "session5" / "te.json").read_text())
    assert te["chosen_layer"] in (1, 4)
    reduction = recipe / "exp" / checkpoint.name / "decode_fastadasp_once@0.3" / "session5" / "reduction.yaml"
    # the sparse decode uses the layer stage 3 chose
    assert f"start_layer: {te['chosen_layer']}" in reduction.read_text()


def test_failing_job_fails_the_stage_and_names_its_log(checkpoint, tmp_path):
    write_librispeech(tmp_path / "LibriSpeech")
    recipe = recipe_copy("librispeech", tmp_path)
    env = {"LIBRISPEECH": str(tmp_path / "LibriSpeech")}
    proc = run_recipe(recipe, env, "--stop_stage", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # break one utterance's audio: the job holding it fails, the stage fails naming that job's log
    first = (recipe / "data" / "test_clean" / "wav.scp").read_text().splitlines()[-1].split()[1]
    Path(first).write_bytes(b"corrupt")
    proc = run_recipe(
        recipe,
        env,
        "--stage",
        "4",
        "--model_name_or_path",
        str(checkpoint),
        "--reductions",
        "none",
        "--nj",
        "2",
        "--inference_args",
        FAST,
    )
    assert proc.returncode != 0
    assert "decode.2.log" in proc.stderr
    assert "resume with" in proc.stderr
    log = (recipe / "exp" / checkpoint.name / "decode_none" / "test_clean" / "logdir" / "decode.2.log").read_text()
    assert "cannot read audio" in log


def test_setup_makes_a_new_recipe(tmp_path):
    target = tmp_path / "egs2" / "mycorpus" / "speechlm1"
    proc = subprocess.run(["bash", str(TEMPLATE / "setup.sh"), str(target)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (target / "speechlm.sh").resolve() == (TEMPLATE / "speechlm.sh").resolve()
    assert (target / "utils").is_dir() and (target / "conf" / "slurm.conf").is_file()
    help_ = subprocess.run(["./speechlm.sh", "--help"], cwd=target, capture_output=True, text=True)
    assert help_.returncode == 0 and "--reductions" in help_.stdout + help_.stderr


def test_mini_synth_gpu_training_script_keeps_its_budget_and_reuses_data(tmp_path):
    """local/train_gpu.sh (what trained the committed model on an H100), at toy scale on CPU:
    data for each task, training for the budget's remaining minutes with the cosine over that
    budget, a second call that reuses the data and goes on from the first model; a budget that
    leaves no time to train is refused."""
    recipe = recipe_copy("mini_synth", tmp_path)
    (recipe / "conf" / "toy.yaml").write_text(
        "n_mels: 16\nwindow_seconds: 6\nencoder_dim: 32\nencoder_layers: 1\nencoder_heads: 2\nencoder_ffn: 64\n"
        "hidden: 32\nlayers: 8\nheads: 2\nkv_heads: 1\nffn: 64\nbatch_size: 4\nmax_steps: 100000\nwarmup_steps: 1\n"
        "log_every: 1\ndevice: cpu\nbf16: false\nthreads: 1\n"
    )
    env = {**os.environ, "PATH": f"{REPO / 'tools' / 'venv' / 'bin'}:{os.environ['PATH']}"}
    common = ["--num_train_asr", "6", "--num_train_lang", "5", "--num_train_other", "4", "--nj", "2"]
    common += ["--train_config", "conf/toy.yaml"]

    def train(*args):
        return subprocess.run(
            ["local/train_gpu.sh", *common, *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=600
        )

    # the budget leaves ~0.25 min of training minus the data's time (a few seconds; more on a slow CPU)
    first = train("--budget_minutes", "1.45", "--out", "exp/m1")
    assert first.returncode == 0, first.stderr[-3000:]
    for task, n in (("asr", 6), ("lang", 5), ("gender", 4), ("rate", 4), ("nspk", 4)):
        assert len((recipe / "data" / f"{task}_train" / "text").read_text().splitlines()) == n
    log = [json.loads(line) for line in (recipe / "exp" / "m1" / "train_log.jsonl").read_text().splitlines()]
    data_s, minutes = re.search(r"data ready after (\d+) s; training for ([\d.]+) min", first.stdout).groups()
    minutes = float(minutes)
    assert minutes == round(1.45 - int(data_s) / 60 - 1.2, 2) and minutes >= 0.05
    assert log[-1]["lr"] < 0.05 * 1e-3  # the cosine reached ~0 at the budget's end, far before max_steps
    assert log[-1]["minutes"] == pytest.approx(minutes, abs=0.05)
    second = train("--budget_minutes", "1.3", "--init_from", "exp/m1", "--lr", "0.0005", "--out", "exp/m2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("already there") == 3 and "throughput" not in second.stderr
    assert yaml.safe_load((recipe / "exp" / "m2" / "train_config.yaml").read_text())["init_from"] == "exp/m1"
    short = train("--budget_minutes", "0.5", "--out", "exp/m3")
    assert short.returncode != 0 and "leaves" in short.stderr and "--budget_minutes 0.5" in short.stderr


def test_mini_synth_recipe_trains_and_runs_on_cpu(tmp_path):
    """The mini benchmark's pipeline at toy scale: espeak data, a few CPU training steps (a smoke
    test, not the GPU training), the committed-test-set path, layer selection, decode, score, report."""
    recipe = recipe_copy("mini_synth", tmp_path)
    (recipe / "conf" / "train_cpu.yaml").write_text(
        "n_mels: 16\nwindow_seconds: 6\nencoder_dim: 32\nencoder_layers: 1\nencoder_heads: 2\nencoder_ffn: 64\n"
        "hidden: 32\nlayers: 8\nheads: 2\nkv_heads: 1\nffn: 64\nbatch_size: 4\nmax_steps: 3\nwarmup_steps: 1\n"
        "log_every: 1\ndevice: cpu\nbf16: false\n"
    )
    env = {"PATH": f"{REPO / 'tools' / 'venv' / 'bin'}:{os.environ['PATH']}"}
    train = subprocess.run(
        ["local/train.sh", "--num_train", "4", "--nj", "2", "--train_config", "conf/train_cpu.yaml"],
        cwd=recipe,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert (recipe / "model" / "config.json").is_file() and (recipe / "local" / "testset.tar.gz").is_file()
    shutil.rmtree(recipe / "data")  # the benchmark must run from the committed test set alone
    proc = run_recipe(
        recipe,
        {},
        "--reductions",
        "none fastadasp_constant@0.2 fastadasp_once@0.3 fastv@0.2",
        "--inference_args",
        FAST,
        "--local_data_opts",
        "--num_test 4 --num_dev 8",
        "--select_layer_opts",
        "--ratio 0.5 --num_utts 8 --candidate_layers 1 3 --batch_size 8",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sets = ["asr_test", "lang_test", "gender_test", "rate_test", "nspk_test"]
    results = check_outputs(recipe, "tiny_qwen2_audio", ["none", "fastadasp_constant@0.2"], sets, "wer")
    assert "| accuracy | uar |" in results.replace("setting | ", "")  # the sparse tasks are scored as classification
    # the verdict on the benchmark's questions and the Transfer Entropy choice validated on every
    # sparse task, appended to RESULTS.md once
    assert results.count("## Verdict") == 1 and "| without reduction: ASR WER <= 10 %" in results
    assert results.count("## Transfer Entropy layer selection, validated at 50 % FLOPs reduction") == 1
    assert results.count("## Transfer Entropy layer selection, validated at 30 % FLOPs reduction") == 1
    assert "(RESULTS_tradeoff.png)" in results and (recipe / "RESULTS_tradeoff.png").is_file()
    for t in ("lang", "gender", "rate", "nspk"):
        te = json.loads((recipe / "exp" / "tiny_qwen2_audio" / "te_validation_0.5" / t / "te.json").read_text())
        assert "validation" in te and all("accuracy" in row for row in te["layers"])
        assert f"| {t} | {te['chosen_layer']} |" in results
    score = json.loads(
        (recipe / "exp" / "tiny_qwen2_audio" / "decode_none" / "lang_test" / "score" / "score.json").read_text()
    )
    assert score["task"] == "cls"
    # unpacking again (a rerun of stage 1) leaves every path valid: absolute paths, such as the
    # training sets' beside the test sets, are not prefixed a second time
    again = subprocess.run(
        ["local/data.sh"], cwd=recipe, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr[-3000:]
    for scp in (recipe / "data").glob("*/wav.scp"):
        for line in scp.read_text().splitlines():
            assert Path(line.split(maxsplit=1)[1]).is_file(), f"{scp}: {line}"


def test_model_fingerprint(checkpoint, tmp_path):
    """The id a decode dir keeps: the same for a copy of the weights, another for changed weights or
    config, the id itself for a hub name, a clear error for a dir without weights."""
    copy = tmp_path / "copy"
    shutil.copytree(checkpoint, copy)
    assert model_fingerprint(copy) == model_fingerprint(checkpoint)
    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert model_fingerprint(copy) != model_fingerprint(checkpoint)
    assert model_fingerprint("Qwen/Qwen2-Audio-7B-Instruct") == "hub:Qwen/Qwen2-Audio-7B-Instruct"
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no weight file"):
        model_fingerprint(tmp_path / "empty")
