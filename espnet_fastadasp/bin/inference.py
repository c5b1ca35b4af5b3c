"""Decode a data dir with a Speech LM, applying a token reduction (ESPnet ``*_inference.py`` style).

    python -m espnet_fastadasp.bin.inference \\
        --data_path_and_name_and_type data/test/wav.scp,speech,sound \\
        --data_path_and_name_and_type data/test/prompt,prompt,text \\
        --key_file exp/decode/logdir/keys.1.scp --output_dir exp/decode/logdir/output.1 \\
        --model_name_or_path Qwen/Qwen2-Audio-7B-Instruct --reduction_config reduction.yaml

Writes, as ``key value`` lines flushed after every batch:

* ``output_dir/1best_recog/text``: the decoded text (newlines folded into spaces);
* ``output_dir/1best_recog/cost``: one JSON object per utterance: audio seconds, clips, audio
  tokens in, audio tokens after the last layer, prompt tokens, analytic prefill FLOPs without
  and with reduction, achieved reduction, KV reduction, prefill / decode seconds (for the batch
  the utterance was in) and new tokens.

A rerun skips the keys already in ``text`` (a killed job loses at most the batch in flight).

Several reduction settings can share one process (``--setting OUTPUT_DIR=REDUCTION_YAML``,
repeated, instead of ``--output_dir`` / ``--reduction_config``): the model and the data are
loaded once, and batch by batch each setting decodes into its own output dir. For small models,
where starting Python and loading the model cost more than decoding, this is what keeps a
benchmark of dozens of settings short. The audio encoder then runs once per batch (no reduction
touches it), so only the first setting's ``prefill_s`` includes it: compare timings from
single-setting runs.
Audio longer than the model's encoder window is split into consecutive windows, each becoming
one audio placeholder of the prompt, in order.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from espnet_fastadasp.core.config import ConfigError, ReductionConfig
from espnet_fastadasp.decoding.data import DataError, Inputs, batched, check_entries, read_keys, resolve_inputs
from espnet_fastadasp.decoding.encoder_memo import AudioEncoderMemo
from espnet_fastadasp.decoding.outputs import SKIPPED, OutputDirLock, ResumableWriter, record_settings
from espnet_fastadasp.decoding.speech2text import DTYPES, EncodedBatch, Speech2Text
from espnet_fastadasp.generation.static_decoding import STEP_MODES

logger = logging.getLogger("espnet_fastadasp.inference")


def inference(
    output_dir: str | None,
    data_path_and_name_and_type: Sequence[str],
    model_name_or_path: str,
    key_file: str | None = None,
    reduction_config: str | None = None,
    reduction: Sequence[str] = (),
    prompt: str | None = None,
    batch_size: int = 1,
    beam_size: int = 1,
    max_new_tokens: int = 128,
    ngpu: int = 0,
    dtype: str = "float32",
    attn_implementation: str | None = None,
    max_audio_seconds: float = 1800.0,
    seed: int = 0,
    share_prompt: bool = False,
    static_decoding: bool = False,
    static_step_mode: str = "auto",
    setting: Sequence[str] = (),
    overwrite: bool = False,
    skip_bad_utterances: bool = False,
) -> dict[str, int]:
    """Decode every key (or those of ``key_file``) not yet in each output dir; returns counts
    (summed over the settings). An output dir is written by one process at a time and holds the
    outputs of one set of settings (``settings.yaml``); ``overwrite`` starts a dir made with other
    settings over."""
    if batch_size < 1 or beam_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size, beam_size and max_new_tokens must be >= 1")
    device = "cuda" if ngpu > 0 else "cpu"
    if ngpu > 0 and not torch.cuda.is_available():
        raise RuntimeError("--ngpu > 0 but no CUDA device is visible")
    overrides = dict(_parse_override(o) for o in reduction)
    settings = _settings(output_dir, reduction_config, setting, overrides)
    # before the model loads: one writer per output dir, and no outputs of other settings mixed in
    run = {
        "model": _resolved(model_name_or_path),
        "data": [_resolved_triple(t) for t in data_path_and_name_and_type],
        "decode": dict(
            prompt=prompt,
            batch_size=batch_size,
            beam_size=beam_size,
            max_new_tokens=max_new_tokens,
            dtype=dtype,
            attn_implementation=attn_implementation,
            max_audio_seconds=max_audio_seconds,
            seed=seed,
            share_prompt=share_prompt,
            # recorded only when on: output dirs decoded before the option existed resume unchanged
            **({"static_decoding": True, "static_step_mode": static_step_mode} if static_decoding else {}),
        ),
    }
    locks = []
    try:
        for out_dir, cfg in settings:
            locks.append(OutputDirLock(out_dir))
            record_settings(out_dir, {**run, "reduction": cfg.to_dict()}, overwrite=overwrite)
        return _decode(
            settings,
            run["decode"],
            data_path_and_name_and_type,
            model_name_or_path,
            key_file,
            device,
            skip_bad_utterances,
        )
    finally:
        for lock in locks:
            lock.release()


def _resolved(path: str) -> str:
    """A local path as an absolute one (so ``model`` and ``./model`` are the same setting)."""
    return str(Path(path).resolve()) if Path(path).exists() else path


def _resolved_triple(triple: str) -> str:
    path, sep, rest = triple.partition(",")
    return _resolved(path) + sep + rest


def _decode(
    settings: list[tuple[Path, ReductionConfig]],
    opts: dict[str, Any],
    data_path_and_name_and_type: Sequence[str],
    model_name_or_path: str,
    key_file: str | None,
    device: str,
    skip_bad_utterances: bool = False,
) -> dict[str, int]:
    """Check the data, load the model once, then decode batch by batch into every setting's output dir."""
    batch_size, max_audio_seconds, prompt = opts["batch_size"], opts["max_audio_seconds"], opts["prompt"]
    inputs = resolve_inputs(data_path_and_name_and_type, max_audio_seconds=max_audio_seconds)
    keys = _checked_keys(inputs, key_file, prompt, [out for out, _ in settings], skip_bad_utterances)
    s2t = Speech2Text(
        model_name_or_path,
        device=device,
        dtype=opts["dtype"],
        attn_implementation=opts["attn_implementation"],
        beam_size=opts["beam_size"],
        max_new_tokens=opts["max_new_tokens"],
        share_prompt=opts["share_prompt"],
        static_decoding=opts.get("static_decoding", False),
        static_step_mode=opts.get("static_step_mode", "auto"),
    )
    inputs.audio.sampling_rate = s2t.sampling_rate  # what the model's processor takes

    torch.manual_seed(opts["seed"])
    writers = []
    for out_dir, cfg in settings:
        writer = ResumableWriter(out_dir / "1best_recog", ["text", "cost"])
        (out_dir / "reduction.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        logger.info(
            "%s: %d utterances, %d already done; reduction: %s", out_dir, len(keys), len(writer.done), cfg.to_dict()
        )
        writers.append(writer)
    # batch by batch, every setting in turn: the batch's features are built once, and the audio
    # encoder (which no reduction touches) runs once per batch, not once per setting
    todo = [k for k in keys if any(k not in w.done for w in writers)]
    skipped = sum(len(w.done.intersection(keys)) for w in writers)
    memo = AudioEncoderMemo(s2t.model) if len(settings) > 1 else None
    try:
        with tqdm(
            total=len(keys) * len(writers) - skipped, desc="decode", unit="utt", file=sys.stderr, disable=None
        ) as bar:
            for keys_of_batch in batched(todo, batch_size):
                encoded = None
                for (_, cfg), writer in zip(settings, writers):
                    sub = [k for k in keys_of_batch if k not in writer.done]
                    if not sub:
                        continue
                    if encoded is None or encoded.keys != sub:
                        encoded = _encode(s2t, sub, inputs, prompt)
                    hyps = s2t(encoded, cfg)
                    writer.write(
                        {
                            "text": [(h.key, h.text) for h in hyps],
                            "cost": [(h.key, json.dumps(h.cost, sort_keys=True)) for h in hyps],
                        }
                    )
                    bar.update(len(sub))
    finally:
        if memo is not None:
            memo.remove()
        s2t.close()
        for writer in writers:
            writer.close()
    total = len(keys) * len(writers)
    return {"total": total, "skipped": skipped, "decoded": total - skipped}


