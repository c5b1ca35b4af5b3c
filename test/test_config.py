"""ReductionConfig: validation with clear messages, YAML round trip."""

from __future__ import annotations

import pytest

from espnet_fastadasp import ConfigError, ReductionConfig


def test_yaml_round_trip(tmp_path):
    cfg = ReductionConfig(method="fastv", schedule="once", start_layer=3, flops_reduction=0.3, seed=5)
    path = tmp_path / "r.yaml"
    cfg.save_yaml(path)
    assert ReductionConfig.load_yaml(path) == cfg
    assert ReductionConfig.load_yaml(path, start_layer=4).start_layer == 4


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(method="tome", ratio=0.1), "method='tome' is not one of"),
        (dict(schedule="linear", ratio=0.1), "schedule='linear'"),
        (dict(ratio=1.0), r"ratio=1.0 must be in \[0, 1\)"),
        (dict(flops_reduction=-0.1), "flops_reduction=-0.1"),
        (dict(ratio="0.2"), "must be a number"),
        (dict(ratio=0.1, flops_reduction=0.2), "exactly one of ratio or flops_reduction"),
        (dict(), "exactly one of ratio or flops_reduction"),
        (dict(ratio=0.1, start_layer=-1), "start_layer=-1"),
        (dict(ratio=0.1, seed=1.5), "seed=1.5"),
        (dict(ratio=0.1, attention_chunk_size=0), "attention_chunk_size=0"),
        (dict(ratio=0.1, scores_from="last"), "scores_from='last' is not one of all, window"),
        (dict(ratio=0.1, score_window=0), "score_window=0 must be a positive integer"),
        (dict(ratio=0.1, score_window=True), "score_window=True"),
    ],
)
def test_bad_values_name_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ReductionConfig(**kwargs)


def test_none_needs_no_amount():
    assert ReductionConfig(method="none").is_noop


def test_unknown_yaml_key_is_an_error(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("method: fastadasp\nratio: 0.2\nstart_layr: 3\n")
    with pytest.raises(ConfigError, match=f"{path}.*start_layr"):
        ReductionConfig.load_yaml(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        ReductionConfig.load_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        ReductionConfig.load_yaml(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        ReductionConfig.load_yaml(listy)


@pytest.mark.parametrize(
    "spec,tag,fields",
    [
        ("none", "none", dict(method="none")),
        (
            "fastadasp_constant@0.3",
            "fastadasp_constant@0.3",
            dict(method="fastadasp", schedule="constant", flops_reduction=0.3),
        ),
        ("fastadasp_once@0.5", "fastadasp_once@0.5", dict(method="fastadasp", schedule="once", flops_reduction=0.5)),
        ("fastv@0.2", "fastv_constant@0.2", dict(method="fastv", schedule="constant", flops_reduction=0.2)),
        ("random_evict_decay%0.1", "random_evict_decay%0.1", dict(method="random_evict", schedule="decay", ratio=0.1)),
        (
            "h2o-w32@0.5",
            "h2o_constant-w32@0.5",
            dict(method="h2o", flops_reduction=0.5, scores_from="window", score_window=32),
        ),
        ("fastv_once-w8%0.2", "fastv_once-w8%0.2", dict(method="fastv", schedule="once", ratio=0.2, score_window=8)),
        ("fastv@0.2", "fastv_constant@0.2", dict(scores_from="all")),
    ],
)
def test_reduction_specs(spec, tag, fields):
    from espnet_fastadasp.core.config import parse_reduction_spec

    got_tag, cfg = parse_reduction_spec(spec, start_layer=3)
    assert got_tag == tag
    for k, v in fields.items():
        assert getattr(cfg, k) == v
    if cfg.method != "none":
        assert cfg.start_layer == 3


@pytest.mark.parametrize(
    "spec,match",
    [
        ("tome@0.3", "unknown method 'tome'"),
        ("fastv@x", "'x' is not a number"),
        ("fastv", "want none"),
        ("fastv@1.5", r"must be in \[0, 1\)"),
        ("fastv-w@0.3", "want none"),
        ("fastv-w0@0.3", "score_window=0"),
        ("fastv@0.3@0.2", "want none"),
    ],
)
def test_bad_reduction_specs(spec, match):
    from espnet_fastadasp.core.config import parse_reduction_spec

    with pytest.raises(ConfigError, match=match):
        parse_reduction_spec(spec)


def test_yaml_spec(tmp_path):
    from espnet_fastadasp.core.config import parse_reduction_spec

    path = tmp_path / "mine.yaml"
    ReductionConfig(method="h2o", ratio=0.2).save_yaml(path)
    assert parse_reduction_spec(str(path)) == ("mine", ReductionConfig(method="h2o", ratio=0.2))
