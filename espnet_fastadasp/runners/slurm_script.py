"""The batch script of a Slurm job array and the files of its jobs in ``q/``.

What runs on the compute node: one bash script for the whole ``JOB=START:END`` range, each task
picking its command (shell-quoted), log and marker by ``$SLURM_ARRAY_TASK_ID``. It is text and
paths only, apart from submitting and waiting, so a task of it can be run by hand as Slurm would.

Each task changes to the submission directory, sources ``./path.sh`` if there is one (as Kaldi's
slurm.pl does), sets ``OMP_NUM_THREADS`` from ``--num-threads``, runs ``bash -c COMMAND``, writes
the log (same format as the local runner) and then a marker file ``q/<name>.<job>.done`` holding
the job's exit code; it ends itself when the runner's heartbeat file goes stale
(:func:`batch_script`).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from espnet_fastadasp.runners.common import JobSpec, threads_of

PROG = "slurm.py"


def job_name(spec: JobSpec) -> str:
    """A name for the job's files in ``q/``: the log's base name without extension and variable."""
    base = os.path.basename(spec.logfile)
    if base.endswith(".log"):
        base = base[: -len(".log")]
    if spec.var:
        base = base.replace(spec.var, "")
    base = re.sub(r"\.{2,}", ".", base).strip(".")
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", base) or "job"


def queue_dir(spec: JobSpec) -> Path:
    """``<dir of the first job's log>/q``: batch script, Slurm output and marker files."""
    return Path(spec.log_for(spec.start)).parent / "q"


def marker_path(spec: JobSpec, job_id: int) -> Path:
    return queue_dir(spec) / f"{job_name(spec)}.{job_id}.done"


def heartbeat_path(spec: JobSpec) -> Path:
    """The file the waiting runner touches; a job whose runner stopped touching it ends itself."""
    return queue_dir(spec) / f"{job_name(spec)}.alive"


#: seconds without a heartbeat after which a job takes its runner for dead and ends
ORPHAN_SECONDS = 120.0


def slurm_output_path(spec: JobSpec, job_id: int) -> Path:
    return queue_dir(spec) / f"{job_name(spec)}.{job_id}.out"


def batch_script(
    spec: JobSpec, cwd: str, submit_command: Sequence[str] = (), orphan_seconds: float = ORPHAN_SECONDS
) -> str:
    """The bash batch script for all jobs of ``spec``; the job index is ``$SLURM_ARRAY_TASK_ID``.

    The command runs in the background, watched: if the runner that submitted it stops
    touching :func:`heartbeat_path` for ``orphan_seconds`` (it was killed, even with SIGKILL, with
    the recipe's process group), the job sends SIGTERM to its own process group (the command and
    what it started) and ends with the command's code (143). Ctrl-C and
    SIGTERM reach the runner, which cancels the array instead. The heartbeat lives on the shared
    file system the logs are on, so this works across nodes."""
    q = shlex.quote
    lines = [
        "#!/bin/bash",
        f"# Written by espnet_fastadasp.runners.slurm ({PROG}) for {spec.log_pattern()}",
    ]
    if submit_command:
        lines.append("# Submitted with: " + shlex.join(submit_command))
    lines += [
        f"cd {q(cwd)} || exit 1",
        "# as Kaldi's slurm.pl: the recipe's environment (sbatch --export=PATH passes little else)",
        "if [ -f ./path.sh ]; then . ./path.sh; fi",
        f"id=${{SLURM_ARRAY_TASK_ID:-{spec.start}}}",
        'case "${id}" in',
    ]
    for j in spec.job_ids:
        lines.append(
            f"  {j}) cmd={q(spec.command_for(j))}; log={q(spec.log_for(j))}; marker={q(str(marker_path(spec, j)))} ;;"
        )
    lines += [
        '  *) echo "no job ${id} in this array" >&2; exit 1 ;;',
        "esac",
    ]
    if "num_threads" in spec.options:
        lines.append(f"export OMP_NUM_THREADS={int(spec.options['num_threads'])}")
    lines += [
        'rm -f "${marker}"',
        'mkdir -p "$(dirname "${log}")"',
        '{ printf \'# %s\\n\' "${cmd}"; printf \'# Started at %s\\n#\\n\' "$(date)"; } > "${log}"',
        "start=$(date +%s)",
        f"alive={q(str(heartbeat_path(spec)))}",
        'bash -c "${cmd}" < /dev/null >> "${log}" 2>&1 &',
        "child=$!",
        'while kill -0 "${child}" 2> /dev/null; do',
        "    sleep 1",
        '    age=$(( $(date +%s) - $(stat -c %Y "${alive}" 2> /dev/null || date +%s) ))',
        f'    if [ "${{age}}" -gt {int(orphan_seconds)} ]; then',
        "        printf '# The runner that submitted this job stopped (no heartbeat for %s s): killing the job\\n' \\",
        '            "${age}" >> "${log}"',
        "        trap '' TERM  # this script survives to write the footer and the exit status",
        "        kill -TERM 0  # the job's process group: the command and everything it started",
        "        break",
        "    fi",
        "done",
        'wait "${child}"',
        "rc=$?",
        "end=$(date +%s)",
        f'printf \'# Accounting: time=%s threads={threads_of(spec)}\\n\' "$((end - start))" >> "${{log}}"',
        "printf '# Ended (code %s) at %s, elapsed time %s seconds\\n' \\",
        '    "${rc}" "$(date)" "$((end - start))" >> "${log}"',
        'echo "${rc}" > "${marker}.tmp.$$" && mv -f "${marker}.tmp.$$" "${marker}"',
        'exit "${rc}"',
        "",
    ]
    return "\n".join(lines)
