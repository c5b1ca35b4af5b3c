"""bin/benchmark.py: that the cost benchmark runs end to end and reports what it says (not speed).

The tiny model on CPU stands in for Qwen2-Audio-7B on a GPU: the same code path (random
weights built on the device, hand-built prompts, forced-length generate under each setting),
seconds instead of minutes. Timings on CPU mean nothing; structure and counts do.
"""

from __future__ import annotations

import json

import pytest
import torch

from espnet_fastadasp.benchmark import inputs as bench_inputs
from espnet_fastadasp.benchmark import measure, results, targets
from espnet_fastadasp.bin import benchmark as bm
from espnet_fastadasp.core.config import ConfigError
from espnet_fastadasp.models.parts import audio_tokens_for

TINY_ARGS = [
    "--device",
    "cpu",
    "--dtype",
    "float32",
    "--new_tokens",
    "3",
    "--repeats",
    "1",
    "--warmup",
    "0",
    "--bandwidth_mib",
    "8",
]


@pytest.fixture(scope="module")
def tiny_model():
    return bench_inputs.build_random_model(
        bench_inputs.tiny_config(), torch.device("cpu"), torch.float32, "sdpa", seed=0
    )


def test_end_to_end_from_a_config_json(tmp_path):
    """The CLI with a Qwen2AudioConfig JSON: results.json / results.md hold every setting."""
    cfg_path = tmp_path / "tiny.json"
    bench_inputs.tiny_config().to_json_file(cfg_path)
    out = tmp_path / "bench"
    bm.main(
        ["--model_config", str(cfg_path), "--audio_seconds", "4", "--beams", "1", "2", "--output_dir", str(out)]
        + TINY_ARGS
        + ["--reductions", "none", "fastadasp_constant@0.3", "fastadasp_once@0.9"]
    )
    data = json.loads((out / "results.json").read_text())
    env = data["environment"]
    for key in ("date", "device_name", "torch", "transformers", "dtype", "cuda"):
        assert key in env
    assert data["bandwidth_bytes_per_s"] > 0 and data["decode_weight_bytes"] > 0 and data["matmul_flops_per_s"] > 0
    # on CPU the floor divides by the read rate of a one-row product at the model's up-projection shape
    assert data["floor_bandwidth"] == "gemv" and data["bandwidth_bytes_per_s"] == data["gemv_probes"][0]["bytes_per_s"]
    assert [(g["rows"], g["shape"]) for g in data["gemv_probes"]] == [(1, [128, 64]), (2, [128, 64])]
    assert data["bandwidth_probe"]["bytes_per_s"] > 0 and data["decoder_layers"] == 8
    by_key = {s["key"]: s for s in data["settings"]}
    assert len(by_key) == 6

    for beams in (1, 2):
        group = f"audio4s_beam{beams}"
        none, merged = by_key[f"{group}/none"], by_key[f"{group}/fastadasp_constant@0.3"]
        assert none["inputs"] == {"clips": 2, "clip_frames": [200, 200], "audio_tokens": 100, "prompt_tokens": 144}
        for s in (none, merged):
            assert s["error"] is None and len(s["runs"]) == 1
            run = s["runs"][0]
            assert run["new_tokens"] == 3 and run["decode_steps"] == 2 and run["rows"] == beams
            # CPU: the process's peak RSS during generate (weights included), and what it held before
            assert run["peak_bytes"] >= run["peak_bytes_before"] > 0
            m = s["summary"]
            for name in ("prefill_s", "decode_s", "decode_tok_s", "step_ms_median", "rtf"):
                assert m[name]["median"] > 0
            assert m["floor_ms"] > 0 and m["x_floor"] > 0
            # every layer's cache: the prompt (144, shortened after the reducing layers) + 2 decoded tokens
            assert len(m["kv_bytes_per_layer"]) == 8
            assert m["kv_entries_per_layer"][0] == 144 + 2
        assert none["summary"]["flops_reduction"] == 0.0
        # the reduction's own steps are timed for a reduction only, and fit inside its prefill
        assert none["summary"]["reduce_s"] is None and none["summary"]["scoring_s"] is None
        red_run = merged["runs"][0]
        assert 0 < red_run["reduce_s"] < red_run["prefill_s"] and 0 < red_run["scoring_s"] < red_run["prefill_s"]
        assert 0 < merged["summary"]["prefill_floor_s"] < none["summary"]["prefill_floor_s"]
        assert len(set(none["summary"]["kv_bytes_per_layer"])) == 1
        red = merged["summary"]
        assert 0.25 < red["flops_reduction"] < 0.35
        kv = red["kv_bytes_per_layer"]
        assert kv[:3] == none["summary"]["kv_bytes_per_layer"][:3]  # layers 0-2 cache the full prompt
        assert kv[-1] < kv[3] < kv[2]  # later layers hold fewer entries
        assert merged["vs_none"]["kv_ratio"] < 1 and merged["vs_none"]["decode_tok_s_ratio"] > 0
        assert none["vs_none"]["decode_tok_s_ratio"] == pytest.approx(1.0)
        # an unreachable target is an error of that setting, not of the run
        once = by_key[f"{group}/fastadasp_once@0.9"]
        assert "unreachable" in once["error"] and once["summary"] is None and once["runs"] == []

    md = (out / "results.md").read_text()
    assert "## 4 s audio, beam 1 (144 prompt tokens, 100 audio)" in md and "## 4 s audio, beam 2" in md
    assert md.count("| setting | prefill s | prefill vs none | reduce s | scoring s |") == 2
    assert "| fastadasp_once@0.9 | error: config:" in md
    rows = [line for line in md.splitlines() if line.startswith("| fastadasp_constant@0.3 |")]
    assert len(rows) == 2 and all(len(r.split("|")) == len(results.MD_HEADER.split("|")) for r in rows)


