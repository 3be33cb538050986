#!/bin/bash
#SBATCH --job-name=kbtool-run-perlmutter
#SBATCH --output=/work/kb/logs/%x-%j.out
#SBATCH --account=m1234
#SBATCH --qos=regular
#SBATCH --constraint=cpu
#SBATCH --time=04:00:00
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=32
# kbtool agent (site profile: perlmutter), rendered by `kbtool submit run`.
set -uo pipefail
export KBTOOL_SCRATCH=$SCRATCH/kbtool-tmp
PYTHON=/usr/bin/python3
cd /work/kb || exit 1
echo "kbtool: job ${SLURM_JOB_ID:-?} on $(hostname)"
exec "$PYTHON" -m kbtool run level=1 task_start=1 task_end=2 model_name=openai/gpt-4o worker_input_dir=/shared/q/in worker_output_dir=/shared/q/out
