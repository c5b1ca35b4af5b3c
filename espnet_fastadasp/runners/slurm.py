"""The Slurm job runner, ``slurm.py``: Kaldi ``slurm.pl``'s interface, jobs run as a Slurm job array.

Usage::

    slurm.py [--config conf/slurm.conf] [--mem 4G] [--gpu N] [--num-threads N] [--time T] \\
        [--max-jobs-run N] [--<option of the config> V] [JOB=1:N] LOGFILE COMMAND...

How it works:

1. The options are mapped to ``sbatch`` arguments by the config file (``--config FILE``, else
   ``conf/slurm.conf`` in the current directory if present, else :data:`DEFAULT_CONFIG`); see
   :func:`parse_slurm_config` and :func:`sbatch_options`. Any option the config has a rule for is
   accepted (``--partition`` with ``option partition=* -p $0``); other options are an error.
2. One batch script, ``<dir of LOGFILE>/q/<name>.sh``, is written for the whole range and submitted
   once as a **job array** whose task ids are the job indices: ``sbatch --array=START-END[%max-jobs-run]``
   (so ``JOB=3:5`` gives Slurm tasks 3, 4 and 5; Slurm's MaxArraySize, 1001 by default, bounds END).
   Each task changes to the submission directory, sources ``./path.sh`` if there is one (as Kaldi's
   slurm.pl does), sets ``OMP_NUM_THREADS`` from ``--num-threads``, runs ``bash -c COMMAND``, writes
   the log (same format as the local runner) and then a marker file ``q/<name>.<job>.done`` holding
   the job's exit code. Slurm's own output (e.g. "CANCELLED" or
   "time limit" messages) goes to ``q/<name>.<job>.out``.
3. The runner polls for the marker files. Every so often it also asks ``squeue -r -j <array id>``
   which tasks are still queued or running; a task that is gone from the queue without a marker
   for a grace period (killed, cancelled, timed out, node failure) counts as failed, with a message
   pointing to its ``.out`` file. If ``squeue`` is missing or fails, the runner only waits for markers.
4. Exit codes are aggregated as in the local runner: 0 if all succeeded, else 1 and
   ``slurm.py: K / N failed, log is in <log of the first failed job>``.

Submission errors (``sbatch`` missing, or rejecting the job) name the full sbatch command line.
Ctrl-C or SIGTERM while waiting runs ``scancel`` on the array and exits 130. A runner killed
outright (SIGKILL, e.g. with the recipe's process group) cannot cancel anything, so its jobs watch
a heartbeat file it touches while waiting and end themselves when it goes stale (after
``FASTADASP_SLURM_ORPHAN_S`` seconds, default 120; see :func:`batch_script`).

Environment (mostly for tests): ``FASTADASP_SLURM_POLL`` (first marker poll interval, s; default 1,
growing up to 10), ``FASTADASP_SLURM_SQUEUE_INTERVAL`` (s between squeue checks; default 10),
``FASTADASP_SLURM_GRACE`` (s a task may be missing from the queue without a marker; default 30).

The code is split by job: :mod:`~espnet_fastadasp.runners.slurm_config` (step 1, the config and
the option mapping), :mod:`~espnet_fastadasp.runners.slurm_script` (step 2, the batch script and
the files in ``q/``), :mod:`~espnet_fastadasp.runners.slurm_wait` (step 3, markers and
``squeue``); this module submits the array (the ``sbatch`` command of step 2), cancels it on
Ctrl-C or SIGTERM, and aggregates the exit codes (step 4). All their names can still be imported
from here.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from espnet_fastadasp.runners.common import (
    COMMON_OPTIONS,
    JobSpec,
    ParentWatch,
    RunnerError,
    check_known,
    error,
    failure_message,
    on_sigterm,
    parse_command_line,
    setup_logging,
)
from espnet_fastadasp.runners.slurm_config import (
    DEFAULT_CONFIG,
    RUNNER_OPTIONS,
    SlurmConfig,
    load_slurm_config,
    parse_slurm_config,
    sbatch_options,
)
from espnet_fastadasp.runners.slurm_script import (
    ORPHAN_SECONDS,
    PROG,
    batch_script,
    heartbeat_path,
    job_name,
    marker_path,
    queue_dir,
    slurm_output_path,
)
from espnet_fastadasp.runners.slurm_wait import WaitResult, read_marker, squeue_tasks, wait_for_jobs

__all__ = [
    "DEFAULT_CONFIG",
    "ORPHAN_SECONDS",
    "PROG",
    "RUNNER_OPTIONS",
    "SlurmConfig",
    "SlurmRunner",
    "WaitResult",
    "batch_script",
    "heartbeat_path",
    "job_name",
    "load_slurm_config",
    "main",
    "marker_path",
    "parse_slurm_config",
    "queue_dir",
    "read_marker",
    "sbatch_options",
    "scancel",
    "slurm_output_path",
    "squeue_tasks",
    "submit",
    "wait_for_jobs",
]

logger = logging.getLogger(__name__)


def submit(command: Sequence[str]) -> str:
    """Run the submit command (``sbatch --parsable ...``); return the job id."""
    shown = shlex.join(command)
    try:
        res = subprocess.run(list(command), capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise RunnerError(f"cannot submit with '{shown}': {command[0]} not found (is Slurm installed?)") from None
    except subprocess.TimeoutExpired:
        raise RunnerError(f"'{shown}' did not answer within 300 s") from None
    if res.returncode != 0:
        detail = (res.stderr.strip() or res.stdout.strip() or "no message").replace("\n", "\n  ")
        raise RunnerError(f"submission failed (exit {res.returncode}): {shown}\n  {detail}")
    out = res.stdout.strip().splitlines()
    job_id = out[-1].split(";")[0].strip() if out else ""
    if not job_id.isdigit():
        raise RunnerError(f"'{shown}' printed no job id (expected the --parsable output), got {res.stdout!r}")
    return job_id


def scancel(job_id: str) -> None:
    try:
        subprocess.run(["scancel", job_id], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        logger.warning("scancel %s failed: %s", job_id, e)


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        raise RunnerError(f"{name}={os.environ[name]!r} is not a number") from None


class SlurmRunner:
    """Submits the jobs of a :class:`JobSpec` as one Slurm job array and waits for them."""

    def __init__(self, spec: JobSpec, config: SlurmConfig) -> None:
        self.spec = spec
        self.config = config
        self.array_id: str | None = None

    def submit_command(self, script: Path) -> list[str]:
        spec = self.spec
        name = job_name(spec)
        array = f"{spec.start}-{spec.end}"
        if "max_jobs_run" in spec.options:
            array += f"%{int(spec.options['max_jobs_run'])}"
        out = str(queue_dir(spec) / f"{name}.%a.out")  # job_name() has no '%'
        opts = sbatch_options(self.config, spec.options)
        has_name = any(a == "--job-name" or a.startswith("--job-name=") or a == "-J" for a in opts)
        own = ["--parsable", f"--array={array}", f"--output={out}"]
        if not has_name:
            own.append(f"--job-name={name}")
        return [*self.config.command, *opts, *own, str(script)]

    def prepare(self) -> list[str]:
        """Write the batch script, remove stale markers; return the submit command."""
        qdir = queue_dir(self.spec)
        qdir.mkdir(parents=True, exist_ok=True)
        for j in self.spec.job_ids:
            for p in (marker_path(self.spec, j), slurm_output_path(self.spec, j)):
                p.unlink(missing_ok=True)
        script = qdir / f"{job_name(self.spec)}.sh"
        command = self.submit_command(script)
        heartbeat_path(self.spec).touch()
        orphan = _env_float("FASTADASP_SLURM_ORPHAN_S", ORPHAN_SECONDS)
        script.write_text(batch_script(self.spec, os.getcwd(), command, orphan))
        script.chmod(0o755)
        return command

    def run(self) -> WaitResult:
        command = self.prepare()
        logger.debug("submitting: %s", shlex.join(command))
        self.array_id = submit(command)
        logger.info("submitted job array %s (%s)", self.array_id, self.spec.log_pattern())
        return wait_for_jobs(
            self.spec,
            self.array_id,
            poll=_env_float("FASTADASP_SLURM_POLL", 1.0),
            squeue_interval=_env_float("FASTADASP_SLURM_SQUEUE_INTERVAL", 10.0),
            grace=_env_float("FASTADASP_SLURM_GRACE", 30.0),
            heartbeat=heartbeat_path(self.spec),
            parent=ParentWatch(),
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point of ``slurm.py``; returns the exit status."""
    setup_logging()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        spec = parse_command_line(argv, PROG, allow_any=True)
        config = load_slurm_config(spec.options.get("config"))
        check_known(spec.options, set(COMMON_OPTIONS) | config.option_names, f" (config {config.source})")
    except RunnerError as e:
        error(PROG, str(e))
        return 1
    runner = SlurmRunner(spec, config)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        result = runner.run()
    except RunnerError as e:
        error(PROG, str(e))
        return 1
    except KeyboardInterrupt:
        if runner.array_id is not None:
            scancel(runner.array_id)
            error(PROG, f"interrupted; cancelled Slurm job {runner.array_id} (logs: {spec.log_pattern()})")
        else:
            error(PROG, "interrupted before the jobs were submitted")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    for j in result.vanished:
        var = f"{spec.var}={j}" if spec.var else "the job"
        error(
            PROG,
            f"{var} (Slurm job {runner.array_id}_{j}) left the queue without writing its exit status: "
            f"cancelled, killed (time or memory limit) or its node failed? See {slurm_output_path(spec, j)} "
            f"and {spec.log_for(j)}",
        )
    msg = failure_message(PROG, spec, result.codes)
    if msg:
        print(msg, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
