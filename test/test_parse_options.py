"""utils/parse_options.sh, sourced by real bash scripts under ``set -euo pipefail``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PARSE_OPTIONS = Path(__file__).resolve().parents[1] / "egs2" / "TEMPLATE" / "speechlm1" / "utils" / "parse_options.sh"

SCRIPT = """\
#!/usr/bin/env bash
set -euo pipefail
nj=4
use_gpu=false
num_threads=1
name="a b"
empty=
help_message="Usage: $0 [options] <dir>
  --nj N        number of jobs"
. {parse_options}
echo "nj=${{nj}}|use_gpu=${{use_gpu}}|num_threads=${{num_threads}}|name=${{name}}|empty=${{empty}}|args=$*|n=$#"
"""


@pytest.fixture()
def script(tmp_path):
    path = tmp_path / "script.sh"
    path.write_text(SCRIPT.format(parse_options=PARSE_OPTIONS))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(path), *args], cwd=tmp_path, capture_output=True, text=True, timeout=30)

    return run


def values(res: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert res.returncode == 0, res.stderr
    return dict(field.split("=", 1) for field in res.stdout.strip().split("|"))


def test_defaults_kept(script):
    assert values(script()) == {
        "nj": "4",
        "use_gpu": "false",
        "num_threads": "1",
        "name": "a b",
        "empty": "",
        "args": "",
        "n": "0",
    }


def test_set_values_both_forms_and_dashes(script):
    v = values(
        script("--nj", "8", "--num-threads=3", "--name", "x  y*", "--empty", "z", "--use_gpu", "true", "pos1", "pos 2")
    )
    assert v == {
        "nj": "8",
        "use_gpu": "true",
        "num_threads": "3",
        "name": "x  y*",
        "empty": "z",
        "args": "pos1 pos 2",
        "n": "2",
    }


def test_stops_at_positional_and_double_dash(script):
    v = values(script("--nj", "2", "dir", "--nj", "5"))
    assert v["nj"] == "2" and v["args"] == "dir --nj 5"
    v = values(script("--", "--nj", "5"))
    assert v["nj"] == "4" and v["args"] == "--nj 5"


def test_unknown_option(script):
    res = script("--nj", "2", "--foo-bar", "1")
    assert res.returncode == 1
    assert "unknown option --foo-bar" in res.stderr and "Usage:" in res.stderr
    res = script("--_po_name", "1")
    assert res.returncode == 1 and "unknown option --_po_name" in res.stderr


def test_missing_value(script):
    res = script("--nj")
    assert res.returncode == 1 and "option --nj needs a value" in res.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(script, flag):
    res = script("--nj", "2", flag)
    assert res.returncode == 0
    assert res.stdout.startswith("Usage: ") and "--nj N" in res.stdout


def test_booleans(script):
    assert values(script("--use-gpu", "true"))["use_gpu"] == "true"
    res = script("--use-gpu", "yes")
    assert res.returncode == 1 and "expected true or false, got 'yes'" in res.stderr
    res = script("--use-gpu=1")
    assert res.returncode == 1


def test_config_is_sourced_first(script, tmp_path):
    conf = tmp_path / "opts.conf"
    conf.write_text("# comment\nnj=16\nnum_threads=7\n")
    v = values(script("--nj", "2", "--config", str(conf), "d"))
    assert (v["nj"], v["num_threads"], v["args"]) == ("2", "7", "d")  # the command line wins
    v = values(script(f"--config={conf}"))
    assert (v["nj"], v["num_threads"]) == ("16", "7")
    res = script("--config", str(tmp_path / "missing.conf"))
    assert res.returncode == 1 and "missing.conf" in res.stderr


def test_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail("shellcheck is not installed: bash tools/installers/install_debian.sh test")
    root = PARSE_OPTIONS.parents[4]
    files = [PARSE_OPTIONS, root / "tools/slurm/start_local_slurm.sh", root / "tools/slurm/stop_local_slurm.sh"]
    res = subprocess.run([shellcheck, *map(str, files)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
