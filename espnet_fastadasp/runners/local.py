"""The local job runner, ``run.py``: Kaldi ``run.pl``'s interface, jobs run on this machine.

Usage::

    run.py [--max-jobs-run N | -tc N] [--num-threads N] [--mem M] [--gpu G] [--time T] [--config F] \\
        [JOB=1:N] [options] LOGFILE COMMAND...

Command lines are read as Kaldi's ``run.pl`` reads them (see
:func:`espnet_fastadasp.runners.common.parse_command_line`): other queue options (ESPnet's
``--name``, GridEngine's ``-V``, ``-q all.q``) are accepted and dropped.

Runs the jobs in parallel, at most ``--max-jobs-run`` at a time (default: the number of CPUs). Each
job runs ``bash -c COMMAND`` in the current directory with stdin from /dev/null, in the runner's own
process group (as Kaldi's ``run.pl``): killing the recipe's process group (``kill -- -PGID``, even
with SIGKILL, or Ctrl-C in its terminal) reaches the jobs too. stdout and stderr go to its log
(see :mod:`espnet_fastadasp.runners.common` for the log format,
the job variable and the exit status). ``--num-threads N`` sets ``OMP_NUM_THREADS=N`` for the job (and
is reported in the log's accounting line). ``--mem``, ``--gpu``, ``--time`` and ``--config`` are
resource requests for cluster runners: accepted (so that a recipe's ``cmd.sh`` may switch runners
freely) and ignored. Ctrl-C or SIGTERM of the runner alone kills the running jobs and every process
they started, and exits 130; so does the end of the process that started it (a recipe's shell
killed on its own).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

from espnet_fastadasp.runners.common import (
    JobSpec,
    ParentWatch,
    RunnerError,
    Terminated,
    error,
    failure_message,
    log_footer,
    log_header,
    on_sigterm,
    parse_command_line,
    setup_logging,
    threads_of,
)

logger = logging.getLogger(__name__)

PROG = "run.py"


class LocalRunner:
    """Runs the jobs of a :class:`JobSpec` on this machine."""

    def __init__(self, spec: JobSpec, max_jobs_run: int | None = None) -> None:
        self.spec = spec
        if max_jobs_run is None:
            max_jobs_run = int(spec.options.get("max_jobs_run", 0)) or os.cpu_count() or 1
        self.max_jobs_run = max(1, max_jobs_run)
        self._lock = threading.Lock()
        self._running: dict[int, subprocess.Popen[bytes]] = {}
        self._stopped = threading.Event()
        for key in ("mem", "gpu", "time", "config"):
            if key in spec.options:
                logger.debug(
                    "ignoring --%s %s (resource option; the local runner does not use it)",
                    key.replace("_", "-"),
                    spec.options[key],
                )

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        if "num_threads" in self.spec.options:
            env["OMP_NUM_THREADS"] = self.spec.options["num_threads"]
        return env

    def run_job(self, job_id: int) -> int:
        """Run one job, writing its log; return its exit code (128+N if killed by signal N)."""
        command = self.spec.command_for(job_id)
        log = Path(self.spec.log_for(job_id))
        log.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            # checked before the header is written: a log with a header always gets its footer
            if self._stopped.is_set():
                return 130
            log.write_text(log_header(command))
            start = time.monotonic()
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    ["bash", "-c", command],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self._env(),
                )
            self._running[job_id] = proc
        logger.debug("job %s started: pid %d, log %s", job_id, proc.pid, log)
        rc = proc.wait()
        if rc < 0:  # killed by a signal: report it as bash does
            rc = 128 - rc
        with self._lock:
            self._running.pop(job_id, None)
        with open(log, "a") as out:
            out.write(log_footer(time.monotonic() - start, threads_of(self.spec), rc))
        logger.debug("job %s ended with code %d", job_id, rc)
        return rc

    def kill_all(self) -> None:
        """Stop starting jobs and kill the running ones with every process they started."""
        with self._lock:
            self._stopped.set()
            procs = list(self._running.values())
        children = _children_map()
        for proc in procs:
            for pid in [proc.pid, *_descendants(proc.pid, children)]:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def run(self) -> dict[int, int]:
        """Run all jobs; return ``{job_id: exit code}``."""
        codes: dict[int, int] = {}
        pending = self.spec.job_ids
        workers = min(self.max_jobs_run, len(pending))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        futures: dict[Future[int], int] = {}
        parent = ParentWatch()
        try:
            futures = {pool.submit(self.run_job, j): j for j in pending}
            remaining = set(futures)
            while remaining:
                # a timeout keeps the main thread responsive to KeyboardInterrupt
                done, remaining = wait(remaining, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    codes[futures[fut]] = fut.result()
                if remaining and parent.gone():
                    logger.error("the process that started %s is gone: stopping the jobs", PROG)
                    raise Terminated()
        except BaseException:
            self.kill_all()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return codes


def _children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids of every process, from ``/proc`` (empty where there is none).

    Why: the jobs share the runner's process group (so that a group kill of the recipe reaches
    them), so stopping one job means finding the processes it started."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: the ppid follows the last ')'
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def _descendants(pid: int, children: dict[int, list[int]]) -> list[int]:
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), ()):
            out.append(child)
            stack.append(child)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of ``run.py``; returns the exit status."""
    setup_logging()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        spec = parse_command_line(argv, PROG, ignore_unknown=True)
    except RunnerError as e:
        error(PROG, str(e))
        return 1
    runner = LocalRunner(spec)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        codes = runner.run()
    except KeyboardInterrupt:
        error(PROG, f"interrupted; killed the running jobs (logs: {spec.log_pattern()})")
        return 130
    except OSError as e:
        error(PROG, f"cannot run the jobs: {e}")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    msg = failure_message(PROG, spec, dict(codes))
    if msg:
        print(msg, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
