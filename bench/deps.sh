#!/bin/sh
# Installs the Debian packages `make bench` needs, when any is missing:
# the peers (haproxy, stunnel4, nginx-light), the load generator (wrk),
# the capture tool for uplink bytes (tcpdump), the profiler (linux-perf,
# with valgrind as the fallback when perf events are not allowed), strace
# (system calls per request) and the
# plotter (gnuplot-nox).  Needs root (or passwordless sudo) only when
# something is missing.
set -eu
pkgs="haproxy stunnel4 nginx-light wrk tcpdump linux-perf valgrind
      gnuplot-nox strace openssl python3 procps util-linux"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "bench deps: installing:$missing"
if [ "$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO="sudo -n"; else
	echo "bench deps: missing packages:$missing (run as root to install them)" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# The haproxy and nginx packages start their system services on install;
# the bench runs its own instances on other ports, so keep those off.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod 755 /usr/sbin/policy-rc.d
	trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
if ! $SUDO apt-get install -o DPkg::Lock::Timeout=300 -y -q --no-install-recommends $missing; then
	$SUDO apt-get update -q
	$SUDO apt-get install -o DPkg::Lock::Timeout=300 -y -q --no-install-recommends $missing
fi
