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
exec sh "$(dirname "$0")/../mk/deps.sh" $pkgs
