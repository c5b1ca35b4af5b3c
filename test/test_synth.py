"""Synthetic multitask data (espnet_fastadasp.recipes.synth): determinism, bounds, hold-out, data dirs.

Needs espeak-ng; when it is missing these tests fail (never skip) with the install hint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_fastadasp.bin import make_synth_data
from espnet_fastadasp.bin.validate_data_dir import validate
from espnet_fastadasp.recipes import synth

WORDLIST = Path(__file__).resolve().parents[1] / "egs2/mini_synth/speechlm1/local/wordlist.txt"
SPLITS = {"train": 4, "test": 2}
DATA_FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "prompt", "utt2dur", "meta.jsonl")


@pytest.fixture(scope="module", autouse=True)
def espeak():
    try:
        return synth.check_espeak()
    except synth.SynthError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="module")
def words():
    return synth.load_wordlist(WORDLIST)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, words):
    """The same generation three times: serial, serial again, two workers."""
    out = {}
    for name, nj in (("a", 1), ("b", 1), ("c", 2)):
        d = tmp_path_factory.mktemp(f"synth_{name}")
        out[name] = (d, synth.generate(d, synth.TASKS, SPLITS, seed=3, nj=nj, wordlist=words))
    return out


def _tree(root: Path) -> dict[str, bytes]:
    """All files under root, by relative path, with root's absolute path blanked out of the contents."""
    return {
        str(p.relative_to(root)): p.read_bytes().replace(str(root.resolve()).encode(), b"ROOT")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _f0(x: np.ndarray, sr: int = synth.SAMPLE_RATE) -> float:
    """Median autocorrelation pitch (Hz) over the voiced 40 ms frames."""
    frame, hop, out = 640, 320, []
    rms = np.sqrt(np.mean(x**2))
    for s in range(0, len(x) - frame, hop):
        fr = x[s : s + frame] - x[s : s + frame].mean()
        if np.sqrt(np.mean(fr**2)) < 0.1 * rms:
            continue
        ac = np.correlate(fr, fr, "full")[frame - 1 :]
        lo, hi = sr // 400, sr // 60
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            out.append(sr / lag)
    return float(np.median(out))


def test_espeak_installed(espeak):
    assert Path(espeak).is_file()


def test_missing_espeak_names_the_installer(monkeypatch):
    synth.check_espeak.cache_clear()
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    try:
        with pytest.raises(synth.SynthError, match="install_debian.sh data"):
            synth.check_espeak()
    finally:
        monkeypatch.undo()
        synth.check_espeak.cache_clear()


def test_wordlist(words):
    assert 250 <= len(words) <= 400
    assert all(re.fullmatch(r"[a-z]+", w) for w in words)
    assert len(set(words)) == len(words)


def test_tasks_and_prompts():
    assert set(synth.TASKS) == {"asr", "lang", "gender", "rate", "nspk"}
    assert synth.TASKS["asr"]["labels"] is None
    for task, spec in synth.TASKS.items():
        assert synth.prompt_template(task) == f"<|im_start|>{{audio}}{spec['prompt']}<|im_end|>"


def test_make_utterance_is_deterministic(words):
    for task in synth.TASKS:
        a1, t1, m1 = synth.make_utterance(task, "test", 5, 7, words)
        a2, t2, m2 = synth.make_utterance(task, "test", 5, 7, words)
        assert a1.dtype == np.float32 and a1.ndim == 1
        assert a1.tobytes() == a2.tobytes() and t1 == t2 and m1 == m2
    other, _, _ = synth.make_utterance("asr", "test", 5, 8, words)
    assert other.tobytes() != synth.make_utterance("asr", "test", 5, 7, words)[0].tobytes()


def test_runs_byte_identical_serial_and_parallel(runs):
    trees = {name: _tree(d) for name, (d, _) in runs.items()}
    assert len(trees["a"]) == len(synth.TASKS) * (sum(SPLITS.values()) + len(SPLITS) * len(DATA_FILES))
    assert trees["a"] == trees["b"], "two serial runs differ"
    assert trees["a"] == trees["c"], "nj=2 differs from nj=1"


def test_data_dirs_well_formed(runs):
    root, dirs = runs["a"]
    assert sorted(dirs) == sorted(f"{t}_{s}" for t in synth.TASKS for s in SPLITS)
    for name, d in dirs.items():
        task, split = name.rsplit("_", 1)
        assert validate(d) == SPLITS[split]
        tables = {}
        for f in ("wav.scp", "text", "utt2spk", "prompt", "utt2dur"):
            lines = (d / f).read_text().splitlines()
            tables[f] = dict(line.split(" ", 1) for line in lines)
            assert list(tables[f]) == sorted(tables[f]), f"{d / f} not sorted"
        meta = [json.loads(line) for line in (d / "meta.jsonl").read_text().splitlines()]
        # Kaldi's convention: the speaker id, a dash, then the utterance's own id; sorted bytewise
        keys = sorted(f"{synth.speaker_id(m['voices'])}-{synth.utterance_id(task, split, m['index'])}" for m in meta)
        assert sorted(m["index"] for m in meta) == list(range(SPLITS[split]))
        for f, table in tables.items():
            assert list(table) == keys, f"{d / f}"
        assert all(tables["utt2spk"][k] == k.split("-", 1)[0] and "-" not in tables["utt2spk"][k] for k in keys)
        assert all(p == synth.prompt_template(task) and "{audio}" in p for p in tables["prompt"].values())
        for key, path in tables["wav.scp"].items():
            assert Path(path).is_absolute() and Path(path) == root.resolve() / "wav" / name / f"{key}.wav"
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
            assert synth.MIN_SECONDS <= info.duration <= synth.MAX_SECONDS
            assert abs(float(tables["utt2dur"][key]) - info.duration) < 1e-3
        spk2utt = {u for line in (d / "spk2utt").read_text().splitlines() for u in line.split()[1:]}
        assert spk2utt == set(keys)
        assert [m["utt"] for m in meta] == keys
        assert all(m["text"] == tables["text"][m["utt"]] for m in meta)


def test_labels_and_references(runs, words):
    _, dirs = runs["a"]
    vocab = set(words)
    for name, d in dirs.items():
        task = name.rsplit("_", 1)[0]
        labels = synth.TASKS[task]["labels"]
        for line in (d / "meta.jsonl").read_text().splitlines():
            m = json.loads(line)
            if labels is None:
                ref = m["text"].split()
                assert synth.MIN_WORDS <= len(ref) <= synth.MAX_WORDS and set(ref) <= vocab
                assert m["text"] == m["sentence"]
            else:
                assert m["text"] in labels and m["text"] == labels[m["index"] % len(labels)]
            assert synth.sentence_split(m["sentence"].split()) == m["split"]
            if task == "lang":
                assert m["voices"][0].split("+")[0] == synth.LANG_VOICES[m["text"]]
            if task == "gender":
                assert m["voices"][0].split("+")[1] in synth.VARIANTS[m["text"]]
            if task == "nspk":
                v1, v2 = (v.split("+")[1][0] for v in m["voices"])
                assert (v1 != v2) if m["text"] == "two" else (m["voices"][0] == m["voices"][1])


def test_asr_train_test_sentences_disjoint(runs, words):
    _, dirs = runs["a"]
    train = set((dirs["asr_train"] / "text").read_text().split("\n"))
    test = set((dirs["asr_test"] / "text").read_text().split("\n"))
    strip = lambda lines: {ln.split(" ", 1)[1] for ln in lines if ln}  # noqa: E731
    assert strip(train).isdisjoint(strip(test))
    # at scale, without synthesis: the sentence draws of the two splits never meet
    rng = np.random.default_rng(0)
    drawn = {s: {" ".join(synth.draw_sentence(rng, words, 3, s)) for _ in range(3000)} for s in ("train", "test")}
    assert drawn["train"].isdisjoint(drawn["test"])
    assert len(drawn["test"]) > 2900  # 3-word sentences from ~345 words: hardly any repeats
    with pytest.raises(synth.SynthError, match="both"):
        synth._check_heldout({("asr", "train"): {"a b c"}, ("asr", "test"): {"a b c"}})


def test_rate_and_gender_are_audible(words):
    sec_per_word = {"slow": [], "fast": []}
    f0 = {"male": [], "female": []}
    for i in range(8):
        audio, label, meta = synth.make_utterance("rate", "train", i, 11, words)
        sec_per_word[label].append(len(audio) / synth.SAMPLE_RATE / meta["n_words"])
        audio, label, _ = synth.make_utterance("gender", "train", i, 11, words)
        f0[label].append(_f0(audio))
    assert np.mean(sec_per_word["slow"]) > 1.4 * np.mean(sec_per_word["fast"]), sec_per_word
    assert max(f0["male"]) < 140 < min(f0["female"]), f0


def test_cli(tmp_path):
    out = tmp_path / "data"
    args = "--tasks asr,nspk --num_train 2 --num_test 1 --seed 1 --nj 1".split()
    make_synth_data.main(["--out_dir", str(out), "--wordlist", str(WORDLIST), *args])
    assert sorted(p.name for p in out.iterdir()) == ["asr_test", "asr_train", "nspk_test", "nspk_train", "wav"]
    assert validate(out / "nspk_train") == 2
    with pytest.raises(SystemExit, match="unknown task"):
        make_synth_data.main(["--out_dir", str(out), "--tasks", "asr,emotion", "--num_train", "1"])


def test_espeak_timeout_from_the_environment(monkeypatch):
    """60 s by default; $FASTADASP_ESPEAK_TIMEOUT sets it, 0 lifts it (paused background jobs); bad values are named."""
    from espnet_fastadasp.recipes import synth

    monkeypatch.delenv(synth.ESPEAK_TIMEOUT_ENV, raising=False)
    assert synth.espeak_timeout() == 60.0
    monkeypatch.setenv(synth.ESPEAK_TIMEOUT_ENV, "0")
    assert synth.espeak_timeout() is None
    monkeypatch.setenv(synth.ESPEAK_TIMEOUT_ENV, "5.5")
    assert synth.espeak_timeout() == 5.5
    for bad in ("soon", "-1"):
        monkeypatch.setenv(synth.ESPEAK_TIMEOUT_ENV, bad)
        with pytest.raises(synth.SynthError, match="FASTADASP_ESPEAK_TIMEOUT"):
            synth.espeak_timeout()
