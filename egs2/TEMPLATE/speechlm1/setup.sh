#!/usr/bin/env bash
# Make a new recipe dir on this template: links the shared scripts, copies what users edit.
#   egs2/TEMPLATE/speechlm1/setup.sh egs2/mycorpus/speechlm1
set -euo pipefail
if [ $# -ne 1 ]; then
    echo "Usage: $0 <new-recipe-dir>   (e.g. egs2/mycorpus/speechlm1)" >&2
    exit 1
fi
template=$(cd "$(dirname "$0")" && pwd)
target=$1
if [ -e "${target}/speechlm.sh" ]; then
    echo "$0: ${target} already has speechlm.sh" >&2
    exit 1
fi
mkdir -p "${target}/conf" "${target}/local"
rel=$(python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "${template}" "${target}")
for f in speechlm.sh path.sh utils; do
    ln -s "${rel}/${f}" "${target}/${f}"
done
cp "${template}/cmd.sh" "${template}/db.sh" "${target}/"
cp "${template}/conf/slurm.conf" "${template}/conf/decode.yaml" "${target}/conf/"
if [ ! -e "${target}/run.sh" ]; then
    cat > "${target}/run.sh" <<'RUN'
#!/usr/bin/env bash
set -euo pipefail
# Edit: the task (asr, st, cls), the test sets, the prompt; local/data.sh makes data/<set>.
./speechlm.sh --task asr --test_sets "test" "$@"
RUN
    chmod +x "${target}/run.sh"
fi
echo "created ${target}: write local/data.sh (data/<set>/{wav.scp,text,utt2spk,prompt}) and edit run.sh"
