"""sclite (Debian's sctk, installed by ``tools/setup.sh --test``) as the scorer of record: on the
same references and hypotheses, our builtin report's Sum/Avg line and per-speaker rows equal
sclite's, for words and characters, and the score CLI takes sclite's own numbers."""

from __future__ import annotations

import json
import random
import re

import pytest

from espnet_fastadasp.bin import score as score_cli
from espnet_fastadasp.evaluation import sclite, scoring

WORDS = "the a cat dog sat on mat red blue one two three house tree".split()


@pytest.fixture(scope="module")
def sclite_path():
    path = sclite.find_sclite()
    assert path, "sclite not found: install Debian's sctk (bash tools/setup.sh --test does)"
    return path


def random_corpus(seed: int, n: int = 60) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """Utterances of three speakers with substitutions, insertions, deletions, empty hypotheses."""
    rng = random.Random(seed)
    refs, hyps, utt2spk = {}, {}, {}
    for i in range(n):
        spk = ("en+m2", "de+f1", "en_us+f3")[i % 3]
        key = f"{spk}-utt{i:03d}"
        ref = [rng.choice(WORDS) for _ in range(rng.randint(1, 12))]
        hyp = []
        for w in ref:
            r = rng.random()
            if r < 0.1:
                continue  # deletion
            hyp.append(rng.choice(WORDS) if r < 0.25 else w)
            if rng.random() < 0.08:
                hyp.append(rng.choice(WORDS))  # insertion
        if rng.random() < 0.05:
            hyp = []
        refs[key], hyps[key], utt2spk[key] = " ".join(ref), " ".join(hyp), spk
    return refs, hyps, utt2spk


def summary_rows(report: str) -> list[list[str]]:
    """The per-speaker and Sum/Avg rows of the percentage summary, as lists of fields."""
    rows = []
    for line in report.split("SYSTEM SUMMARY PERCENTAGES by SPEAKER")[1].split("`")[0].splitlines():
        fields = line.replace("|", " ").split()
        if len(fields) == 9 and fields[0] not in ("SPKR", "Mean", "S.D.", "Median"):
            rows.append(fields)
    return rows


@pytest.mark.parametrize("unit", ["word", "char"])
@pytest.mark.parametrize("seed", range(6))
def test_builtin_report_equals_sclite(tmp_path, sclite_path, unit, seed):
    refs, hyps, utt2spk = random_corpus(seed)
    al = scoring.align_asr(refs, hyps, normalizer="none")
    utts = al.word if unit == "word" else al.char
    ours = scoring.format_sclite_result(utts, title="hyp.trn", unit=unit, utt2spk=utt2spk)
    sclite.write_trn(tmp_path / "ref.trn", al.pairs.keys, al.pairs.ref_norm, unit, utt2spk)
    sclite.write_trn(tmp_path / "hyp.trn", al.pairs.keys, al.pairs.hyp_norm, unit, utt2spk)
    theirs = sclite.run_sclite(sclite_path, tmp_path / "ref.trn", tmp_path / "hyp.trn")
    assert sclite.parse_sum_avg(ours) == sclite.parse_sum_avg(theirs)
    assert summary_rows(ours) == summary_rows(theirs)
    assert [r[0] for r in summary_rows(theirs)][:3] == ["en+m2", "de+f1", "en_us+f3"]
    scores = re.compile(r"^id: \((\S+)\)\nScores: \(#C #S #D #I\) ([\d ]+?)\s*$", re.M)
    found = scores.findall(theirs)
    assert len(found) == len(utts) and scores.findall(ours) == found  # each utterance aligned as sclite does
    counts = sclite.parse_sum_counts(theirs)
    total = scoring._error_counts(utts)
    assert (counts["sub"], counts["del"], counts["ins"]) == (total["sub"], total["del"], total["ins"])


def test_score_cli_uses_sclite_and_writes_espnet_layout(tmp_path, sclite_path):
    refs, hyps, utt2spk = random_corpus(5, n=30)
    data = tmp_path / "data"
    data.mkdir()
    for name, table in (("text", refs), ("utt2spk", utt2spk)):
        (data / name).write_text("".join(f"{k} {v}\n" for k, v in table.items()))
    (tmp_path / "hyp").write_text("".join(f"{k} {v}\n" for k, v in hyps.items()))
    dec = tmp_path / "decode"
    argv = ["--task", "asr", "--ref", str(data / "text"), "--hyp", str(tmp_path / "hyp"), "--normalizer", "none"]
    res = score_cli.main([*argv, "--output_dir", str(dec)])
    assert res["details"]["scorer"].startswith("sclite")
    report = (dec / "score_wer" / "result.txt").read_text()
    assert "DUMP OF SYSTEM ALIGNMENT STRUCTURE" in report  # sclite's own -o all report
    sum_avg = sclite.parse_sum_avg(report)
    assert res["metrics"]["wer"] == pytest.approx(sum_avg.err, abs=0.05)
    assert json.loads((dec / "score" / "score.json").read_text())["metrics"] == res["metrics"]
    builtin = score_cli.main([*argv, "--output_dir", str(tmp_path / "b"), "--scorer", "builtin"])
    assert builtin["details"]["scorer"].startswith("builtin")
    assert builtin["metrics"] == pytest.approx(res["metrics"])
    assert sclite.parse_sum_avg((tmp_path / "b" / "score_cer" / "result.txt").read_text()) == sclite.parse_sum_avg(
        (dec / "score_cer" / "result.txt").read_text()
    )


def test_trn_refuses_parentheses(tmp_path):
    with pytest.raises(ValueError, match="optional words"):
        sclite.write_trn(tmp_path / "x.trn", ["u"], ["a (b)"], "word", None)
