#!/usr/bin/env bash
# Install the Debian packages a feature needs (root, or sudo). Groups:
#   test     what the test suite uses (sctk: NIST sclite, the WER/CER scorer of record)
#   slurm    a one-node Slurm (slurmctld, slurmd, munge) for the Slurm backend
#   data     espeak-ng and sox, to synthesise the mini benchmark's speech
#   pretrained  pocketsphinx-testdata: five real LibriVox utterances (the real-weights testbed)
set -euo pipefail

declare -A groups=(
    [test]="shellcheck sox sctk"
    [slurm]="slurmctld slurmd slurm-client munge"
    [data]="espeak-ng sox"
    [pretrained]="pocketsphinx-testdata"
)
pkgs=()
for g in "$@"; do
    [ -n "${groups[$g]+x}" ] || { echo "install_debian.sh: unknown group '$g' (${!groups[*]})" >&2; exit 2; }
    read -r -a more <<< "${groups[$g]}"
    pkgs+=("${more[@]}")
done
[ ${#pkgs[@]} -gt 0 ] || exit 0
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -gt 0 ] || { echo "== Debian packages present: ${pkgs[*]}"; exit 0; }
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "== apt-get install ${missing[*]}"
${sudo} apt-get update -qq
DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
