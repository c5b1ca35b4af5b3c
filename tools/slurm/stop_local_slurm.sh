#!/usr/bin/env bash
# Stop the one-node Slurm cluster that tools/slurm/start_local_slurm.sh started: slurmd,
# slurmctld and munged, each by the pid in its pid file (TERM, then KILL after 15 s).
# Idempotent: daemons that do not run are skipped. Configuration and state are kept.
#   bash tools/slurm/stop_local_slurm.sh [--keep-munge]
set -euo pipefail

keep_munge=false
for arg in "$@"; do
    case "${arg}" in
        --keep-munge) keep_munge=true ;;
        -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
        *) echo "stop_local_slurm.sh: unknown argument ${arg}" >&2; exit 2 ;;
    esac
done

stop() {  # stop NAME PIDFILE
    local name=$1 pidfile=$2 pid
    if [ ! -s "${pidfile}" ]; then
        return 0
    fi
    pid=$(cat "${pidfile}")
    if [ -z "${pid}" ] || ! kill -0 "${pid}" 2>/dev/null; then
        rm -f "${pidfile}"
        return 0
    fi
    echo "stop_local_slurm.sh: stopping ${name} (pid ${pid})" >&2
    kill -TERM "${pid}" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "${pid}" 2>/dev/null; then
        echo "stop_local_slurm.sh: ${name} (pid ${pid}) ignores TERM; killing it" >&2
        kill -KILL "${pid}" 2>/dev/null || true
    fi
    rm -f "${pidfile}"
}

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
if [ "${keep_munge}" = false ]; then
    stop munged /run/munge/munged.pid
fi
