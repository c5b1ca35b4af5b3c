"""Waiting for a Slurm job array: marker files, ``squeue``, and jobs that vanished.

The runner cannot trust either source alone: a marker is written only by a job that ran to its
end, and the queue forgets a job that was killed, so this module combines both. It only reads
files and the queue (a function, ``queue``), so it is apart from writing and submitting the jobs.

The runner polls for the marker files. Every so often it also asks ``squeue -r -j <array id>``
which tasks are still queued or running; a task that is gone from the queue without a marker
for a grace period (killed, cancelled, timed out, node failure) counts as failed. If ``squeue`` is
missing or fails, the runner only waits for markers.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from espnet_fastadasp.runners.common import JobSpec, ParentWatch, Terminated
from espnet_fastadasp.runners.slurm_script import PROG, marker_path

#: the runner's name in its messages (``%(name)s: ...``), as before slurm.py was split
logger = logging.getLogger("espnet_fastadasp.runners.slurm")


def read_marker(path: Path) -> int | None:
    """The exit code in a marker file, ``None`` if it does not exist (yet)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        return int(text)
    except ValueError:
        logger.warning("marker %s holds %r, not an exit code: counting the job as failed", path, text)
        return 1


def squeue_tasks(array_id: str, squeue: str = "squeue") -> set[int] | None:
    """The task ids of array ``array_id`` still in the queue (pending, running, completing).

    ``None`` when that cannot be known (squeue missing, controller not answering).
    """
    cmd = [squeue, "-h", "-r", "-j", array_id, "-o", "%K"]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        logger.debug("%s not found: waiting for marker files only", squeue)
        return None
    except subprocess.TimeoutExpired:
        logger.warning("%s timed out", shlex.join(cmd))
        return None
    if res.returncode != 0:
        if "Invalid job id" in res.stderr:  # purged from the controller: nothing left in the queue
            return set()
        logger.warning("%s failed (exit %d): %s", shlex.join(cmd), res.returncode, res.stderr.strip())
        return None
    return {int(tok) for tok in res.stdout.split() if tok.isdigit()}


@dataclass
class WaitResult:
    """Exit codes per job (``None``: left the queue without an exit code) and the vanished jobs."""

    codes: dict[int, int | None]
    vanished: list[int]


def wait_for_jobs(
    spec: JobSpec,
    array_id: str,
    poll: float = 1.0,
    squeue_interval: float = 10.0,
    grace: float = 30.0,
    queue: Callable[[str], set[int] | None] = squeue_tasks,
    max_poll: float = 10.0,
    heartbeat: Path | None = None,
    parent: ParentWatch | None = None,
) -> WaitResult:
    """Wait until every job has written its marker or has left the queue without one for ``grace`` s;
    touch ``heartbeat`` at every poll (the jobs end themselves when it goes stale); raise
    :class:`Terminated` (the caller cancels the jobs) if ``parent`` says the caller's shell is gone."""
    pending = set(spec.job_ids)
    codes: dict[int, int | None] = {}
    vanished: list[int] = []
    missing_since: dict[int, float] = {}
    last_queue = time.monotonic()  # the first squeue check comes after one interval
    interval = poll
    while True:
        if parent is not None and parent.gone():
            logger.error("the process that started %s is gone: cancelling the jobs", PROG)
            raise Terminated()
        if heartbeat is not None:
            heartbeat.touch()
        for j in sorted(pending):
            rc = read_marker(marker_path(spec, j))
            if rc is not None:
                codes[j] = rc
                pending.discard(j)
                missing_since.pop(j, None)
        if not pending:
            break
        now = time.monotonic()
        if now - last_queue >= squeue_interval:
            last_queue = now
            in_queue = queue(array_id)
            if in_queue is not None:
                for j in pending:
                    if j in in_queue:
                        missing_since.pop(j, None)
                    else:
                        missing_since.setdefault(j, now)
        for j in sorted(pending):
            if j in missing_since and now - missing_since[j] >= grace:
                codes[j] = None
                vanished.append(j)
                pending.discard(j)
        if not pending:
            break
        time.sleep(interval)
        interval = min(max(interval * 1.2, poll), max(poll, max_poll))
    return WaitResult(codes=codes, vanished=vanished)
