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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm import tqdm

from espnet_fastadasp.config import ReductionConfig
from espnet_fastadasp.data import AudioReader, DataError, batched, read_key_value, read_keys, split_windows
from espnet_fastadasp.hf_fixes import BeamClipOrderFix
from espnet_fastadasp.shared_prompt import generate_with_shared_prompt

logger = logging.getLogger("espnet_fastadasp.inference")

AUDIO_PLACEHOLDER = "{audio}"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Inputs:
    """Where the data comes from: the reader for each name of --data_path_and_name_and_type."""

    audio: AudioReader
    prompts: dict[str, str] | None


def resolve_inputs(data_path_and_name_and_type: Sequence[str], sampling_rate: int, max_audio_seconds: float) -> Inputs:
    """Parse ``path,name,type`` triples: a ``sound`` (wav.scp), optional ``segments``, ``text`` prompts."""
    sound, segments, prompts = None, None, None
    for triple in data_path_and_name_and_type:
        parts = triple.split(",")
        if len(parts) != 3:
            raise DataError(f"--data_path_and_name_and_type {triple!r}: want path,name,type")
        path, name, kind = parts
        if kind in ("sound", "kaldi_ark", "pipe"):
            sound = path
        elif kind == "segments":
            segments = path
        elif kind == "text" and name == "prompt":
            prompts = read_key_value(path, allow_empty_value=False)
        else:
            raise DataError(f"--data_path_and_name_and_type {triple!r}: unknown name/type {name}/{kind}")
    if sound is None:
        raise DataError("--data_path_and_name_and_type needs a wav.scp entry of type sound")
    if segments is None and (Path(sound).parent / "segments").is_file():
        segments = str(Path(sound).parent / "segments")
    reader = AudioReader(sound, segments, sampling_rate=sampling_rate, max_seconds=max_audio_seconds)
    return Inputs(reader, prompts)


class ResumableWriter:
    """Append ``key value`` lines to several files of one dir, flushed per batch; knows what is done."""

    def __init__(self, directory: Path, names: Sequence[str]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = {n: directory / n for n in names}
        self.done = self._recover()
        self.files = {n: p.open("a", encoding="utf-8") for n, p in self.paths.items()}

    def _recover(self) -> set[str]:
        """Keys finished by an earlier run: those in the first file, whose line is complete."""
        first = next(iter(self.paths.values()))
        if not first.exists():
            for p in self.paths.values():
                p.unlink(missing_ok=True)
            return set()
        for p in self.paths.values():
            # drop a torn last line (a job killed mid-write)
            if p.exists():
                raw = p.read_text(encoding="utf-8")
                if raw and not raw.endswith("\n"):
                    p.write_text(raw[: raw.rfind("\n") + 1], encoding="utf-8")
        done = {line.split(" ", 1)[0] for line in first.read_text(encoding="utf-8").splitlines() if line.strip()}
        # keep the other files consistent with the first
        for p in list(self.paths.values())[1:]:
            if p.exists():
                lines = [ln for ln in p.read_text(encoding="utf-8").splitlines() if ln.split(" ", 1)[0] in done]
                p.write_text("".join(ln + "\n" for ln in lines), encoding="utf-8")
        return done

    def write(self, rows: dict[str, list[tuple[str, str]]]) -> None:
        # the first file marks completion, so it is written last
        for name in list(self.paths)[1:] + [next(iter(self.paths))]:
            for key, value in rows[name]:
                self.files[name].write(f"{key} {value}\n")
            self.files[name].flush()

    def close(self) -> None:
        for f in self.files.values():
            f.close()


class AudioEncoderMemo:
    """Reuse the audio encoder's last output when it is called again with equal inputs.

    Several reduction settings decode the same batch in turn, and no reduction touches the audio
    encoder, so its output is the same for all of them: on small models the encoder is a third
    of the decoding time. Inputs are compared by value (``torch.equal``), so a different batch, a
    beam-expanded one or changed features always run the encoder. Only the last call is kept.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.encoder = next((m.audio_tower for m in model.modules() if hasattr(m, "audio_tower")), None)
        self.hits = 0
        self._last: tuple[tuple, dict, Any] | None = None
        if self.encoder is None:
            return
        original = self.encoder.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            if self._last is not None and _same(self._last[0], args) and _same(self._last[1], kwargs):
                self.hits += 1
                return self._last[2]
            out = original(*args, **kwargs)
            self._last = (args, kwargs, out)
            return out

        self.encoder.forward = forward

    def remove(self) -> None:
        if self.encoder is not None:
            self.encoder.__dict__.pop("forward", None)
        self._last = None


def _same(a: Any, b: Any) -> bool:
    """Equal structure and values; tensors by dtype, shape and content."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return (
            torch.is_tensor(a)
            and torch.is_tensor(b)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.device == b.device
            and bool(torch.equal(a, b))
        )
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


