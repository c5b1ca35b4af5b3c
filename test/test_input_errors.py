"""Bad input named by file, line or key (part of the reliability issue): Kaldi's tab separators,
non-UTF-8 bytes, segment bounds, ``--config`` values of the wrong type, ``--reduction`` alone."""

from __future__ import annotations

import contextlib
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
from espnet_fastadasp.models.tiny import synthetic_audio


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


def test_audio_longer_than_the_model_can_take_is_refused_before_decoding(checkpoint):
    """A model with 64 positions: a prompt that needs more is named with the limit, not decoded."""
    from espnet_fastadasp.decoding.speech2text import Speech2Text

    s2t = Speech2Text(str(checkpoint), max_new_tokens=8)
    s2t.model.config.text_config.max_position_embeddings = 64
    try:
        short = s2t.encode(["short"], [synthetic_audio(0.5, 1)], [PROMPT])
        assert short.enc["input_ids"].shape[1] + 8 <= 64
        with pytest.raises(
            DataError,
            match=r"1 utterance\(s\) too long for the model: 'long' \(\d+ prompt tokens\).*"
            r"max_new_tokens=8 .* max_position_embeddings=64",
        ):
            s2t.encode(["short", "long"], [synthetic_audio(0.5, 1), synthetic_audio(2.5, 2)], [PROMPT] * 2)
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


def test_truncated_wav_file_and_pipe_are_named(tmp_path):
    """libsndfile decodes a cut-short WAV silently; we compare with what its header promises."""
    full = tmp_path / "full.wav"
    sf.write(full, synthetic_audio(2.0, 0), 16000, subtype="PCM_16")
    data = full.read_bytes()
    (tmp_path / "half.wav").write_bytes(data[: len(data) // 2])
    scp = tmp_path / "wav.scp"
    scp.write_text(
        f"ok {full}\nhalf {tmp_path / 'half.wav'}\ncut head -c 20000 {full} |\n"
        f"streamed sox {full} -t wav - |\n"  # a pipe writer cannot fill the size in: accepted
    )
    reader = AudioReader(scp)
    assert len(reader("ok")) == 32000
    with pytest.raises(AudioError, match=r"'half'.*truncated WAV: its header promises 64000 bytes.*\(50 %\)"):
        reader("half")
    with pytest.raises(AudioError, match=r"'cut'.*truncated WAV: .*holds 19956 \(31 %\)"):
        reader("cut")
    assert len(reader("streamed")) == 32000


def test_a_full_disk_names_the_file(tmp_path):
    """A real full file system (a 16 KiB tmpfs, filled up): the error names the output file, and
    what was written before stays resumable."""
    import errno
    import os

    from espnet_fastadasp.decoding.outputs import ResumableWriter

    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs to fill (root needed, as in CI): {res.stderr.strip()}")
    try:
        writer = ResumableWriter(mnt / "1best_recog", ["text", "cost"])
        writer.write({"text": [("u1", "hello")], "cost": [("u1", "{}")]})
        with open(mnt / "filler", "wb", buffering=0) as f:  # take every block that is left
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 4096)
        big = [(f"u{i}", "x" * 2000) for i in range(2, 12)]
        with pytest.raises(OSError, match=r"cannot write .*1best_recog/cost: No space left on device") as info:
            writer.write({"text": big, "cost": big})
        assert info.value.errno == errno.ENOSPC
        with contextlib.suppress(OSError):
            writer.close()
        os.remove(mnt / "filler")
        assert ResumableWriter(mnt / "1best_recog", ["text", "cost"]).done == {"u1"}
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _bad_data(tmp_path):
    """Three good utterances and four bad ones of different kinds."""
    d = _data(tmp_path)
    full = (tmp_path / "u0.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(full[: len(full) // 3])
    sf.write(tmp_path / "blip.wav", np.zeros(80, dtype="float32"), 16000)
    with (d / "wav.scp").open("a") as scp, (d / "prompt").open("a") as pr:
        scp.write(f"gone {tmp_path / 'nothere.wav'}\ncut {tmp_path / 'cut.wav'}\nblip {tmp_path / 'blip.wav'}\n")
        scp.write(f"twice {tmp_path / 'u1.wav'}\n")
        for key in ("gone", "cut", "blip"):
            pr.write(f"{key} <|im_start|>{{audio}}ASR:<|im_end|>\n")
        pr.write("twice {audio} and {audio}\n")
    return d


def test_all_bad_utterances_are_listed_before_the_model_loads(tmp_path):
    """The model path does not exist: the data errors, all four, come first."""
    d = _bad_data(tmp_path)
    proc = subprocess.run(
        _cli(tmp_path / "no_model", d, tmp_path / "out"), capture_output=True, text=True, env=_env(), timeout=300
    )
    assert proc.returncode != 0
    err = proc.stderr
    assert "4 of 7 utterance(s) have bad data (checked before loading the model)" in err, err[-3000:]
    assert "'gone': cannot read audio" in err and "no such file" in err
    assert "'cut': cannot read audio" in err and "truncated WAV" in err
    assert "'blip': audio is empty or too short" in err
    assert "'twice': prompt" in err and "has 2 {audio} placeholder" in err
    assert "no_model" not in err.split("have bad data")[0], "the model was looked at before the data"
    assert not (tmp_path / "out" / "skipped_utterances").exists()


def test_skip_bad_utterances_decodes_the_rest_and_merges(checkpoint, tmp_path):
    d = _bad_data(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        _cli(checkpoint, d, out, "--skip_bad_utterances", "true"), capture_output=True, text=True, env=_env()
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipping 4 of 7 utterance(s)" in proc.stderr
    assert sorted(read_key_value(out / "1best_recog" / "text")) == ["u0", "u1", "u2"]
    skipped = read_key_value(out / "skipped_utterances")
    assert sorted(skipped) == ["blip", "cut", "gone", "twice"] and "truncated WAV" in skipped["cut"]
    # the merge accepts exactly the listed keys as absent, and passes the list on
    keys = list(read_key_value(d / "wav.scp"))
    merge_outputs([out / "1best_recog"], keys, tmp_path / "merged", ["text", "cost"])
    assert sorted(read_key_value(tmp_path / "merged" / "skipped_utterances")) == sorted(skipped)
    assert sorted(read_key_value(tmp_path / "merged" / "text")) == ["u0", "u1", "u2"]
    (out / "skipped_utterances").write_text("gone x\n")
    with pytest.raises(ValueError, match=r"3 key\(s\) missing: blip, cut, twice"):
        merge_outputs([out / "1best_recog"], keys, tmp_path / "merged2", ["text", "cost"])
