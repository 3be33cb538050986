#!/bin/bash
{{ directives }}
# kbtool agent (site profile: {{ profile }}), rendered by `kbtool submit run`.
set -uo pipefail
{{ setup }}
cd {{ workdir }} || exit 1
echo "kbtool: job ${SLURM_JOB_ID:-?} on $(hostname)"
exec {{ run_command }}
