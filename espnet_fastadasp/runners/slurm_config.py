"""``slurm.py``'s options mapped to ``sbatch`` arguments by a Kaldi ``slurm.pl``-style config.

The mapping is the part of the Slurm runner a site adapts (partitions, GPUs, memory), and it is
pure text processing, so it is apart from submission and waiting and can be tested without Slurm.

The config is ``--config FILE``, else ``conf/slurm.conf`` in the current directory if present,
else :data:`DEFAULT_CONFIG` (:func:`load_slurm_config`). Any option the config has a rule for is
accepted (``--partition`` with ``option partition=* -p $0``); other options are an error
(:func:`sbatch_options`).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from espnet_fastadasp.runners.common import RunnerError

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