def test_kill_keeps_results_and_oom_is_recorded(tmp_path, tiny_model, monkeypatch):
    """Results are on disk after each run; an OOM marks that setting and the others go on."""
    calls = []
    real = bm.run_once

    def fake(model, inputs, setting, *args, **kwargs):
        calls.append(setting.key)
        if setting.tag.startswith("fastv"):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.40 GiB")
        if len(calls) == 4:
            raise KeyboardInterrupt  # the run is killed during its 4th generate
        return real(model, inputs, setting, *args, **kwargs)

    monkeypatch.setattr(bm, "run_once", fake)
    with pytest.raises(KeyboardInterrupt):
        bm.benchmark(
            tiny_model,
            tmp_path,
            audio_seconds=[2],
            beams=[1],
            reductions=["none", "fastv@0.3", "h2o@0.3"],
            new_tokens=2,
            warmup=0,
            repeats=2,
            bandwidth_bytes=1 << 23,
        )
    assert calls == ["audio2s_beam1/none", "audio2s_beam1/fastv_constant@0.3", "audio2s_beam1/h2o_constant@0.3"] + [
        "audio2s_beam1/none"
    ]
    data = json.loads((tmp_path / "results.json").read_text())
    by_tag = {s["setting"]: s for s in data["settings"]}
    assert len(by_tag["none"]["runs"]) == 1 and len(by_tag["h2o_constant@0.3"]["runs"]) == 1
    assert by_tag["fastv_constant@0.3"]["error"].startswith("out of memory")
    h2o = by_tag["h2o_constant@0.3"]["summary"]
    assert h2o["flops_reduction"] == 0.0 and h2o["kv_reduction"] > 0  # h2o shrinks the cache, not the FLOPs
    assert "out of memory" in (tmp_path / "results.md").read_text()


