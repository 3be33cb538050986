#!/bin/bash
#SBATCH --job-name=kbtool-workers-lawrencium
#SBATCH --output=/work/kb/logs/%x-%A_%a.out
#SBATCH --partition=es1
#SBATCH --qos=es_normal
#SBATCH --time=01:00:00
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=64
#SBATCH --gres=gpu:H100:4
#SBATCH --array=0-1
# kbtool worker pool (site profile: lawrencium), rendered by `kbtool submit workers`.
# Each array task holds one node and runs 4 worker(s), one per GPU; SIGTERM
# (scancel, the time limit) is passed on to the workers, which drain and exit.
set -uo pipefail
export APPTAINER_TMPDIR=/global/scratch/users/$USER/apptainer-tmp
export APPTAINER_CACHEDIR=/global/scratch/users/$USER/apptainer-cache
export KBTOOL_SCRATCH=/global/scratch/users/$USER/kbtool-tmp
PYTHON=/usr/bin/python3
cd /work/kb || exit 1
echo "kbtool: job ${SLURM_JOB_ID:-?} task ${SLURM_ARRAY_TASK_ID:-0} on $(hostname)"
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT
for i in $(seq 0 $(( 4 - 1 ))); do
  "$PYTHON" -m kbtool worker start --engine apptainer --arch Hopper --scratch /global/scratch/users/$USER/kbtool-tmp --gpu-index "$i" worker_input_dir=/shared/q/in worker_output_dir=/shared/q/out &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
  while true; do
    wait "$pid"; rc=$?
    kill -0 "$pid" 2>/dev/null || break  # wait returned early for a trapped signal
  done
  [ "$rc" -ne 0 ] && status=$rc
done
exit $status