#: how many of the bad utterances an error message lists (all of them go to the file)
LISTED = 20


def _checked_keys(
    inputs: Inputs, key_file: str | None, prompt: str | None, out_dirs: list[Path], skip: bool
) -> list[str]:
    """The keys to decode, after a check of every entry's data (no model needed).

    Unknown keys and a missing prompt are errors at once. Bad utterances (unreadable, truncated
    or too long / short audio, bad segment bounds, no or a bad prompt) are all listed together:
    in an error, or, with ``skip``, in each output dir's ``skipped_utterances`` (``key reason``
    lines; merges accept those keys as absent) and left out."""
    keys = read_keys(key_file) if key_file else inputs.audio.keys()
    unknown = [k for k in keys if k not in inputs.audio]
    if unknown:
        raise DataError(f"{len(unknown)} key(s) of {key_file} are not in the data: {', '.join(unknown[:5])}")
    if inputs.prompts is None and prompt is None:
        raise DataError("no prompt: give --prompt or a prompt file in --data_path_and_name_and_type")
    bad = check_entries(inputs, keys, prompt)
    for out_dir in out_dirs:
        listing = out_dir / SKIPPED
        if skip and bad:
            listing.write_text("".join(f"{k} {' '.join(why.split())}\n" for k, why in bad.items()), encoding="utf-8")
        else:
            listing.unlink(missing_ok=True)
    if not bad:
        return keys
    lines = [f"  {why}" for why in list(bad.values())[:LISTED]]
    if len(bad) > LISTED:
        lines.append(f"  ... and {len(bad) - LISTED} more")
    if not skip:
        raise DataError(
            f"{len(bad)} of {len(keys)} utterance(s) have bad data (checked before loading the model):\n"
            + "\n".join(lines)
            + "\nfix them, or decode the others with --skip_bad_utterances true"
        )
    logger.warning("skipping %d of %d utterance(s) (listed in %s):\n%s", len(bad), len(keys), SKIPPED, "\n".join(lines))
    return [k for k in keys if k not in bad]


