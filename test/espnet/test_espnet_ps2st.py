"""ESPnet's own Qwen2-Audio decoding (espnet2/ps2st: its BeamSearch over its Qwen2HFScorer) with
a reduction applied through ``apply``, on a tiny Qwen2-Audio saved with ``save_pretrained`` and
loaded by ESPnet's ``ESPnetQwen2AudioModel``."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
import soundfile
import torch
import yaml

from espnet_fastadasp import ConfigError, ReductionConfig
from espnet_fastadasp.bin import espnet_ps2st_inference
from espnet_fastadasp.integrations.espnet_ps2st import ESPnetQwen2AudioModel, apply_reduction
from espnet_fastadasp.models.compat import cache_from_kwargs, cache_kwargs, cache_of_output
from espnet_fastadasp.models.tiny import synthetic_audio

from .conftest import espnet_batch

MAXLEN = 6  # tokens per hypothesis (decode config maxlenratio=-MAXLEN)
REDUCTIONS = {
    "fastadasp_constant": dict(method="fastadasp", schedule="constant", flops_reduction=0.2),
    "fastadasp_once": dict(method="fastadasp", schedule="once", start_layer=3, ratio=0.5),
    "h2o": dict(method="h2o", ratio=0.4),
}


@pytest.fixture(scope="module")
def batch(espnet_checkpoint):
    return espnet_batch(espnet_checkpoint)


def decode(model, batch, beam_size: int):
    model.decode_config.update(beam_size=beam_size, maxlenratio=-MAXLEN, minlenratio=0.0)
    return model.nbest(
        batch["input_ids"], batch["attention_mask"], batch["input_features"], batch["feature_attention_mask"]
    )


def hypotheses(nbest) -> list[tuple[list[int], float]]:
    return [(h.yseq.tolist(), float(h.score)) for h in nbest]


def scored_tokens(hyp) -> list[int]:
    """The tokens ESPnet scored: after sos, at most MAXLEN (the eos it appends at the length limit has no score)."""
    return hyp.yseq[1 : 1 + MAXLEN].tolist()


@torch.no_grad()
def rescore(hf_model, batch, tokens: list[int]) -> float:
    """The log-probability of ``tokens`` after the prompt, teacher-forced: one prefill, then all
    tokens in one step on its cache (what each hypothesis' score must be if it had its own cache)."""
    prompt = {k: batch[k] for k in ("input_ids", "attention_mask", "input_features", "feature_attention_mask")}
    out = hf_model(**prompt, use_cache=True, return_dict=True)
    total = torch.log_softmax(out.logits[0, -1], -1)[tokens[0]]
    if len(tokens) > 1:
        start = batch["input_ids"].shape[1]
        step = hf_model(
            input_ids=torch.tensor([tokens[:-1]]),
            position_ids=torch.arange(start, start + len(tokens) - 1)[None],
            use_cache=True,
            return_dict=True,
            **cache_kwargs(cache_of_output(out)),
        )
        logp = torch.log_softmax(step.logits[0], -1)
        total = total + logp[torch.arange(len(tokens) - 1), torch.tensor(tokens[1:])].sum()
    return float(total)


@contextlib.contextmanager
def recorded_calls(hf_model):
    """Per call of the HF model: the position fed and the cache lengths per layer it was given
    (the prefill: None, and the lengths of the cache it returned)."""
    calls: list[dict] = []

    def before(module, args, kwargs):
        cache = cache_from_kwargs(kwargs)
        position = kwargs.get("position_ids")
        calls.append(
            dict(
                position=None if position is None else int(position[0, -1]),
                lengths=None if cache is None else [layer.keys.shape[-2] for layer in cache.layers],
            )
        )

    def after(module, args, kwargs, output):
        if calls[-1]["lengths"] is None:
            calls[-1]["prefill_lengths"] = [layer.keys.shape[-2] for layer in cache_of_output(output).layers]

    hooks = [
        hf_model.register_forward_pre_hook(before, with_kwargs=True),
        hf_model.register_forward_hook(after, with_kwargs=True),
    ]
    try:
        yield calls
    finally:
        for hook in hooks:
            hook.remove()


def test_espnet_alone_does_not_decode_on_transformers_5(espnet_checkpoint, batch):
    """Why the bridge exists: ESPnet 202511's own inference reads ``model.language_model``, which
    transformers 5's Qwen2-Audio has not (when this fails, ESPnet fixed it: drop the override)."""
    plain = ESPnetQwen2AudioModel(model_name=str(espnet_checkpoint))
    plain.decode_config.update(maxlenratio=-MAXLEN)
    with pytest.raises(AttributeError, match="language_model"):
        plain.inference(**batch)


def test_greedy_gives_the_tokens_of_hf_generate(espnet_model, batch):
    """ESPnet's greedy search through the bridge decodes what transformers' greedy generate does."""
    (best,) = decode(espnet_model, batch, beam_size=1)
    prompt = {k: batch[k] for k in ("input_ids", "attention_mask", "input_features", "feature_attention_mask")}
    out = espnet_model.qwen2audio_model.generate(**prompt, max_new_tokens=MAXLEN, do_sample=False)
    assert scored_tokens(best) == out[0, batch["input_ids"].shape[1] :].tolist()


@pytest.mark.parametrize("beam_size", [1, 3])
def test_none_and_remove_give_espnet_unpatched_hypotheses(espnet_model, batch, beam_size):
    unpatched = hypotheses(decode(espnet_model, batch, beam_size))
    with apply_reduction(espnet_model, ReductionConfig(method="none")) as handle:
        assert hypotheses(decode(espnet_model, batch, beam_size)) == unpatched
        assert handle.stats is not None and handle.stats.flops_reduction == 0.0
    handle = apply_reduction(espnet_model, ReductionConfig(**REDUCTIONS["fastadasp_constant"]))
    decode(espnet_model, batch, beam_size)
    handle.remove()
    assert hypotheses(decode(espnet_model, batch, beam_size)) == unpatched


@pytest.mark.parametrize("beam_size", [1, 3])
def test_every_hypothesis_is_scored_on_its_own_cache(espnet_model, batch, beam_size):
    """ESPnet's beam search shares a state's cache between the hypotheses it branches into; the
    bridge gives each its own, so every score is the teacher-forced log-probability of its tokens."""
    for hyp in decode(espnet_model, batch, beam_size):
        assert float(hyp.score) == pytest.approx(
            rescore(espnet_model.qwen2audio_model, batch, scored_tokens(hyp)), abs=1e-4
        )


@pytest.mark.parametrize("beam_size", [1, 3])
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_reduction_shortens_later_layers_and_decodes_to_the_end(espnet_model, batch, name, beam_size):
    config = ReductionConfig(**REDUCTIONS[name])
    prompt_len = batch["input_ids"].shape[1]
    hf_model = espnet_model.qwen2audio_model
    with apply_reduction(espnet_model, config) as handle:
        with recorded_calls(hf_model) as calls:
            nbest = decode(espnet_model, batch, beam_size)
        kv = handle.stats.rows[0].kv_tokens
        prefill, steps = calls[0], calls[1:]

        # the prefill's cache: layer 0 to the first reducing layer hold the whole prompt, later ones fewer
        assert prefill["prefill_lengths"] == kv
        assert kv[: config.start_layer + 1] == [prompt_len] * (config.start_layer + 1)
        assert all(n < prompt_len for n in kv[config.start_layer + 1 :])
        assert kv == sorted(kv, reverse=True)
        if config.schedule == "once":
            assert len(set(kv[config.start_layer + 1 :])) == 1
        assert handle.stats.kv_reduction > 0.05  # (h2o evicts from the cache only: no prefill FLOPs saved)

        # every step: the position is layer 0's cache length (the whole prompt + the hypothesis'
        # tokens), and every layer holds its reduced prompt plus the same tokens
        assert steps, "decoding stopped at the prefill"
        for call in steps:
            generated = call["lengths"][0] - prompt_len
            assert call["position"] == call["lengths"][0]
            assert [n - generated for n in call["lengths"]] == kv

        # runs to the end: every hypothesis ends with eos, scored on its own reduced cache
        assert nbest and all(h.yseq[-1] == hf_model.config.text_config.eos_token_id for h in nbest)
        assert max(len(h.yseq) for h in nbest) == MAXLEN + 2
        for hyp in nbest:
            assert float(hyp.score) == pytest.approx(rescore(hf_model, batch, scored_tokens(hyp)), abs=1e-4)
        if beam_size == 1:  # greedy: what transformers' generate decodes with the same reduction
            prompt = {k: batch[k] for k in ("input_ids", "attention_mask", "input_features", "feature_attention_mask")}
            out = hf_model.generate(**prompt, max_new_tokens=MAXLEN, do_sample=False)
            assert scored_tokens(nbest[0]) == out[0, prompt_len:].tolist()


def test_inference_cli_decodes_a_data_dir(espnet_checkpoint, espnet_model, tmp_path):
    """The recipe entry point: ESPnet's loader, preprocessor and writer, with and without a
    reduction; the reduced run as a recipe starts it (its own process, ESPnet's loader worker)."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        soundfile.write(data / f"utt{i}.wav", synthetic_audio(1.0 + 0.5 * i, seed=i), 16000)
    (data / "wav.scp").write_text("".join(f"utt{i} {data / f'utt{i}.wav'}\n" for i in range(2)))
    (data / "text.input").write_text("utt0 Transcribe the audio.\nutt1 What is said?\n")
    (tmp_path / "decode.yaml").write_text(yaml.safe_dump({"beam_size": 2, "maxlenratio": -MAXLEN}))
    (tmp_path / "reduction.yaml").write_text(yaml.safe_dump(REDUCTIONS["fastadasp_once"]))
    common = [
        "--data_path_and_name_and_type", f"{data}/wav.scp,speech,sound",
        "--data_path_and_name_and_type", f"{data}/text.input,text,text",
        "--batch_size", "1", "--model_name", str(espnet_checkpoint),
        "--decode_config_path", str(tmp_path / "decode.yaml"),
    ]  # fmt: skip
    espnet_ps2st_inference.main([*common, "--num_workers", "0", "--output_dir", str(tmp_path / "none")])
    reduced = [*common, "--output_dir", str(tmp_path / "once"), "--reduction_config", str(tmp_path / "reduction.yaml")]
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_fastadasp.bin.espnet_ps2st_inference", *reduced],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    def lines(path):
        return dict(line.split(maxsplit=1) if " " in line else (line, "") for line in path.read_text().splitlines())

    none_text, once_text = lines(tmp_path / "none" / "text"), lines(tmp_path / "once" / "text")
    assert sorted(none_text) == sorted(once_text) == ["utt0", "utt1"]
    # the same as decoding the utterance directly with ESPnet's model
    espnet_model.decode_config.update(beam_size=2, maxlenratio=-MAXLEN, minlenratio=0.0)
    direct = espnet_batch(espnet_checkpoint, seconds=1.0, prompt="Transcribe the audio.", seed=0)
    assert none_text["utt0"] == espnet_model.inference(**direct).strip()
    with apply_reduction(espnet_model, ReductionConfig(**REDUCTIONS["fastadasp_once"])):
        assert once_text["utt0"] == espnet_model.inference(**direct).strip()
    stats = lines(tmp_path / "once" / "reduction")
    assert all(float(v.split()[0].split("=")[1]) > 0.05 for v in stats.values())
    assert all(float(v.split()[0].split("=")[1]) == 0.0 for v in lines(tmp_path / "none" / "reduction").values())


def test_bad_configs_are_clear_errors(espnet_checkpoint, espnet_model, tmp_path):
    with pytest.raises(ConfigError, match="method='nope'"):
        apply_reduction(espnet_model, method="nope", ratio=0.5)
    with pytest.raises(ConfigError, match="start_layer=8"):
        apply_reduction(espnet_model, method="fastv", ratio=0.5, start_layer=8)
    with pytest.raises(TypeError, match="ESPnetQwen2AudioModel"):
        apply_reduction(espnet_model.qwen2audio_model, method="fastv", ratio=0.5)
    (tmp_path / "bad.yaml").write_text("method: fastadasp\nratoi: 0.5\n")
    with pytest.raises(ConfigError, match="ratoi"):
        espnet_ps2st_inference.inference(
            output_dir=str(tmp_path / "out"),
            data_path_and_name_and_type=[],
            model_name=str(espnet_checkpoint),
            reduction_config=str(tmp_path / "bad.yaml"),
        )
    with pytest.raises(ConfigError, match="not found"):
        espnet_ps2st_inference.inference(
            output_dir=str(tmp_path / "out"),
            data_path_and_name_and_type=[],
            model_name=str(espnet_checkpoint),
            reduction_config=str(tmp_path / "missing.yaml"),
        )
