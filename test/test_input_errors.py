"""Bad input named by file, line or key (part of the reliability issue): Kaldi's tab separators,
non-UTF-8 bytes, segment bounds, ``--config`` values of the wrong type, ``--reduction`` alone."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from espnet_fastadasp.bin import inference as inf
from espnet_fastadasp.core.config import ConfigError
from espnet_fastadasp.decoding.data import AudioError, AudioReader, DataError, read_key_value, read_segments


def test_tabs_separate_fields_as_in_kaldi(tmp_path):
    path = tmp_path / "text"
    path.write_text("utt1\thello world\nutt2 \t bye\t now\nutt3 plain\n")
    assert read_key_value(path) == {"utt1": "hello world", "utt2": "bye\t now", "utt3": "plain"}


def test_non_utf8_names_file_and_line(tmp_path):
    path = tmp_path / "text"
    path.write_bytes(b"utt1 fine\nutt2 caf\xe9\n")
    with pytest.raises(DataError, match=r"text:2: not UTF-8 \(byte 0xe9 at column 9\)"):
        read_key_value(path)


@pytest.mark.parametrize(
    "line, message",
    [
        ("s1 rec -1 2.0", "starts before 0"),
        ("s1 rec nan 2.0", "not a number"),
        ("s1 rec 0.0 inf", "not a number"),
        ("s1 rec 2.0 1.0", "before it starts"),
    ],
)
def test_bad_segment_bounds(tmp_path, line, message):
    path = tmp_path / "segments"
    path.write_text(line + "\n")
    with pytest.raises(DataError, match=f"segment 's1'.*{message}|{message}"):
        read_segments(path)


def test_segment_past_the_end_beyond_kaldis_tolerance(tmp_path):
    sf.write(tmp_path / "rec.wav", np.zeros(16000, dtype="float32"), 16000)  # 1.0 s
    (tmp_path / "wav.scp").write_text(f"rec {tmp_path / 'rec.wav'}\n")
    (tmp_path / "segments").write_text("ok rec 0.2 1.4\nbad rec 0.2 1.6\n")
    reader = AudioReader(tmp_path / "wav.scp", tmp_path / "segments")
    assert len(reader("ok")) == 16000 - 3200  # within 0.5 s: clipped at the end, as Kaldi does
    with pytest.raises(AudioError, match=r"'bad': segment ends at 1.6s but 'rec' lasts 1.00s"):
        reader("bad")


def test_config_value_of_the_wrong_type_is_named(tmp_path, capsys):
    cfg = tmp_path / "decode.yaml"
    cfg.write_text("batch_size: 2.5\n")
    args = ["--config", str(cfg), "--model_name_or_path", "m", "--data_path_and_name_and_type", "a,speech,sound"]
    with pytest.raises(SystemExit):
        inf.parse_args(inf.get_parser(), [*args, "--output_dir", str(tmp_path)])
    assert "batch_size: 2.5 is not a valid int" in capsys.readouterr().err
    cfg.write_text("share_prompt: maybe\n")
    with pytest.raises(SystemExit):
        inf.parse_args(inf.get_parser(), [*args, "--output_dir", str(tmp_path)])
    assert "share_prompt: 'maybe'" in capsys.readouterr().err
    cfg.write_text("batch_size: 3\nshare_prompt: true\nmax_audio_seconds: 60\n")
    parsed = inf.parse_args(inf.get_parser(), [*args, "--output_dir", str(tmp_path)])
    assert (parsed.batch_size, parsed.share_prompt, parsed.max_audio_seconds) == (3, True, 60.0)


def test_reduction_overrides_alone_are_an_error(tmp_path):
    with pytest.raises(ConfigError, match="without --reduction_config: name the method"):
        inf._settings(str(tmp_path / "out"), None, (), {"flops_reduction": 0.3})
    [(_, cfg)] = inf._settings(str(tmp_path / "out"), None, (), {"method": "fastv", "flops_reduction": 0.3})
    assert cfg.method == "fastv" and cfg.flops_reduction == 0.3
