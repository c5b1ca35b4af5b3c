"""The entropy estimator on Gaussians of known entropy, and the ranking logic."""

from __future__ import annotations

import math

import numpy as np
import pytest

from espnet_fastadasp.evaluation.transfer_entropy import (
    LayerScore,
    gaussian_entropy,
    rank_layers,
    shrunk_covariance,
    spearman,
    transfer_entropy,
)


def true_entropy(cov: np.ndarray) -> float:
    d = cov.shape[0]
    return 0.5 * (d * math.log(2 * math.pi * math.e) + np.linalg.slogdet(cov)[1])


@pytest.mark.parametrize("d,n", [(4, 4000), (8, 4000), (16, 8000)])
def test_gaussian_entropy_matches_the_closed_form(d, n):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((d, d))
    cov = a @ a.T + 0.5 * np.eye(d)
    x = rng.multivariate_normal(np.zeros(d), cov, size=n)
    assert gaussian_entropy(x) == pytest.approx(true_entropy(cov), abs=0.05 * d)


def test_scaling_shifts_entropy_by_log_of_the_scale():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 6))
    assert gaussian_entropy(3 * x) - gaussian_entropy(x) == pytest.approx(6 * math.log(3), abs=1e-6)


def test_shrinkage_keeps_few_samples_well_posed():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 32))  # fewer samples than dimensions
    cov = shrunk_covariance(x)
    assert np.all(np.linalg.eigvalsh(cov) > 0)
    assert math.isfinite(gaussian_entropy(x))


def test_layers_ranked_by_entropy_change_from_the_reference():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((256, 20))
    # layer 4 barely changes the features, layer 2 shrinks them (loses information), layer 6 adds noise
    layers = {
        2: 0.5 * ref + 0.01 * rng.standard_normal(ref.shape),
        4: ref + 0.01 * rng.standard_normal(ref.shape),
        6: ref + 1.0 * rng.standard_normal(ref.shape),
    }
    scores = transfer_entropy(ref, layers)
    assert [s.layer for s in scores] == [4, 6, 2]
    assert scores[0].te < 0.1
    assert scores == transfer_entropy(ref, layers), "deterministic"


def test_ties_go_to_the_earlier_layer_and_shapes_must_match():
    ranked = rank_layers([LayerScore(5, 1.0, 0.2), LayerScore(3, 1.0, 0.2), LayerScore(7, 1.0, 0.1)])
    assert [s.layer for s in ranked] == [7, 3, 5]
    with pytest.raises(ValueError, match="layer 2"):
        transfer_entropy(np.zeros((8, 4)), {2: np.zeros((7, 4))})


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_select_layer_tool_end_to_end(checkpoint, tmp_path):
    """On the tiny model: every candidate layer scored, config written, validation reported."""
    import json

    import soundfile as sf
    import yaml

    from espnet_fastadasp.bin import select_layer
    from espnet_fastadasp.models.tiny import synthetic_audio
    from espnet_fastadasp.recipes import corpora

    utts = []
    for i in range(10):
        wav = tmp_path / f"u{i}.wav"
        sf.write(wav, synthetic_audio(1.2 + 0.07 * i, i), 16000)
        utts.append(corpora.Utterance(f"u{i:02d}", str(wav), ["yes", "no"][i % 2], "s"))
    d = corpora.write_data_dir(utts, tmp_path / "data", "<|im_start|>{audio}?<|im_end|>")
    out = tmp_path / "te"
    result = select_layer.main(
        [
            "--model_name_or_path",
            str(checkpoint),
            "--data_dir",
            str(d),
            "--output_dir",
            str(out),
            "--ratio",
            "0.5",
            "--candidate_layers",
            "1",
            "3",
            "5",
            "--batch_size",
            "5",
            "--validate_dir",
            str(d),
            "--max_new_tokens",
            "2",
            "--labels",
            "yes,no",
            "--write_config",
            str(tmp_path / "sparse.yaml"),
        ]
    )
    assert sorted(r["layer"] for r in result["layers"]) == [1, 3, 5]
    tes = [r["te"] for r in result["layers"]]
    assert tes == sorted(tes) and result["chosen_layer"] == result["layers"][0]["layer"]
    assert "spearman_te_vs_accuracy" in result["validation"]
    cfg = yaml.safe_load((tmp_path / "sparse.yaml").read_text())
    assert cfg["schedule"] == "once" and cfg["start_layer"] == result["chosen_layer"]
    assert json.loads((out / "te.json").read_text())["chosen_layer"] == result["chosen_layer"]
    assert "chosen layer" in (out / "te.md").read_text()
    # deterministic for the same inputs
    again = select_layer.main(
        [
            "--model_name_or_path",
            str(checkpoint),
            "--data_dir",
            str(d),
            "--output_dir",
            str(tmp_path / "te2"),
            "--ratio",
            "0.5",
            "--candidate_layers",
            "1",
            "3",
            "5",
            "--batch_size",
            "5",
        ]
    )
    assert [r["te"] for r in again["layers"]] == tes


def test_validation_leaves_out_layers_a_validation_clip_cannot_reach(checkpoint, tmp_path):
    """A short validation clip makes a deep layer unreachable: that layer is reported, not compared."""
    import soundfile as sf

    from espnet_fastadasp.bin import select_layer
    from espnet_fastadasp.models.tiny import synthetic_audio
    from espnet_fastadasp.recipes import corpora

    def data_dir(name: str, seconds: list[float]) -> str:
        utts = []
        for i, sec in enumerate(seconds):
            wav = tmp_path / f"{name}{i}.wav"
            sf.write(wav, synthetic_audio(sec, i), 16000)
            utts.append(corpora.Utterance(f"{name}{i:02d}", str(wav), ["yes", "no"][i % 2], "s"))
        return str(corpora.write_data_dir(utts, tmp_path / name, "<|im_start|>{audio}?<|im_end|>"))

    calib = data_dir("calib", [2.0] * 8)
    valid = data_dir("valid", [2.0, 0.3])
    args = ["--model_name_or_path", str(checkpoint), "--data_dir", calib, "--flops_reduction", "0.3"]
    args += ["--candidate_layers", "1", "5", "--batch_size", "4", "--validate_dir", valid, "--labels", "yes,no"]
    result = select_layer.main([*args, "--output_dir", str(tmp_path / "te"), "--max_new_tokens", "2"])
    rows = {r["layer"]: r for r in result["layers"]}
    assert set(rows) == {1, 5}  # both reach 30 % on the 2 s calibration clips
    assert rows[5]["accuracy"] is None and "unreachable" in rows[5]["validation_skipped"]
    assert rows[1]["accuracy"] is not None
    assert result["validation"]["layers_validated"] == [1] and result["validation"]["best_layer"] == 1
    assert "| 5 |" in (tmp_path / "te" / "te.md").read_text()
