#!/usr/bin/env bash
# Source me: puts tools/venv first on PATH (what recipes' path.sh does).
_fa_tools=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -f "${_fa_tools}/venv/bin/activate" ]; then
    # shellcheck disable=SC1091
    . "${_fa_tools}/venv/bin/activate"
fi
unset _fa_tools
