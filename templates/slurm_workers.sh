#!/bin/bash
{{ directives }}
# kbtool worker pool (site profile: {{ profile }}), rendered by `kbtool submit workers`.
# Each array task holds one node and runs {{ workers }} worker(s), one per GPU; SIGTERM
# (scancel, the time limit) is passed on to the workers, which drain and exit.
set -uo pipefail
{{ setup }}
cd {{ workdir }} || exit 1
echo "kbtool: job ${SLURM_JOB_ID:-?} task ${SLURM_ARRAY_TASK_ID:-0} on $(hostname)"
pids=()
trap 'kill -TERM "${pids[@]}" 2>/dev/null' TERM INT
for i in $(seq 0 $(( {{ workers }} - 1 ))); do
  {{ worker_command }} &
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