class GenerationTimer:
    """Times the prefill (the first forward of a generate call) and the rest of generate.

    Only the prefill's two ends synchronise the device; decoding steps run unsynchronised (a
    sync per step would slow the very loop being measured), and ``finish()`` after generate
    closes the decode interval with one sync.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self._t0 = self._prefill_end = self._end = None
        self._hooks = [model.register_forward_pre_hook(self._start), model.register_forward_hook(self._stop)]

    @staticmethod
    def _now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def _start(self, *_: Any) -> None:
        if self._t0 is None:
            self._t0 = self._now()

    def _stop(self, *_: Any) -> None:
        if self._prefill_end is None:
            self._prefill_end = self._now()

    def reset(self) -> None:
        self._t0 = self._prefill_end = self._end = None

    def finish(self) -> None:
        self._end = self._now()

    @property
    def prefill_seconds(self) -> float:
        return self._prefill_end - self._t0 if self._prefill_end is not None else 0.0

    @property
    def decode_seconds(self) -> float:
        return self._end - self._prefill_end if self._end is not None and self._prefill_end is not None else 0.0

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


def load_model(model_name_or_path: str, dtype: str, device: str, attn_implementation: str | None) -> tuple[Any, Any]:
    """Model and processor through the normal ``from_pretrained`` path (hub id or local dir)."""
    from transformers import AutoConfig, AutoProcessor

    from espnet_fastadasp.models import UnsupportedModelError, audio_token_id_of

    config = AutoConfig.from_pretrained(model_name_or_path)
    model_cls = _generation_class(config)
    kwargs: dict[str, Any] = {"dtype": DTYPES[dtype]}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = model_cls.from_pretrained(model_name_or_path, **kwargs).to(device).eval()
    try:
        audio_token_id_of(model)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{model_name_or_path}: {exc}") from None
    processor = AutoProcessor.from_pretrained(model_name_or_path)
    if not hasattr(processor, "feature_extractor"):
        raise UnsupportedModelError(f"{model_name_or_path}: its processor has no audio feature extractor")
    processor.tokenizer.padding_side = "left"
    return model, processor


def _generation_class(config: Any) -> Any:
    """The model class for an audio-text-to-text checkpoint, from the config's architecture name."""
    import transformers

    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if cls is not None and hasattr(cls, "generate"):
            return cls
    raise ValueError(f"cannot find a generation class for architectures={getattr(config, 'architectures', None)}")


def build_prompt(template: str, processor: Any, n_clips: int) -> str:
    """Put ``n_clips`` audio placeholders (bos, audio, eos each) where ``{audio}`` stands.

    Prompt files are one line per utterance, so a literal ``\\n`` in the template becomes a
    line break (chat templates need them).
    """
    bos = getattr(processor, "audio_bos_token", "<|audio_bos|>")
    tok = getattr(processor, "audio_token", "<|AUDIO|>")
    eos = getattr(processor, "audio_eos_token", "<|audio_eos|>")
    if AUDIO_PLACEHOLDER not in template:
        raise DataError(f"prompt {template!r} has no {AUDIO_PLACEHOLDER} placeholder for the audio")
    return template.replace("\\n", "\n").replace(AUDIO_PLACEHOLDER, f"{bos}{tok}{eos}" * n_clips)


def window_samples(processor: Any) -> int:
    fe = processor.feature_extractor
    return int(getattr(fe, "n_samples", 0) or fe.chunk_length * fe.sampling_rate)


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
    setting: Sequence[str] = (),
) -> dict[str, int]:
    """Decode every key (or those of ``key_file``) not yet in each output dir; returns counts
    (summed over the settings)."""
    if batch_size < 1 or beam_size < 1 or max_new_tokens < 1:
        raise ValueError("batch_size, beam_size and max_new_tokens must be >= 1")
    device = "cuda" if ngpu > 0 else "cpu"
    if ngpu > 0 and not torch.cuda.is_available():
        raise RuntimeError("--ngpu > 0 but no CUDA device is visible")
    overrides = dict(_parse_override(o) for o in reduction)
    settings = _settings(output_dir, reduction_config, setting, overrides)

    model, processor = load_model(model_name_or_path, dtype, device, attn_implementation)
    rate = processor.feature_extractor.sampling_rate
    inputs = resolve_inputs(data_path_and_name_and_type, rate, max_audio_seconds)
    keys = read_keys(key_file) if key_file else inputs.audio.keys()
    unknown = [k for k in keys if k not in inputs.audio]
    if unknown:
        raise DataError(f"{len(unknown)} key(s) of {key_file} are not in the data: {', '.join(unknown[:5])}")
    if inputs.prompts is not None:
        missing = [k for k in keys if k not in inputs.prompts]
        if missing:
            raise DataError(f"{len(missing)} utterance(s) have no prompt: {', '.join(missing[:5])}")
    elif prompt is None:
        raise DataError("no prompt: give --prompt or a prompt file in --data_path_and_name_and_type")

    gen = dict(num_beams=beam_size, max_new_tokens=max_new_tokens, do_sample=False)
    torch.manual_seed(seed)
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
    clip_fix = BeamClipOrderFix(model)  # transformers scrambles multi-clip prompts under beam search
    memo = AudioEncoderMemo(model) if len(settings) > 1 else None
    timer = GenerationTimer(model)
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
                        encoded = encode_batch(sub, inputs, prompt, processor, model)
                    writer.write(decode_batch(encoded, processor, model, cfg, timer, gen, share_prompt))
                    bar.update(len(sub))
    finally:
        timer.remove()
        if memo is not None:
            memo.remove()
        clip_fix.remove()
        for writer in writers:
            writer.close()
    total = len(keys) * len(writers)
    return {"total": total, "skipped": skipped, "decoded": total - skipped}


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
    return [
        (
            Path(out),
            ReductionConfig.load_yaml(cfg_path, **overrides)
            if cfg_path
            else ReductionConfig.from_dict({"method": "none", **overrides}),
        )
        for out, cfg_path in pairs
    ]


