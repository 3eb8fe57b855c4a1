#!/bin/sh
# Installs the Debian packages that `make deb`, `make deb-test` and
# `make image-test` need on the build machine, when any is missing.
#
#   packaging/deps.sh          what building and checking the .deb needs
#   packaging/deps.sh cross    also what a cross build (cross-deps.sh) needs
#   packaging/deps.sh image    also what the Raspberry Pi image test needs
#
# Needs root (or passwordless sudo) only when something is missing.
set -eu
pkgs="build-essential debhelper dpkg-dev fakeroot lintian man-db groff-base
      pkgconf libevent-dev libssl-dev libinih-dev libsystemd-dev libcmocka-dev"
if [ "${1:-}" = cross ]; then
	pkgs="$pkgs mmdebstrap"
fi
if [ "${1:-}" = image ]; then
	pkgs="$pkgs qemu-user-static qemu-system-arm mmdebstrap cpio gzip
	      openssl arch-test"
fi
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "packaging/deps: installing:$missing"
if [ "$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO="sudo -n"; else
	echo "packaging/deps: missing packages:$missing (run as root)" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists once if a first attempt fails (stale or empty).
if ! $SUDO apt-get install -y -q --no-install-recommends $missing; then
	$SUDO apt-get update -q
	$SUDO apt-get install -y -q --no-install-recommends $missing
fi
