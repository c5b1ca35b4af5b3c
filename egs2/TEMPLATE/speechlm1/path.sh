# shellcheck shell=bash
# Environment for the recipes: the toolkit's venv (tools/venv) and the recipe utils on PATH.
MAIN_ROOT=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)
export MAIN_ROOT
if [ -f "${MAIN_ROOT}/tools/activate_python.sh" ]; then
    # shellcheck disable=SC1091
    . "${MAIN_ROOT}/tools/activate_python.sh"
fi
export PATH="${PWD}/utils:${PATH}"
export PYTHONIOENCODING=UTF-8
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0}
export LC_ALL=C
