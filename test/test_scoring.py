"""Tests of espnet_fastadasp.evaluation.scoring and the score CLI (numbers checked by hand)."""

from __future__ import annotations

import json
import re

import pytest
import sacrebleu

from espnet_fastadasp.bin import score as score_cli
from espnet_fastadasp.evaluation import scoring


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# ------------------------------------------------------------------ reading
def test_read_text_values_blank_lines_and_spaces(tmp_path):
    p = write(tmp_path / "text", ["u1 hello  world ", "", "u2", "   ", "u3 a\tb"])
    assert scoring.read_text(p) == {"u1": "hello  world", "u2": "", "u3": "a\tb"}


def test_read_text_duplicate_key(tmp_path):
    p = write(tmp_path / "text", ["u1 a", "u2 b", "u1 c"])
    with pytest.raises(ValueError, match=r"duplicate key 'u1' in .*text \(line 3\)"):
        scoring.read_text(p)


def test_read_text_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        scoring.read_text(tmp_path / "nope")


# ------------------------------------------------------------------ ASR
def test_wer_cer_substitution():
    r = scoring.score_asr({"a": "the cat sat"}, {"a": "the dog sat"}, normalizer="none")
    assert r["wer"] == pytest.approx(100 / 3)
    assert (r["word"]["sub"], r["word"]["del"], r["word"]["ins"], r["word"]["hits"]) == (1, 0, 0, 2)
    # c->d, a->o, t->g out of 11 characters (spaces count)
    assert r["num_chars"] == 11
    assert r["cer"] == pytest.approx(300 / 11)


def test_wer_cer_insertion():
    r = scoring.score_asr({"a": "a b"}, {"a": "a b c"}, normalizer="none")
    assert r["wer"] == pytest.approx(50.0)
    assert r["word"]["ins"] == 1
    assert r["cer"] == pytest.approx(200 / 3)  # " c" inserted into "a b"
    assert r["char"]["ins"] == 2


def test_wer_deletion_and_corpus_totals():
    refs = {"s": "the cat sat", "i": "a b", "d": "a b c d"}
    hyps = {"s": "the dog sat", "i": "a b c", "d": "a b d"}
    r = scoring.score_asr(refs, hyps, normalizer="none")
    w = r["word"]
    assert (w["hits"], w["sub"], w["del"], w["ins"]) == (7, 1, 1, 1)
    assert r["num_words"] == 9 and r["num_utts"] == 3
    assert r["wer"] == pytest.approx(100 * 3 / 9)
    assert r["ser"] == pytest.approx(100.0)


def test_whisper_normalisation():
    # What the Whisper English normaliser really does: "Mr." -> "mister", "'s" -> " is".
    assert scoring.normalize_asr("Mr. Smith's car.") == "mister smith is car"
    assert scoring.normalize_asr("mister smith's car") == "mister smith is car"
    refs, hyps = {"a": "Mr. Smith's car."}, {"a": "mister smith's car"}
    assert scoring.score_asr(refs, hyps)["wer"] == 0.0
    assert scoring.score_asr(refs, hyps)["cer"] == 0.0
    # without normalisation all three words differ ("Mr."/"mister", "Smith's"/"smith's", "car."/"car")
    assert scoring.score_asr(refs, hyps, normalizer="none")["wer"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="normalizer"):
        scoring.score_asr(refs, hyps, normalizer="basic")


def test_result_txt_format():
    refs = {"s": "the cat sat", "i": "a b", "d": "a b c d"}
    hyps = {"s": "the dog sat", "i": "a b c", "d": "a b d"}
    al = scoring.align_asr(refs, hyps, normalizer="none")
    text = scoring.format_sclite_result(al.word, title="hyp.trn")
    assert "| SPKR" in text and "| # Snt  # Wrd |  Corr   Sub   Del   Ins   Err S.Err |" in text
    (sum_line,) = [ln for ln in text.splitlines() if ln.startswith("| Sum/Avg")]
    nums = re.findall(r"[\d.]+", sum_line)
    assert nums == ["3", "9", "77.8", "11.1", "11.1", "11.1", "33.3", "100.0"]
    lines = text.splitlines()
    i = lines.index("id: (s)")
    assert lines[i + 1] == "Scores: (#C #S #D #I) 2 1 0 0"
    assert lines[i + 2] == "REF:  the CAT sat"
    assert lines[i + 3] == "HYP:  the DOG sat"
    j = lines.index("id: (i)")
    assert lines[j + 1 : j + 4] == ["Scores: (#C #S #D #I) 2 0 0 1", "REF:  a b *", "HYP:  a b C"]
    k = lines.index("id: (d)")
    assert lines[k + 2 : k + 4] == ["REF:  a b C d", "HYP:  a b * d"]
    # a longer inserted word gets as many asterisks as its width
    al2 = scoring.align_asr({"x": "hello"}, {"x": "hello there"}, normalizer="none")
    assert "REF:  hello *****" in scoring.format_sclite_result(al2.word)
    assert "HYP:  hello THERE" in scoring.format_sclite_result(al2.word)


