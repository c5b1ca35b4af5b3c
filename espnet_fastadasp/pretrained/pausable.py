"""Let long background jobs survive being paused (SIGSTOP / SIGCONT).

On the shared 2-core development machine, whoever times a benchmark pauses the other jobs with
``kill -STOP`` and resumes them afterwards. A wall-clock timeout inside a paused job then fires on
resume although nothing hung: ``recipes.synth`` runs espeak-ng with ``timeout=60``, and a data
generation paused for a few minutes died of it. :func:`no_subprocess_timeouts` lifts such timeouts
for the duration of a job without changing the shared synthesis code (whose timeout still guards
interactive use).
"""

from __future__ import annotations

import contextlib
import subprocess
import types
from collections.abc import Iterator
from typing import Any


def _run_without_timeout(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess:
    kwargs.pop("timeout", None)
    return subprocess.run(*args, **kwargs)


@contextlib.contextmanager
def no_subprocess_timeouts(*modules: types.ModuleType) -> Iterator[None]:
    """Inside the block, ``module.subprocess.run`` of each module ignores ``timeout=`` (restored after)."""
    saved = []
    for module in modules:
        shim = types.SimpleNamespace(**{k: getattr(subprocess, k) for k in dir(subprocess) if not k.startswith("__")})
        shim.run = _run_without_timeout
        saved.append((module, module.subprocess))
        module.subprocess = shim
    try:
        yield
    finally:
        for module, original in saved:
            module.subprocess = original
