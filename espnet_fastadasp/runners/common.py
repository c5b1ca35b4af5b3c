"""Parts shared by the job runners: command-line parsing, the job range, the command string, logs.

Both runners follow the command-line interface of Kaldi's ``run.pl`` / ``slurm.pl``::

    run.py [options] [JOB=1:N] LOGFILE COMMAND...

* Options (``--name value`` or ``--name=value``) come first. The common ones are ``--mem 4G``,
  ``--gpu N``, ``--num-threads N``, ``--time HH:MM:SS`` (or minutes), ``--max-jobs-run N`` and
  ``--config FILE``; dashes and underscores in a name are the same (``--num_threads``).
* ``VAR=START:END`` (any variable name, e.g. ``JOB=1:4`` or ``SPLIT=3:3``) or ``VAR=K`` runs one job
  per index, replacing every occurrence of ``VAR`` in LOGFILE and in each COMMAND argument by the index
  (plain substring replacement, as Kaldi does). Without it there is one job.
* COMMAND is joined into one shell command string and run with ``bash -c`` from the current
  directory. Joining follows Kaldi: an argument without whitespace is passed verbatim (so ``\\|``,
  ``'>'`` or ``'&&'`` act as shell operators), an argument with whitespace is shell-quoted; if COMMAND
  is a single argument it is taken verbatim as the shell command (``run.py log "cat a | wc -l"``).
* A job's log gets ``# <command>`` and ``# Started at <date>``, then the job's stdout and stderr,
  then ``# Accounting: time=<s> threads=<n>`` and ``# Ended (code <rc>) at <date>``.
* The exit status is 0 if every job succeeded, else 1 with a message on stderr such as
  ``run.py: 2 / 4 failed, log is in exp/log/decode.3.log`` (the first failed job's log).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

#: options every runner understands (canonical names: dashes turned into underscores)
COMMON_OPTIONS: tuple[str, ...] = ("mem", "gpu", "num_threads", "time", "max_jobs_run", "config")

_RANGE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+):(\d+)$")
_SINGLE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+)$")
_MEM_RE = re.compile(r"^\d+(\.\d+)?[KMGTkmgt]?[Bb]?$")
_TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$")


class RunnerError(Exception):
    """A usage or setup error: the runner prints the message and exits with status 1."""


@dataclass
class JobSpec:
    """What to run: the job variable and range, the log file template and the command string."""

    logfile: str
    command: str
    var: str | None = None
    start: int = 1
    end: int = 1
    options: dict[str, str] = field(default_factory=dict)

    @property
    def job_ids(self) -> list[int]:
        """The job indices, in order."""
        return list(range(self.start, self.end + 1))

    @property
    def num_jobs(self) -> int:
        return self.end - self.start + 1

    def log_for(self, job_id: int) -> str:
        """The log file of job ``job_id``."""
        return substitute(self.logfile, self.var, job_id)

    def command_for(self, job_id: int) -> str:
        """The shell command of job ``job_id``."""
        return substitute(self.command, self.var, job_id)

    def log_pattern(self) -> str:
        """The log file with the variable shown as ``*`` (for messages about several jobs)."""
        return self.logfile.replace(self.var, "*") if self.var else self.logfile


def substitute(text: str, var: str | None, job_id: int) -> str:
    """Replace every occurrence of ``var`` in ``text`` by ``job_id`` (no-op without a variable)."""
    return text.replace(var, str(job_id)) if var else text


def join_command(args: Sequence[str]) -> str:
    """Join COMMAND arguments into one shell command string, as Kaldi's run.pl does.

    An argument without whitespace is kept verbatim (so escaped shell operators such as ``\\|``
    work); one with whitespace is put in double quotes, or in single quotes if it holds a double
    quote (run.pl's rule: the job's shell still expands ``$VAR`` in double quotes). A single
    argument is used verbatim as the whole shell command: a convenience run.pl does not have (it
    would quote it into one word).
    """
    if not args:
        raise RunnerError("no command given")
    if len(args) == 1:
        return args[0]
    return " ".join(_quoted_like_run_pl(a) for a in args)


def _quoted_like_run_pl(arg: str) -> str:
    if arg and not any(c.isspace() for c in arg):
        return arg
    return f"'{arg}'" if '"' in arg else f'"{arg}"'


#: GridEngine-style single-dash options run.pl accepts: how many values each takes (others take one)
_SINGLE_DASH_VALUES = {"-V": 0, "-pe": 2}


def canonical_option(name: str) -> str:
    """``--num-threads`` -> ``num_threads``."""
    return name.lstrip("-").replace("-", "_")


def parse_command_line(
    argv: Sequence[str],
    prog: str,
    known_options: Iterable[str] | None = None,
    allow_any: bool = False,
    ignore_unknown: bool = False,
) -> JobSpec:
    """Parse ``[options] [VAR=START:END] [options] LOGFILE COMMAND...`` into a :class:`JobSpec`.

    As Kaldi's run.pl: options may come before and after the job range; ``--max-jobs-run N`` (or
    GridEngine's ``-tc N``) given twice keeps the smallest; other single-dash options (``-V``,
    ``-pe smp 4``, ``-q all.q``) are queue options, ignored with a warning; a range must start at
    1 or more. ``known_options`` are the accepted canonical option names (default
    :data:`COMMON_OPTIONS`); with ``allow_any`` every name is accepted (the caller checks them
    later, see :func:`check_known`); with ``ignore_unknown`` an unknown ``--NAME VALUE`` is dropped,
    as run.pl drops the queue options it does not use (ESPnet passes ``--name``). The values of the
    common options are checked by :func:`validate_options`.
    """
    known = set(COMMON_OPTIONS if known_options is None else known_options)
    args = list(argv)
    options: dict[str, str] = {}
    var: str | None = None
    start = end = 1
    for _ in range(2):  # options, the job range, options again
        while args and args[0].startswith("-"):
            raw = args.pop(0)
            if raw == "--":
                break
            if not raw.startswith("--"):
                _single_dash_option(raw, args, options, prog)
                continue
            if "=" in raw:
                name, value = raw[2:].split("=", 1)
            else:
                name = raw[2:]
                if not args:
                    raise RunnerError(f"option {raw} needs a value")
                value = args.pop(0)
            key = canonical_option(name)
            if not key or not (allow_any or key in known):
                if ignore_unknown and key:
                    logger.debug("ignoring %s %s (a queue option this runner does not use)", raw, value)
                    continue
                check_known({key: value}, known)
            _set_option(options, key, value)
        if var is None and args and (m := _RANGE_RE.match(args[0])):
            var, start, end = m.group(1), int(m.group(2)), int(m.group(3))
            args.pop(0)
            if start > end:
                raise RunnerError(f"invalid job range {m.group(0)}: start > end")
            if start < 1:
                raise RunnerError(f"invalid job range {m.group(0)}: it must start at 1 or more (as Kaldi's run.pl)")
        elif var is None and args and (m := _SINGLE_RE.match(args[0])):
            var, start = m.group(1), int(m.group(2))
            end = start
            args.pop(0)
            if start < 1:
                raise RunnerError(f"invalid job {m.group(0)}: it must be 1 or more (as Kaldi's run.pl)")
    if len(args) < 2:
        raise RunnerError(
            f"usage: {prog} [options] [JOB=1:N] LOGFILE COMMAND... (got {len(args)} argument(s) after the options)"
        )
    logfile = args.pop(0)
    if _RANGE_RE.match(logfile) or _SINGLE_RE.match(logfile):
        raise RunnerError(f"the job range {logfile} must come before LOGFILE")
    if var is not None and end > start and var not in logfile:
        raise RunnerError(
            f"you are running {end - start + 1} jobs ({var}={start}:{end}) "
            f"but the log file {logfile} does not contain {var}: they would all write the same log"
        )
    spec = JobSpec(logfile=logfile, command=join_command(args), var=var, start=start, end=end, options=options)
    validate_options(spec.options)
    return spec


def _set_option(options: dict[str, str], key: str, value: str) -> None:
    """Set ``key``; a second ``--max-jobs-run`` (or ``-tc``) keeps the smaller limit, as run.pl does."""
    current = options.get(key)
    if key == "max_jobs_run" and current is not None and current.isdigit() and value.isdigit():
        value = str(min(int(value), int(current)))
    options[key] = value


def _single_dash_option(raw: str, args: list[str], options: dict[str, str], prog: str) -> None:
    """A GridEngine-style option: ``-tc N`` is ``--max-jobs-run N``; the others are ignored."""
    count = _SINGLE_DASH_VALUES.get(raw, 1)
    if len(args) < count:
        raise RunnerError(f"option {raw} needs {count} value(s)")
    values = [args.pop(0) for _ in range(count)]
    if raw == "-tc":
        _set_option(options, "max_jobs_run", values[0])
        return
    logger.warning("%s: ignoring %s (a GridEngine queue option)", prog, " ".join([raw, *values]))


def check_known(options: dict[str, str], known: Iterable[str], where: str = "") -> None:
    """Raise :class:`RunnerError` for the first option not in ``known``."""
    known = set(known)
    for key in options:
        if not key or key not in known:
            shown = ", ".join("--" + k.replace("_", "-") for k in sorted(known))
            raise RunnerError(f"unknown option --{key.replace('_', '-')}{where} (known options: {shown})")


def validate_options(options: dict[str, str]) -> None:
    """Check the values of the common options; raise :class:`RunnerError` naming the bad one."""
    for key, value in options.items():
        if key == "mem":
            if not _MEM_RE.match(value):
                raise RunnerError(f"--mem {value}: expected an amount such as 4G, 500M or 2000")
        elif key == "time":
            if not _TIME_RE.match(value):
                raise RunnerError(f"--time {value}: expected minutes, MM:SS, HH:MM:SS or D-HH:MM:SS")
        elif key in ("gpu", "num_threads", "max_jobs_run"):
            if not value.isdigit():
                raise RunnerError(f"--{key.replace('_', '-')} {value}: expected a whole number")
            if key in ("num_threads", "max_jobs_run") and int(value) < 1:
                raise RunnerError(f"--{key.replace('_', '-')} {value}: must be at least 1")
        elif key == "config":
            if not Path(value).is_file():
                raise RunnerError(f"--config {value}: no such file")


def date_string() -> str:
    """The current local time, formatted like ``date``."""
    return time.strftime("%a %b %d %H:%M:%S %Z %Y")


def log_header(command: str) -> str:
    """The first lines of a job's log, as Kaldi's run.pl writes them."""
    return f"# {command}\n# Started at {date_string()}\n#\n"


def log_footer(seconds: float, threads: int, rc: int) -> str:
    """The last lines of a job's log, as Kaldi's run.pl writes them."""
    t = int(round(seconds))
    ended = f"# Ended (code {rc}) at {date_string()}, elapsed time {t} seconds\n"
    return f"# Accounting: time={t} threads={threads}\n" + ended


def failure_message(prog: str, spec: JobSpec, codes: dict[int, int | None]) -> str | None:
    """The message for failed jobs (``None`` if all succeeded); ``None`` codes count as failed."""
    failed = [j for j in spec.job_ids if codes.get(j) != 0]
    if not failed:
        return None
    msg = f"{prog}: {len(failed)} / {spec.num_jobs} failed, log is in {spec.log_for(failed[0])}"
    if len(failed) > 1 and spec.var:
        msg += f" (failed: {spec.var}={','.join(map(str, failed))}; all logs: {spec.log_pattern()})"
    return msg


def threads_of(spec: JobSpec) -> int:
    return int(spec.options.get("num_threads", "1"))


def setup_logging() -> None:
    """Log warnings to stderr (``FASTADASP_RUNNER_LOG=debug`` for more)."""
    level = os.environ.get("FASTADASP_RUNNER_LOG", "warning").upper()
    logging.basicConfig(level=getattr(logging, level, logging.WARNING), format="%(name)s: %(levelname)s: %(message)s")


def error(prog: str, message: str) -> None:
    """Print a runner's user-facing error message to stderr."""
    print(f"{prog}: {message}", file=sys.stderr)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (the runners stop or cancel their jobs)."""


def on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


class ParentWatch:
    """Whether the process that started this runner (the recipe's shell) has gone.

    Why: a shell killed by SIGTERM or SIGKILL while it waits for a runner leaves the runner, and
    so the jobs, running; the runner notices its parent is gone (it is re-parented) and stops
    its jobs as for a SIGTERM."""

    def __init__(self) -> None:
        self.parent = os.getppid()

    def gone(self) -> bool:
        return os.getppid() != self.parent