def test_result_cer_shows_space():
    al = scoring.align_asr({"x": "a b"}, {"x": "ab"}, normalizer="none")
    text = scoring.format_sclite_result(al.char, unit="char")
    assert "REF:  a <SPACE> b" in text and "HYP:  a ******* b" in text


def test_missing_and_extra_hypotheses():
    refs = {"a": "x", "b": "y z", "c": "w"}
    with pytest.raises(ValueError, match=r"2 of 3 reference key\(s\) have no hypothesis: b, c"):
        scoring.score_asr(refs, {"a": "x"})
    with pytest.raises(ValueError, match=r"not in the references: q"):
        scoring.score_asr(refs, {"a": "x", "b": "y z", "c": "w", "q": "v"})
    with pytest.raises(ValueError, match="not in the references"):
        scoring.score_st(refs, {"q": "v"}, allow_missing=True)
    r = scoring.score_asr(refs, {"a": "x"}, normalizer="none", allow_missing=True)
    assert r["num_missing"] == 2
    assert r["word"]["del"] == 3 and r["wer"] == pytest.approx(75.0)
    for fn in (scoring.score_st, scoring.score_classification):
        with pytest.raises(ValueError, match="have no hypothesis"):
            fn(refs, {"a": "x"})
        assert fn(refs, {"a": "x"}, allow_missing=True)["num_missing"] == 2


# ------------------------------------------------------------------ ST
def test_bleu_matches_sacrebleu():
    refs = {"1": "The cat sat on the mat.", "2": "It is raining today in Paris."}
    hyps = {"1": "The cat sat on a mat.", "2": "it is raining in paris today."}
    r = scoring.score_st(refs, hyps)
    h, rr = list(hyps.values()), [list(refs.values())]
    assert r["bleu"] == pytest.approx(sacrebleu.corpus_bleu(h, rr).score)
    assert r["bleu_lc"] == pytest.approx(sacrebleu.corpus_bleu(h, rr, lowercase=True).score)
    assert r["chrf"] == pytest.approx(sacrebleu.corpus_chrf(h, rr).score)
    assert "case:mixed" in r["signature"] and "case:lc" in r["signature_lc"]
    assert r["signature_chrf"].startswith("nrefs:1")


def test_bleu_cased_vs_lowercased():
    r = scoring.score_st({"1": "the cat sat on the mat"}, {"1": "The Cat Sat On The Mat"})
    assert r["bleu_lc"] == pytest.approx(100.0)
    assert r["bleu"] == pytest.approx(0.0)  # no token in common once case matters


# ------------------------------------------------------------------ classification
def test_label_extraction_rule():
    labels = ["happy", "sad", "very happy"]
    assert scoring.extract_label("The speaker sounds happy.", labels) == "happy"
    assert scoring.extract_label("HAPPY!", labels) == "happy"
    assert scoring.extract_label("Sad, definitely not happy", labels) == "sad"  # earliest wins
    assert scoring.extract_label("unhappy", labels) == scoring.OTHER_LABEL  # whole words only
    assert scoring.extract_label("They are very happy", labels) == "very happy"  # longer at same position
    assert scoring.extract_label("", labels) == scoring.OTHER_LABEL
    assert scoring.normalize_label("  Non_Speech. ") == "non speech"