def test_prompt_layout_matches_qwen2_audio():
    """30 s windows of 3000 frames -> 750 tokens; a partial last clip is padded and masked."""
    cfg = bench_inputs.load_config("qwen2_audio_7b")
    spec = bench_inputs.prompt_spec(cfg, bench_inputs.WHISPER_HOP_LENGTH, bench_inputs.WHISPER_SAMPLING_RATE)
    assert spec.window_s == 30.0 and spec.mel_frames == 3000 and spec.num_mel_bins == 128
    assert (spec.audio_token_id, spec.audio_bos_id, spec.audio_eos_id) == (151646, 151647, 151648)
    assert audio_tokens_for(3000) == 750
    assert bench_inputs.clip_frames(240, spec) == [3000] * 8
    assert bench_inputs.clip_frames(45, spec) == [3000, 1500]
    inputs, info = bench_inputs.build_inputs(45, spec, 2, 20, 20, torch.device("cpu"), torch.bfloat16, seed=0)
    assert info == {"clips": 2, "clip_frames": [3000, 1500], "audio_tokens": 750 + 375, "prompt_tokens": 1169}
    ids = inputs["input_ids"]
    assert ids.shape == (2, 1169) and (ids == 151646).sum(-1).tolist() == [1125, 1125]
    assert (ids[:, :20] < 151643).all() and (ids[:, -20:] < 151643).all()
    assert inputs["input_features"].shape == (4, 128, 3000) and inputs["input_features"].dtype == torch.bfloat16
    assert inputs["feature_attention_mask"].sum(-1).tolist() == [3000, 1500, 3000, 1500]


def test_7b_shape_on_meta(capsys):
    """The shipped 7B config builds (on meta: nothing allocated) at Qwen2-Audio-7B's size."""
    info = bm.main(["--dry_run"])
    assert 8.3e9 < info["parameters"] < 8.5e9
    # 32 layers + LM head in bf16, ~14.2 GB read per decoding step; 512 KiB of KV per token
    assert 14.1e9 < info["decode_weight_bytes"] < 14.3e9
    assert info["kv_bytes_per_token"] == 2 * 32 * 32 * 128 * 2
    assert info["prompts"]["240"] == {"clips": 8, "audio_tokens": 6000, "prompt_tokens": 6056}
    assert json.loads(capsys.readouterr().out)["parameters"] == info["parameters"]


def test_step_floor_counts_the_average_kv_of_the_decoding_steps():
    # one layer whose final cache holds 110 entries (100 prompt + 10 steps): 1 KiB per entry
    run = {"decode_steps": 10, "kv_layers": [{"entries": 110, "bytes": 110 * 1024}]}
    floor = measure.step_floor(run, weight_bytes=1_000_000, bandwidth=1e9)
    assert floor["kv_read_bytes"] == pytest.approx((100 + 5.5) * 1024)
    assert floor["floor_ms"] == pytest.approx(1000 * (1_000_000 + 105.5 * 1024) / 1e9)


