"""What a result was measured on: date, versions, device, host (for reports and benchmarks)."""

from __future__ import annotations

import datetime
import platform
from pathlib import Path
from typing import Any

#: CPU features that decide how fast a low-precision matmul runs on the CPU (AMX tiles, AVX-512 BF16)
MATMUL_FLAGS = ("amx_tile", "amx_bf16", "amx_fp16", "avx512_bf16", "avx512_fp16", "avx512f")


def cpu_description() -> dict[str, Any]:
    """The CPU's model name, its matmul-relevant features and the kernel level torch dispatches to.

    Why: the same dtype runs at very different rates on CPUs of one cloud "kind" (bfloat16 is
    several times faster than float32 with AMX and several times slower without), so a CPU
    figure means nothing without them. Linux's /proc/cpuinfo where present."""
    import torch

    model, flags = platform.processor() or "cpu", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)()
    return {
        "cpu_model": model,
        "cpu_matmul_flags": [f for f in MATMUL_FLAGS if f in flags],
        "cpu_capability": capability,
        "cpu_threads": torch.get_num_threads(),
    }


def environment(device: Any = None, dtype: Any = None) -> dict[str, Any]:
    """Date (UTC), package versions, the device's name, dtype and host, as plain data."""
    import torch
    import transformers

    import espnet_fastadasp

    device = (
        torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    cpu = cpu_description()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu["cpu_model"]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "dtype": None if dtype is None else str(dtype).removeprefix("torch."),
        "python": platform.python_version(),
        "host": platform.node(),
        "espnet_fastadasp": espnet_fastadasp.__version__,
        **cpu,
    }


#: the files of a local checkpoint dir that decide what it computes (weights and the configs that shape them)
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")
MODEL_CONFIG_FILES = ("config.json", "generation_config.json")


def model_fingerprint(name_or_path: str | Path) -> str:
    """An id of the model a decode dir was decoded with: for a local checkpoint dir, the SHA-256 of
    its weight files and configs (names and contents); for a hub id, the id itself.

    Why: a recipe skips a finished decode dir. After the model under the same path is retrained or
    re-assembled, its old outputs would be reported as the new model's; the recipe compares this
    id with the one the dir was decoded with (``speechlm.sh`` stage 4). Hashing reads the weights
    once per recipe stage (about a second per GB)."""
    import hashlib

    path = Path(name_or_path)
    if not path.is_dir():
        return f"hub:{name_or_path}"
    files = sorted(p for p in path.iterdir() if p.is_file() and (p.suffix in MODEL_FILE_SUFFIXES or p.name in MODEL_CONFIG_FILES))
    if not any(p.suffix in MODEL_FILE_SUFFIXES for p in files):
        raise FileNotFoundError(f"{path}: no weight file ({', '.join(MODEL_FILE_SUFFIXES)}) to fingerprint")
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + b"\0")
        with p.open("rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
        digest.update(b"\0")
    return f"sha256:{digest.hexdigest()}"
