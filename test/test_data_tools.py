"""Data-dir validation, corpus readers' errors, the reduction-spec CLI and the report."""

from __future__ import annotations

import json

import pytest
import soundfile as sf

from espnet_fastadasp.bin import reduction_spec, report, validate_data_dir
from espnet_fastadasp.decoding.data import DataError
from espnet_fastadasp.hf.tiny import synthetic_audio
from espnet_fastadasp.recipes import corpora


def data_dir(tmp_path, n=3):
    d = tmp_path / "data"
    utts = []
    for i in range(n):
        wav = tmp_path / f"u{i}.wav"
        sf.write(wav, synthetic_audio(0.5, i), 16000)
        utts.append(corpora.Utterance(f"u{i}", str(wav), f"words {i}", f"s{i % 2}"))
    corpora.write_data_dir(utts, d, "{audio}say:")
    return d


def test_valid_dir_passes(tmp_path):
    assert validate_data_dir.validate(data_dir(tmp_path)) == 3


@pytest.mark.parametrize(
    "breakage,match",
    [
        (
            lambda d: (d / "prompt").write_text("u0 {audio}x\nu1 {audio}x\n"),
            r"prompt: 1 utterance\(s\) missing, e.g. u2",
        ),
        (lambda d: (d / "text").write_text("u0 a\nu1 b\nu2 c\nu9 d\n"), "text: 1 key.*u9"),
        (
            lambda d: (d / "prompt").write_text("u0 {audio}x\nu1 no audio\nu2 {audio}\n"),
            "no {audio} placeholder for u1",
        ),
        (
            lambda d: (d / "prompt").write_text("u0 {audio}x\nu1 {audio}{audio}\nu2 {audio}\n"),
            r"{audio} more than once for u1",
        ),
        (lambda d: (d / "utt2spk").write_text("u0 a\nu0 b\n"), "duplicate key 'u0'"),
        (
            lambda d: (d / "u1.wav").unlink() if (d / "u1.wav").exists() else (d.parent / "u1.wav").unlink(),
            "1 audio file",
        ),
        (lambda d: (d / "segments").write_text("s1 nope 0 1\n"), "recordings not in wav.scp: nope"),
    ],
)
def test_broken_dirs_name_the_file_and_keys(tmp_path, breakage, match):
    d = data_dir(tmp_path)
    breakage(d)
    with pytest.raises(DataError, match=match):
        validate_data_dir.validate(d)


def test_write_data_dir_rejects_bad_prompts_and_duplicates(tmp_path):
    u = corpora.Utterance("a", "/x.wav", "t", "s")
    with pytest.raises(DataError, match="placeholder"):
        corpora.write_data_dir([u], tmp_path / "d", "no audio here")
    with pytest.raises(DataError, match="duplicate utterance ids: a"):
        corpora.write_data_dir([u, u], tmp_path / "d", "{audio}")


def test_corpus_readers_name_missing_roots(tmp_path):
    with pytest.raises(DataError, match="set it in db.sh"):
        corpora.librispeech(tmp_path / "nope", "test-clean")
    with pytest.raises(DataError, match="CoVoST 2 table not found"):
        corpora.covost2(tmp_path / "x.tsv", tmp_path, "test")
    with pytest.raises(DataError, match="IEMOCAP Session5"):
        corpora.iemocap(tmp_path, [5])


def test_reduction_spec_cli(tmp_path, capsys):
    out = tmp_path / "r.yaml"
    reduction_spec.main(["fastadasp_once@0.5", "--output", str(out), "--sparse_layer", "7"])
    assert capsys.readouterr().out.strip() == "fastadasp_once@0.5"
    assert "start_layer: 7" in out.read_text()
    with pytest.raises(SystemExit, match="unknown method"):
        reduction_spec.main(["tome@0.5", "--output", str(out)])


def test_report_table_and_plot(tmp_path):
    exp = tmp_path / "exp"
    settings = [
        ("none", 5.0, 0.0, 0.0),
        ("fastadasp_constant@0.3", 5.5, 0.3, 0.25),
        ("fastv_constant@0.3", 9.0, 0.3, 0.25),
        ("h2o_constant@0.3", 12.0, 0.0, 0.25),  # KV-only: no prefill FLOPs saved
    ]
    for tag, wer, red, kv in settings:
        d = exp / f"decode_{tag}" / "test"
        (d / "score").mkdir(parents=True)
        (d / "1best_recog").mkdir()
        (d / "score" / "score.json").write_text(json.dumps({"metrics": {"wer": wer, "cer": wer / 2}, "num_utts": 2}))
        cost = {"flops_full": 100, "flops_reduced": int(100 * (1 - red)), "kv_reduction": kv}
        (d / "1best_recog" / "cost").write_text(f"u1 {json.dumps(cost)}\nu2 {json.dumps(cost)}\n")
    out = tmp_path / "RESULTS.md"
    report.main(["--exp_dir", str(exp), "--task", "asr", "--test_sets", "test", "--output", str(out)])
    text = out.read_text()
    assert "| none | 5.00 | 2.50 | 0.0 | 0.0 | 2 |" in text
    assert "| fastadasp_constant@0.3 | 5.50 | 2.75 | 30.0 | 25.0 | 2 |" in text
    assert "| h2o_constant@0.3 | 12.00 | 6.00 | 0.0 | 25.0 | 2 |" in text
    assert text.index("| none |") < text.index("| fastadasp_constant@0.3 |")
    assert "torch" in text and "## Environment" in text
    assert (exp / "tradeoff.png").stat().st_size > 1000
    # the plot: methods at their achieved FLOPs reduction; H2O (no FLOPs saved) at its KV reduction
    baseline, series = report.plot_series(report.collect(exp, ["test"], "asr"), "test", "wer")
    assert baseline == 5.0
    assert series["fastadasp_constant"] == [(pytest.approx(30.0), 5.5)]
    assert series["h2o_constant (x: KV-cache reduction)"] == [(pytest.approx(25.0), 12.0)]
