"""ESPnet's ps2st inference (``espnet2.bin.ps2st_inference``) with a FastAdaSP reduction.

The same options as ESPnet's (its parser), plus ``--model_name`` (ESPnet's is fixed to
Qwen/Qwen2-Audio-7B-Instruct; a hub id or a local ``save_pretrained`` dir) and
``--reduction_config`` (a reduction YAML; none given: no reduction). In a ps2st recipe
(``egs2/dynamic_superb/ps2st1/run.sh``, stage 12) replace ``python -m espnet2.bin.ps2st_inference``
by this module and add ``--reduction_config conf/reduction.yaml``:

    python -m espnet_fastadasp.bin.espnet_ps2st_inference --ngpu 1 \\
        --data_path_and_name_and_type data/test/wav.scp,speech,sound \\
        --data_path_and_name_and_type data/test/text.input,text,text \\
        --output_dir exp/qwen2audio_inference/test --batch_size 1 \\
        --decode_config_path conf/decode_asr.yaml --reduction_config conf/reduction.yaml

Writes what ESPnet's writes (``output_dir/text``) and ``output_dir/reduction``: per utterance,
the achieved prefill FLOPs and KV-cache reductions.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from typing import Any

from espnet_fastadasp.core.config import ReductionConfig

logger = logging.getLogger("espnet_fastadasp.espnet_ps2st_inference")

DEFAULT_MODEL = "Qwen/Qwen2-Audio-7B-Instruct"


def inference(
    output_dir: str,
    data_path_and_name_and_type: Sequence[tuple[str, str, str]],
    model_name: str = DEFAULT_MODEL,
    reduction_config: str | None = None,
    decode_config_path: str | None = None,
    key_file: str | None = None,
    batch_size: int = 1,
    dtype: str = "float32",
    ngpu: int = 0,
    seed: int = 0,
    num_workers: int = 1,
    **unused: Any,
) -> None:
    """Decode every utterance as ESPnet's ps2st inference does, with ``reduction_config`` applied."""
    # the bridge first: espnet2.tasks.ps2st imports ESPnet's model module, which needs it (see its docstring)
    from espnet_fastadasp.integrations.espnet_ps2st import FastAdaSPQwen2AudioModel, apply_reduction  # noqa: I001

    from espnet2.fileio.datadir_writer import DatadirWriter
    from espnet2.tasks.ps2st import PS2STTask
    from espnet2.text.qwen2audio_tokenizer import Qwen2AudioTokenizer
    from espnet2.torch_utils.device_funcs import to_device
    from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
    from espnet2.train.preprocessor import Qwen2AudioPreprocessor

    if batch_size != 1:
        raise ValueError(f"batch_size={batch_size}: ESPnet's Qwen2-Audio decoding takes one utterance at a time")
    config = ReductionConfig.load_yaml(reduction_config) if reduction_config else ReductionConfig(method="none")
    device = "cuda" if ngpu >= 1 else "cpu"
    set_all_random_seed(seed)
    model = FastAdaSPQwen2AudioModel(model_name=model_name, decode_config_path=decode_config_path)
    model.to(device).eval()
    handle = apply_reduction(model, config)
    logger.info("reduction: %s", config)

    preprocess = Qwen2AudioPreprocessor()
    preprocess.tokenizer = Qwen2AudioTokenizer(model_name)  # ESPnet's default is the 7B hub id
    loader = PS2STTask.build_streaming_iterator(
        data_path_and_name_and_type,
        dtype=dtype,
        batch_size=batch_size,
        key_file=key_file,
        num_workers=num_workers,
        preprocess_fn=preprocess,
        collate_fn=PS2STTask.build_collate_fn(None, False),
        allow_variable_data_keys=True,
        inference=True,
    )
    try:
        with DatadirWriter(output_dir) as writer:
            for keys, batch in loader:
                handle.stats = None
                writer["text"][keys[0]] = model.inference(**to_device(batch, device))
                if handle.stats is not None:
                    stats = handle.stats
                    writer["reduction"][keys[0]] = (
                        f"flops_reduction={stats.flops_reduction:.4f} kv_reduction={stats.kv_reduction:.4f}"
                    )
    finally:
        handle.remove()


def get_parser() -> argparse.ArgumentParser:
    """ESPnet's ps2st_inference parser, plus ``--model_name`` and ``--reduction_config``."""
    # the bridge first: ESPnet's script imports ESPnet's model module, which needs it
    import espnet_fastadasp.integrations.espnet_ps2st  # noqa: F401, I001
    from espnet2.bin.ps2st_inference import get_parser as espnet_parser

    parser = espnet_parser()
    parser.description = "ESPnet's Qwen2-Audio inference with a FastAdaSP token reduction"
    group = parser.add_argument_group("FastAdaSP")
    group.add_argument("--model_name", default=DEFAULT_MODEL, help="hub id or local dir of a Qwen2-Audio checkpoint")
    group.add_argument(
        "--reduction_config", default=None, help="reduction YAML (ReductionConfig fields); without: no reduction"
    )
    return parser


def main(cmd: Sequence[str] | None = None) -> None:
    args = vars(get_parser().parse_args(cmd))
    logging.basicConfig(
        level=args.pop("log_level"), format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s"
    )
    inference(**args)


if __name__ == "__main__":
    main()
