#!/usr/bin/env bash
# Rootful Podman for tests/test_engines.py's end-to-end test (adapted from the machine recipe
# shared/recipes/podman-setup.sh). Idempotent, quiet, bounded by timeouts. It never fails the
# CI run: where podman cannot be set up the e2e test skips and says why.
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive
say() { echo "setup-podman: $*"; }

if [ "$(id -u)" != 0 ]; then
  command -v podman >/dev/null && say "not root; using the podman found" || say "not root; skipped"
  exit 0
fi
if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  if ! command -v apt-get >/dev/null; then
    say "apt-get unavailable; podman not installed (the container e2e test will skip)"
    exit 0
  fi
  if ! timeout 600 apt-get install -y -q podman runc >/dev/null 2>&1; then
    timeout 300 apt-get update -q >/dev/null 2>&1 || true
    if ! timeout 600 apt-get install -y -q podman runc >/dev/null 2>&1; then
      say "apt-get install podman runc failed (the container e2e test will skip)"
      exit 0
    fi
  fi
fi
# Machines of this kind: podman as root asks for RLIMIT_NOFILE/NPROC=1048576 -> EPERM without
# CAP_SYS_RESOURCE, so pin default ulimits; crun refuses the cgroup v1 hybrid layout -> runc;
# json-file logs (podman-py's containers.run() needs them); no network unless asked for.
mkdir -p /etc/containers
conf=/etc/containers/containers.conf
want='# written by kbtool .ci/setup-podman.sh
[containers]
log_driver = "json-file"
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
netns = "none"
[engine]
runtime = "runc"'
if [ ! -f "$conf" ]; then
  printf '%s\n' "$want" > "$conf"
elif ! grep -q 'kbtool .ci/setup-podman.sh' "$conf"; then
  say "$conf exists and was not written by this script; left as it is"
fi
if timeout 60 podman info >/dev/null 2>&1; then
  say "$(podman --version) ready"
else
  say "podman installed but 'podman info' fails (the container e2e test will skip)"
fi
exit 0
