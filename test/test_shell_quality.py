"""Every shell script is shellcheck-clean and strict (set -euo pipefail)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shell_scripts() -> list[Path]:
    # virtual environments (tools/venv, tools/version_check/venv-X) hold other projects' scripts
    files = [
        p for p in REPO.rglob("*.sh") if not any(part.startswith("venv") for part in p.parts) and not p.is_symlink()
    ]
    files += [p for p in REPO.glob("egs2/*/*/run.sh") if not p.is_symlink()]
    files.append(REPO / ".ci" / "run")
    return sorted(set(files))


def test_shellcheck_is_clean():
    assert shutil.which("shellcheck"), "shellcheck is missing: bash tools/installers/install_debian.sh test"
    proc = subprocess.run(["shellcheck", "-x", *map(str, shell_scripts())], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_executable_scripts_are_strict():
    sourced = {"path.sh", "cmd.sh", "db.sh", "parse_options.sh", "activate_python.sh"}
    for path in shell_scripts():
        if path.name in sourced:
            continue
        assert "set -euo pipefail" in path.read_text(), f"{path.relative_to(REPO)} lacks set -euo pipefail"
