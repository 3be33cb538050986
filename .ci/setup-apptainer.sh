#!/usr/bin/env bash
# Apptainer for the repo and perf kinds' container tests (repo_engine/perf_engine=apptainer),
# adapted from the machine recipe shared/recipes/apptainer-setup.sh.  Debian 12 has no
# apptainer, and sid's needs glibc >= 2.38, so Apptainer 1.4 is installed into a Debian sid
# minbase root made with debootstrap (apt run there through bubblewrap).  Unlike the recipe,
# it then runs on the host itself, not inside the sid root: a relocated copy of its install
# ($SID/kbtool-host: bin, lib/.../apptainer with its starter, etc, state) whose two binaries
# load sid's glibc and libraries (patchelf: interpreter and rpath into $SID).  A container
# therefore binds the host's own /usr, /lib, /etc, its Python and the clone, wherever they
# are, exactly as kbtool's container spec names them; nothing has to be bound through.
# /usr/local/bin/apptainer runs it, /usr/local/bin/singularity links to it (spython's name).
# apptainer.conf: no default capabilities for root (this VM's bounding set lacks
# CAP_SYS_RESOURCE).
# Idempotent (a second run only checks), quiet, bounded by timeouts.  It never fails the CI
# run: where Apptainer cannot be set up (no mirror, not root, ...) it says so in one line and
# exits 0, and the Apptainer tests skip with their reason.
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive
SID=${APPTAINER_SID_ROOT:-/opt/apptainer-sid}
MIRROR=${APPTAINER_SID_MIRROR:-http://deb.debian.org/debian}
BIN=/usr/local/bin
started=$SECONDS
say() { echo "setup-apptainer: $* ($((SECONDS - started)) s)"; }
skip() { say "$* (the Apptainer tests will skip)"; exit 0; }
works() { timeout 60 "$BIN/apptainer" --version 2>/dev/null; }

if [ "$(id -u)" != 0 ]; then
  command -v apptainer >/dev/null && say "not root; using the apptainer found" || say "not root; skipped"
  exit 0
fi
found=$(command -v apptainer 2>/dev/null)
if [ -n "$found" ] && ! grep -q 'kbtool .ci/setup-apptainer.sh' "$found" 2>/dev/null \
    && version=$(timeout 60 "$found" --version 2>/dev/null); then
  say "$version found at $found; left as it is"; exit 0
fi
[ "$(uname -m)" = x86_64 ] || skip "made for x86_64 hosts, this is $(uname -m)"
if [ -x "$SID/usr/bin/apptainer" ] && grep -q 'kbtool .ci/setup-apptainer.sh' "$BIN/apptainer" 2>/dev/null \
    && version=$(works); then
  say "$version already set up in $SID"; exit 0
fi
command -v apt-get >/dev/null || skip "apt-get unavailable; apptainer not installed"
need=()
for tool in debootstrap bwrap patchelf; do command -v $tool >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=(debootstrap bubblewrap patchelf)
  if ! timeout 600 apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1; then
    timeout 300 apt-get update -q >/dev/null 2>&1 || true
    timeout 600 apt-get install -y -q "${pkgs[@]}" >/dev/null 2>&1 \
      || skip "apt-get install ${pkgs[*]} failed"
  fi
fi

# sid's root, made aside and moved into place once complete (a failed run leaves nothing).
if [ ! -x "$SID/usr/bin/apptainer" ]; then
  timeout 30 wget -q -t 2 -T 10 -O /dev/null "$MIRROR/dists/sid/Release" \
    || skip "the Debian mirror $MIRROR is unreachable; apptainer not installed"
  part="$SID.partial"
  rm -rf "$part"
  mkdir -p "$(dirname "$SID")"
  if ! timeout 900 debootstrap --variant=minbase sid "$part" "$MIRROR" >"$part.log" 2>&1; then
    rm -rf "$part"
    skip "debootstrap of Debian sid from $MIRROR failed or timed out (log: $part.log)"
  fi
  B=(bwrap --bind "$part" / --dev-bind /dev /dev --proc /proc --bind /sys /sys --perms 1777
     --tmpfs /tmp --ro-bind /etc/resolv.conf /etc/resolv.conf --cap-add ALL
     --setenv PATH /usr/sbin:/usr/bin:/sbin:/bin --setenv DEBIAN_FRONTEND noninteractive)
  if ! { timeout 600 "${B[@]}" apt-get -q -o Acquire::Check-Valid-Until=false update \
         && timeout 900 "${B[@]}" apt-get install -y -q --no-install-recommends apptainer \
              squashfs-tools squashfuse fuse2fs e2fsprogs; } >>"$part.log" 2>&1; then
    rm -rf "$part"
    skip "apt-get install apptainer in sid failed or timed out (log: $part.log)"
  fi
  timeout 60 "${B[@]}" apt-get clean >/dev/null 2>&1 || true
  rm -f "$part.log"
  rm -rf "$SID"
  mv "$part" "$SID"
fi

# The relocated install the host runs (remade whenever this script gets here).
H="$SID/kbtool-host"
LIB="$SID/usr/lib/x86_64-linux-gnu"
rm -rf "$H.new"
mkdir -p "$H.new/bin" "$H.new/lib/x86_64-linux-gnu" "$H.new/etc" "$H.new/lib/var/lib" || skip "cannot write $H.new"
cp -a "$SID/usr/bin/apptainer" "$H.new/bin/" \
  && cp -a "$LIB/apptainer" "$H.new/lib/x86_64-linux-gnu/" \
  && cp -a "$SID/etc/apptainer" "$H.new/etc/" \
  && cp -a "$SID/var/lib/apptainer" "$H.new/lib/var/lib/" || skip "cannot copy sid's apptainer into $H.new"
for exe in "$H.new/bin/apptainer" "$H.new/lib/x86_64-linux-gnu/apptainer/bin/starter"; do
  timeout 60 patchelf --set-interpreter "$LIB/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$LIB" "$exe" \
    || skip "patchelf $exe failed"
done
conf="$H.new/etc/apptainer/apptainer.conf"
sed -i 's/^root default capabilities = .*/root default capabilities = no/' "$conf"
rm -rf "$H"
mv "$H.new" "$H"
cat > "$BIN/apptainer.new" <<WRAP
#!/bin/sh
# written by kbtool .ci/setup-apptainer.sh: Debian sid's Apptainer, relocated to $H
exec "$H/bin/apptainer" "\$@"
WRAP
chmod 755 "$BIN/apptainer.new" && mv "$BIN/apptainer.new" "$BIN/apptainer"
[ -e "$BIN/singularity" ] && [ ! -L "$BIN/singularity" ] || ln -sfn apptainer "$BIN/singularity"
if version=$(works); then
  say "$version installed ($SID, run from $H as $BIN/apptainer, $BIN/singularity)"
else
  say "apptainer installed in $H but '$BIN/apptainer --version' fails"
fi
exit 0
