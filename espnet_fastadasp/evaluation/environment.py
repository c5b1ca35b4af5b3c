"""What a result was measured on: date, versions, device, host (for reports and benchmarks)."""

from __future__ import annotations

import datetime
import platform
from typing import Any


def environment(device: Any = None, dtype: Any = None) -> dict[str, Any]:
    """Date (UTC), package versions, the device's name, dtype and host, as plain data."""
    import torch
    import transformers

    import espnet_fastadasp

    device = (
        torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
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
    }
