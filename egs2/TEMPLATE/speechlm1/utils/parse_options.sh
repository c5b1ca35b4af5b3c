# shellcheck shell=bash
# parse_options.sh: turn `--name value` command-line options into shell variables.
#
# Source it after defining the script's variables (with their defaults) and `help_message`:
#
#   nj=4
#   use_gpu=false
#   help_message="Usage: $0 [options] <data-dir>"
#   . utils/parse_options.sh || exit 1
#   # "$@" now holds the remaining (positional) arguments
#
# For each leading `--name value` or `--name=value`, the variable `name` (dashes in the option are
# underscores in the variable: --num-threads sets num_threads) is set to value; it must already be
# defined, else it is an error ("unknown option --name", then the help message, exit 1). A variable
# whose current value is true or false only accepts true or false. `--help` or `-h` prints
# help_message and exits 0. `--config FILE` sources FILE (bash `name=value` lines) before the other
# options are applied, so the command line wins over the file. Parsing stops at the first argument
# that is not an option, or after `--`. Works under `set -euo pipefail`.

# The helper names start with _po_ and are removed at the end.
_po_prog=$(basename "$0")

_po_die() {
    printf '%s: %s\n' "${_po_prog}" "$1" >&2
    if [ -n "${help_message:-}" ]; then
        printf '%s\n' "${help_message}" >&2
    fi
    exit 1
}

# 1) --config FILE: source every config file first.
_po_i=1
while [ "${_po_i}" -le $# ]; do
    _po_arg=${!_po_i}
    _po_file=""
    case "${_po_arg}" in
        --) break ;;
        --config)
            _po_next=$((_po_i + 1))
            if [ "${_po_next}" -gt $# ]; then
                _po_die "option --config needs a value"
            fi
            _po_file=${!_po_next}
            _po_i=${_po_next}
            ;;
        --config=*) _po_file=${_po_arg#--config=} ;;
        --help|--*=*) ;;
        --*) _po_i=$((_po_i + 1)) ;;  # skip the value of another option
        *) break ;;
    esac
    if [ -n "${_po_file}" ]; then
        if [ ! -r "${_po_file}" ]; then
            _po_die "cannot read the config file '${_po_file}' (--config)"
        fi
        # shellcheck disable=SC1090
        . "${_po_file}"
    fi
    _po_i=$((_po_i + 1))
done

# 2) the options, in order.
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            printf '%s\n' "${help_message:-Usage: ${_po_prog} [options] (no help message defined)}"
            exit 0
            ;;
        --)
            shift
            break
            ;;
        --*=*)
            _po_name=${1%%=*}
            _po_value=${1#*=}
            shift
            ;;
        --*)
            _po_name=$1
            if [ $# -lt 2 ]; then
                _po_die "option $1 needs a value"
            fi
            _po_value=$2
            shift 2
            ;;
        *)
            break
            ;;
    esac
    if [ "${_po_name}" = "--config" ]; then
        continue  # sourced above
    fi
    _po_var=${_po_name#--}
    _po_var=${_po_var//-/_}
    if [[ ! "${_po_var}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || [[ "${_po_var}" == _po_* ]] \
            || [ -z "${!_po_var+set}" ]; then
        _po_die "unknown option ${_po_name}"
    fi
    _po_old=${!_po_var}
    if [ "${_po_old}" = true ] || [ "${_po_old}" = false ]; then
        if [ "${_po_value}" != true ] && [ "${_po_value}" != false ]; then
            _po_die "option ${_po_name} is boolean: expected true or false, got '${_po_value}'"
        fi
    fi
    printf -v "${_po_var}" '%s' "${_po_value}"
done

unset -v _po_prog _po_i _po_arg _po_file _po_next _po_name _po_value _po_var _po_old
unset -f _po_die
true
