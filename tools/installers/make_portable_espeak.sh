#!/usr/bin/env bash
# Pack this machine's espeak-ng into a self-contained folder that runs on another x86-64 Linux
# host without package access (e.g. a GPU machine that has no espeak-ng): the binary, every
# shared library it loads (glibc and the dynamic loader included, so the host's glibc version
# does not matter) and espeak-ng-data, plus a bin/espeak-ng wrapper. Put <out>/bin first on PATH.
#   bash tools/installers/make_portable_espeak.sh tools/espeak-ng-portable   # ~30 MB
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "Usage: $0 <out-dir>" >&2
    exit 1
fi
out=$1
src=$(command -v espeak-ng || true)
if [ -z "${src}" ]; then
    echo "$0: espeak-ng is not installed here (bash tools/installers/install_debian.sh data)" >&2
    exit 1
fi
data=$(dirname "$(dpkg -L espeak-ng-data | grep '/espeak-ng-data$' | head -n 1)")
rm -rf "${out}"
mkdir -p "${out}/bin" "${out}/lib"
cp "$(readlink -f "${src}")" "${out}/lib/espeak-ng.bin"
ldd "${src}" | awk '/=>/ {print $3} $1 ~ /ld-linux/ {print $1}' | while read -r lib; do
    [ -n "${lib}" ] && cp -L "${lib}" "${out}/lib/"
done
cp -r "${data}/espeak-ng-data" "${out}/"
loader=$(basename "$(ldd "${src}" | awk '/ld-linux/ {print $1}')")
cat > "${out}/bin/espeak-ng" <<WRAP
#!/bin/sh
# portable espeak-ng: our own loader and libraries, our own voice data
here=\$(cd "\$(dirname "\$0")/.." && pwd)
ESPEAK_DATA_PATH="\${here}" exec "\${here}/lib/${loader}" --library-path "\${here}/lib" "\${here}/lib/espeak-ng.bin" "\$@"
WRAP
chmod +x "${out}/bin/espeak-ng"
du -sh "${out}"