def test_bad_inputs_fail_early(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        bench_inputs.load_config("no_such_model")
    with pytest.raises(ConfigError):
        bm.make_settings([4], [1], ["none", "bogus@0.3"], start_layer=2)
    with pytest.raises(ConfigError, match="duplicate"):
        bm.make_settings([4], [1], ["fastv@0.3", "fastv_constant@0.3"], start_layer=2)


def test_prompt_modes_measure_the_shared_prompt(tmp_path, tiny_model):
    """--prompt_modes: the same reductions through generate_with_shared_prompt, ratios against plain none."""
    data = bm.benchmark(
        tiny_model,
        tmp_path,
        audio_seconds=[4],
        beams=[3],
        reductions=["none", "fastadasp_constant@0.3"],
        prompt_modes=["hf", "once", "shared"],
        new_tokens=3,
        warmup=0,
        repeats=1,
        bandwidth_bytes=1 << 23,
    )
    by_tag = {s["setting"]: s for s in data["settings"]}
    assert set(by_tag) == {
        "none",
        "fastadasp_constant@0.3",
        "none+once",
        "fastadasp_constant@0.3+once",
        "none+shared",
        "fastadasp_constant@0.3+shared",
    }
    assert by_tag["none+shared"]["prompt"] == "shared" and by_tag["none"]["prompt"] == "hf"
    for tag, s in by_tag.items():
        run = s["runs"][0]
        assert s["error"] is None and run["new_tokens"] == 3
        # the shared modes re-feed the last prompt token: one decoding forward more
        assert run["decode_steps"] == (2 if s["prompt"] == "hf" else 3), tag
    kv = {tag: s["summary"]["kv_bytes"] for tag, s in by_tag.items()}
    assert kv["none+once"] == kv["none"]  # copied per beam: as many bytes as plain generate
    # shared: the 144-token prompt once instead of 3 times (+ 3 generated entries per beam)
    per_entry = kv["none"] // (3 * (144 + 2))
    assert kv["none+shared"] == per_entry * (143 + 3 * 3)
    assert kv["fastadasp_constant@0.3+shared"] < kv["none+shared"]
    assert by_tag["fastadasp_constant@0.3+shared"]["summary"]["flops_reduction"] == pytest.approx(
        by_tag["fastadasp_constant@0.3"]["summary"]["flops_reduction"]
    )
    assert by_tag["none+shared"]["vs_none"]["kv_ratio"] == pytest.approx(kv["none+shared"] / kv["none"])
    assert "| none+shared |" in (tmp_path / "results.md").read_text()
    with pytest.raises(ConfigError, match="prompt_modes"):
        bm.make_settings([4], [1], ["none"], start_layer=2, prompt_modes=["hf", "bogus"])


def test_prompt_mode_static_measures_the_static_path(tmp_path, tiny_model):
    """--prompt_modes static: generate_static's rows, its own step times, the prompt's KV once,
    the floor counting the prompt part and the written generated slots."""
    data = bm.benchmark(
        tiny_model,
        tmp_path,
        audio_seconds=[4],
        beams=[1, 3],
        reductions=["none", "fastadasp_constant@0.3"],
        prompt_modes=["hf", "static"],
        new_tokens=3,
        warmup=0,
        repeats=1,
        bandwidth_bytes=1 << 23,
    )
    rows = {(s["num_beams"], s["setting"]): s for s in data["settings"]}
    for (_beams, tag), s in rows.items():
        run = s["runs"][0]
        assert s["error"] is None and run["new_tokens"] == 3 and run["decode_steps"] == 2, tag
        assert (run["step_mode"] == "eager") == tag.endswith("+static") and run["step_ms_median"] > 0
    for beams in (1, 3):
        none, static = rows[beams, "none"]["summary"], rows[beams, "none+static"]["summary"]
        per_entry = none["kv_bytes"] // (beams * (144 + 2))
        # the 144-token prompt once per prompt, 2 generated slots per beam
        assert static["kv_bytes"] == per_entry * (144 + beams * 2)
        assert static["kv_read_bytes"] == pytest.approx(per_entry * (144 + beams * 2 * 1.5 / 2))
        assert rows[beams, "fastadasp_constant@0.3+static"]["summary"]["kv_bytes"] < static["kv_bytes"]
        assert rows[beams, "none+static"]["vs_none"]["decode_tok_s_ratio"] is not None
    assert "| none+static |" in (tmp_path / "results.md").read_text()


def test_a_spec_may_name_its_own_prompt_mode():
    settings = bm.make_settings([60], [1], ["none", "none+hf_all_logits", "fastv@0.5"], 2)
    assert [(s.tag, s.prompt) for s in settings] == [
        ("none", "hf"),
        ("fastv_constant@0.5", "hf"),
        ("none+hf_all_logits", "hf_all_logits"),
    ]
    with pytest.raises(ConfigError, match="duplicate"):
        bm.make_settings([60], [1], ["none+shared", "none"], 2, ["hf", "shared"])


def test_received_paths_script_runs_and_agrees(tmp_path, monkeypatch):
    """benchmarks/received_paths.py (which path to the attention received is fastest) at toy scale:
    every CPU path is timed, in float32 and bfloat16; the exact paths agree with the float64
    softmax, the two-pass one at least as closely as eager attention's own weights in that dtype."""
    import runpy
    import sys
    from pathlib import Path

    out = tmp_path / "r.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "received_paths.py"
    for dtype, tolerance in (("float32", 1e-5), ("bfloat16", 1e-3)):
        argv = [str(script), "--lengths", "48", "--heads", "2", "--head_dim", "16", "--repeats", "1"]
        argv += ["--dtype", dtype, "--windows", "8", "--output", str(out)]
        monkeypatch.setattr(sys, "argv", argv)
        runpy.run_path(str(script), run_name="__main__")
        (row,) = json.loads(out.read_text())["lengths"]
        errors = row["max_relative_error_vs_float64"]
        assert row["tokens"] == 48 and errors["lse_two_pass"] < tolerance
        assert errors["lse_two_pass"] <= errors["eager_in_dtype"] or dtype == "float32"
        for name in ("sdpa_s", "fused_torch_s", "sdpa+blocked_s", "lse_two_pass_s", "sdpa+window8_s"):
            assert row[name] > 0


def test_cut_shape_cpu_peak_profile_and_path_share(tmp_path):
    """--num_layers / --audio_layers cut the shape (recorded, and said in the md header); the CPU peak
    is the process's peak RSS; --groups runs only the pairs named; --warmup_audio_seconds warms on
    short audio; --profile_step profiles one step per setting (its two overlapped steps left out of
    the timings); 'vs path none' is each reduction against none along the same path."""
    out = tmp_path / "bench"
    data = bm.main(
        ["--model_config", "tiny", "--num_layers", "3", "--audio_layers", "0", "--start_layer", "0"]
        + ["--groups", "4:2", "--audio_seconds", "9", "--beams", "1", "--output_dir", str(out)]
        + TINY_ARGS
        + ["--new_tokens", "6", "--warmup", "1", "--warmup_audio_seconds", "2", "--profile_step"]
        + ["--reductions", "none", "fastadasp_constant@0.3", "--prompt_modes", "hf", "shared"]
    )
    assert data["decoder_layers"] == 3 and data["layers_of_shape"] == {"decoder_layers": 8, "audio_layers": 2}
    assert data["warmup_audio_seconds"] == 2 and "peak RSS" in data["peak_memory"]
    by_tag = {s["setting"]: s for s in data["settings"]}
    assert set(by_tag) == {"none", "fastadasp_constant@0.3", "none+shared", "fastadasp_constant@0.3+shared"}
    assert {(s["audio_seconds"], s["num_beams"]) for s in data["settings"]} == {(4.0, 2)}
    for tag, s in by_tag.items():
        run, m = s["runs"][0], s["summary"]
        assert len(m["kv_bytes_per_layer"]) == 3, tag
        assert run["peak_bytes"] > 0 and m["peak_gib"] > 0 and m["peak_added_gib"] >= 0, tag
        # the profiled window overlaps two of the 5 (6 with a shared prompt) steps: they leave the timings
        prof = run["profile"]
        assert prof["dropped_steps"] == [2, 3] and prof["wall_ms"] > 0 and prof["top"][0]["self_cpu_ms"] > 0, tag
        assert run["decode_steps"] == (3 if s["prompt"] == "hf" else 4), tag
        assert "self CPU" in (out / prof["file"]).read_text()
    red, none = by_tag["fastadasp_constant@0.3+shared"], by_tag["none+shared"]
    share = red["vs_none"]["path_none"]
    tok_s = lambda s: s["summary"]["decode_tok_s"]["median"]  # noqa: E731
    assert share["decode_tok_s_ratio"] == pytest.approx(tok_s(red) / tok_s(none))
    assert share["kv_ratio"] == pytest.approx(red["summary"]["kv_bytes"] / none["summary"]["kv_bytes"])
    assert share["kv_ratio"] < 1
    assert red["vs_none"]["decode_tok_s_ratio"] == pytest.approx(tok_s(red) / tok_s(by_tag["none"]))
    assert by_tag["fastadasp_constant@0.3"]["vs_none"]["path_none"]["decode_tok_s_ratio"] == pytest.approx(
        by_tag["fastadasp_constant@0.3"]["vs_none"]["decode_tok_s_ratio"]
    )
    md = (out / "results.md").read_text()
    assert "**3 of the shape's 8 decoder layers**" in md and "0 of its 2 audio encoder layers" in md
    assert "| ratio vs none | vs path none |" in md and "VmHWM" in md
    rows = [line for line in md.splitlines() if line.startswith("| fastadasp_constant@0.3+shared |")]
    assert len(rows) == 1 and len(rows[0].split("|")) == len(results.MD_HEADER.split("|"))
    # the targets report reads the same file
    report = targets.render(json.loads((out / "results.json").read_text()))
    assert "## Targets" in report and "| shared | " in report and "## 4 s audio, beam 2" in report


def test_resume_keeps_the_runs_and_skips_them(tmp_path, tiny_model, monkeypatch):
    kwargs = dict(audio_seconds=[2], beams=[1], reductions=["none", "h2o@0.3"], new_tokens=2, warmup=1, repeats=1)
    first = bm.benchmark(tiny_model, tmp_path, bandwidth_bytes=1 << 23, **kwargs)
    calls = []
    real = bm.run_once

    def counting(model, inputs, setting, *args, **kw):
        calls.append(setting.key)
        return real(model, inputs, setting, *args, **kw)

    monkeypatch.setattr(bm, "run_once", counting)
    again = bm.benchmark(tiny_model, tmp_path, resume=True, **kwargs)
    assert calls == []  # every repeat was there: no warm-up, no run
    assert [s["runs"] for s in again["settings"]] == [s["runs"] for s in first["settings"]]
    assert again["bandwidth_bytes_per_s"] == first["bandwidth_bytes_per_s"]  # the first run's probes
    # one more repeat asked for: only it runs (after a warm-up of the settings that need it)
    more = bm.benchmark(tiny_model, tmp_path, resume=True, **{**kwargs, "repeats": 2})
    assert calls == ["audio2s_beam1/none", "audio2s_beam1/h2o_constant@0.3"] * 2
    assert all(len(s["runs"]) == 2 for s in more["settings"])
    with pytest.raises(ConfigError, match="new_tokens"):
        bm.benchmark(tiny_model, tmp_path, resume=True, **{**kwargs, "new_tokens": 3})


def test_targets_verdicts():
    """The issue's targets on hand-made summaries: best path per speed target, every reduced step
    against its floor, the lowest peak at beam 5 / 240 s."""

    def setting(audio, beams, method, path, tok_ratio, x_floor, peak_ratio):
        tag = method if path == "hf" else f"{method}+{path}"
        return {
            "key": f"audio{audio}s_beam{beams}/{tag}",
            "audio_seconds": float(audio),
            "num_beams": beams,
            "setting": tag,
            "prompt": path,
            "config": {"method": method},
            "summary": {"decode_tok_s": {"median": 10 * tok_ratio}, "x_floor": x_floor, "flops_reduction": 0.5},
            "vs_none": {"decode_tok_s_ratio": tok_ratio, "peak_ratio": peak_ratio},
            "runs": [{"profile": {"wall_ms": 10.0, "top": [{"name": "aten::mm", "self_cpu_ms": 6.0}]}}],
        }

    data = {
        "settings": [
            setting(240, 5, "none", "hf", 1.0, 3.0, 1.0),
            setting(240, 5, "fastadasp", "hf", 1.1, 1.2, 0.8),
            setting(240, 5, "fastadasp", "static", 2.3, 1.25, 0.6),
            setting(240, 1, "none", "hf", 1.0, 1.1, 1.0),
            setting(240, 1, "h2o", "shared", 1.1, 1.5, 0.9),
        ]
    }
    speed5, speed1, floor, peak = targets.evaluate(data)
    assert speed5["met"] is True and speed5["best"] == "fastadasp+static: 2.30x"
    assert speed1["met"] is False and speed1["best"] == "h2o+shared: 1.10x"
    assert floor["met"] is False and [r["key"] for r in floor["rows"]] == ["audio240s_beam1/h2o+shared"]
    assert peak["met"] is True and peak["best"].startswith("fastadasp+static: 0.60x")
    assert targets._profile_lines(floor["rows"])[0].endswith("aten::mm 6.0 ms (60 %)")
