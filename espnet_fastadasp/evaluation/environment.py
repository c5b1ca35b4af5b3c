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