def _encode(s2t: Speech2Text, keys: list[str], inputs: Inputs, prompt: str | None) -> EncodedBatch:
    templates = [inputs.prompts[k] if inputs.prompts is not None else prompt for k in keys]
    return s2t.encode(keys, [inputs.audio(k) for k in keys], templates)


def _settings(
    output_dir: str | None, reduction_config: str | None, setting: Sequence[str], overrides: dict[str, Any]
) -> list[tuple[Path, ReductionConfig]]:
    """(output dir, reduction config) pairs, from --output_dir/--reduction_config or --setting."""
    if setting:
        if output_dir or reduction_config:
            raise ValueError("give either --setting (repeated) or --output_dir/--reduction_config, not both")
        pairs = []
        for item in setting:
            out, sep, cfg_path = item.partition("=")
            if not sep or not out or not cfg_path:
                raise ValueError(f"--setting {item!r}: want OUTPUT_DIR=REDUCTION_YAML")
            pairs.append((out, cfg_path))
    elif output_dir:
        pairs = [(output_dir, reduction_config)]
    else:
        raise ValueError("--output_dir (or --setting OUTPUT_DIR=REDUCTION_YAML) is required")
    dirs = [p for p, _ in pairs]
    if len(set(dirs)) != len(dirs):
        raise ValueError(f"two settings write to the same output dir: {dirs}")
    if overrides and "method" not in overrides and any(not cfg for _, cfg in pairs):
        # without a config there is no method to change: the overrides would silently do nothing
        raise ConfigError(
            f"--reduction {', '.join(f'{k}={v}' for k, v in overrides.items())} without --reduction_config: "
            "name the method too (e.g. --reduction method=fastadasp) or give --reduction_config"
        )
    return [
        (
            Path(out),
            ReductionConfig.load_yaml(cfg_path, **overrides)
            if cfg_path
            else ReductionConfig.from_dict({"method": "none", **overrides}),
        )
        for out, cfg_path in pairs
    ]


