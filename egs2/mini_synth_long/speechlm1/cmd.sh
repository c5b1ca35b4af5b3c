# shellcheck shell=bash
# How jobs run: on this machine (local) or through Slurm (slurm).
#   cmd_backend=slurm ./run.sh ...     # or edit the default below
# Each *_cmd takes Kaldi's interface: ${decode_cmd} JOB=1:N exp/log/x.JOB.log command ...
# with --mem 8G, --gpu 1, --num-threads 4, --time 2:00:00, --max-jobs-run 8.
cmd_backend=${cmd_backend:-local}

case "${cmd_backend}" in
    local)
        export train_cmd="run.py"
        export decode_cmd="run.py"
        export cuda_cmd="run.py"
        ;;
    slurm)
        # conf/slurm.conf maps the options above to sbatch flags (edit it for your cluster)
        export train_cmd="slurm.py --config conf/slurm.conf"
        export decode_cmd="slurm.py --config conf/slurm.conf"
        export cuda_cmd="slurm.py --config conf/slurm.conf"
        ;;
    *)
        echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local or slurm)" >&2
        return 1
        ;;
esac
