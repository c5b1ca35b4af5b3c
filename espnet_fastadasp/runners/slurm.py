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
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from espnet_fastadasp.runners.common import (
    COMMON_OPTIONS,
    JobSpec,
    ParentWatch,
    RunnerError,
    Terminated,
    check_known,
    error,
    failure_message,
    on_sigterm,
    parse_command_line,
    setup_logging,
    threads_of,
)

logger = logging.getLogger(__name__)

PROG = "slurm.py"

#: options the runner handles itself (never mapped to sbatch arguments)
RUNNER_OPTIONS: tuple[str, ...] = ("config", "max_jobs_run")

#: used without ``--config`` when ``conf/slurm.conf`` does not exist (same as the recipe's conf/slurm.conf)
DEFAULT_CONFIG = """\
command sbatch --export=PATH
option name=* --job-name $0
option time=* --time $0
option mem=* --mem $0
option mem=0
option num_threads=* --cpus-per-task $0
option num_threads=1 --cpus-per-task 1
option num_nodes=* --nodes $0
default gpu=0
option gpu=0
option gpu=* --gres=gpu:$0
"""


@dataclass
class SlurmConfig:
    """A parsed slurm.pl-style config file.

    ``command`` is the submit command; ``rules[name][value]`` the sbatch arguments for
    ``--name value`` (``value`` ``"*"``: any value, ``$0`` in the arguments replaced by it);
    ``defaults[name]`` the value used when ``--name`` is not given.
    """

    command: list[str] = field(default_factory=lambda: ["sbatch"])
    rules: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    source: str = "<default config>"

    @property
    def option_names(self) -> set[str]:
        return set(self.rules) | set(self.defaults)


def parse_slurm_config(text: str, source: str = "<config>") -> SlurmConfig:
    """Parse the slurm.pl config format (``#`` starts a comment)::

    command sbatch --export=PATH        # the submit command and its fixed arguments
    option mem=* --mem $0               # --mem V  ->  --mem V
    option mem=0                        # --mem 0  ->  nothing
    option gpu=* --gres=gpu:$0          # --gpu N  ->  --gres=gpu:N
    default gpu=0                       # value used when --gpu is not given
    """
    config = SlurmConfig(command=[], source=source)
    for lineno, line in enumerate(text.splitlines(), 1):
        where = f"{source}:{lineno}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:
            raise RunnerError(f"{where}: cannot parse line {line!r}: {e}") from None
        if not words:
            continue
        keyword, rest = words[0], words[1:]
        if keyword == "command":
            if not rest:
                raise RunnerError(f"{where}: 'command' needs the submit command, e.g. 'command sbatch --export=PATH'")
            config.command = rest
        elif keyword in ("option", "default"):
            if not rest or "=" not in rest[0]:
                raise RunnerError(f"{where}: expected '{keyword} NAME=VALUE ...', got {line.strip()!r}")
            name, value = rest[0].split("=", 1)
            name = name.replace("-", "_")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or value == "":
                raise RunnerError(f"{where}: bad NAME=VALUE {rest[0]!r}")
            if keyword == "option":
                config.rules.setdefault(name, {})[value] = rest[1:]
            else:
                if len(rest) > 1:
                    raise RunnerError(f"{where}: 'default NAME=VALUE' takes nothing after the value")
                config.defaults[name] = value
        else:
            raise RunnerError(f"{where}: unknown keyword {keyword!r} (expected command, option or default)")
    if not config.command:
        raise RunnerError(f"{source}: no 'command' line (e.g. 'command sbatch --export=PATH')")
    for name, value in config.defaults.items():
        if name not in config.rules:
            raise RunnerError(f"{source}: 'default {name}={value}' but no 'option {name}=...' rule")
    return config


def load_slurm_config(path: str | os.PathLike[str] | None) -> SlurmConfig:
    """The config at ``path``; else ``conf/slurm.conf`` if it exists; else :data:`DEFAULT_CONFIG`."""
    if path is None:
        if Path("conf/slurm.conf").is_file():
            path = "conf/slurm.conf"
        else:
            return parse_slurm_config(DEFAULT_CONFIG, "<default config>")
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise RunnerError(f"cannot read the config {path}: {e}") from None
    return parse_slurm_config(text, str(path))


def sbatch_options(config: SlurmConfig, options: Mapping[str, str]) -> list[str]:
    """Map runner options (canonical names, e.g. ``{"mem": "4G", "num_threads": "2"}``) to sbatch arguments.

    The config's defaults apply to options not given; an exact ``option NAME=VALUE`` rule wins over
    ``option NAME=*``. Runner-only options (``config``, ``max_jobs_run``) are skipped. An option
    without a matching rule raises :class:`RunnerError`.
    """
    values = dict(config.defaults)
    values.update({k: v for k, v in options.items() if k not in RUNNER_OPTIONS})
    args: list[str] = []
    for name, value in values.items():
        rules = config.rules.get(name)
        if rules is None:
            raise RunnerError(f"--{name.replace('_', '-')} {value}: the config {config.source} has no rule for it")
        if value in rules:
            args += rules[value]
        elif "*" in rules:
            args += [a.replace("$0", value) for a in rules["*"]]
        else:
            raise RunnerError(
                f"--{name.replace('_', '-')} {value}: the config {config.source} has no rule for this value "
                f"(rules for: {', '.join(sorted(rules))})"
            )
    return args


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
