"""Data-dir validation, corpus readers' errors, the reduction-spec CLI and the report."""

from __future__ import annotations

import json

import pytest

from espnet_fastadasp.bin import reduction_spec, report
from espnet_fastadasp.decoding.data import DataError
from espnet_fastadasp.recipes import corpora


def test_write_data_dir_rejects_bad_prompts_and_duplicates(tmp_path):
    u = corpora.Utterance("a", "/x.wav", "t", "s")
    with pytest.raises(DataError, match="placeholder"):
        corpora.write_data_dir([u], tmp_path / "d", "no audio here")
    with pytest.raises(DataError, match="duplicate utterance ids: s-a"):
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
        (d / "score" / "score.json").write_text(json.dumps({"metrics": {"wer": wer, "cer": wer / 2}, "num_utts": 2}))
        cost = {"flops_full": 100, "flops_reduced": int(100 * (1 - red)), "kv_reduction": kv}
        (d / "cost").write_text(f"u1 {json.dumps(cost)}\nu2 {json.dumps(cost)}\n")
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


def test_report_has_show_asr_result_tables(tmp_path):
    """The ESPnet section: rows as show_asr_result.sh's grep/sed/tr pipeline makes them from the
    Sum/Avg line of each score_wer/score_cer result.txt."""
    from espnet_fastadasp.bin import score

    exp = tmp_path / "exp"
    (tmp_path / "ref").write_text("s0-a the cat sat\ns1-b a b\n")
    (tmp_path / "utt2spk").write_text("s0-a s0\ns1-b s1\n")
    for tag, hyp in (("none", "s0-a the cat sat\ns1-b a b\n"), ("fastv@0.3", "s0-a the dog sat\ns1-b a b c\n")):
        d = exp / f"decode_{tag}" / "test"
        d.mkdir(parents=True)
        (d / "text").write_text(hyp)
        score.main(
            [
                "--task",
                "asr",
                "--ref",
                str(tmp_path / "ref"),
                "--hyp",
                str(d / "text"),
                "--output_dir",
                str(d),
                "--normalizer",
                "none",
            ]
        )
    out = tmp_path / "RESULTS.md"
    report.main(["--exp_dir", str(exp), "--task", "asr", "--test_sets", "test", "--output", str(out)])
    text = out.read_text()
    section = text[text.index(f"## {exp}") :]
    assert section.splitlines()[1:4] == ["### WER", "", "|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|"]
    assert "|decode_fastv@0.3/test|2|5|80.0|20.0|0.0|20.0|40.0|100.0|" in section
    assert "|decode_none/test|2|5|100.0|0.0|0.0|0.0|0.0|0.0|" in section
    cer = section[section.index("### CER") : section.index("### TER")]
    assert "|decode_none/test|2|14|100.0|0.0|0.0|0.0|0.0|0.0|" in cer
