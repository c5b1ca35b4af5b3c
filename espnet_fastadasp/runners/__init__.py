"""Job runners with the command-line interface of Kaldi's ``run.pl`` and ``slurm.pl``.

``run.py`` (:mod:`espnet_fastadasp.runners.local`) runs jobs on this machine and ``slurm.py``
(:mod:`espnet_fastadasp.runners.slurm`) as a Slurm job array; both take
``[options] [JOB=1:N] LOGFILE COMMAND...`` (see :mod:`espnet_fastadasp.runners.common`). Recipes
call them through ``utils/run.py`` / ``utils/slurm.py``, chosen in ``cmd.sh``.
"""

from espnet_fastadasp.runners.common import JobSpec, RunnerError, join_command, parse_command_line
from espnet_fastadasp.runners.local import LocalRunner
from espnet_fastadasp.runners.slurm_config import SlurmConfig, parse_slurm_config, sbatch_options

__all__ = [
    "JobSpec",
    "LocalRunner",
    "RunnerError",
    "SlurmConfig",
    "join_command",
    "parse_command_line",
    "parse_slurm_config",
    "sbatch_options",
]