def _parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise ValueError(f"--reduction {text!r}: want key=value")
    return key.strip(), yaml.safe_load(value)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Decode with a Speech LM under FastAdaSP token reduction",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", type=str, default=None, help="YAML with defaults for any option below")
    parser.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--output_dir", default=None, help="where 1best_recog/{text,cost} go")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="OUTPUT_DIR=REDUCTION_YAML",
        help="decode several reduction settings in one process (repeat; replaces --output_dir and "
        "--reduction_config): the model and data are loaded once",
    )
    parser.add_argument(
        "--data_path_and_name_and_type",
        action="append",
        default=[],
        required=False,
        help="path,name,type: wav.scp,speech,sound | segments,segments,segments | prompt,prompt,text",
    )
    parser.add_argument("--key_file", default=None, help="decode only these keys (first column)")
    parser.add_argument("--model_name_or_path", required=False, default=None, help="hub id or local checkpoint dir")
    parser.add_argument("--reduction_config", default=None, help="ReductionConfig YAML (default: no reduction)")
    parser.add_argument(
        "--reduction",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a reduction config field, e.g. --reduction flops_reduction=0.3",
    )
    parser.add_argument("--prompt", default=None, help="prompt template with {audio}, when there is no prompt file")
    parser.add_argument("--batch_size", type=int, default=1)
    parser.add_argument("--beam_size", type=int, default=1)
    parser.add_argument("--max_new_tokens", type=int, default=128)
    parser.add_argument("--ngpu", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=tuple(DTYPES))
    parser.add_argument("--attn_implementation", default=None, choices=("sdpa", "eager"))
    parser.add_argument("--max_audio_seconds", type=float, default=1800.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--overwrite",
        type=str2bool,
        default=False,
        help="start an output dir over when it holds outputs of other settings (default: refuse)",
    )
    parser.add_argument(
        "--skip_bad_utterances",
        type=str2bool,
        default=False,
        help="decode the other utterances when some have bad data (listed in OUTPUT_DIR/skipped_utterances); "
        "default: refuse, listing them all, before the model loads",
    )
    parser.add_argument(
        "--share_prompt",
        type=str2bool,
        default=False,
        help="beam search: prefill each prompt once and share its KV cache across the beams "
        "(espnet_fastadasp.generation.shared_prompt); same hypotheses up to float rounding, far less work on long audio",
    )
    parser.add_argument(
        "--static_decoding",
        type=str2bool,
        default=False,
        help="fixed-shape decoding (espnet_fastadasp.generation.static_decoding): each prompt prefilled once, its "
        "(reduced) per-layer caches shared by the beams, steps over static buffers; the same tokens as "
        "generate in float32",
    )
    parser.add_argument(
        "--static_step_mode",
        default="auto",
        choices=STEP_MODES,
        help="with --static_decoding: how each step runs (auto: CUDA graphs on a GPU, eager on CPU; compile: "
        "torch.compile; cuda_graph, compile_cuda_graph: GPU only)",
    )
    return parser


def str2bool(value: str) -> bool:
    """ESPnet's boolean options: true/false (also yes/no, 1/0)."""
    v = str(value).strip().lower()
    if v in ("true", "yes", "1"):
        return True
    if v in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def parse_args(parser: argparse.ArgumentParser, cmd: Sequence[str] | None) -> argparse.Namespace:
    """Arguments, with ``--config`` YAML values as defaults (unknown keys are an error)."""
    pre, _ = parser.parse_known_args(cmd)
    if pre.config:
        data = yaml.safe_load(Path(pre.config).read_text()) or {}
        known = {a.dest for a in parser._actions}
        bad = sorted(set(data) - known)
        if bad:
            parser.error(f"{pre.config}: unknown option(s) {', '.join(bad)}")
        parser.set_defaults(**{key: _config_value(parser, pre.config, key, value) for key, value in data.items()})
    args = parser.parse_args(cmd)
    for name in ("model_name_or_path",):
        if not getattr(args, name):
            parser.error(f"--{name} is required (on the command line or in --config)")
    if not args.data_path_and_name_and_type:
        parser.error("--data_path_and_name_and_type is required")
    if not args.output_dir and not args.setting:
        parser.error("--output_dir (or --setting OUTPUT_DIR=REDUCTION_YAML, repeated) is required")
    return args


def _config_value(parser: argparse.ArgumentParser, path: str, key: str, value: Any) -> Any:
    """A ``--config`` value converted as the command line would convert it (``batch_size: 2.5`` is
    an error naming the key, not a ``TypeError`` later)."""
    action = next(a for a in parser._actions if a.dest == key)
    if action.type is None or value is None:
        return value

    def convert(v: Any) -> Any:
        if action.type is int and (isinstance(v, bool) or not isinstance(v, int)):
            v = str(v)  # int(2.5) would truncate silently; int("2.5") refuses
        return action.type(v)

    values = value if isinstance(value, list) else [value]
    try:
        converted = [convert(v) for v in values]
    except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(f"{path}: {key}: {value!r} is not a valid {getattr(action.type, '__name__', 'value')} ({exc})")
    if action.choices is not None and any(v not in action.choices for v in converted):
        parser.error(f"{path}: {key}: {value!r} is not one of {list(action.choices)}")
    return converted if isinstance(value, list) else converted[0]


def main(cmd: Sequence[str] | None = None) -> None:
    parser = get_parser()
    args = parse_args(parser, cmd)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    kwargs = vars(args)
    kwargs.pop("config")
    kwargs.pop("log_level")
    counts = inference(**kwargs)
    logger.info("done: %s", counts)


if __name__ == "__main__":
    main()
