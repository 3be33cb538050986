#!/usr/bin/env bash
# Start a single-node Slurm (no slurmdbd: accounting disabled) on localhost for the tests in
# tests/test_slurm.py.  Idempotent and bounded; exits 0 with a message when Slurm cannot be
# started (the tests then skip with a reason).  Debian 12, root, no systemd.
set -uo pipefail
SLURM_CI_DIR=${SLURM_CI_DIR:-/tmp/slurm-ci}
say() { echo "setup-slurm: $*"; }
if command -v sinfo >/dev/null && timeout 10 sinfo -h -o %T 2>/dev/null | grep -Eqx 'idle|mixed|allocated'; then
  say "Slurm is already up"; exit 0
fi
if [ "$(id -u)" != 0 ]; then say "not root; Slurm not started (tests will skip)"; exit 0; fi
export DEBIAN_FRONTEND=noninteractive
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  (timeout 300 apt-get update >/dev/null 2>&1 || true)
  if ! timeout 600 apt-get install -y --no-install-recommends slurm-wlm munge >/dev/null 2>&1; then
    say "could not install slurm-wlm/munge; Slurm not started (tests will skip)"; exit 0
  fi
fi
mkdir -p "$SLURM_CI_DIR"/{state,spool,log}
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key --force
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
pgrep -x munged >/dev/null || timeout 20 runuser -u munge -- /usr/sbin/munged
for _ in $(seq 1 20); do timeout 5 munge -n </dev/null 2>/dev/null | timeout 5 unmunge >/dev/null 2>&1 && break; sleep 0.25; done
H=$(hostname -s)
mkdir -p /etc/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$H
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SchedulerParameters=sched_min_interval=0,batch_sched_delay=0
SlurmdParameters=config_overrides
StateSaveLocation=$SLURM_CI_DIR/state
SlurmdSpoolDir=$SLURM_CI_DIR/spool
SlurmctldPidFile=$SLURM_CI_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_CI_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_CI_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_CI_DIR/log/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_CI_DIR/log/jobcomp.txt
MinJobAge=300
NodeName=$H CPUs=${SLURM_CI_CPUS:-$(nproc)} RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x slurmctld >/dev/null || timeout 20 slurmctld || say "slurmctld failed to start"
pgrep -x slurmd >/dev/null || timeout 20 slurmd || say "slurmd failed to start"
for _ in $(seq 1 60); do timeout 5 sinfo -h -o %T 2>/dev/null | grep -Eqx 'idle|mixed|allocated' && break; sleep 0.5; done
if timeout 10 sinfo -h -o %T 2>/dev/null | grep -Eqx 'idle|mixed|allocated'; then
  say "Slurm is up"; timeout 10 sinfo || true
else
  say "Slurm did not come up (tests will skip); see $SLURM_CI_DIR/log"
fi
exit 0
