"""Bad input named by file, line or key (part of the reliability issue): Kaldi's tab separators,
non-UTF-8 bytes, segment bounds, ``--config`` values of the wrong type, ``--reduction`` alone."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from espnet_fastadasp.bin import inference as inf
from espnet_fastadasp.core.config import ConfigError, ReductionConfig
from espnet_fastadasp.decoding.data import AudioError, AudioReader, DataError, read_key_value, read_segments
from espnet_fastadasp.decoding.outputs import SettingsMismatch, merge_outputs
from espnet_fastadasp.hf.tiny import synthetic_audio


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


def _data(tmp_path, n=3):
    d = tmp_path / "data"
    d.mkdir()
    with (d / "wav.scp").open("w") as scp, (d / "prompt").open("w") as pr:
        for i in range(n):
            sf.write(tmp_path / f"u{i}.wav", synthetic_audio(0.6 + 0.2 * i, i), 16000)
            scp.write(f"u{i} {tmp_path / f'u{i}.wav'}\n")
            pr.write(f"u{i} <|im_start|>{{audio}}ASR:<|im_end|>\n")
    return d


def _cli(checkpoint, d, out, *extra):
    return [
        sys.executable, "-m", "espnet_fastadasp.bin.inference", "--model_name_or_path", str(checkpoint),
        "--data_path_and_name_and_type", f"{d}/wav.scp,speech,sound",
        "--data_path_and_name_and_type", f"{d}/prompt,prompt,text",
        "--max_new_tokens", "3", "--output_dir", str(out), *extra,
    ]  # fmt: skip


def test_a_second_writer_of_an_output_dir_refuses_at_once(checkpoint, tmp_path):
    d, out = _data(tmp_path), tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = subprocess.run(_cli(checkpoint, d, out), capture_output=True, text=True, env=_env(), timeout=300)
        assert proc.returncode != 0
        assert f"is being written by pid {holder.pid}" in proc.stderr
        assert not (out / "1best_recog").exists(), "refused before decoding anything"
    finally:
        holder.kill()
        holder.wait()
    # the holder died (kill -9): its lock went with it
    proc = subprocess.run(_cli(checkpoint, d, out), capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len((out / "1best_recog" / "text").read_text().splitlines()) == 3


HOLD_LOCK = """
import sys, time
from pathlib import Path
from espnet_fastadasp.decoding.outputs import OutputDirLock
lock = OutputDirLock(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(600)
"""


def _env():
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def test_resuming_with_other_settings_refuses_naming_them(checkpoint, tmp_path):
    d, out = _data(tmp_path), tmp_path / "out"
    inf.main(_cli(checkpoint, d, out, "--reduction", "method=none")[3:])
    text = (out / "1best_recog" / "text").read_text()
    (out / "1best_recog" / "text").write_text(text.splitlines(keepends=True)[0])  # as if killed after one
    cfg = tmp_path / "fastadasp.yaml"
    cfg.write_text("method: fastadasp\nflops_reduction: 0.2\n")
    with pytest.raises(SettingsMismatch, match=r"reduction\.method: 'none' then, 'fastadasp' now"):
        inf.main(_cli(checkpoint, d, out, "--reduction_config", str(cfg))[3:])
    assert len((out / "1best_recog" / "text").read_text().splitlines()) == 1, "nothing mixed in"
    with pytest.raises(SettingsMismatch, match=r"decode\.max_new_tokens: 3 then, 4 now"):
        inf.main([*_cli(checkpoint, d, out, "--reduction", "method=none")[3:], "--max_new_tokens", "4"])
    # the same settings resume; --overwrite starts over with the new ones
    inf.main(_cli(checkpoint, d, out, "--reduction", "method=none")[3:])
    assert (out / "1best_recog" / "text").read_text() == text
    inf.main(_cli(checkpoint, d, out, "--reduction_config", str(cfg), "--overwrite", "true")[3:])
    cost = [json.loads(line.split(" ", 1)[1]) for line in (out / "1best_recog" / "cost").read_text().splitlines()]
    assert len(cost) == 3 and all(c["flops_reduction"] > 0.1 for c in cost)


def test_merge_checks_every_key_once(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "text").write_text("k2 two\nk1 one\n")
    (b / "text").write_text("k3 three\n")
    merge_outputs([a, b], ["k1", "k2", "k3"], tmp_path / "out", ["text"])
    assert (tmp_path / "out" / "text").read_text() == "k1 one\nk2 two\nk3 three\n"
    (b / "text").write_text("k3 three\nk1 again\nk9 stray\n")
    with pytest.raises(ValueError, match=r"1 key\(s\) duplicated: k1; text: 1 key\(s\) not in the data: k9"):
        merge_outputs([a, b], ["k1", "k2", "k3"], tmp_path / "out2", ["text"])
    (b / "text").write_text("")
    with pytest.raises(ValueError, match=r"1 key\(s\) missing: k3"):
        merge_outputs([a, b], ["k1", "k2", "k3"], tmp_path / "out2", ["text"])
    assert not (tmp_path / "out2").exists(), "nothing written when the parts do not cover the data once"


def test_an_unreachable_target_names_the_utterance(checkpoint):
    from espnet_fastadasp.decoding.speech2text import Speech2Text

    s2t = Speech2Text(str(checkpoint), max_new_tokens=2, beam_size=2)
    try:
        batch = s2t.encode(["long", "tiny"], [synthetic_audio(1.5, 1), synthetic_audio(0.1, 2)], [PROMPT] * 2)
        with pytest.raises(ConfigError, match=r"utterance 'tiny': flops_reduction=0.400 is unreachable"):
            s2t(batch, ReductionConfig(method="fastadasp", flops_reduction=0.4))
    finally:
        s2t.close()


def test_audio_placeholder_twice_names_the_utterance(checkpoint):
    from espnet_fastadasp.decoding.speech2text import Speech2Text

    s2t = Speech2Text(str(checkpoint), max_new_tokens=2)
    try:
        with pytest.raises(DataError, match=r"utterance 'b': prompt .* has 2 \{audio\} placeholder"):
            s2t.encode(["a", "b"], [synthetic_audio(0.5, 1)] * 2, [PROMPT, "{audio} and {audio}"])
    finally:
        s2t.close()


def test_a_missing_model_dir_is_named(tmp_path):
    from espnet_fastadasp.decoding.speech2text import load_model

    with pytest.raises(FileNotFoundError, match=r"model dir not found: .*nope"):
        load_model(str(tmp_path / "nope"), "float32", "cpu", None)


def test_float_audio_outside_unit_range_warns(tmp_path, caplog):
    sf.write(tmp_path / "loud.wav", np.full(8000, 0.5, dtype="float32") * 3.0, 16000, subtype="FLOAT")
    (tmp_path / "wav.scp").write_text(f"loud {tmp_path / 'loud.wav'}\n")
    with caplog.at_level("WARNING"):
        AudioReader(tmp_path / "wav.scp")("loud")
    assert "utterance loud: samples reach 1.5, outside [-1, 1]" in caplog.text


PROMPT = "<|im_start|>{audio}ASR:<|im_end|>"
