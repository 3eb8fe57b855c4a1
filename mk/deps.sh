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
	      util-linux strace"
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
# Packages such as nginx and haproxy start their system services on
# install; the tests and the bench run their own instances on other ports,
# so keep those off.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod 755 /usr/sbin/policy-rc.d
	trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
# Wait for another apt run (say an unattended upgrade) rather than fail;
# refresh the lists once if a first attempt fails (stale or empty lists).
apt_install() {
	$SUDO apt-get install -o DPkg::Lock::Timeout=300 -y -q \
	    --no-install-recommends $missing
}
if ! apt_install; then
	$SUDO apt-get update -q
	apt_install
fi