@dataclass
class EncodedBatch:
    """The model inputs of a batch of utterances, with what the cost records need."""

    keys: list[str]
    enc: dict[str, torch.Tensor]
    clips: list[int]
    seconds: list[float]


def encode_batch(keys: list[str], inputs: Inputs, prompt: str | None, processor: Any, model: Any) -> EncodedBatch:
    """Audio (split into encoder windows) and prompts -> the processor's tensors on the model's device."""
    rate = processor.feature_extractor.sampling_rate
    window = window_samples(processor)
    texts, audios, clips_per_utt, seconds = [], [], [], []
    for key in keys:
        wave = inputs.audio(key)
        clips = split_windows(wave, window)
        template = inputs.prompts[key] if inputs.prompts is not None else prompt
        texts.append(build_prompt(template, processor, len(clips)))
        audios.extend(clips)
        clips_per_utt.append(len(clips))
        seconds.append(len(wave) / rate)
    enc = processor(text=texts, audio=audios, return_tensors="pt", padding=True, sampling_rate=rate)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    if "input_features" in enc:
        enc["input_features"] = enc["input_features"].to(model.dtype)
    return EncodedBatch(list(keys), enc, clips_per_utt, seconds)


def decode_batch(
    batch: EncodedBatch,
    processor: Any,
    model: Any,
    cfg: ReductionConfig,
    timer: GenerationTimer,
    gen: dict[str, Any],
    share_prompt: bool = False,
) -> dict[str, list[tuple[str, str]]]:
    """Generate under the reduction ``cfg`` (applied for this call only); rows for text and cost."""
    import espnet_fastadasp as fa

    enc = batch.enc
    timer.reset()
    with torch.no_grad(), fa.apply(model, cfg) as handle:
        if share_prompt:  # one prefill per prompt, one prompt cache for all its beams
            generated = generate_with_shared_prompt(model, enc, **gen)
        else:
            generated = model.generate(**enc, **gen)
        stats = handle.stats
    timer.finish()
    new = generated[:, enc["input_ids"].shape[1] :]
    decoded = processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    pad = processor.tokenizer.pad_token_id
    beams = gen["num_beams"]
    rows: dict[str, list[tuple[str, str]]] = {"text": [], "cost": []}
    for i, key in enumerate(batch.keys):
        text = " ".join(decoded[i].split())
        # plain generate prefills every beam (stats per beam row); a shared prompt once per utterance
        row = stats.rows[i if share_prompt else i * beams] if stats is not None else None
        cost = {
            "seconds": round(batch.seconds[i], 3),
            "clips": batch.clips[i],
            "new_tokens": int((new[i] != pad).sum()) if pad is not None else int(new.shape[1]),
            "prefill_s": round(timer.prefill_seconds, 5),
            "decode_s": round(timer.decode_seconds, 5),
            "batch_size": len(batch.keys),
        }
        if row is not None:
            cost.update(
                audio_tokens=row.audio_tokens[0],
                audio_tokens_out=row.audio_tokens_out,
                prompt_tokens=row.total_tokens[0],
                flops_full=row.flops_full,
                flops_reduced=row.flops_reduced,
                flops_reduction=round(row.flops_reduction, 5),
                kv_reduction=round(row.kv_reduction, 5),
            )
        rows["text"].append((key, text))
        rows["cost"].append((key, json.dumps(cost, sort_keys=True)))
    return rows


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
        "--share_prompt",
        type=str2bool,
        default=False,
        help="beam search: prefill each prompt once and share its KV cache across the beams "
        "(espnet_fastadasp.shared_prompt); same hypotheses up to float rounding, far less work on long audio",
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
        parser.set_defaults(**data)
    args = parser.parse_args(cmd)
    for name in ("model_name_or_path",):
        if not getattr(args, name):
            parser.error(f"--{name} is required (on the command line or in --config)")
    if not args.data_path_and_name_and_type:
        parser.error("--data_path_and_name_and_type is required")
    if not args.output_dir and not args.setting:
        parser.error("--output_dir (or --setting OUTPUT_DIR=REDUCTION_YAML, repeated) is required")
    return args


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
