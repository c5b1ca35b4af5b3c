"""Tests of ESPnet's own ps2st decoding with a reduction; they need ESPnet itself installed.

ESPnet lives in a second environment (``bash tools/setup.sh --espnet --test``), so these run as
``tools/venv-espnet/bin/python -m pytest test/espnet``. In an environment without ESPnet (the
core ``tools/venv``) this directory is not collected, and the run's summary says so.
"""

from __future__ import annotations

import importlib.util

import pytest

from espnet_fastadasp.models.tiny import build_tiny_qwen2_audio, synthetic_audio

HAVE_ESPNET = importlib.util.find_spec("espnet2") is not None
NOT_COLLECTED = (
    "test/espnet not collected: ESPnet is not installed in this Python; run it in the ESPnet venv: "
    "bash tools/setup.sh --espnet --test && tools/venv-espnet/bin/python -m pytest test/espnet"
)
if not HAVE_ESPNET:
    collect_ignore_glob = ["test_*.py"]


def pytest_terminal_summary(terminalreporter) -> None:
    if not HAVE_ESPNET:
        terminalreporter.write_line(NOT_COLLECTED, yellow=True)


#: a chat template in Qwen2-Audio-Instruct's layout (system/user turns, audio placeholders, the
#: assistant prompt): ESPnet's Qwen2AudioTokenizer builds every prompt with apply_chat_template
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def save_espnet_checkpoint(path, seed: int = 0):
    """A tiny Qwen2-Audio saved with ``save_pretrained`` carrying what ESPnet's ps2st reads from a
    real checkpoint: a chat template, ``bos_token_id`` (sos of its beam search) and a top-level
    ``vocab_size`` (ESPnet's model reads ``config.vocab_size``)."""
    model, processor = build_tiny_qwen2_audio(seed)
    model.config.text_config.bos_token_id = processor.tokenizer.pad_token_id  # <|endoftext|>, as Qwen2's
    model.config.vocab_size = model.config.text_config.vocab_size
    processor.chat_template = CHAT_TEMPLATE
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def espnet_checkpoint(tmp_path_factory):
    return save_espnet_checkpoint(tmp_path_factory.mktemp("tiny_qwen2_audio_espnet"))


@pytest.fixture(scope="session")
def espnet_model(espnet_checkpoint):
    """ESPnet's model class (through the bridge) loaded from the checkpoint by ESPnet's own code."""
    from espnet_fastadasp.integrations.espnet_ps2st import FastAdaSPQwen2AudioModel

    return FastAdaSPQwen2AudioModel(model_name=str(espnet_checkpoint)).eval()


def espnet_batch(checkpoint, seconds: float = 1.5, prompt: str = "Transcribe the audio.", seed: int = 0) -> dict:
    """One utterance through ESPnet's ps2st preprocessor and collate function, as its loader makes it."""
    from espnet2.tasks.ps2st import PS2STTask
    from espnet2.text.qwen2audio_tokenizer import Qwen2AudioTokenizer
    from espnet2.train.preprocessor import Qwen2AudioPreprocessor

    preprocess = Qwen2AudioPreprocessor()
    preprocess.tokenizer = Qwen2AudioTokenizer(str(checkpoint))
    example = preprocess("utt", {"speech": synthetic_audio(seconds, seed), "text": prompt})
    _, batch = PS2STTask.build_collate_fn(None, False)([("utt", example)])
    return batch
