#!/usr/bin/env bash
# Set up the environment for espnet_fastadasp, in the spirit of ESPnet's tools/:
# a virtual environment in tools/venv with torch, transformers and this package installed
# (editable), optional Debian packages, then a check of what is there and what is missing.
#
#   bash tools/setup.sh                # core: venv + package
#   bash tools/setup.sh --test         # + test extras and the Debian packages the tests use
#   bash tools/setup.sh --no-venv      # install into the current Python (e.g. a GPU host's own torch)
#
# Environment: TORCH_VERSION (default 2.13.0; torch is only installed when it is missing),
# PYTHON (default python3).
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "${tools_dir}")
venv="${tools_dir}/venv"
use_venv=true
with_test=false
python=${PYTHON:-python3}
torch_version=${TORCH_VERSION:-2.13.0}

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --test) with_test=true ;;
        --no-venv) use_venv=false ;;
        --venv) venv=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if ${use_venv}; then
    if [ ! -x "${venv}/bin/python" ]; then
        echo "== creating ${venv}"
        "${python}" -m venv "${venv}"
    fi
    python="${venv}/bin/python"
fi
pip=("${python}" -m pip --disable-pip-version-check -q)

if ! "${python}" -c "import torch" 2>/dev/null; then
    echo "== installing torch==${torch_version}"
    "${pip[@]}" install "torch==${torch_version}"
fi
extras=""
${with_test} && extras="[test]"
echo "== installing espnet_fastadasp${extras} (editable)"
"${pip[@]}" install -e "${root}${extras}"

if ${with_test}; then
    # Debian packages: the shell linter and sox, Slurm for the real Slurm tests, espeak-ng for synthetic data
    bash "${tools_dir}/installers/install_debian.sh" test slurm data
fi
"${python}" "${tools_dir}/check_install.py"
