#!/bin/sh
# Installs Debian packages when any is missing: the ones tlsgate builds and
# tests with, or those named as arguments (packaging/deps.sh and
# bench/deps.sh pass their own lists).  Needs root (or passwordless sudo)
# only when something is missing.
set -eu
if [ $# -gt 0 ]; then
	pkgs="$*"
else
	pkgs="gcc make pkg-config libevent-dev libssl-dev libinih-dev
	      libsystemd-dev libcmocka-dev clang libclang-rt-14-dev curl openssl
	      ca-certificates gnutls-bin nginx-light python3 procps iproute2
	      debhelper dpkg-dev fakeroot lintian man-db groff-base systemd
	      util-linux"
fi
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
if [ "$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO="sudo -n"; else
	echo "deps: missing packages:$missing (run as root to install them)" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the lists once if a first attempt fails (stale or empty lists).
if ! $SUDO apt-get install -y -q --no-install-recommends $missing; then
	$SUDO apt-get update -q
	$SUDO apt-get install -y -q --no-install-recommends $missing
fi
