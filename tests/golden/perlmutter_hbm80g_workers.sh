#!/bin/bash
#SBATCH --job-name=kbtool-workers-perlmutter
#SBATCH --output=/work/kb/logs/%x-%A_%a.out
#SBATCH --account=m1234_g
#SBATCH --qos=regular
#SBATCH --constraint=gpu&hbm80g
#SBATCH --time=01:00:00
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=64
#SBATCH --gpus-per-node=4
#SBATCH --array=0-0
# kbtool worker pool (site profile: perlmutter), rendered by `kbtool submit workers`.
# Each array task holds one node and runs 4 worker(s), one per GPU; SIGTERM
# (scancel, the time limit) is passed on to the workers, which drain and exit.
set -uo pipefail
export KBTOOL_SCRATCH=$SCRATCH/kbtool-tmp
PYTHON=/usr/bin/python3
cd /work/kb || exit 1
echo "kbtool: job ${SLURM_JOB_ID:-?} task ${SLURM_ARRAY_TASK_ID:-0} on $(hostname)"
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT
for i in $(seq 0 $(( 4 - 1 ))); do
  "$PYTHON" -m kbtool worker start --engine podman-hpc --arch Ampere --scratch $SCRATCH/kbtool-tmp --gpu-index "$i" worker_input_dir=/shared/q/in worker_output_dir=/shared/q/out &
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
