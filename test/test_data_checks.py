"""Our data-dir checks against Kaldi's ``utils/validate_data_dir.sh --no-feats``: a table of cases,
each with what Kaldi's script does with it (accept, or the message it refuses with) as the
expectation, plus our own rules. The Kaldi column was read off Kaldi's script and checked by
running it on every case (see the README's "Data dirs" section); the case table is importable so that
such a run can be repeated: ``KALDI_CASES`` and :func:`make_case`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile as sf

from espnet_fastadasp.bin import validate_data_dir
from espnet_fastadasp.decoding.data import DataError
from espnet_fastadasp.decoding.data_checks import check_data_dir
from espnet_fastadasp.models.tiny import synthetic_audio
from espnet_fastadasp.recipes import corpora
from espnet_fastadasp.recipes.kaldi_dir import speaker_prefixed, write_data_dir


def valid_dir(root: Path) -> Path:
    """Three utterances of two speakers, as our writers make them (speaker-prefixed ids)."""
    d = root / "data"
    utts = []
    for i in range(3):
        wav = root / f"u{i}.wav"
        sf.write(wav, synthetic_audio(0.5, i), 16000)
        utts.append(corpora.Utterance(f"u{i}", str(wav), f"words {i}", f"s{i % 2}"))
    corpora.write_data_dir(utts, d, "{audio}say:")
    return d


def _edit(name: str, fn: Callable[[str], str]) -> Callable[[Path], None]:
    def apply(d: Path) -> None:
        p = d / name
        p.write_bytes(fn(p.read_bytes().decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape"))

    return apply


def _write(name: str, content: str) -> Callable[[Path], None]:
    return lambda d: (d / name).write_text(content, encoding="utf-8")


def _unprefixed(d: Path) -> None:
    """Ids that do not start with their speaker, as the old mini benchmark wrote them."""
    (d / "utt2spk").write_text("a0 s1\na1 s0\na2 s1\n")
    (d / "spk2utt").write_text("s0 a1\ns1 a0 a2\n")
    for name in ("text", "wav.scp", "prompt"):
        lines = (d / name).read_text().splitlines()
        values = [line.split(" ", 1)[1] for line in lines]
        (d / name).write_text("".join(f"a{i} {v}\n" for i, v in enumerate(values)))


def _one_speaker(d: Path) -> None:
    (d / "utt2spk").write_text("s0-u0 s0\ns0-u2 s0\ns0-u3 s0\n")
    (d / "spk2utt").write_text("s0 s0-u0 s0-u2 s0-u3\n")
    for name in ("text", "wav.scp", "prompt"):
        lines = (d / name).read_text().replace("s1-u1", "s0-u3").splitlines()
        (d / name).write_text("".join(line + "\n" for line in sorted(lines)))


@dataclass(frozen=True)
class Case:
    name: str
    mutate: Callable[[Path], None]
    kaldi: str | None  # None: Kaldi accepts; else a fragment of its message
    ours: str | None  # None: we accept; else a fragment (regex) of our message
    note: str = ""


KALDI_CASES = [
    Case("valid", lambda d: None, None, None),
    Case("empty transcript", _edit("text", lambda t: t.replace("s0-u0 words 0", "s0-u0")), None, None),
    Case("one speaker", _one_speaker, None, None, "a warning in both"),
    Case(
        "speakers not prefixes of utterance ids",
        _unprefixed,
        "sorted first on speaker-id",
        "sorted first on speaker-id",
    ),
    Case(
        "utt2spk not sorted",
        _write("utt2spk", "s1-u1 s1\ns0-u0 s0\ns0-u2 s0\n"),
        "is not sorted or has duplicates",
        "not sorted: 's0-u0' after 's1-u1'",
    ),
    Case(
        "duplicate key in text",
        _edit("text", lambda t: t.replace("s0-u2 words 2", "s0-u0 words 2")),
        "is not sorted or has duplicates",
        "duplicate key 's0-u0'",
    ),
    Case(
        "spk2utt does not match utt2spk",
        _write("spk2utt", "s0 s0-u0\ns1 s1-u1\n"),
        "do not seem to match",
        "spk2utt and utt2spk do not match",
    ),
    Case("CRLF in text", _edit("text", lambda t: t.replace("\n", "\r\n")), "contains CR", "carriage return"),
    Case(
        "non-printable character",
        _edit("text", lambda t: t.replace("words 1", "wo\x01rds 1")),
        "non-printable characters",
        "non-printable character U\\+0001",
    ),
    Case(
        "no newline at the end of text",
        _edit("text", lambda t: t.rstrip("\n")),
        "invalid newline",
        "the last line has no newline",
    ),
    Case(
        "no newline at the end of wav.scp",
        _edit("wav.scp", lambda t: t.rstrip("\n")),
        "invalid newline",
        "wav.scp:3: the last line has no newline",
    ),
    Case(
        "illegal symbol <s>",
        _edit("text", lambda t: t.replace("words 1", "<s> words 1")),
        "illegal symbol <s>",
        "illegal symbol '<s>'",
    ),
    Case(
        "no-break space",
        _edit("text", lambda t: t.replace("words 1", "words\u00a01")),
        "non-printable characters",
        "disallowed whitespace U\\+00A0",
        "C.UTF-8 has U+00A0 neither print nor space",
    ),
    Case(
        "text lacks an utterance",
        _edit("text", lambda t: t.replace("s0-u2 words 2\n", "")),
        "utterance lists extracted from utt2spk and text",
        "text: 1 utterances of utt2spk missing, e.g. s0-u2",
    ),
    Case("tilde in wav.scp", _edit("wav.scp", lambda t: t.replace(" /", " ~/", 1)), "do not use tilde", "do not use ~"),
    Case(
        "segment ends before it starts",
        _write("segments", "s0-u0 s0-u0 1.0 0.5\ns0-u2 s0-u2 0 1\ns1-u1 s1-u1 0 1\n"),
        "badly formatted segments file",
        "bad line 's0-u0 s0-u0 1.0 0.5'",
    ),
    Case(
        "segments name a recording wav.scp lacks",
        _write("segments", "s0-u0 s0-u0 0 1\ns0-u2 s0-u2 0 1\ns1-u1 nope 0 1\n"),
        "recording-ids extracted from segments and wav.scp",
        "key\\(s\\) that are not recordings of segments",
    ),
    Case(
        "utt2dur not positive",
        _write("utt2dur", "s0-u0 0\ns0-u2 1.0\ns1-u1 1.0\n"),
        "Bad line utt2dur",
        "bad line 's0-u0 0'",
    ),
    Case("spk2gender not m/f", _write("spk2gender", "s0 m\ns1 x\n"), "Mal-formed spk2gender file", "bad line 's1 x'"),
    Case("empty spk2utt", _write("spk2utt", ""), "empty file spk2utt", "spk2utt: empty file"),
    Case(
        "three fields in utt2spk",
        _write("utt2spk", "s0-u0 s0 x\ns0-u2 s0\ns1-u1 s1\n"),
        "has wrong format",
        "bad line 's0-u0 s0 x'",
        "Kaldi prints the error but exits 0 (its 'exit' follows an echo); we refuse",
    ),
    # ours only: Kaldi does not read these
    Case(
        "prompt lacks an utterance",
        _edit("prompt", lambda t: t.replace("s0-u2 {audio}say:\n", "")),
        None,
        "prompt: 1 utterances of utt2spk missing, e.g. s0-u2",
    ),
    Case(
        "prompt without {audio}",
        _edit("prompt", lambda t: t.replace("s1-u1 {audio}say:", "s1-u1 say:")),
        None,
        "no {audio} placeholder for s1-u1",
    ),
    Case(
        "prompt with {audio} twice",
        _edit("prompt", lambda t: t.replace("s1-u1 {audio}", "s1-u1 {audio}{audio}")),
        None,
        "{audio} more than once for s1-u1",
    ),
    Case("audio file missing", lambda d: (d.parent / "u1.wav").unlink(), None, "audio file of 's1-u1' does not exist"),
    Case(
        "text not UTF-8",
        lambda d: (d / "text").write_bytes((d / "text").read_bytes().replace(b"words 1", b"w\xe9")),
        "non-printable characters",
        "not UTF-8 \\(byte 0xe9\\)",
    ),
]


def make_case(root: Path, case: Case) -> Path:
    d = valid_dir(root)
    case.mutate(d)
    return d


@pytest.mark.parametrize("case", KALDI_CASES, ids=lambda c: c.name)
def test_kaldi_case(tmp_path, case):
    d = make_case(tmp_path, case)
    report = check_data_dir(d)
    messages = "\n".join(map(str, report.problems))
    if case.ours is None:
        assert report.ok, messages
        assert validate_data_dir.validate(d) == 3
    else:
        assert not report.ok
        assert re.search(case.ours, messages), messages
        with pytest.raises(DataError):
            validate_data_dir.validate(d)


def test_no_spk_sort_still_compares_spk2utt(tmp_path):
    """As in Kaldi: --no-spk-sort drops the by-speaker order check, but spk2utt expanded must still
    equal utt2spk line by line, which unprefixed ids of interleaved speakers cannot satisfy."""
    d = valid_dir(tmp_path)
    _unprefixed(d)
    with pytest.raises(DataError, match="sorted first on speaker-id"):
        validate_data_dir.validate(d)
    with pytest.raises(DataError, match="spk2utt and utt2spk do not match"):
        validate_data_dir.validate(d, spk_sort=False)
    (d / "utt2spk").write_text("a0 s1\na1 s1\na2 s0\n")
    (d / "spk2utt").write_text("s1 a0 a1\ns0 a2\n")  # unsorted speakers: Kaldi refuses it too
    with pytest.raises(DataError, match="spk2utt:2: not sorted"):
        validate_data_dir.validate(d, spk_sort=False)


def test_every_problem_is_listed_with_its_line(tmp_path):
    d = valid_dir(tmp_path)
    _edit("text", lambda t: t.replace("words 1", "<s> x\x01"))(d)
    _edit("prompt", lambda t: t.replace("s1-u1 {audio}say:", "s1-u1 say:"))(d)
    problems = [str(p) for p in check_data_dir(d).problems]
    assert any(p.endswith("text:3: illegal symbol '<s>'") for p in problems), problems
    assert any("text:3: non-printable" in p for p in problems), problems
    assert any("prompt:3: no {audio}" in p for p in problems), problems


def test_one_speaker_is_a_warning(tmp_path):
    d = make_case(tmp_path, KALDI_CASES[2])
    report = check_data_dir(d)
    assert report.ok and any("only one speaker" in str(w) for w in report.warnings)


def test_speaker_prefixed_ids():
    assert speaker_prefixed("1089-134686-0000", "1089") == "1089-134686-0000"  # LibriSpeech's own
    assert speaker_prefixed("Ses01F_impro01_M000", "Ses01M") == "Ses01M-Ses01F_impro01_M000"
    with pytest.raises(DataError, match="without '-'"):
        speaker_prefixed("u", "en-us")


def test_writer_refuses_what_kaldi_would(tmp_path):
    """Speakers whose ids break the by-speaker order even when prefixed: 'a' and 'a+b' (``+`` sorts
    before ``-``) are refused by the writer itself, with Kaldi's reason."""
    with pytest.raises(DataError, match="sorted first on speaker-id"):
        write_data_dir(
            tmp_path / "d", {"a-x": "a", "a+b-y": "a+b"}, {"text": {"a-x": "hi", "a+b-y": "ho"}}, check_audio=False
        )
    write_data_dir(
        tmp_path / "ok",
        {"a-x": "a", "b-y": "b"},
        {"text": {"a-x": "hi", "b-y": ""}, "wav.scp": {"a-x": "x.wav", "b-y": "y.wav"}},
        check_audio=False,
    )
    assert (tmp_path / "ok" / "text").read_text() == "a-x hi\nb-y\n"
    assert (tmp_path / "ok" / "spk2utt").read_text() == "a a-x\nb b-y\n"