def test_accuracy_and_uar_imbalanced():
    refs, hyps = {}, {}
    # happy: 6 refs, 5 right, 1 predicted sad; sad: 3 refs, 1 right, 2 unparseable; angry: 1 ref, right
    data = [("Happy", "happy")] * 5 + [("Happy", "It sounds sad.")]
    data += [("sad", "Sad")] + [("sad", "I don't know")] * 2 + [("angry", "The speaker is angry!")]
    for i, (r, h) in enumerate(data):
        refs[f"u{i}"], hyps[f"u{i}"] = r, h
    out = scoring.score_classification(refs, hyps)
    assert out["accuracy"] == pytest.approx(70.0)
    assert out["recall"] == pytest.approx({"happy": 500 / 6, "sad": 100 / 3, "angry": 100.0})
    assert out["uar"] == pytest.approx((500 / 6 + 100 / 3 + 100) / 3)  # 72.22, not the 70 of accuracy
    assert out["confusion"]["happy"] == {"angry": 0, "happy": 5, "sad": 1, "<other>": 0}
    assert out["confusion"]["sad"] == {"angry": 0, "happy": 0, "sad": 1, "<other>": 2}
    assert out["num_other"] == 2 and out["support"] == {"happy": 6, "sad": 3, "angry": 1}
    # with an explicit label set including a class absent from the refs, UAR is still over ref classes
    out2 = scoring.score_classification(refs, hyps, labels=["happy", "sad", "angry", "neutral"])
    assert out2["uar"] == pytest.approx(out["uar"])
    assert out2["confusion"]["happy"]["neutral"] == 0


# ------------------------------------------------------------------ CLI
def test_cli_asr_end_to_end(tmp_path):
    ref = write(tmp_path / "ref", ["s the cat sat", "i a b", "d a b c d"])
    hyp = write(tmp_path / "hyp", ["s the dog sat", "i a b c", "d a b d"])
    out = tmp_path / "decode"
    res = score_cli.main(["--task", "asr", "--ref", str(ref), "--hyp", str(hyp), "--output_dir", str(out)])
    saved = json.loads((out / "score" / "score.json").read_text())
    assert saved == json.loads(json.dumps(res))
    assert set(saved) == {"task", "metrics", "details", "num_utts"}
    assert saved["task"] == "asr" and saved["num_utts"] == 3
    assert set(saved["metrics"]) == {"wer", "cer"}
    assert saved["metrics"]["wer"] == pytest.approx(100 / 3)
    for unit in ("score_wer", "score_cer"):
        assert {p.name for p in (out / unit).iterdir()} == {"ref.trn", "hyp.trn", "result.txt"}
    assert "id: (s)" in (out / "score_cer" / "result.txt").read_text()
    assert (out / "score_cer" / "hyp.trn").read_text().splitlines()[0] == "t h e <space> d o g <space> s a t\t(s)"


def test_cli_st_and_cls(tmp_path):
    ref = write(tmp_path / "ref", ["1 the cat sat on the mat", "2 hello there my friend"])
    hyp = write(tmp_path / "hyp", ["1 The cat sat on the mat", "2 hello there my friend"])
    r = score_cli.main(["--task", "st", "--ref", str(ref), "--hyp", str(hyp), "--output_dir", str(tmp_path / "st")])
    assert set(r["metrics"]) == {"bleu", "bleu_lc", "chrf"}
    assert json.loads((tmp_path / "st" / "score" / "score.json").read_text())["metrics"]["bleu_lc"] == pytest.approx(
        100.0
    )

    ref = write(tmp_path / "lab", ["1 happy", "2 sad", "3 sad"])
    hyp = write(tmp_path / "pred", ["1 Happy.", "2 sounds neutral", "3 sad"])
    argv = ["--task", "cls", "--ref", str(ref), "--hyp", str(hyp), "--output_dir", str(tmp_path / "cls")]
    r = score_cli.main([*argv, "--labels", "happy,sad,neutral"])
    assert r["metrics"] == pytest.approx({"accuracy": 200 / 3, "uar": 75.0})
    assert r["details"]["confusion"]["sad"]["neutral"] == 1


def test_cli_errors(tmp_path):
    ref = write(tmp_path / "ref", ["a x", "b y"])
    hyp = write(tmp_path / "hyp", ["a x"])
    argv = ["--task", "asr", "--ref", str(ref), "--output_dir", str(tmp_path / "o")]
    with pytest.raises(FileNotFoundError, match="missing_hyp"):
        score_cli.main([*argv, "--hyp", str(tmp_path / "missing_hyp")])
    with pytest.raises(ValueError, match="1 of 2 reference key"):
        score_cli.main([*argv, "--hyp", str(hyp)])
    r = score_cli.main([*argv, "--hyp", str(hyp), "--allow_missing"])
    assert r["details"]["num_missing"] == 1 and r["metrics"]["wer"] == pytest.approx(50.0)
